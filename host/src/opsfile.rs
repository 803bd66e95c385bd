//! The ops file (SPEC §5): table operations as text, one a line, and their result lines.
//!
//! ```text
//! put <key> <value-hex>   get <key>   del <key>
//! link <a> <b> <strength>   unlink <a> <b>   related <key> [min [max]]
//! ```
//! Fields are separated by spaces or TABs; `#` starts a comment line; blank lines are
//! ignored; line numbers count every line. Keys are decimal u64; a value is exactly
//! `2 * value_bytes` hex digits (either case). Results: `ok`, `value <hex>`, `missing`,
//! `deleted`, `absent`, `related <hex|missing> <key>:<strength>:<hex> ...` (strength with six
//! decimals, hex lowercase).
//!
//! [`OpsReader`] cuts the input into batches: at most `batch_limit` operations, and a batch
//! also ends when the input pauses (nothing more is buffered), so an interactive producer
//! sees its results without waiting for a full batch. A line with an error fails the whole
//! batch it would have joined: nothing of that batch reaches a table.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};

use warpgrid_engine::table::{DEFAULT_MAX_RELATED, DEFAULT_MIN_STRENGTH};
use warpgrid_engine::{Batch, Outcome, TableError};

/// A problem with an ops file, naming where it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// A line that does not parse or holds an invalid operation.
    #[error("{file}:{line}: field {field}: {message}")]
    Line {
        /// The input's name (a path, or `-` for stdin).
        file: String,
        /// Line number, from 1.
        line: u64,
        /// The field at fault (`op`, `key`, `value`, ...).
        field: &'static str,
        /// The expected and the actual value.
        message: String,
    },
    /// The input could not be read.
    #[error("{file}: cannot read the input")]
    Io {
        /// The input's name.
        file: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Reads batches of operations from ops-file text.
pub struct OpsReader<R> {
    input: BufReader<R>,
    name: String,
    line_no: u64,
    value_bytes: usize,
    batch_limit: usize,
    end_on_pause: bool,
    line: String,
    raw: Vec<u8>,
    scratch: Vec<u8>,
}

/// Input buffer: large enough that a file yields full batches between refills.
const READ_BUFFER: usize = 1 << 20;

impl<R: Read> OpsReader<R> {
    /// `name` is how errors refer to the input (a path, or `<stdin>`).
    pub fn new(input: R, name: impl Into<String>, value_bytes: usize, batch_limit: usize) -> Self {
        OpsReader {
            input: BufReader::with_capacity(READ_BUFFER, input),
            name: name.into(),
            line_no: 0,
            value_bytes,
            batch_limit: batch_limit.max(1),
            end_on_pause: false,
            line: String::new(),
            raw: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Ends a batch whenever nothing more is buffered (for pipes and terminals, where that
    /// means the producer paused; a regular file only refills).
    pub fn end_batches_on_pause(mut self, yes: bool) -> Self {
        self.end_on_pause = yes;
        self
    }

    /// Lines read so far.
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// Clears `batch` and fills it with the next operations. Returns `Ok(false)` at the end
    /// of the input (the batch may still hold a last partial batch: check `is_empty`).
    pub fn next_batch(&mut self, batch: &mut Batch) -> Result<bool, OpsError> {
        batch.clear();
        while batch.len() < self.batch_limit {
            self.raw.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.raw)
                .map_err(|source| OpsError::Io {
                    file: self.name.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(false);
            }
            self.line_no += 1;
            self.line.clear();
            match std::str::from_utf8(&self.raw) {
                Ok(text) => self.line.push_str(text),
                Err(e) => {
                    let at = e.valid_up_to() + 1;
                    return Err(
                        self.err("line", format!("not valid UTF-8 (byte {at} of the line)"))
                    );
                }
            }
            self.parse_line(batch)?;
            if self.end_on_pause && self.input.buffer().is_empty() && !batch.is_empty() {
                break; // the input paused: hand over what we have
            }
        }
        Ok(true)
    }

    fn err(&self, field: &'static str, message: impl Into<String>) -> OpsError {
        OpsError::Line {
            file: self.name.clone(),
            line: self.line_no,
            field,
            message: message.into(),
        }
    }

    fn parse_line(&mut self, batch: &mut Batch) -> Result<(), OpsError> {
        let line = std::mem::take(&mut self.line);
        let result = self.parse_fields(&line, batch);
        self.line = line;
        result
    }

    fn parse_fields(&mut self, line: &str, batch: &mut Batch) -> Result<(), OpsError> {
        let text = line.trim_end_matches(['\n', '\r']);
        let mut fields = text.split([' ', '\t']).filter(|f| !f.is_empty());
        let Some(op) = fields.next() else {
            return Ok(());
        };
        if op.starts_with('#') {
            return Ok(());
        }
        let fields: Vec<&str> = fields.collect();
        let arity = |min: usize, max: usize, usage: &str| -> Result<(), OpsError> {
            if fields.len() < min {
                Err(self.err(
                    "op",
                    format!(
                        "{op} needs {min} argument(s), got {}; usage: {usage}",
                        fields.len()
                    ),
                ))
            } else if fields.len() > max {
                Err(self.err(
                    "op",
                    format!(
                        "unexpected field {:?} after {op}; usage: {usage}",
                        fields[max]
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let result = match op {
            "put" => {
                arity(2, 2, "put <key> <value-hex>")?;
                let key = self.key(fields[0], "key")?;
                let value = self.value(fields[1])?;
                batch.put(key, &value)
            }
            "get" => {
                arity(1, 1, "get <key>")?;
                batch.get(self.key(fields[0], "key")?)
            }
            "del" => {
                arity(1, 1, "del <key>")?;
                batch.delete(self.key(fields[0], "key")?)
            }
            "link" => {
                arity(3, 3, "link <a> <b> <strength>")?;
                let (a, b) = (self.key(fields[0], "a")?, self.key(fields[1], "b")?);
                let s = self.float(fields[2], "strength", "a number in (0, 1]")?;
                if !(s > 0.0 && s <= 1.0) {
                    return Err(self.err(
                        "strength",
                        format!("expected a number in (0, 1], got {}", fields[2]),
                    ));
                }
                batch.link(a, b, s)
            }
            "unlink" => {
                arity(2, 2, "unlink <a> <b>")?;
                let (a, b) = (self.key(fields[0], "a")?, self.key(fields[1], "b")?);
                batch.unlink(a, b)
            }
            "related" => {
                arity(1, 3, "related <key> [min [max]]")?;
                let key = self.key(fields[0], "key")?;
                let min = match fields.get(1) {
                    Some(f) => self.float(f, "min", "a number in [0, 1]")?,
                    None => DEFAULT_MIN_STRENGTH,
                };
                if !(0.0..=1.0).contains(&min) {
                    return Err(self.err(
                        "min",
                        format!("expected a number in [0, 1], got {}", fields[1]),
                    ));
                }
                let max = match fields.get(2) {
                    Some(f) => f.parse::<u32>().map_err(|_| {
                        self.err("max", format!("expected a count 0..=4294967295, got {f:?}"))
                    })?,
                    None => DEFAULT_MAX_RELATED,
                };
                batch.get_related(key, min, max)
            }
            other => {
                return Err(self.err(
                    "op",
                    format!("unknown operation {other:?}; expected put, get, del, link, unlink or related"),
                ));
            }
        };
        result.map_err(|e| self.table_err(&e))
    }

    fn key(&self, text: &str, field: &'static str) -> Result<u64, OpsError> {
        let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let key: u64 = text.parse().ok().filter(|_| digits_only).ok_or_else(|| {
            self.err(
                field,
                format!("expected a decimal key 0..={}, got {text:?}", u64::MAX - 2),
            )
        })?;
        if key >= u64::MAX - 1 {
            return Err(self.err(
                field,
                format!("key {key} is reserved (the two largest u64 values mark empty and deleted slots)"),
            ));
        }
        Ok(key)
    }

    fn value(&mut self, text: &str) -> Result<Vec<u8>, OpsError> {
        let want = 2 * self.value_bytes;
        if text.len() != want {
            return Err(self.err(
                "value",
                format!(
                    "expected {want} hex digits ({} bytes), got {}",
                    self.value_bytes,
                    text.len()
                ),
            ));
        }
        self.scratch.clear();
        let mut bytes = std::mem::take(&mut self.scratch);
        if let Err(at) = crate::hex::decode_into(text, &mut bytes) {
            let c = text[at..].chars().next().unwrap_or(' ');
            return Err(self.err(
                "value",
                format!("{c:?} at digit {} is not a hex digit", at + 1),
            ));
        }
        Ok(bytes)
    }

    /// A finite number, range-checked by the caller as f64 (so `1.00000001`, which rounds to
    /// 1.0 as an f32, is still out of (0, 1]), then stored as f32.
    fn float(&self, text: &str, field: &'static str, want: &str) -> Result<f32, OpsError> {
        match text.parse::<f64>() {
            Ok(v)
                if v.is_finite()
                    && (0.0..=1.0).contains(&v)
                    && (v > 0.0 || field != "strength") =>
            {
                Ok(v as f32)
            }
            _ => Err(self.err(field, format!("expected {want}, got {text}"))),
        }
    }

    fn table_err(&self, e: &TableError) -> OpsError {
        let field = match e {
            TableError::InvalidKey { .. } => "key",
            TableError::InvalidValueLength { .. } => "value",
            TableError::InvalidLink { .. } => "b",
            TableError::InvalidRelated { .. } => "min",
            _ => "op",
        };
        self.err(field, e.to_string())
    }
}

/// Appends the result line of one operation (without the newline) to `out`.
pub fn write_outcome(outcome: &Outcome<'_>, out: &mut String) {
    match outcome {
        Outcome::Ok => out.push_str("ok"),
        Outcome::Value(v) => {
            out.push_str("value ");
            crate::hex::encode_into(v, out);
        }
        Outcome::Missing => out.push_str("missing"),
        Outcome::Deleted => out.push_str("deleted"),
        Outcome::Absent => out.push_str("absent"),
        Outcome::Related(r) => {
            out.push_str("related ");
            match r.value {
                Some(v) => crate::hex::encode_into(v, out),
                None => out.push_str("missing"),
            }
            for (key, strength, value) in r.partners() {
                let _ = write!(out, " {key}:{strength:.6}:");
                crate::hex::encode_into(value, out);
            }
        }
    }
}

/// Parses a whole ops text into one batch (for tests and small inputs).
pub fn parse_all(text: &str, name: &str, value_bytes: usize) -> Result<Batch, OpsError> {
    let mut reader = OpsReader::new(text.as_bytes(), name, value_bytes, usize::MAX);
    let mut batch = Batch::new(value_bytes);
    reader.next_batch(&mut batch)?;
    Ok(batch)
}

#[cfg(test)]
mod test {
    use super::*;

    fn err_of(text: &str) -> String {
        parse_all(text, "ops.txt", 8).unwrap_err().to_string()
    }

    #[test]
    fn parses_every_operation_with_comments_blanks_and_tabs() {
        let b = parse_all(
            "# header\n\nput 1 00112233445566AA\nget\t1\n  del 2\nlink 1 2 0.5\nunlink 1 2\nrelated 1\nrelated 1 0.2 3\r\n",
            "x",
            8,
        )
        .unwrap();
        assert_eq!(b.len(), 7);
        assert_eq!(b.aux(6).max, 3);
        assert_eq!(b.aux(5).strength, DEFAULT_MIN_STRENGTH);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        assert_eq!(
            err_of("get 1\n# c\nput 2 0011\n"),
            "ops.txt:3: field value: expected 16 hex digits (8 bytes), got 4"
        );
        assert!(
            err_of("put x 0011223344556677")
                .starts_with("ops.txt:1: field key: expected a decimal key")
        );
        assert!(
            err_of("get 18446744073709551615")
                .contains("field key: key 18446744073709551615 is reserved")
        );
        assert!(err_of("get 18446744073709551614").contains("is reserved"));
        assert!(err_of("put 1 00112233445566zz").contains("field value: 'z' at digit 15"));
        assert!(err_of("fetch 1").starts_with("ops.txt:1: field op: unknown operation \"fetch\""));
        assert!(
            err_of("link 1 2 0").contains("field strength: expected a number in (0, 1], got 0")
        );
        assert!(err_of("link 1 2 1.5").contains("field strength"));
        assert!(err_of("link 1 2 NaN").contains("field strength"));
        assert!(err_of("link 1 2 inf").contains("field strength"));
        assert!(err_of("link 1 2 1.00000001").contains("field strength"));
        assert!(err_of("get +5").contains("field key: expected a decimal key"));
        let bad_utf8 = OpsReader::new(&b"get 1\nget \xff\n"[..], "b.ops", 8, 100)
            .next_batch(&mut Batch::new(8));
        assert_eq!(
            bad_utf8.unwrap_err().to_string(),
            "b.ops:2: field line: not valid UTF-8 (byte 5 of the line)"
        );
        assert!(err_of("link 1 1 0.5").contains("field b: invalid link 1 -> 1"));
        assert!(err_of("get 1 2").contains("field op: unexpected field \"2\""));
        assert!(err_of("related 1 2").contains("field min"));
        assert!(err_of("related 1 0.5 -1").contains("field max"));
        assert!(err_of("put 1").contains("field op: put needs 2 argument(s)"));
    }

    #[test]
    fn batches_end_at_the_limit() {
        let text = "get 1\n".repeat(10);
        let mut r = OpsReader::new(text.as_bytes(), "x", 8, 4);
        let mut b = Batch::new(8);
        let mut sizes = Vec::new();
        loop {
            let more = r.next_batch(&mut b).unwrap();
            if !b.is_empty() {
                sizes.push(b.len());
            }
            if !more {
                break;
            }
        }
        assert_eq!(sizes, [4, 4, 2]);
    }

    /// A reader that hands out one line per read call, like a producer that pauses.
    struct Trickle(Vec<&'static str>);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(line) = self.0.pop() else {
                return Ok(0);
            };
            buf[..line.len()].copy_from_slice(line.as_bytes());
            Ok(line.len())
        }
    }

    #[test]
    fn a_pause_ends_the_batch_only_when_asked() {
        let lines = || Trickle(vec!["get 3\n", "get 2\n", "get 1\n"]);
        let count = |reader: &mut OpsReader<Trickle>| {
            let mut b = Batch::new(8);
            let mut sizes = Vec::new();
            while reader.next_batch(&mut b).unwrap() {
                sizes.push(b.len());
            }
            sizes.push(b.len());
            sizes
        };
        assert_eq!(
            count(&mut OpsReader::new(lines(), "p", 8, 100).end_batches_on_pause(true)),
            [1, 1, 1, 0]
        );
        assert_eq!(count(&mut OpsReader::new(lines(), "p", 8, 100)), [3]);
    }
}
