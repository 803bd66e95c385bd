//! The results of one applied batch, one per operation, in batch order.
//!
//! Stored flat like the batch: a status byte per operation, the value words of reads at
//! `op * value_words` (allocated only when the batch reads), and the partners of related
//! queries in one arena. [`BatchResults::iter`] and [`BatchResults::get`] give typed views.

/// Outcome code of one operation. The numbers are the device encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Status {
    /// put, link, unlink
    #[default]
    Ok = 0,
    /// get found the key
    Value = 1,
    /// get did not find the key
    Missing = 2,
    /// delete removed the key
    Deleted = 3,
    /// delete found nothing
    Absent = 4,
    /// a related query (its own value may be missing)
    Related = 5,
}

/// One partner returned by a related query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelatedHit {
    /// The partner's key.
    pub key: u64,
    /// Strength of the link to it, in (0, 1].
    pub strength: f32,
}

/// Where one related query's answer sits in the arenas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelatedSpan {
    pub op: u32,
    pub start: u32,
    pub len: u32,
    pub found: bool,
}

/// Results of a batch, in batch order.
#[derive(Debug, Clone, Default)]
pub struct BatchResults {
    value_words: usize,
    pub(crate) status: Vec<Status>,
    pub(crate) values: Vec<u32>,
    pub(crate) related: Vec<RelatedSpan>,
    pub(crate) hits: Vec<RelatedHit>,
    pub(crate) hit_values: Vec<u32>,
}

/// The typed result of one operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    /// A put, link or unlink was applied.
    Ok,
    /// A get found the key: its value (the table's value size in bytes).
    Value(&'a [u8]),
    /// A get did not find the key.
    Missing,
    /// A delete removed the key.
    Deleted,
    /// A delete found no such key.
    Absent,
    /// The answer to a related query.
    Related(Related<'a>),
}

/// The answer to a related query.
#[derive(Debug, Clone, PartialEq)]
pub struct Related<'a> {
    /// The queried key's own value, if it exists.
    pub value: Option<&'a [u8]>,
    hits: &'a [RelatedHit],
    hit_values: &'a [u32],
}

impl<'a> Related<'a> {
    /// Number of partners returned.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    /// Whether no partner was returned.
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// `(key, strength, value)` of each partner, strongest first, ties by key ascending.
    pub fn partners(&self) -> impl ExactSizeIterator<Item = (u64, f32, &'a [u8])> + 'a {
        let w = if self.hits.is_empty() {
            0
        } else {
            self.hit_values.len() / self.hits.len()
        };
        let hit_values = self.hit_values;
        self.hits.iter().enumerate().map(move |(i, h)| {
            (
                h.key,
                h.strength,
                bytemuck::cast_slice(&hit_values[i * w..(i + 1) * w]),
            )
        })
    }
}

impl BatchResults {
    /// Empty results, to be filled by [`Table::apply_into`](crate::Table::apply_into). Reusing
    /// one `BatchResults` across batches keeps its buffers (no allocation per batch).
    pub fn new() -> BatchResults {
        BatchResults::default()
    }

    /// Makes room for `ops` results (values too when `reads` is set), keeping allocations.
    pub(crate) fn reset(&mut self, ops: usize, value_words: usize, reads: bool) {
        self.value_words = value_words;
        self.status.clear();
        self.status.resize(ops, Status::Ok);
        self.values.clear();
        if reads {
            self.values.resize(ops * value_words, 0);
        }
        self.related.clear();
        self.hits.clear();
        self.hit_values.clear();
    }

