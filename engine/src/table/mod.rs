//! Shard tables (SPEC §1): a sharded key-value store with related-key links.
//!
//! [`Table`] is the public handle; it validates and dispatches each call to its device's
//! backend, which holds the shards' state. [`Tables`] is a named set of tables on one device
//! (create / open / drop).

mod batch;
mod config;
mod results;
pub mod route;
mod stats;

pub use batch::{Aux, Batch, DEFAULT_MAX_RELATED, DEFAULT_MIN_STRENGTH, MAX_BATCH_OPS, OpCode};
pub use config::TableConfig;
pub(crate) use results::RelatedSpan;
pub use results::{BatchResults, Outcome, Related, RelatedHit, Status};
pub use stats::{ShardStats, TableStats};

use std::collections::BTreeMap;

use crate::backend::cpu::CpuShards;
use crate::backend::cuda::CudaShards;
use crate::backend::wgpu::WgpuShards;
use crate::backend::{Device, TableBackend, Workload};
use crate::error::TableError;

/// The shards of a table, on whichever backend holds them.
#[derive(Debug)]
enum Shards {
    Cpu(CpuShards),
    /// Boxed: the wgpu shards carry more host bookkeeping than a `Table` should inline.
    Wgpu(Box<WgpuShards>),
    /// Boxed, like the wgpu shards (the same host bookkeeping).
    Cuda(Box<CudaShards>),
}

/// One shard table on one device.
#[derive(Debug)]
pub struct Table {
    config: TableConfig,
    device: Device,
    shards: Option<Shards>,
    /// Batches applied so far; orders link writes across batches.
    epoch: u64,
}

impl Table {
    /// Creates an empty table on `device`.
    pub fn create(device: &Device, config: TableConfig) -> Result<Table, TableError> {
        config.validate()?;
        let shards = match device {
            Device::Cpu(d) => Shards::Cpu(d.create_shards(&config)?),
            Device::Wgpu(d) => {
                device.supports(Workload::Tables)?;
                Shards::Wgpu(Box::new(d.create_shards(&config)?))
            }
            Device::Cuda(d) => {
                device.supports(Workload::Tables)?;
                Shards::Cuda(Box::new(d.create_shards(&config)?))
            }
        };
        Ok(Table {
            config,
            device: device.clone(),
            shards: Some(shards),
            epoch: 0,
        })
    }

    /// The settings the table was created with.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Bytes per value.
    pub fn value_bytes(&self) -> usize {
        self.config.value_bytes as usize
    }

    /// The device the table lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A new empty batch sized for this table's values.
    pub fn batch(&self) -> Batch {
        Batch::new(self.value_bytes())
    }

    fn shards(&self) -> &Shards {
        self.shards.as_ref().expect("shards exist until drop")
    }

    /// Applies `batch` as if its operations ran one by one in order. On error (out of memory,
    /// a batch for another value size) nothing is applied.
    pub fn apply(&mut self, batch: &Batch) -> Result<BatchResults, TableError> {
        let mut results = BatchResults::new();
        self.apply_into(batch, &mut results)?;
        Ok(results)
    }

    /// [`apply`](Table::apply), writing into `results` and reusing its buffers: the way to
    /// run many batches without allocating per batch.
    pub fn apply_into(
        &mut self,
        batch: &Batch,
        results: &mut BatchResults,
    ) -> Result<(), TableError> {
        if batch.value_bytes() != self.value_bytes() {
            return Err(TableError::BatchMismatch {
                batch: batch.value_bytes(),
                table: self.value_bytes(),
            });
        }
        let epoch = self.epoch + 1;
        let _span =
            tracing::debug_span!("table_apply", table = %self.config.name, ops = batch.len())
                .entered();
        match (
            &self.device,
            self.shards.as_mut().expect("shards exist until drop"),
        ) {
            (Device::Cpu(d), Shards::Cpu(s)) => d.apply(s, &self.config, batch, epoch, results)?,
            (Device::Wgpu(d), Shards::Wgpu(s)) => {
                d.apply(s, &self.config, batch, epoch, results)?;
            }
            (Device::Cuda(d), Shards::Cuda(s)) => {
                d.apply(s, &self.config, batch, epoch, results)?;
            }
            _ => unreachable!("shards live on the device that created them"),
        }
        self.epoch = epoch;
        Ok(())
    }

    /// Current statistics, per shard and in total.
    pub fn stats(&self) -> TableStats {
        let shards = match (&self.device, self.shards()) {
            (Device::Cpu(d), Shards::Cpu(s)) => d.shard_stats(s),
            (Device::Wgpu(d), Shards::Wgpu(s)) => d.shard_stats(s),
            (Device::Cuda(d), Shards::Cuda(s)) => d.shard_stats(s),
            _ => unreachable!("shards live on the device that created them"),
        };
        TableStats::from_shards(shards)
    }

