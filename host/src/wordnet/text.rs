//! The text layer of wndb(5) files: a file's lines with their numbers and byte offsets
//! (license lines, which begin with two spaces, skipped), and [`Fields`], the space-separated
//! fields of one line read with the number syntaxes the format uses. Every error names the
//! file, the line and the field.

use std::fmt;
use std::path::Path;

use super::error::WordnetError;

/// Reads a whole database file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, WordnetError> {
    std::fs::read(path).map_err(|source| WordnetError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One line of a file: its number (from 1, every line counted), the byte offset where it
/// starts, and its text without the newline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    pub number: u64,
    pub offset: usize,
    pub text: &'a [u8],
}

/// The lines that hold entries: license lines (two leading spaces) and empty lines skipped.
pub(crate) fn entries(bytes: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut offset = 0;
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(move |(i, text)| {
            let line = Line {
                number: i as u64 + 1,
                offset,
                text,
            };
            offset += text.len() + 1;
            line
        })
        .filter(|l| !l.text.is_empty() && !l.text.starts_with(b"  "))
}

/// The name of a field in error messages: `w_cnt`, `word 2`, `pointer 3 synset_offset`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    group: &'static str,
    index: usize,
    part: &'static str,
}

impl Field {
    /// A field that occurs once on a line.
    pub const fn one(name: &'static str) -> Field {
        Field {
            group: name,
            index: 0,
            part: "",
        }
    }

    /// The `index`-th (from 1) of a repeated field: `word 2`.
    pub const fn nth(group: &'static str, index: usize) -> Field {
        Field {
            group,
            index,
            part: "",
        }
    }

    /// A part of the `index`-th (from 1) of a repeated group: `pointer 3 pos`.
    pub const fn part(group: &'static str, index: usize, part: &'static str) -> Field {
        Field { group, index, part }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.group)?;
        if self.index > 0 {
            write!(f, " {}", self.index)?;
        }
        if !self.part.is_empty() {
            write!(f, " {}", self.part)?;
        }
        Ok(())
    }
}

/// A token for an error message (lossy UTF-8, at most 40 characters).
pub(crate) fn shown(token: &[u8]) -> String {
    let s = String::from_utf8_lossy(token);
    match s.char_indices().nth(40) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// The space-separated fields of one line, read in order.
pub(crate) struct Fields<'p, 'a> {
    path: &'p Path,
    line: u64,
    rest: &'a [u8],
}

impl<'p, 'a> Fields<'p, 'a> {
    pub fn new(path: &'p Path, line: Line<'a>) -> Fields<'p, 'a> {
        Fields {
            path,
            line: line.number,
            rest: line.text,
        }
    }

    /// An error about `field` on this line.
    pub fn error(&self, field: Field, reason: impl Into<String>) -> WordnetError {
        WordnetError::line(self.path, self.line, field.to_string(), reason)
    }

    /// The next token, `None` at the end of the line.
    pub fn try_token(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }

    /// The next token, which must be there.
    pub fn token(&mut self, field: Field) -> Result<&'a [u8], WordnetError> {
        self.try_token().ok_or_else(|| {
            self.error(
                field,
                "the line ends before this field (is the file truncated?)",
            )
        })
    }

    /// The next token as a number of exactly `digits` digits in `radix` 10 or 16
    /// (`digits` 0: any length of at least one digit).
    pub fn number(&mut self, field: Field, radix: u32, digits: usize) -> Result<u32, WordnetError> {
        let token = self.token(field)?;
        let well_formed = !token.is_empty()
            && (digits == 0 || token.len() == digits)
            && token.len() <= 10
            && token.iter().all(|&b| (b as char).is_digit(radix));
        let value = well_formed
            .then(|| std::str::from_utf8(token).ok())
            .flatten()
            .and_then(|s| u32::from_str_radix(s, radix).ok());
        value.ok_or_else(|| {
            let base = if radix == 16 {
                "hexadecimal"
            } else {
                "decimal"
            };
            let width = match digits {
                0 => format!("a {base} number"),
                1 => format!("1 {base} digit"),
                n => format!("{n} {base} digits"),
            };
            self.error(field, format!("expected {width}, got {}", shown(token)))
        })
    }

    /// The next token, which must be exactly `expected`.
    pub fn literal(&mut self, field: Field, expected: &str) -> Result<(), WordnetError> {
        let token = self.token(field)?;
        if token == expected.as_bytes() {
            Ok(())
        } else {
            Err(self.error(
                field,
                format!("expected {expected:?}, got {}", shown(token)),
            ))
        }
    }
}
