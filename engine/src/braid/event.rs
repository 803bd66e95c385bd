//! Events (SPEC §3.1): the public [`Event`] with the total order `(t, dst, src, payload)`,
//! and the packed forms the kernel keeps in its per-instant buckets (the instant is the
//! bucket's, so only `(dst, src, payload)` is stored): [`Narrow`], 8 bytes, for lattices of
//! at most 2^16 cells, and [`Wide`], 12 bytes, for the rest. Every pass of the kernel moves
//! events through memory, so the narrow form is a third less traffic.

/// A pending event. The derived order is the total order of SPEC §3.1: by `t`, then `dst`,
/// then `src`, then `payload` as a signed integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Event {
    /// The instant the event is processed at.
    pub t: u32,
    /// Destination cell id.
    pub dst: u32,
    /// Source cell id.
    pub src: u32,
    /// The value delivered to the destination's process.
    pub payload: i32,
}

/// The payload with its sign bit flipped: unsigned order equals signed order.
#[inline]
pub(crate) fn biased(p: i32) -> u32 {
    p as u32 ^ 0x8000_0000
}

#[inline]
pub(crate) fn unbiased(b: u32) -> i32 {
    (b ^ 0x8000_0000) as i32
}

/// An event inside an instant's bucket.
pub(crate) trait Packed:
    Copy + Default + PartialEq + Send + Sync + std::fmt::Debug + 'static
{
    /// Totally ordered like `(dst, src, payload)`.
    type Key: Ord + Copy;
    /// Largest cell count the form can hold.
    const MAX_CELLS: u32;
    fn new(dst: u32, src: u32, payload: i32) -> Self;
    fn dst(&self) -> u32;
    fn src(&self) -> u32;
    fn payload(&self) -> i32;
    /// The order within one instant: `(dst, src, payload)`.
    fn key(&self) -> Self::Key;

    /// The order within one destination: `(src, payload)` packed so that unsigned comparison
    /// of the key is the signed order of the payload.
    #[inline]
    fn src_key(&self) -> u64 {
        ((self.src() as u64) << 32) | biased(self.payload()) as u64
    }

    #[inline]
    fn at(&self, t: u32) -> Event {
        Event {
            t,
            dst: self.dst(),
            src: self.src(),
            payload: self.payload(),
        }
    }
}

/// 12 bytes: any lattice (cells below 2^24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Wide {
    dst: u32,
    src: u32,
    payload: i32,
}

impl Packed for Wide {
    type Key = u128;
    const MAX_CELLS: u32 = 1 << 24;

    #[inline]
    fn new(dst: u32, src: u32, payload: i32) -> Self {
        Wide { dst, src, payload }
    }

    #[inline]
    fn dst(&self) -> u32 {
        self.dst
    }

    #[inline]
    fn src(&self) -> u32 {
        self.src
    }

    #[inline]
    fn payload(&self) -> i32 {
        self.payload
    }

    #[inline]
    fn key(&self) -> u128 {
        ((self.dst as u128) << 64) | self.src_key() as u128
    }
}

/// 8 bytes, `dst << 48 | src << 32 | payload ^ 2^31`: lattices of at most 2^16 cells. The
/// integer order is the total order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Narrow(u64);

impl Packed for Narrow {
    type Key = u64;
    const MAX_CELLS: u32 = 1 << 16;

    #[inline]
    fn new(dst: u32, src: u32, payload: i32) -> Self {
        Narrow(((dst as u64) << 48) | ((src as u64) << 32) | biased(payload) as u64)
    }

    #[inline]
    fn dst(&self) -> u32 {
        (self.0 >> 48) as u32
    }

    #[inline]
    fn src(&self) -> u32 {
        (self.0 >> 32) as u32 & 0xFFFF
    }

    #[inline]
    fn payload(&self) -> i32 {
        unbiased(self.0 as u32)
    }

    #[inline]
    fn key(&self) -> u64 {
        self.0
    }

    #[inline]
    fn src_key(&self) -> u64 {
        self.0 & 0xFFFF_FFFF_FFFF
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn ordered<E: Packed>(max: u32) {
        let evs = [
            (1, 0, i32::MIN),
            (1, 0, -1),
            (1, 0, 0),
            (1, 0, i32::MAX),
            (1, 1, i32::MIN),
            (2, 0, -5),
            (max - 1, max - 1, 7),
        ]
        .map(|(d, s, p)| E::new(d, s, p));
        for w in evs.windows(2) {
            assert!(w[0].key() < w[1].key(), "{:?} !< {:?}", w[0], w[1]);
            assert!(w[0].src_key() < w[1].src_key() || w[0].dst() < w[1].dst());
            assert!(w[0].at(3) < w[1].at(3));
        }
        assert!(evs[6].at(2) < evs[0].at(3));
        for e in evs {
            assert_eq!(E::new(e.dst(), e.src(), e.payload()), e);
        }
        let e = E::new(max - 1, max - 2, -3);
        assert_eq!((e.dst(), e.src(), e.payload()), (max - 1, max - 2, -3));
    }

    #[test]
    fn packed_keys_follow_the_total_order() {
        ordered::<Wide>(Wide::MAX_CELLS);
        ordered::<Narrow>(Narrow::MAX_CELLS);
    }
}