    /// Results of `total` operations: those at `hits` (ascending positions) are gets that
    /// found the given values without reaching a table (a host cache); the others are, in
    /// order, the results of `rest`, the batch of the remaining operations.
    ///
    /// # Panics
    /// If `rest` does not hold exactly `total - hits.len()` results, if hit positions are not
    /// ascending and below `total`, or if a hit value is not `value_bytes` long.
    pub fn with_hits(rest: &BatchResults, total: usize, hits: &[(u32, &[u8])]) -> BatchResults {
        let w = rest
            .value_words
            .max(hits.first().map_or(0, |h| h.1.len() / 4));
        let mut out = BatchResults::new();
        out.reset(total, w, true);
        let mut from = 0;
        let mut hit = hits.iter().peekable();
        let mut spans = rest.related.iter().peekable();
        for i in 0..total {
            if let Some((_, value)) = hit.next_if(|h| h.0 as usize == i) {
                out.status[i] = Status::Value;
                for (dst, src) in out.values[i * w..(i + 1) * w]
                    .iter_mut()
                    .zip(value.chunks_exact(4))
                {
                    *dst = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
                }
                continue;
            }
            out.status[i] = rest.status[from];
            if !rest.values.is_empty() {
                out.values[i * w..(i + 1) * w]
                    .copy_from_slice(&rest.values[from * w..(from + 1) * w]);
            }
            if let Some(span) = spans.next_if(|s| s.op as usize == from) {
                let (s, n) = (span.start as usize, span.len as usize);
                out.related.push(RelatedSpan {
                    op: i as u32,
                    start: out.hits.len() as u32,
                    ..*span
                });
                out.hits.extend_from_slice(&rest.hits[s..s + n]);
                out.hit_values
                    .extend_from_slice(&rest.hit_values[s * w..(s + n) * w]);
            }
            from += 1;
        }
        out
    }

    /// Bytes per value of these results.
    pub fn value_bytes(&self) -> usize {
        self.value_words * 4
    }

    /// Number of results (the batch's number of operations).
    pub fn len(&self) -> usize {
        self.status.len()
    }

    /// Whether the batch was empty.
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }

    /// Status codes, one per operation.
    pub fn statuses(&self) -> &[Status] {
        &self.status
    }

    fn value_at(&self, i: usize) -> &[u8] {
        let w = self.value_words;
        bytemuck::cast_slice(&self.values[i * w..(i + 1) * w])
    }

    fn related_at(&self, span: &RelatedSpan) -> Related<'_> {
        let (s, n, w) = (span.start as usize, span.len as usize, self.value_words);
        Related {
            value: span.found.then(|| self.value_at(span.op as usize)),
            hits: &self.hits[s..s + n],
            hit_values: &self.hit_values[s * w..(s + n) * w],
        }
    }

    /// The result of operation `i`.
    pub fn get(&self, i: usize) -> Option<Outcome<'_>> {
        let status = *self.status.get(i)?;
        Some(match status {
            Status::Related => {
                let at = self
                    .related
                    .binary_search_by_key(&(i as u32), |s| s.op)
                    .ok()?;
                Outcome::Related(self.related_at(&self.related[at]))
            }
            other => self.simple(i, other),
        })
    }

    fn simple(&self, i: usize, status: Status) -> Outcome<'_> {
        match status {
            Status::Ok => Outcome::Ok,
            Status::Value => Outcome::Value(self.value_at(i)),
            Status::Missing => Outcome::Missing,
            Status::Deleted => Outcome::Deleted,
            Status::Absent => Outcome::Absent,
            Status::Related => unreachable!("related outcomes are looked up by span"),
        }
    }

    /// Every result, in batch order.
    pub fn iter(&self) -> impl Iterator<Item = Outcome<'_>> + '_ {
        let mut spans = self.related.iter();
        self.status
            .iter()
            .enumerate()
            .map(move |(i, &st)| match st {
                Status::Related => {
                    let span = spans.next().expect("one span per related query");
                    Outcome::Related(self.related_at(span))
                }
                other => self.simple(i, other),
            })
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::{Batch, Device, Table, TableConfig};

    #[test]
    fn hits_splice_between_the_other_results_in_order() {
        let device = Device::cpu().unwrap();
        let mut table = Table::create(&device, TableConfig::new("t")).unwrap();
        let mut rest = Batch::new(8);
        rest.put(1, &[1; 8]).unwrap();
        rest.link(1, 2, 0.5).unwrap();
        rest.put(2, &[2; 8]).unwrap();
        rest.get_related(1, 0.1, 10).unwrap();
        let r = table.apply(&rest).unwrap();
        let all = BatchResults::with_hits(&r, 6, &[(0, &[9; 8]), (3, &[8; 8])]);
        let got: Vec<Outcome<'_>> = all.iter().collect();
        assert_eq!(got[0], Outcome::Value(&[9; 8]));
        assert_eq!(got[1], Outcome::Ok);
        assert_eq!(got[3], Outcome::Value(&[8; 8]));
        let Outcome::Related(rel) = &got[5] else {
            panic!("{:?}", got[5])
        };
        assert_eq!(rel.value, Some(&[1u8; 8][..]));
        assert_eq!(rel.partners().map(|p| p.0).collect::<Vec<_>>(), [2]);
        assert!(matches!(all.get(5), Some(Outcome::Related(_))));
    }
}
