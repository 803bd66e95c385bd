//! The `.npy` format for embeddings and queries (SPEC §5): versions 1.0, 2.0 and 3.0, dtype
//! `<f4` (float32) or `<f2` (float16) only, C order, a 2-d shape `(rows, cols)`. Float16
//! files are widened to f32 (exactly). Anything else is an error naming the file and the
//! header field. Values must be finite (SPEC §6: NaN/inf anywhere is an error).
//!
//! Layout: `\x93NUMPY`, major and minor version bytes, the header length (u16 LE in 1.0,
//! u32 LE in 2.0 and 3.0), the header (a Python dict literal, ASCII in 1.0/2.0, UTF-8 in
//! 3.0, padded with spaces and a newline), then the data.

use std::path::Path;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::error::GraphError;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The element types accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// `<f4`
    F32,
    /// `<f2`
    F16,
}

impl NpyDtype {
    /// The `descr` of the `.npy` header for this dtype.
    pub fn descr(self) -> &'static str {
        match self {
            NpyDtype::F32 => "<f4",
            NpyDtype::F16 => "<f2",
        }
    }

    fn size(self) -> usize {
        match self {
            NpyDtype::F32 => 4,
            NpyDtype::F16 => 2,
        }
    }
}

/// A 2-d array of finite values, row-major, widened to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyMatrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns (values per row).
    pub cols: usize,
    /// The dtype of the file it was read from.
    pub dtype: NpyDtype,
    /// `rows × cols` values.
    pub data: Vec<f32>,
}

impl NpyMatrix {
    /// Reads a `.npy` file in one pass.
    pub fn read(path: &Path) -> Result<NpyMatrix, GraphError> {
        let bytes = std::fs::read(path).map_err(|e| GraphError::io(path, "read", e))?;
        NpyMatrix::parse(path, &bytes)
    }

