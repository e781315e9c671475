//! Decoding of `pgoutput` messages (protocol version 1) as `pg_logical_slot_peek_binary_changes`
//! returns them, down to what the applier needs: which keys of the source table changed, per
//! committed transaction, in commit order.

use std::collections::HashMap;

/// A decoded message the applier acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A transaction begins.
    Begin,
    /// The transaction commits.
    Commit,
    /// A relation's columns: `(name, part of the replica identity)`.
    Relation {
        /// The relation's oid.
        id: u32,
        /// Column names, in attribute order.
        columns: Vec<String>,
    },
    /// A row was inserted, updated or deleted: its tuples (new and/or old key), as text.
    Row {
        /// The relation's oid.
        rel: u32,
        /// The tuples carried (the old key or old row, the new row).
        tuples: Vec<Tuple>,
    },
    /// The relation was truncated.
    Truncate,
    /// Anything else (origin, type, logical message).
    Other,
}

/// One tuple: per column, `Some(text)`, or `None` for NULL or an unchanged TOAST value.
pub type Tuple = Vec<Option<String>>;

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable pgoutput message: {0}")]
pub struct DecodeError(String);

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| DecodeError(format!("truncated at byte {}", self.at)))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn cstr(&mut self) -> Result<String, DecodeError> {
        let rest = &self.buf[self.at..];
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| DecodeError("unterminated string".into()))?;
        let s = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.u16()?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match self.u8()? {
                b'n' | b'u' => out.push(None),
                b't' => {
                    let len = self.u32()? as usize;
                    out.push(Some(String::from_utf8_lossy(self.take(len)?).into_owned()));
                }
                k => return Err(DecodeError(format!("unknown column kind {k}"))),
            }
        }
        Ok(out)
    }
}

/// Decodes one message.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { buf: data, at: 0 };
    Ok(match r.u8()? {
        b'B' => Message::Begin,
        b'C' => Message::Commit,
        b'R' => {
            let id = r.u32()?;
            let _namespace = r.cstr()?;
            let _name = r.cstr()?;
            let _identity = r.u8()?;
            let n = r.u16()?;
            let mut columns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let _flags = r.u8()?;
                columns.push(r.cstr()?);
                r.take(8)?;
            }
            Message::Relation { id, columns }
        }
        b'I' => {
            let rel = r.u32()?;
            r.u8()?;
            Message::Row {
                rel,
                tuples: vec![r.tuple()?],
            }
        }
        b'U' => {
            let rel = r.u32()?;
            let mut tuples = Vec::new();
            let mut kind = r.u8()?;
            if kind == b'K' || kind == b'O' {
                tuples.push(r.tuple()?);
                kind = r.u8()?;
            }
            if kind != b'N' {
                return Err(DecodeError(format!("update without a new tuple ({kind})")));
            }
            tuples.push(r.tuple()?);
            Message::Row { rel, tuples }
        }
        b'D' => {
            let rel = r.u32()?;
            r.u8()?;
            Message::Row {
                rel,
                tuples: vec![r.tuple()?],
            }
        }
        b'T' => Message::Truncate,
        _ => Message::Other,
    })
}

/// The keys a tuple carries, by the relation's column names; `None` when a key column is
/// missing, NULL or an unchanged TOAST value.
pub fn key_of(
    relations: &HashMap<u32, Vec<String>>,
    rel: u32,
    tuple: &Tuple,
    key: &[String],
) -> Option<Vec<String>> {
    let columns = relations.get(&rel)?;
    key.iter()
        .map(|k| {
            let i = columns.iter().position(|c| c == k)?;
            tuple.get(i).cloned().flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    #[test]
    fn decodes_relation_and_rows() {
        let mut rel = vec![b'R'];
        rel.extend_from_slice(&7u32.to_be_bytes());
        cstr(&mut rel, "public");
        cstr(&mut rel, "items");
        rel.push(b'd');
        rel.extend_from_slice(&2u16.to_be_bytes());
        for name in ["id", "note"] {
            rel.push(1);
            cstr(&mut rel, name);
            rel.extend_from_slice(&[0; 8]);
        }
        let Message::Relation { id, columns } = decode(&rel).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!((id, columns.clone()), (7, vec!["id".into(), "note".into()]));

        let mut upd = vec![b'U'];
        upd.extend_from_slice(&7u32.to_be_bytes());
        upd.push(b'K');
        upd.extend_from_slice(&2u16.to_be_bytes());
        upd.extend_from_slice(&[b't', 0, 0, 0, 1, b'1', b'n']);
        upd.push(b'N');
        upd.extend_from_slice(&2u16.to_be_bytes());
        upd.extend_from_slice(&[b't', 0, 0, 0, 1, b'2', b'u']);
        let Message::Row { rel: r, tuples } = decode(&upd).unwrap() else {
            panic!("not a row")
        };
        let relations = HashMap::from([(7, columns)]);
        let key = vec!["id".to_string()];
        assert_eq!(
            key_of(&relations, r, &tuples[0], &key),
            Some(vec!["1".into()])
        );
        assert_eq!(
            key_of(&relations, r, &tuples[1], &key),
            Some(vec!["2".into()])
        );
        assert!(decode(&upd[..upd.len() - 3]).is_err());
    }
}
