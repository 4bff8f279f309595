//! The JSON manifest beside each backup: what it holds and how to prove it.
//!
//! `LABEL_YYYYMMDD_HHMMSS.manifest.json` sits beside the files it
//! describes and names them relatively, so a copied directory stays
//! checkable. It is plain JSON (pretty-printed, 0600) so that `jq` and
//! `sha256sum` can check a backup without tb:
//!
//! ```sh
//! jq -r '.files[] | "\(.sha256)  \(.name)"' toybox_20260123_030000.manifest.json | sha256sum -c
//! ```
//!
//! Fields are added over time, never renamed; readers keep fields they do
//! not know (`extra`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::atomic::TempFile;
use crate::gzip::Chunk;

/// `format` of every manifest.
pub const FORMAT: &str = "tb-manifest";
/// Current `version`.
pub const VERSION: u32 = 1;
/// Largest manifest we read (a chunk index of a terabyte is far smaller).
const MAX_BYTES: u64 = 64 << 20;

/// A manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `tb-manifest`.
    pub format: String,
    /// Schema version (1).
    pub version: u32,
    /// `dump` or `volume`.
    pub kind: String,
    /// The backup's label (database or volume label).
    pub label: String,
    /// Tool and version that wrote it (`tb-dump 0.1.0`).
    pub created_by: String,
    /// Host name where it was written.
    #[serde(default)]
    pub host: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Run time in milliseconds.
    pub duration_ms: u64,
    /// The files of this backup.
    pub files: Vec<FileEntry>,
    /// For dumps: what was dumped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseInfo>,
    /// For volume archives: what was archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeInfo>,
    /// For chain points: where the point stands in its chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainInfo>,
    /// The verification done before publishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verification>,
    /// Fields of newer versions, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `dump`, `roles` or `archive`.
    pub role: String,
    /// File name, relative to the manifest's directory.
    pub name: String,
    /// Size on disk (compressed).
    pub bytes: u64,
    /// Uncompressed size.
    pub raw_bytes: u64,
    /// sha256 of the file, lowercase hex (what `sha256sum` prints).
    pub sha256: String,
    /// CRC-32 of the uncompressed data (the gzip trailer's).
    pub crc32: u32,
    /// Where the independently compressed chunks of the gzip stream lie, so
    /// that checks and restores can inflate them on several cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunkIndex>,
}

/// The chunk index of a gzip file written by tb: chunk `i` holds
/// `raw_sizes[i]` uncompressed bytes in `gz_sizes[i]` compressed bytes; the
/// first starts after the 10-byte gzip header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkIndex {
    /// Uncompressed size of every chunk, in order, as decimal numbers
    /// separated by spaces (one line even for thousands of chunks).
    pub raw_sizes: String,
    /// Compressed size of every chunk, in the same form.
    pub gz_sizes: String,
}

impl ChunkIndex {
    /// The index of `chunks`.
    pub fn new(chunks: &[Chunk]) -> ChunkIndex {
        let join = |f: fn(&Chunk) -> u64| {
            chunks
                .iter()
                .map(|c| f(c).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        ChunkIndex {
            raw_sizes: join(|c| c.raw),
            gz_sizes: join(|c| c.gz),
        }
    }

    /// The chunks, when the index is well formed.
    pub fn chunks(&self) -> Option<Vec<Chunk>> {
        let parse = |s: &str| -> Option<Vec<u64>> {
            s.split_ascii_whitespace().map(|n| n.parse().ok()).collect()
        };
        let raw = parse(&self.raw_sizes)?;
        let gz = parse(&self.gz_sizes)?;
        (raw.len() == gz.len() && !raw.is_empty()).then(|| {
            raw.into_iter()
                .zip(gz)
                .map(|(raw, gz)| Chunk { raw, gz })
                .collect()
        })
    }
}

/// What a dump holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Database name.
    pub name: String,
    /// Container the dump ran in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `Dumped from database version`.
    pub server_version: Option<String>,
    /// `Dumped by pg_dump version`.
    pub pg_dump_version: Option<String>,
    /// `client_encoding` of the dump (the database's encoding).
    pub encoding: Option<String>,
    /// Rows per table, counted from the COPY blocks.
    pub tables: BTreeMap<String, u64>,
    /// Sum of `tables`.
    pub rows: u64,
    /// Large objects in the dump.
    pub large_objects: u64,
    /// Roles the dump's statements name (a restore needs them); absent in
    /// manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Extensions the dump creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
}

/// What a volume archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The directory archived.
    pub source: String,
    /// The Docker volume, when archived by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_volume: Option<String>,
    /// False when a live database was archived (`--allow-live`).
    pub consistent: bool,
    /// Containers stopped during the archive (`--stop`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_containers: Vec<String>,
    /// Entries in the archive.
    pub entries: u64,
    /// Regular files (with data).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Extra names of hard-linked files.
    pub hardlinks: u64,
    /// FIFOs and devices.
    pub specials: u64,
    /// Sockets left out.
    pub sockets_skipped: u64,
    /// Bytes of file contents.
    pub file_bytes: u64,
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// Warnings (files that changed while read, …), the first 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How many warnings there were in all.
    #[serde(default)]
    pub warnings_total: u64,
}

