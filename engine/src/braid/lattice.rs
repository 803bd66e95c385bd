//! The lattice geometry of SPEC §3.1: dims, cell ids `x·Y·Z + y·Z + z`, wrapping coordinates.

/// A 3-D toroidal lattice of `X·Y·Z` cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lattice {
    /// Extents `(X, Y, Z)`.
    pub dims: [u32; 3],
    /// Number of cells, `X·Y·Z`.
    pub cells: u32,
}

impl Lattice {
    /// `dims` must already be validated (each 2..=1024, product <= 2^24).
    pub fn new(dims: [u32; 3]) -> Lattice {
        Lattice {
            dims,
            cells: dims[0] * dims[1] * dims[2],
        }
    }

    /// The id of cell `(x, y, z)`, each coordinate wrapped: `wrap(v, D) = ((v mod D) + D) mod D`.
    #[inline]
    pub fn cell(&self, x: i64, y: i64, z: i64) -> u32 {
        let [dx, dy, dz] = self.dims;
        let x = x.rem_euclid(dx as i64) as u32;
        let y = y.rem_euclid(dy as i64) as u32;
        let z = z.rem_euclid(dz as i64) as u32;
        (x * dy + y) * dz + z
    }

    /// The coordinates of a cell id.
    #[inline]
    pub fn coords(&self, cell: u32) -> [u32; 3] {
        let [_, dy, dz] = self.dims;
        [cell / (dy * dz), (cell / dz) % dy, cell % dz]
    }

    /// Number of cells on one x-face, `Y·Z` (the length of a projection's face).
    pub fn face_len(&self) -> usize {
        (self.dims[1] * self.dims[2]) as usize
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn cell_ids_and_wrapping() {
        let l = Lattice::new([2, 3, 4]);
        assert_eq!(l.cells, 24);
        assert_eq!(l.cell(0, 0, 0), 0);
        assert_eq!(l.cell(1, 2, 3), 12 + 2 * 4 + 3);
        assert_eq!(l.cell(-1, -1, -1), l.cell(1, 2, 3));
        assert_eq!(l.cell(2, 3, 4), 0);
        assert_eq!(l.cell(-7, 8, 9), l.cell(1, 2, 1));
        for c in 0..24 {
            let [x, y, z] = l.coords(c);
            assert_eq!(l.cell(x as i64, y as i64, z as i64), c);
        }
    }
}