    /// Parses the bytes of a `.npy` file; `path` only names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<NpyMatrix, GraphError> {
        let truncated = |section, needed: usize| GraphError::Truncated {
            path: path.to_path_buf(),
            section,
            needed: needed as u64,
            available: bytes.len() as u64,
        };
        if bytes.len() < 8 {
            return Err(truncated("magic", 8));
        }
        if &bytes[..6] != MAGIC {
            return Err(GraphError::npy(
                path,
                "magic",
                "not a .npy file: it does not start with \\x93NUMPY",
            ));
        }
        let (major, minor) = (bytes[6], bytes[7]);
        let (len_bytes, text_utf8) = match major {
            1 => (2, false),
            2 => (4, false),
            3 => (4, true),
            _ => {
                return Err(GraphError::npy(
                    path,
                    "version",
                    format!("version {major}.{minor} is not supported: expected 1.0, 2.0 or 3.0"),
                ));
            }
        };
        let start = 8 + len_bytes;
        if bytes.len() < start {
            return Err(truncated("header length", start));
        }
        let header_len = if len_bytes == 2 {
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))
        } else {
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
        };
        let data_start = start + header_len;
        if bytes.len() < data_start {
            return Err(truncated("header", data_start));
        }
        let raw = &bytes[start..data_start];
        if !text_utf8 && !raw.is_ascii() {
            return Err(GraphError::npy(
                path,
                "header",
                format!("version {major}.0 headers must be ASCII"),
            ));
        }
        let text = std::str::from_utf8(raw)
            .map_err(|_| GraphError::npy(path, "header", "the header is not valid UTF-8"))?;
        let header =
            parse_header(text).map_err(|(field, reason)| GraphError::npy(path, field, reason))?;

        let cols = header.cols;
        let rows = header.rows;
        let dtype = header.dtype;
        let count = rows
            .checked_mul(cols)
            .filter(|&c| c.checked_mul(dtype.size()).is_some())
            .ok_or_else(|| {
                GraphError::npy(path, "shape", format!("({rows}, {cols}) is too large"))
            })?;
        let data_len = count * dtype.size();
        let have = bytes.len() - data_start;
        if have < data_len {
            return Err(truncated("data", data_start + data_len));
        }
        if have > data_len {
            return Err(GraphError::npy(
                path,
                "data",
                format!(
                    "{} bytes after the ({rows}, {cols}) {} array; the file is longer than its \
                     header says",
                    have - data_len,
                    dtype.descr()
                ),
            ));
        }
        let body = &bytes[data_start..];
        let data: Vec<f32> = match dtype {
            NpyDtype::F32 => body
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            NpyDtype::F16 => {
                let halves: Vec<f16> = body
                    .chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                    .collect();
                let mut out = vec![0.0f32; halves.len()];
                halves.convert_to_f32_slice(&mut out);
                out
            }
        };
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(GraphError::npy(
                path,
                "data",
                format!(
                    "row {} column {} is {}; values must be finite",
                    i / cols.max(1),
                    i % cols.max(1),
                    data[i]
                ),
            ));
        }
        Ok(NpyMatrix {
            rows,
            cols,
            dtype,
            data,
        })
    }

    /// The bytes of a version 1.0 `.npy` file holding this matrix as `dtype` (values rounded
    /// to f16 for [`NpyDtype::F16`]).
    pub fn to_bytes(&self, dtype: NpyDtype) -> Vec<u8> {
        let dict = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}",
            dtype.descr(),
            self.rows,
            self.cols
        );
        // Pad so that the data starts on a multiple of 64 bytes, as numpy does.
        let unpadded = 10 + dict.len() + 1;
        let total = unpadded.div_ceil(64) * 64;
        let mut header = dict.into_bytes();
        header.resize(total - 10 - 1, b' ');
        header.push(b'\n');
        let mut out = Vec::with_capacity(total + self.data.len() * dtype.size());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(&header);
        match dtype {
            NpyDtype::F32 => {
                for x in &self.data {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            NpyDtype::F16 => {
                for x in &self.data {
                    out.extend_from_slice(&f16::from_f32(*x).to_bits().to_le_bytes());
                }
            }
        }
        out
    }

    /// Writes [`to_bytes`](NpyMatrix::to_bytes) to `path`.
    pub fn write(&self, path: &Path, dtype: NpyDtype) -> Result<(), GraphError> {
        std::fs::write(path, self.to_bytes(dtype)).map_err(|e| GraphError::io(path, "write", e))
    }
}

/// The three fields of a header.
#[derive(Debug)]
struct Header {
    dtype: NpyDtype,
    rows: usize,
    cols: usize,
}

/// A value of the header dict.
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

