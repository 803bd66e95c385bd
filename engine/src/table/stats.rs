//! Table statistics (SPEC §1.2): per shard, and the figures derived from them.

/// Statistics of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardStats {
    /// Keys stored.
    pub items: u64,
    /// Slots allocated (a power of two).
    pub slots: u64,
    /// Operations routed to this shard over the table's life (a link or unlink counts in
    /// the shard of its first key).
    pub ops: u64,
    /// Times this shard doubled.
    pub resizes: u32,
    /// Link halves stored in this shard (each link is one half in each key's shard).
    pub link_halves: u64,
}

/// Statistics of a table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableStats {
    /// Per-shard statistics, indexed by shard.
    pub shards: Vec<ShardStats>,
    /// Keys stored, over all shards.
    pub items: u64,
    /// Slots allocated, over all shards.
    pub slots: u64,
    /// Operations applied over the table's life, over all shards.
    pub ops: u64,
    /// Shard doublings over the table's life, over all shards.
    pub resizes: u64,
    /// Links stored (each counted once).
    pub links: u64,
    /// items / slots over the whole table.
    pub load_factor: f64,
    /// Coefficient of variation of items across shards (population standard deviation
    /// over mean; 0 for an empty table).
    pub cv: f64,
}

impl TableStats {
    /// Totals and derived figures (links, load factor, CV) of per-shard statistics.
    pub fn from_shards(shards: Vec<ShardStats>) -> TableStats {
        let items: u64 = shards.iter().map(|s| s.items).sum();
        let slots: u64 = shards.iter().map(|s| s.slots).sum();
        let n = shards.len().max(1) as f64;
        let mean = items as f64 / n;
        let cv = if items == 0 {
            0.0
        } else {
            let var = shards
                .iter()
                .map(|s| (s.items as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            var.sqrt() / mean
        };
        TableStats {
            items,
            slots,
            ops: shards.iter().map(|s| s.ops).sum(),
            resizes: shards.iter().map(|s| u64::from(s.resizes)).sum(),
            links: shards.iter().map(|s| s.link_halves).sum::<u64>() / 2,
            load_factor: if slots == 0 {
                0.0
            } else {
                items as f64 / slots as f64
            },
            cv,
            shards,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn cv_is_population_stddev_over_mean() {
        let s = |items| ShardStats {
            items,
            slots: 16,
            ..ShardStats::default()
        };
        let st = TableStats::from_shards(vec![s(2), s(4), s(6)]);
        assert_eq!(st.items, 12);
        assert!((st.cv - (8.0f64 / 3.0).sqrt() / 4.0).abs() < 1e-12);
        assert!((st.load_factor - 12.0 / 48.0).abs() < 1e-12);
        assert_eq!(TableStats::from_shards(vec![s(0), s(0)]).cv, 0.0);
    }
}