    /// Visits every entry of shard `shard` (`key`, value bytes), then every link half it
    /// stores (`owner`, `partner`, `strength`; each link has one half in each key's shard).
    /// The order is unspecified. This is what a snapshot records. On `Err` (a device that
    /// cannot read its state back) the visit is incomplete and must not be used.
    ///
    /// # Panics
    /// If `shard` is not below the table's shard count.
    pub fn export_shard(
        &self,
        shard: usize,
        mut entry: impl FnMut(u64, &[u8]),
        mut link: impl FnMut(u64, u64, f32),
    ) -> Result<(), TableError> {
        assert!(
            shard < self.config.shards as usize,
            "shard {shard} of {}",
            self.config.shards
        );
        match (&self.device, self.shards()) {
            (Device::Cpu(d), Shards::Cpu(s)) => d.export_shard(s, shard, &mut entry, &mut link),
            (Device::Wgpu(d), Shards::Wgpu(s)) => d.export_shard(s, shard, &mut entry, &mut link),
            (Device::Cuda(d), Shards::Cuda(s)) => d.export_shard(s, shard, &mut entry, &mut link),
            _ => unreachable!("shards live on the device that created them"),
        }
    }

    /// A deep copy of the table on the same device.
    pub fn try_clone(&self) -> Result<Table, TableError> {
        let shards = match (&self.device, self.shards()) {
            (Device::Cpu(d), Shards::Cpu(s)) => Shards::Cpu(d.try_clone_shards(s)?),
            (Device::Wgpu(d), Shards::Wgpu(s)) => Shards::Wgpu(Box::new(d.try_clone_shards(s)?)),
            (Device::Cuda(d), Shards::Cuda(s)) => Shards::Cuda(Box::new(d.try_clone_shards(s)?)),
            _ => unreachable!("shards live on the device that created them"),
        };
        Ok(Table {
            config: self.config.clone(),
            device: self.device.clone(),
            shards: Some(shards),
            epoch: self.epoch,
        })
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Some(shards) = self.shards.take() {
            match (&self.device, shards) {
                (Device::Cpu(d), Shards::Cpu(s)) => d.drop_shards(s),
                (Device::Wgpu(d), Shards::Wgpu(s)) => d.drop_shards(*s),
                (Device::Cuda(d), Shards::Cuda(s)) => d.drop_shards(*s),
                _ => unreachable!("shards live on the device that created them"),
            }
        }
    }
}

/// Named tables on one device: create, open, drop.
#[derive(Debug)]
pub struct Tables {
    device: Device,
    tables: BTreeMap<String, Table>,
}

impl Tables {
    /// An empty set of tables on `device`.
    pub fn new(device: Device) -> Tables {
        Tables {
            device,
            tables: BTreeMap::new(),
        }
    }

    /// The device every table of this set lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Creates a table; its name must be new.
    pub fn create(&mut self, config: TableConfig) -> Result<&mut Table, TableError> {
        if self.tables.contains_key(&config.name) {
            return Err(TableError::TableExists { name: config.name });
        }
        let table = Table::create(&self.device, config)?;
        Ok(self.tables.entry(table.name().to_owned()).or_insert(table))
    }

    /// The table called `name`.
    pub fn open(&mut self, name: &str) -> Result<&mut Table, TableError> {
        self.tables
            .get_mut(name)
            .ok_or_else(|| TableError::NoSuchTable { name: name.into() })
    }

    /// Drops the table called `name`, releasing its memory.
    pub fn drop_table(&mut self, name: &str) -> Result<(), TableError> {
        self.tables
            .remove(name)
            .map(drop)
            .ok_or_else(|| TableError::NoSuchTable { name: name.into() })
    }

    /// Names of the tables, in lexicographic order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn tables_create_open_and_drop_by_name() {
        let mut tables = Tables::new(Device::cpu().unwrap());
        tables.create(TableConfig::new("a")).unwrap();
        assert_eq!(
            tables.create(TableConfig::new("a")).unwrap_err(),
            TableError::TableExists { name: "a".into() }
        );
        let mut batch = Batch::new(8);
        batch.put(1, &[7; 8]).unwrap();
        tables.open("a").unwrap().apply(&batch).unwrap();
        assert_eq!(tables.open("a").unwrap().stats().items, 1);
        assert!(matches!(
            tables.open("b"),
            Err(TableError::NoSuchTable { .. })
        ));
        let held = tables.device().table_bytes();
        tables.drop_table("a").unwrap();
        assert!(tables.device().table_bytes() < held);
        assert!(matches!(
            tables.drop_table("a"),
            Err(TableError::NoSuchTable { .. })
        ));
        assert_eq!(tables.names().count(), 0);
        let mut b = Batch::new(8);
        b.put(5, &[5; 8]).unwrap();
        b.put(6, &[6; 8]).unwrap();
        b.link(5, 6, 0.25).unwrap();
        let t = tables.create(TableConfig::new("e").with_shards(1)).unwrap();
        t.apply(&b).unwrap();
        let (mut entries, mut halves) = (Vec::new(), Vec::new());
        t.export_shard(
            0,
            |k, v| entries.push((k, v[0])),
            |a, b, s| halves.push((a, b, s)),
        )
        .unwrap();
        entries.sort_unstable();
        halves.sort_by_key(|h| h.0);
        assert_eq!(entries, [(5, 5), (6, 6)]);
        assert_eq!(halves, [(5, 6, 0.25), (6, 5, 0.25)]);
        assert!(matches!(
            tables.create(TableConfig::new("x").with_shards(0)),
            Err(TableError::InvalidConfig {
                field: "shards",
                ..
            })
        ));
    }
}
