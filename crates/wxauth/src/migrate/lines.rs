//! Reading an export a line at a time: a file's lines (blank ones passed
//! over), each parsed with its fields in order, or the problem with it.

use std::io::BufRead;
use std::path::PathBuf;

use serde_json::Value;

use super::{Ordered, RowProblem};
use crate::error::{Error, Result};

/// A file being read a line at a time.
pub(super) struct Lines {
    pub(super) label: String,
    pub(super) reader: std::io::BufReader<std::fs::File>,
    pub(super) buf: Vec<u8>,
    pub(super) line: u64,
}

impl Lines {
    /// The next line that is not blank (without its end) and the bytes
    /// read to reach it, or None at the end.
    pub(super) fn next(&mut self) -> Result<Option<(u64, usize)>> {
        let mut read = 0;
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::internal_from(format!("cannot read {}", self.label), e))?;
            if n == 0 {
                return Ok(None);
            }
            read += n;
            self.line += 1;
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some((self.line, read)))
    }
}

pub(super) fn open_all(paths: &[PathBuf]) -> Result<Vec<(Lines, u64)>> {
    paths
        .iter()
        .map(|p| {
            let file = std::fs::File::open(p)
                .map_err(|e| Error::InvalidRequest(format!("cannot open {}: {e}", p.display())))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Ok((
                Lines {
                    label: p.display().to_string(),
                    reader: std::io::BufReader::with_capacity(256 * 1024, file),
                    buf: Vec::new(),
                    line: 0,
                },
                size,
            ))
        })
        .collect()
}

pub(super) fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A parsed line, or the problem with it.
pub(super) fn parse_line(bytes: &[u8]) -> std::result::Result<Ordered, RowProblem> {
    serde_json::from_slice::<Ordered>(bytes).map_err(|e| {
        if e.is_data() {
            RowProblem::new("not_an_object", "the line is JSON but not an object")
        } else {
            RowProblem::new("invalid_json", format!("invalid JSON: {e}"))
        }
    })
}
