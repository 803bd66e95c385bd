//! The reference kernel: the ancestor's design, kept as the yardstick the parallel kernel is
//! checked against (digest for digest) and measured against (the bench peer of SPEC §7).
//!
//! [`ReferenceTorus`] processes one event at a time, popped from a `std`
//! [`BinaryHeap`](std::collections::BinaryHeap) ordered by `(t, dst, src, payload)`, on one
//! thread, with processes as `Vec<Option<_>>` and out-edges as one `Vec` per cell. It
//! implements the same semantics as [`super::Torus`] (SPEC §3.1, including the capacity rule,
//! applied when an instant's last event has been processed, and the digest) with none of its
//! machinery: no calendar, no sorting of instants, no rayon.
//!
//! [`ReferenceBraid`] drives reference tori one after the other, instant by instant, with
//! its own plain implementation of the exchange (projection bytes, hash, application,
//! adaptive interval in `f64` as the spec words it), so a [`super::Braid`] run can be
//! compared with it digest for digest and counter for counter.
//!
//! This is public for the benches and the conformance tests; it is not meant for production
//! runs (it is several times slower).

mod braid;
mod torus;

pub use braid::{ReferenceBraid, ReferenceBraidStats};
pub use torus::ReferenceTorus;
