//! Node embeddings (SPEC §2.1, §2.2a): normalisation, the f16 store every backend uses, the
//! f32 dot product and the similarity matrix product of a batch of queries.
//!
//! Numerics: a row is L2-normalised in f32 (`x_i / sqrt(dot(x, x))`), then each component is
//! rounded to f16. A similarity is `dot(q, widen(e))`: the f16 components widened to f32
//! (exact) and the products accumulated in f32 in [`dot`]'s fixed 16-lane order, so a node's
//! similarity to a query is the same bits whether the query runs alone or in a batch.
//!
//! Speed without F16C or unsafe code: the query is multiplied by 2^112 (exact) and each f16
//! is turned into `e · 2^-112` by integer shifts; every product is then the same real number
//! as `q_i · e_i` and rounds to the same f32 (see [`dot_scaled`]).

use half::f16;
use rayon::prelude::*;

/// Largest embedding dimension (SPEC §2.1).
pub const MAX_DIM: usize = 4096;

/// Nodes per parallel task of the similarity product.
const SIM_ROWS_PER_TASK: usize = 256;

/// The dot product in f32: 16 partial sums over components `i ≡ j (mod 16)` in order, folded
/// pairwise (lane j + lane j+8, then +4, +2, +1), then the tail components added in order.
/// Written with separate multiplies and adds (Rust never fuses them), so it gives the same
/// bits on every machine. (Not inlined: compiled on its own it vectorises as intended; see
/// `accumulate`.)
#[inline(never)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let body = n - n % 16;
    let mut acc: Lanes = [0.0; 16];
    accumulate(&mut acc, &a[..body], &b[..body]);
    let mut s = fold(&mut acc);
    for i in body..n {
        s += a[i] * b[i];
    }
    s
}

/// 16 running sums: lane j sums the products of components `i ≡ j (mod 16)`.
type Lanes = [f32; 16];

/// `acc[j] += a[i] * b[i]` for every `i ≡ j (mod 16)`, in order (lengths multiples of 16).
///
/// Codegen note: each 16-component chunk is straight-line code that LLVM's SLP vectoriser
/// turns into four 128-bit multiplies and adds. Left alone, LLVM's loop vectoriser (with
/// the workspace's `codegen-units = 4`) vectorises the *chunk loop* two chunks at a time with
/// 64-bit lanes instead, at half the speed; the opaque second exit (`stop`, never reached)
/// keeps it off that loop, and the callers are kept out of line so that inlining does not
/// reopen the question. It changes no result.
#[inline(always)]
fn accumulate(acc: &mut Lanes, a: &[f32], b: &[f32]) {
    let stop = std::hint::black_box(usize::MAX);
    for (chunk, (ca, cb)) in a.chunks_exact(16).zip(b.chunks_exact(16)).enumerate() {
        if chunk == stop {
            break;
        }
        let ca: &[f32; 16] = ca.try_into().expect("chunks of 16");
        let cb: &[f32; 16] = cb.try_into().expect("chunks of 16");
        for j in 0..16 {
            acc[j] += ca[j] * cb[j];
        }
    }
}

/// Folds the 16 lanes pairwise: lane j + lane j+8, then +4, +2, +1. (In place: taking the
/// array by value made LLVM keep the accumulators in memory and vectorise two-wide.)
#[inline(always)]
fn fold(acc: &mut Lanes) -> f32 {
    for width in [8, 4, 2, 1] {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
    }
    acc[0]
}

/// 2^112: an f16's magnitude bits shifted into an f32 are its value times 2^-112.
const SCALE: f32 = f32::from_bits(0x7780_0000);

/// The finite f16 `h` as an f32 equal to `h · 2^-112`, by integer operations only (no F16C
/// needed, so loops over it vectorise on baseline x86-64): the sign stays in bit 31 and the
/// exponent and mantissa bits move to the f32 positions, subnormals included. Infinities and
/// NaN are not handled: stored embeddings are finite (checked at build and load).
#[inline(always)]
fn scaled(h: f16) -> f32 {
    let t = (u32::from(h.to_bits()) << 16) as i32;
    // The arithmetic shift copies the sign into bits 30..28; the mask clears them.
    f32::from_bits(((t >> 3) as u32) & 0x8fff_ffff)
}

/// Scales a normalised query by 2^112 (exact) for [`dot_scaled`].
pub(crate) fn scale_query(q: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend(q.iter().map(|&x| x * SCALE));
}

/// Components of a row converted per step of [`dot_scaled`] (a multiple of 16).
const CONVERT_CHUNK: usize = 128;

