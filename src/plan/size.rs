//! A positive size written in plans as a human string: `512MB`, `2GB`, `1.5 GiB`, `1024kB`.
//! Units are binary, as in PostgreSQL settings (`kB` = 1024 bytes, `MB` = 1024 kB, …).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(u64);

const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("kB", 1 << 10),
    ("KiB", 1 << 10),
    ("MB", 1 << 20),
    ("MiB", 1 << 20),
    ("GB", 1 << 30),
    ("GiB", 1 << 30),
    ("TB", 1 << 40),
    ("TiB", 1 << 40),
];

impl Size {
    /// `bytes` as a size, unless it is zero.
    pub fn from_bytes(bytes: u64) -> Option<Size> {
        (bytes > 0).then_some(Size(bytes))
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, factor) = [
            ("TB", 1u64 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("kB", 1 << 10),
        ]
        .into_iter()
        .find(|(_, factor)| self.0 >= *factor)
        .unwrap_or(("B", 1));
        let value = self.0 as f64 / factor as f64;
        if value.fract() == 0.0 {
            write!(f, "{value:.0}{unit}")
        } else {
            write!(f, "{value:.1}{unit}")
        }
    }
}

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = (&text[..split], text[split..].trim());
        let hint = "write a positive size such as `512MB` or `2GB`";
        let factor = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| format!("invalid size `{s}`: unknown or missing unit ({hint})"))?;
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid size `{s}` ({hint})"))?;
        let bytes = value * factor as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(format!("invalid size `{s}`: {hint}"));
        }
        Ok(Size(bytes as u64))
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!("2GB".parse::<Size>().unwrap().bytes(), 2 << 30);
        assert_eq!("1.5 GiB".parse::<Size>().unwrap().bytes(), 3 << 29);
        assert_eq!("64kB".parse::<Size>().unwrap().to_string(), "64kB");
        assert_eq!("1536MB".parse::<Size>().unwrap().to_string(), "1.5GB");
    }

    #[test]
    fn sizes_must_be_positive_and_have_a_unit() {
        for bad in ["0GB", "-1GB", "2", "GB", "2 parsecs", ""] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }
}