/// A chain point (`base_…` or `incr_…` in a chain directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    /// This point's directory name (`incr_20260120`).
    pub point: String,
    /// The chain's id: its base's directory name (`base_20260119`).
    pub chain: String,
    /// `base`, `incremental` (changes since the parent, the previous
    /// point) or `differential` (changes since the base, its parent).
    pub mode: String,
    /// The point this one applies on top of (none for a base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// sha256 of the parent's `manifest.json`: a replaced parent breaks the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_manifest_sha256: Option<String>,
    /// Why this is a base (`first run`, `--full`, a broken or old chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_reason: Option<String>,
    /// Entries of the tree at this moment (the listing).
    pub listed: u64,
    /// Bytes of all regular files of the tree at this moment.
    pub listed_file_bytes: u64,
    /// Entries new since the parent.
    pub added: u64,
    /// Entries changed since the parent.
    pub changed: u64,
    /// Entries unchanged (not in this archive).
    pub unchanged: u64,
    /// Paths deleted since the parent (in `deleted.nul`).
    pub deleted: u64,
    /// RFC 3339 time (nanoseconds) at which the walk of the tree for the
    /// listing began: the next point reads the extended attributes only of
    /// entries whose inode changed since shortly before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk_started_at: Option<String>,
}

/// A verification verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// RFC 3339 time of the check.
    pub at: String,
    /// `good` or `damaged`.
    pub verdict: String,
    /// Tool that checked (`tb-dump 0.1.0`).
    pub by: String,
}

impl Manifest {
    /// A new manifest with no files.
    pub fn new(kind: &str, label: &str, created_by: &str, started_at: &str) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            kind: kind.into(),
            label: label.into(),
            created_by: created_by.into(),
            host: hostname(),
            started_at: started_at.into(),
            finished_at: String::new(),
            duration_ms: 0,
            files: Vec::new(),
            database: None,
            volume: None,
            chain: None,
            verified: None,
            extra: Map::new(),
        }
    }

    /// Read and parse a manifest.
    pub fn load(path: &Path) -> Result<Manifest> {
        use std::io::Read;
        // Never read from a FIFO or device, and never without bound.
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read manifest '{}'", path.display()))?;
        if !meta.is_file() {
            anyhow::bail!("manifest '{}' is not a regular file", path.display());
        }
        if meta.len() > MAX_BYTES {
            anyhow::bail!(
                "manifest '{}' is too large ({} bytes)",
                path.display(),
                meta.len()
            );
        }
        let mut text = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_BYTES).read_to_end(&mut text))
            .with_context(|| format!("cannot read manifest '{}'", path.display()))?;
        let m: Manifest = serde_json::from_slice(&text)
            .with_context(|| format!("manifest '{}' is not valid", path.display()))?;
        if m.format != FORMAT {
            anyhow::bail!(
                "'{}' is not a tb manifest (format {:?})",
                path.display(),
                m.format
            );
        }
        Ok(m)
    }

    /// The entry for file `name`, if listed.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Write to a temporary file beside `dest`, ready to publish.
    pub fn write_temp(&self, dest: &Path) -> Result<TempFile> {
        let mut t = TempFile::create(dest)?;
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        t.file()
            .write_all(&text)
            .map_err(|e| crate::error::write_error(e, t.path()))?;
        Ok(t)
    }
}

/// This machine's host name (empty when unknown).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_keeps_unknown_fields() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Manifest::new(
            "dump",
            "toybox",
            "tb-dump 0.1.0",
            "2026-01-23T03:00:00+09:00",
        );
        m.files.push(FileEntry {
            role: "dump".into(),
            name: "toybox_20260123_030000.sql.gz".into(),
            bytes: 10,
            raw_bytes: 20,
            sha256: "ab".repeat(32),
            crc32: 7,
            chunks: Some(ChunkIndex::new(&[
                Chunk { raw: 5, gz: 10 },
                Chunk { raw: 7, gz: 3 },
            ])),
        });
        m.extra.insert("future_field".into(), Value::from(42));
        let dest = d.path().join("toybox_20260123_030000.manifest.json");
        m.write_temp(&dest).unwrap().publish().unwrap();
        let back = Manifest::load(&dest).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.file("toybox_20260123_030000.sql.gz")
                .unwrap()
                .raw_bytes,
            20
        );
        assert!(back.file("other").is_none());
        assert_eq!(
            back.files[0].chunks.as_ref().unwrap().chunks(),
            Some(vec![Chunk { raw: 5, gz: 10 }, Chunk { raw: 7, gz: 3 }])
        );
        let bad = |r: &str, g: &str| {
            ChunkIndex {
                raw_sizes: r.into(),
                gz_sizes: g.into(),
            }
            .chunks()
        };
        assert_eq!(bad("5", "1 2"), None);
        assert_eq!(bad("x", "1"), None);
        assert_eq!(bad("", ""), None);
    }

    #[test]
    fn foreign_json_is_rejected() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.manifest.json");
        std::fs::write(&p, r#"{"hello": 1}"#).unwrap();
        assert!(Manifest::load(&p).is_err());
    }
}