/// `dot(q, e)` for a query scaled by [`scale_query`] and a stored f16 row `e`: each product
/// `(q_i · 2^112) · (e_i · 2^-112)` is the same real number as `q_i · e_i`, so it rounds to
/// the same f32, and the 16 lanes add in [`dot`]'s order: the bits equal
/// `dot(q, widen(e))`. The row is converted a chunk at a time into a stack buffer (a simple
/// loop, which vectorises four-wide) and then multiplied by [`accumulate`]. Not inlined, as
/// [`dot`].
/// `buf` is the caller's scratch (kept across rows, so no per-row zeroing).
#[inline(never)]
pub(crate) fn dot_scaled(qs: &[f32], row: &[f16], buf: &mut [f32; CONVERT_CHUNK]) -> f32 {
    debug_assert_eq!(qs.len(), row.len());
    let n = qs.len().min(row.len());
    let body = n - n % 16;
    let mut acc: Lanes = [0.0; 16];
    for (cq, cr) in qs[..body]
        .chunks(CONVERT_CHUNK)
        .zip(row[..body].chunks(CONVERT_CHUNK))
    {
        let converted = &mut buf[..cr.len()];
        scaled_row(cr, converted);
        accumulate(&mut acc, cq, converted);
    }
    let mut s = fold(&mut acc);
    for i in body..n {
        s += qs[i] * scaled(row[i]);
    }
    s
}

/// A stored row as `e_i · 2^-112` values (for [`dot`] with scaled queries).
#[inline]
fn scaled_row(row: &[f16], out: &mut [f32]) {
    for (o, &h) in out.iter_mut().zip(row) {
        *o = scaled(h);
    }
}

/// Why a row cannot be normalised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowProblem {
    NotFinite { column: usize, value: f32 },
    NormOverflow,
    NormUnderflow,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowProblem::NotFinite { column, value } => {
                write!(f, "column {column} is {value}; values must be finite")
            }
            RowProblem::NormOverflow => f.write_str(
                "the squared norm overflows f32; scale the row down (only its direction matters)",
            ),
            RowProblem::NormUnderflow => f.write_str(
                "the squared norm underflows to 0 although the row is not zero; scale the row up",
            ),
        }
    }
}

/// L2-normalises `row` in place in f32. Returns `Ok(false)` for an all-zero row (no
/// embedding), `Ok(true)` otherwise.
pub(crate) fn normalise(row: &mut [f32]) -> Result<bool, RowProblem> {
    if let Some((column, &value)) = row.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(RowProblem::NotFinite { column, value });
    }
    if row.iter().all(|&x| x == 0.0) {
        return Ok(false);
    }
    let sq = dot(row, row);
    if !sq.is_finite() {
        return Err(RowProblem::NormOverflow);
    }
    if sq == 0.0 {
        return Err(RowProblem::NormUnderflow);
    }
    let norm = sq.sqrt();
    for x in row.iter_mut() {
        *x /= norm;
    }
    Ok(true)
}

/// The embeddings of a graph: `dim` components per node as f16 (zero rows: no embedding),
/// and the ascending list of nodes that have one.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Embeddings {
    pub dim: usize,
    pub data: Vec<f16>,
    pub embedded: Vec<u32>,
}

impl Embeddings {
    /// From rows already normalised (or zero), rounding each component to f16.
    pub fn from_normalised(dim: usize, rows: &[f32]) -> Embeddings {
        let data = rows.iter().map(|&x| f16::from_f32(x)).collect();
        Embeddings::from_f16(dim, data)
    }

    /// From the stored f16 array; a row of zeros (either sign) has no embedding.
    pub fn from_f16(dim: usize, data: Vec<f16>) -> Embeddings {
        let embedded = if dim == 0 {
            Vec::new()
        } else {
            data.chunks_exact(dim)
                .enumerate()
                .filter(|(_, row)| row.iter().any(|x| x.to_bits() & 0x7fff != 0))
                .map(|(v, _)| v as u32)
                .collect()
        };
        Embeddings {
            dim,
            data,
            embedded,
        }
    }

    pub fn row(&self, v: u32) -> &[f16] {
        let d = self.dim;
        &self.data[v as usize * d..(v as usize + 1) * d]
    }

