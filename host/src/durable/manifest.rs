//! A table directory's manifest: what makes a directory warpgrid's, and the settings a
//! table must be reopened with.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::WalError;

/// The manifest's file name inside a table directory.
pub const MANIFEST_FILE: &str = "warpgrid-table.json";
const FORMAT: &str = "warpgrid-table";
/// 2: one log per table (`table.wal`). Version 1 (per-shard WAL files) was never released.
const VERSION: u32 = 2;

/// What a table directory records about its table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `warpgrid-table`: marks the directory as a warpgrid table's.
    pub format: String,
    /// Layout version of the directory (2: one log per table).
    pub version: u32,
    /// The table's name.
    pub name: String,
    /// The table's shard count.
    pub shards: u32,
    /// The table's value size, in bytes.
    pub value_bytes: u32,
}

impl Manifest {
    /// The manifest of a new table with these settings, at the current format and version.
    pub fn new(name: &str, shards: u32, value_bytes: u32) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            name: name.into(),
            shards,
            value_bytes,
        }
    }

    /// The manifest of `dir`, if it has one (it is not checked against anything here).
    pub fn read(dir: &Path) -> Result<Option<Manifest>, WalError> {
        let path = dir.join(MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| WalError::NotWarpgrid {
                        path,
                        reason: format!("its manifest does not parse: {e}"),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(WalError::Io {
                path,
                op: "read the manifest",
                source,
            }),
        }
    }

    /// Opens the table directory `dir` for a table described by `self`. An existing manifest
    /// must match (else `Conflict`, naming the field); a missing one is written when `create`
    /// is set and the directory is new or empty. A non-empty directory without a manifest, or
    /// with one that is not warpgrid's, is `NotWarpgrid`.
    pub fn open_dir(&self, dir: &Path, create: bool) -> Result<Manifest, WalError> {
        let path = dir.join(MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let stored: Manifest =
                    serde_json::from_slice(&bytes).map_err(|e| WalError::NotWarpgrid {
                        path: path.clone(),
                        reason: format!("its manifest does not parse: {e}"),
                    })?;
                if stored.format != FORMAT || stored.version != VERSION {
                    return Err(WalError::NotWarpgrid {
                        path,
                        reason: format!(
                            "format {} version {}, expected {FORMAT} version {VERSION}",
                            stored.format, stored.version
                        ),
                    });
                }
                let conflict = |field, stored: String, requested: String| WalError::Conflict {
                    path: path.clone(),
                    field,
                    stored,
                    requested,
                };
                if stored.name != self.name {
                    return Err(conflict("name", stored.name, self.name.clone()));
                }
                if stored.shards != self.shards {
                    return Err(conflict(
                        "shards",
                        stored.shards.to_string(),
                        self.shards.to_string(),
                    ));
                }
                if stored.value_bytes != self.value_bytes {
                    return Err(conflict(
                        "value_bytes",
                        stored.value_bytes.to_string(),
                        self.value_bytes.to_string(),
                    ));
                }
                Ok(stored)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let occupied = fs::read_dir(dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if occupied {
                    return Err(WalError::NotWarpgrid {
                        path: dir.to_owned(),
                        reason: format!("it has files but no {MANIFEST_FILE}"),
                    });
                }
                if !create {
                    return Err(WalError::NoTable {
                        path: dir.to_owned(),
                    });
                }
                self.write(dir)?;
                Ok(self.clone())
            }
            Err(source) => Err(WalError::Io {
                path,
                op: "read the manifest",
                source,
            }),
        }
    }

    /// Writes the manifest atomically: temp file, fsync, rename, fsync the directory.
    fn write(&self, dir: &Path) -> Result<(), WalError> {
        let io = |path: PathBuf, op: &'static str| move |source| WalError::Io { path, op, source };
        fs::create_dir_all(dir).map_err(io(dir.to_owned(), "create the table directory"))?;
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        let mut f = fs::File::create(&tmp).map_err(io(tmp.clone(), "create the manifest"))?;
        f.write_all(&text)
            .map_err(io(tmp.clone(), "write the manifest"))?;
        f.sync_all()
            .map_err(io(tmp.clone(), "fsync the manifest"))?;
        let path = dir.join(MANIFEST_FILE);
        fs::rename(&tmp, &path).map_err(io(path, "rename the manifest into place"))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir.to_owned(), "fsync the table directory"))
    }
}
