//! Reading a plan file: regular files only, at most [`MAX_PLAN_BYTES`], checked before reading
//! and bounded while reading (so `/dev/zero`, a FIFO or a growing file cannot exhaust memory or
//! block), and valid UTF-8 (an invalid byte is reported with its line and column).

use std::io::Read;
use std::path::Path;

use super::diagnostic::{line_col, Diagnostic, PlanError};

/// The largest plan file Cutover reads: 4 MiB.
pub const MAX_PLAN_BYTES: u64 = 4 * 1024 * 1024;

fn at(path: &str, line: usize, col: usize, message: String, hint: &str) -> Diagnostic {
    Diagnostic {
        file: path.to_string(),
        line,
        col,
        message,
        hint: Some(hint.to_string()),
    }
}

/// The diagnostic for a file over [`MAX_PLAN_BYTES`].
pub(super) fn too_large(path: &str) -> Diagnostic {
    at(
        path,
        1,
        1,
        format!("the plan file is larger than {MAX_PLAN_BYTES} bytes (4 MiB)"),
        "a plan is a short TOML file; move bulk data out of it",
    )
}

fn invalid(path: &str, message: String, hint: &str) -> PlanError {
    PlanError::Invalid(vec![at(path, 1, 1, message, hint)])
}

/// What kind of non-regular file `meta` describes, if it is not a regular file.
fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_char_device() || t.is_block_device() {
            return Some("a device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

fn check_meta(path: &str, meta: &std::fs::Metadata) -> Result<(), PlanError> {
    if let Some(what) = not_regular(meta) {
        return Err(invalid(
            path,
            format!("cannot read plan: {path} is {what}, not a regular file"),
            "pass the path of a .toml plan file",
        ));
    }
    if meta.len() > MAX_PLAN_BYTES {
        return Err(PlanError::Invalid(vec![too_large(path)]));
    }
    Ok(())
}

fn io(path: &str, e: &std::io::Error) -> PlanError {
    PlanError::Io {
        path: path.to_string(),
        message: e.to_string(),
    }
}

/// Reads the plan at `path` (`shown` names it in messages).
pub(super) fn read(path: &Path, shown: &str) -> Result<String, PlanError> {
    let meta = std::fs::metadata(path).map_err(|e| io(shown, &e))?;
    check_meta(shown, &meta)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Never block on opening: the path may have been replaced by a FIFO since the check.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| io(shown, &e))?;
    check_meta(shown, &file.metadata().map_err(|e| io(shown, &e))?)?;
    let mut bytes = Vec::new();
    file.take(MAX_PLAN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(shown, &e))?;
    if bytes.len() as u64 > MAX_PLAN_BYTES {
        return Err(PlanError::Invalid(vec![too_large(shown)]));
    }
    decode(shown, bytes)
}

/// Decodes UTF-8, reporting the first invalid byte with its line and column.
pub(super) fn decode(path: &str, bytes: Vec<u8>) -> Result<String, PlanError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or("");
        let (line, col) = line_col(prefix, valid);
        let byte = bytes.get(valid).copied().unwrap_or(0);
        PlanError::Invalid(vec![at(
            path,
            line,
            col,
            format!("invalid UTF-8: byte 0x{byte:02x} at byte offset {valid} is not valid UTF-8"),
            "save the plan as UTF-8",
        )])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(e: PlanError) -> Diagnostic {
        match e {
            PlanError::Invalid(mut d) => d.remove(0),
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn invalid_utf8_is_located() {
        let d = diag(decode("p.toml", b"id = \"x\"\ntitle = \"a\xffb\"\n".to_vec()).unwrap_err());
        assert_eq!((d.line, d.col), (2, 11), "{d}");
        assert!(d.message.contains("0xff"), "{d}");
    }

    #[test]
    fn directories_and_devices_are_refused_before_reading() {
        let d = diag(read(Path::new("src"), "src").unwrap_err());
        assert!(d.message.contains("a directory"), "{d}");
        let started = std::time::Instant::now();
        let d = diag(read(Path::new("/dev/zero"), "/dev/zero").unwrap_err());
        assert!(d.message.contains("a device"), "{d}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn large_files_are_refused_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.toml");
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(MAX_PLAN_BYTES + 1).expect("sparse file");
        let d = diag(read(&path, "big.toml").unwrap_err());
        assert!(d.message.contains("larger than"), "{d}");
    }
}