    /// The similarity matrix of `q` normalised queries (row-major `q × dim`) against every
    /// embedded node, node-major: `out[j * q + i]` is `dot(query i, e[embedded[j]])` with
    /// `e` widened from f16. `scaled` is a buffer for the queries times 2^112.
    pub fn similarities(
        &self,
        queries: &[f32],
        q: usize,
        scaled: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) {
        let d = self.dim;
        debug_assert_eq!(queries.len(), q * d);
        out.clear();
        out.resize(self.embedded.len() * q, 0.0);
        if q == 0 || d == 0 {
            return;
        }
        scale_query(queries, scaled);
        let scaled = &scaled[..];
        if q == 1 {
            out.par_chunks_mut(SIM_ROWS_PER_TASK)
                .zip(self.embedded.par_chunks(SIM_ROWS_PER_TASK))
                .for_each(|(out, nodes)| {
                    let mut buf = [0.0f32; CONVERT_CHUNK];
                    for (s, &v) in out.iter_mut().zip(nodes) {
                        *s = dot_scaled(scaled, self.row(v), &mut buf);
                    }
                });
            return;
        }
        // Several queries: each row is converted once and multiplied with every query.
        out.par_chunks_mut(SIM_ROWS_PER_TASK * q)
            .zip(self.embedded.par_chunks(SIM_ROWS_PER_TASK))
            .for_each(|(out, nodes)| {
                let mut row = [0.0f32; MAX_DIM];
                let row = &mut row[..d];
                for (sims, &v) in out.chunks_exact_mut(q).zip(nodes) {
                    scaled_row(self.row(v), row);
                    for (s, query) in sims.iter_mut().zip(scaled.chunks_exact(d)) {
                        *s = dot(query, row);
                    }
                }
            });
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dot_uses_the_documented_order() {
        // 17 components: 16 lanes and a tail of one.
        let a: Vec<f32> = (0..17).map(|i| 1.0 + i as f32 * 1e-3).collect();
        let b: Vec<f32> = (0..17).map(|i| 0.5 - i as f32 * 1e-4).collect();
        let mut lanes = [0.0f32; 16];
        for j in 0..16 {
            lanes[j] = a[j] * b[j];
        }
        for w in [8, 4, 2, 1] {
            for j in 0..w {
                lanes[j] += lanes[j + w];
            }
        }
        let expected = lanes[0] + a[16] * b[16];
        assert_eq!(dot(&a, &b).to_bits(), expected.to_bits());
    }

    #[test]
    fn normalise_zero_row_and_bad_rows() {
        let mut z = [0.0f32, -0.0, 0.0];
        assert_eq!(normalise(&mut z), Ok(false));
        let mut r = [3.0f32, 4.0];
        assert_eq!(normalise(&mut r), Ok(true));
        assert_eq!(r, [0.6, 0.8]);
        let mut bad = [1.0f32, f32::NAN];
        assert!(matches!(
            normalise(&mut bad),
            Err(RowProblem::NotFinite { column: 1, .. })
        ));
        let mut big = [3e20f32, 1.0];
        assert_eq!(normalise(&mut big), Err(RowProblem::NormOverflow));
        let mut tiny = [1e-30f32, 0.0];
        assert_eq!(normalise(&mut tiny), Err(RowProblem::NormUnderflow));
    }

    #[test]
    fn scaled_products_equal_widened_products_for_every_finite_f16() {
        let q: Vec<f32> = (0..37).map(|i| 0.1 + i as f32 * 0.01 - 0.2).collect();
        let mut qs = Vec::new();
        scale_query(&q, &mut qs);
        let mut row = Vec::new();
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            if !h.is_finite() {
                continue;
            }
            assert_eq!(
                (scaled(h) * SCALE).to_bits(),
                h.to_f32().to_bits(),
                "{bits:#06x}"
            );
            row.push(h);
            if row.len() == 37 {
                let wide: Vec<f32> = row.iter().map(|h| h.to_f32()).collect();
                let want = dot(&q, &wide);
                let mut buf = [0.0; CONVERT_CHUNK];
                assert_eq!(dot_scaled(&qs, &row, &mut buf).to_bits(), want.to_bits());
                let mut srow = vec![0.0; 37];
                scaled_row(&row, &mut srow);
                assert_eq!(dot(&qs, &srow).to_bits(), want.to_bits());
                row.clear();
            }
        }
    }

    #[test]
    fn scaled_dot_equals_widened_dot_across_conversion_chunks() {
        let mut r = crate::rng::SplitMix64::new(3);
        for d in [1, 15, 16, 17, 127, 128, 129, 300, 384, 4096] {
            let q: Vec<f32> = (0..d).map(|_| (r.unit_f64() - 0.5) as f32).collect();
            let row: Vec<f16> = (0..d)
                .map(|_| f16::from_f64(r.unit_f64() * 2.0 - 1.0))
                .collect();
            let wide: Vec<f32> = row.iter().map(|h| h.to_f32()).collect();
            let mut qs = Vec::new();
            scale_query(&q, &mut qs);
            let mut buf = [0.0; CONVERT_CHUNK];
            assert_eq!(
                dot_scaled(&qs, &row, &mut buf).to_bits(),
                dot(&q, &wide).to_bits(),
                "d = {d}"
            );
        }
    }

    #[test]
    fn zero_rows_have_no_embedding() {
        let e = Embeddings::from_normalised(2, &[0.6, 0.8, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(e.embedded, vec![0, 2]);
        assert_eq!(e.row(0)[1], f16::from_f32(0.8));
    }
}
