//! The index of a volume archive: one JSON line per entry, in archive
//! order, gzipped (`LABEL_YYYYMMDD.index.jsonl.gz` beside the archive).
//!
//! It lists what a restore must reproduce (type, mode, owner, size, mtime in
//! nanoseconds, sha256 of the contents, link targets, device numbers,
//! extended attributes), so that `tb-check verify` can prove the archive
//! holds exactly that, a drill can compare a restored tree with it, and
//! incremental backups can tell what changed. Entries are sorted by the raw
//! bytes of their names, depth first, as the archive is; the index is
//! written and read as a stream, so memory does not grow with the number
//! of files.
//!
//! Names are relative to the volume's root (`.` is the root itself, then
//! `a`, `a/b`). A name that is UTF-8 is a JSON string; any other is
//! `{"hex": "…"}`, so names are kept byte for byte:
//!
//! ```json
//! {"path":"img/cat.jpg","type":"file","mode":420,"uid":1000,"gid":1000,"size":51234,"mtime_ns":1768000000123456789,"sha256":"…"}
//! {"path":{"hex":"636166e9"},"type":"symlink","mode":511,"uid":0,"gid":0,"mtime_ns":…,"target":"../x"}
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::gzip::hex;

/// A name kept byte for byte: a string when UTF-8, else hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawName {
    /// UTF-8 text.
    Text(String),
    /// Any other bytes, hex-encoded.
    Raw {
        /// Lowercase hex of the bytes.
        hex: String,
    },
}

impl RawName {
    /// The name of these bytes.
    pub fn from_bytes(b: &[u8]) -> RawName {
        match std::str::from_utf8(b) {
            Ok(s) => RawName::Text(s.to_string()),
            Err(_) => RawName::Raw { hex: hex(b) },
        }
    }

    /// The bytes (invalid hex gives the hex text itself, never panics).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            RawName::Text(s) => s.as_bytes().to_vec(),
            RawName::Raw { hex } => unhex(hex).unwrap_or_else(|| hex.as_bytes().to_vec()),
        }
    }

    /// For messages: UTF-8 as is, other bytes as `\xNN`.
    pub fn display(&self) -> String {
        crate::record::display_bytes(&self.to_bytes())
    }
}

/// Bytes of a hex string, if it is one.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file (its data is in the archive).
    File,
    /// A symbolic link (stored, never followed).
    Symlink,
    /// Another name of a file listed earlier (`link`).
    Hardlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    Char,
    /// A block device.
    Block,
}

impl EntryKind {
    /// The word used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Dir => "dir",
            EntryKind::File => "file",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::Fifo => "fifo",
            EntryKind::Char => "char",
            EntryKind::Block => "block",
        }
    }
}

/// One entry of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Name relative to the root (`.` for the root).
    pub path: RawName,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (12 bits).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Bytes of content (files; 0 otherwise).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// sha256 of the contents as stored (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink target, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawName>,
    /// For hard links: the name listed first for the same file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<RawName>,
    /// Device numbers (char and block devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<(u32, u32)>,
    /// Extended attributes (ACLs included): name -> hex of the value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// Stored as a sparse file (holes not stored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sparse: bool,
    /// The file changed while it was read: the archive holds a consistent
    /// entry of `size` bytes, but not necessarily any moment's contents.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Writes index lines into a gzip stream.
pub struct IndexWriter<W: Write> {
    out: flate2::write::GzEncoder<W>,
    entries: u64,
}

impl<W: Write> IndexWriter<W> {
    /// A writer into `w`.
    pub fn new(w: W) -> IndexWriter<W> {
        IndexWriter {
            out: flate2::write::GzEncoder::new(w, flate2::Compression::new(6)),
            entries: 0,
        }
    }

    /// A writer into `w` that compresses quickly (level 1): for the
    /// complete listing of a chain point, written on every run.
    pub fn new_fast(w: W) -> IndexWriter<W> {
        IndexWriter {
            out: flate2::write::GzEncoder::new(w, flate2::Compression::new(1)),
            entries: 0,
        }
    }

    /// Append one entry.
    pub fn push(&mut self, e: &IndexEntry) -> io::Result<()> {
        let mut line = serde_json::to_vec(e).map_err(io::Error::other)?;
        line.push(b'\n');
        self.entries += 1;
        self.out.write_all(&line)
    }

    /// Entries written.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Finish the gzip stream.
    pub fn finish(self) -> io::Result<W> {
        self.out.finish()
    }
}

/// Reads an index file entry by entry.
pub struct IndexReader {
    lines: std::io::Lines<BufReader<flate2::read::MultiGzDecoder<File>>>,
    path: std::path::PathBuf,
    line: u64,
}

impl IndexReader {
    /// Open an index file.
    pub fn open(path: &Path) -> Result<IndexReader> {
        let f =
            File::open(path).with_context(|| format!("cannot open index '{}'", path.display()))?;
        if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
            anyhow::bail!("index '{}' is not a regular file", path.display());
        }
        Ok(IndexReader {
            lines: BufReader::new(flate2::read::MultiGzDecoder::new(f)).lines(),
            path: path.to_path_buf(),
            line: 0,
        })
    }
}

impl Iterator for IndexReader {
    type Item = Result<IndexEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.lines.next()?;
        self.line += 1;
        let (path, n) = (self.path.display().to_string(), self.line);
        Some(
            line.with_context(|| format!("cannot read index '{path}'"))
                .and_then(|l| {
                    serde_json::from_str(&l)
                        .with_context(|| format!("index '{path}' line {n} is not valid"))
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_byte_for_byte() {
        for b in [
            &b"img/cat.jpg"[..],
            b"caf\xe9",
            b"",
            "日本".as_bytes(),
            b"a\nb",
        ] {
            let n = RawName::from_bytes(b);
            let json = serde_json::to_string(&n).unwrap();
            let back: RawName = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_bytes(), b, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&RawName::from_bytes(b"caf\xe9")).unwrap(),
            r#"{"hex":"636166e9"}"#
        );
        assert_eq!(RawName::from_bytes(b"caf\xe9").display(), "caf\\xe9");
    }

    #[test]
    fn index_files_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.index.jsonl.gz");
        let entries = vec![
            IndexEntry {
                path: RawName::from_bytes(b"."),
                kind: EntryKind::Dir,
                mode: 0o700,
                uid: 0,
                gid: 0,
                size: 0,
                mtime_ns: 1_768_000_000_123_456_789,
                sha256: None,
                target: None,
                link: None,
                rdev: None,
                xattrs: BTreeMap::new(),
                sparse: false,
                changed: false,
            },
            IndexEntry {
                path: RawName::from_bytes(b"dev\xff"),
                kind: EntryKind::Char,
                mode: 0o666,
                uid: 1,
                gid: 2,
                size: 0,
                mtime_ns: -5,
                sha256: None,
                target: None,
                link: None,
                rdev: Some((1, 3)),
                xattrs: [("user.k".to_string(), "00ff".to_string())].into(),
                sparse: true,
                changed: true,
            },
        ];
        let mut w = IndexWriter::new(File::create(&p).unwrap());
        for e in &entries {
            w.push(e).unwrap();
        }
        assert_eq!(w.entries(), 2);
        w.finish().unwrap();
        let back: Vec<IndexEntry> = IndexReader::open(&p).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(back, entries);
    }

    #[test]
    fn bad_hex_never_panics() {
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(RawName::Raw { hex: "zz".into() }.to_bytes(), b"zz");
    }
}