type HeaderError = (&'static str, String);

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(text: &str) -> Result<Header, HeaderError> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        let value = p.value()?;
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err((
                    "header",
                    format!("key {key:?} has a value of the wrong type: {v:?}"),
                ));
            }
            (other, _) => {
                return Err((
                    "header",
                    format!("unexpected key {other:?}: expected descr, fortran_order and shape"),
                ));
            }
        }
        p.skip_ws();
        if p.eat(b',') {
            continue;
        }
        p.skip_ws();
        p.expect(b'}')?;
        break;
    }
    if p.s[p.at..].iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(("header", "text after the closing brace".into()));
    }
    let descr = descr.ok_or(("descr", "missing".to_string()))?;
    let dtype = match descr.as_str() {
        "<f4" => NpyDtype::F32,
        "<f2" => NpyDtype::F16,
        other => {
            return Err((
                "descr",
                format!(
                    "dtype '{other}' is not supported: expected '<f4' (float32) or '<f2' \
                     (float16); convert with arr.astype(np.float32)"
                ),
            ));
        }
    };
    match fortran {
        None => return Err(("fortran_order", "missing".into())),
        Some(true) => {
            return Err((
                "fortran_order",
                "the array is in Fortran order; save a C-ordered array \
                 (np.ascontiguousarray(arr))"
                    .into(),
            ));
        }
        Some(false) => {}
    }
    let shape = shape.ok_or(("shape", "missing".to_string()))?;
    let [rows, cols] = shape[..] else {
        return Err((
            "shape",
            format!(
                "expected a 2-d shape (rows, dim), got {} dimensions {shape:?}",
                shape.len()
            ),
        ));
    };
    let rows = usize::try_from(rows).map_err(|_| ("shape", format!("{rows} rows is too many")))?;
    let cols =
        usize::try_from(cols).map_err(|_| ("shape", format!("{cols} columns is too many")))?;
    Ok(Header { dtype, rows, cols })
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), HeaderError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err((
                "header",
                format!(
                    "malformed dict: expected {:?} at byte {}",
                    char::from(b),
                    self.at
                ),
            ))
        }
    }

    fn string(&mut self) -> Result<String, HeaderError> {
        let quote = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => {
                return Err((
                    "header",
                    format!(
                        "malformed dict: expected a quoted string at byte {}",
                        self.at
                    ),
                ));
            }
        };
        self.at += 1;
        let begin = self.at;
        while self.at < self.s.len() && self.s[self.at] != quote {
            self.at += 1;
        }
        if self.at >= self.s.len() {
            return Err(("header", "malformed dict: unterminated string".into()));
        }
        let text = String::from_utf8_lossy(&self.s[begin..self.at]).into_owned();
        self.at += 1;
        Ok(text)
    }

    fn value(&mut self) -> Result<Value, HeaderError> {
        match self.s.get(self.at) {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.eat(b')') {
                        break;
                    }
                    let begin = self.at;
                    while self.at < self.s.len() && self.s[self.at].is_ascii_digit() {
                        self.at += 1;
                    }
                    let digits = std::str::from_utf8(&self.s[begin..self.at]).unwrap_or("");
                    let n: u64 = digits.parse().map_err(|_| {
                        (
                            "shape",
                            format!("expected a non-negative integer at byte {begin}"),
                        )
                    })?;
                    items.push(n);
                    self.skip_ws();
                    if self.eat(b',') {
                        continue;
                    }
                    self.skip_ws();
                    if !self.eat(b')') {
                        return Err(("shape", "malformed tuple".into()));
                    }
                    break;
                }
                Ok(Value::Tuple(items))
            }
            _ => {
                let rest = &self.s[self.at..];
                if rest.starts_with(b"True") {
                    self.at += 4;
                    Ok(Value::Bool(true))
                } else if rest.starts_with(b"False") {
                    self.at += 5;
                    Ok(Value::Bool(false))
                } else {
                    Err((
                        "header",
                        format!("malformed dict: unexpected value at byte {}", self.at),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn header_round_trip_and_padding() {
        let m = NpyMatrix {
            rows: 2,
            cols: 3,
            dtype: NpyDtype::F32,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5],
        };
        let bytes = m.to_bytes(NpyDtype::F32);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(NpyMatrix::parse(Path::new("m.npy"), &bytes).unwrap(), m);
        let h = NpyMatrix::parse(Path::new("m.npy"), &m.to_bytes(NpyDtype::F16)).unwrap();
        assert_eq!(h.dtype, NpyDtype::F16);
        assert_eq!(h.data, m.data);
    }

    #[test]
    fn header_dict_variants() {
        let h = parse_header("{\"shape\": (4,5), \"fortran_order\": False, \"descr\": \"<f2\"}")
            .unwrap();
        assert_eq!((h.rows, h.cols, h.dtype), (4, 5, NpyDtype::F16));
        assert_eq!(
            parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}")
                .unwrap_err()
                .0,
            "shape"
        );
        assert_eq!(
            parse_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 1)}")
                .unwrap_err()
                .0,
            "descr"
        );
        assert_eq!(
            parse_header("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 1)}")
                .unwrap_err()
                .0,
            "fortran_order"
        );
        assert_eq!(
            parse_header("{'descr': '<f4', 'shape': (3, 1)}")
                .unwrap_err()
                .0,
            "fortran_order"
        );
    }
}
