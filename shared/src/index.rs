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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gzip::hex;

/// A name kept byte for byte: a string when UTF-8, else hex.
///
/// Written as an untagged enum (a JSON string, or `{"hex": "…"}`); read
/// by a hand-written [`Deserialize`] that accepts exactly those two forms
/// without buffering (serde's untagged enums buffer every value first,
/// which made reading a listing of 100,000 names slow).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
        self.bytes().into_owned()
    }

    /// The bytes, borrowed when the name is text (no allocation).
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            RawName::Text(s) => Cow::Borrowed(s.as_bytes()),
            RawName::Raw { hex } => {
                Cow::Owned(unhex(hex).unwrap_or_else(|| hex.as_bytes().to_vec()))
            }
        }
    }

    /// For messages: UTF-8 as is, other bytes as `\xNN`.
    pub fn display(&self) -> String {
        crate::record::display_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for RawName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{self, IgnoredAny, MapAccess, Visitor};

        /// The keys of `{"hex": …}`: `hex`, or any other (ignored, as the
        /// derived untagged enum did).
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Hex,
            #[serde(other)]
            Other,
        }

        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = RawName;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a name: a string, or {"hex": "…"}"#)
            }

            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<RawName, E> {
                Ok(RawName::Text(s.to_owned()))
            }

            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<RawName, E> {
                Ok(RawName::Text(s))
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawName, A::Error> {
                let mut hex: Option<String> = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Hex if hex.is_some() => return Err(de::Error::duplicate_field("hex")),
                        Key::Hex => hex = Some(map.next_value()?),
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                match hex {
                    Some(hex) => Ok(RawName::Raw { hex }),
                    None => Err(de::Error::missing_field("hex")),
                }
            }
        }

        d.deserialize_any(NameVisitor)
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
    /// Uncompressed bytes written, and their CRC-32 (a manifest entry
    /// without reading the file back).
    raw_bytes: u64,
    crc: crc32fast::Hasher,
    line: Vec<u8>,
}

impl<W: Write> IndexWriter<W> {
    /// A writer into `w`.
    pub fn new(w: W) -> IndexWriter<W> {
        IndexWriter::with_level(w, 6)
    }

    /// A writer into `w` that compresses quickly (level 1): for the
    /// complete listing of a chain point, written on every run.
    pub fn new_fast(w: W) -> IndexWriter<W> {
        IndexWriter::with_level(w, 1)
    }

    fn with_level(w: W, level: u32) -> IndexWriter<W> {
        IndexWriter {
            out: flate2::write::GzEncoder::new(w, flate2::Compression::new(level)),
            entries: 0,
            raw_bytes: 0,
            crc: crc32fast::Hasher::new(),
            line: Vec::with_capacity(512),
        }
    }

    /// Append one entry.
    pub fn push(&mut self, e: &IndexEntry) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, e).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.entries += 1;
        self.raw_bytes += self.line.len() as u64;
        self.crc.update(&self.line);
        self.out.write_all(&self.line)
    }

    /// Entries written.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Uncompressed bytes written so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// CRC-32 of the uncompressed bytes written so far (as in the gzip trailer).
    pub fn crc32(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// Finish the gzip stream.
    pub fn finish(self) -> io::Result<W> {
        self.out.finish()
    }
}

/// A writer that passes everything on and keeps the sha256 and the count
/// of the bytes that went through (what the file will hold).
pub struct HashingWriter<W: Write> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hash what is written into `inner`.
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flush, and the inner writer with the sha256 (lowercase hex) of
    /// everything written.
    pub fn finish(mut self) -> io::Result<(W, String)> {
        self.inner.flush()?;
        Ok((self.inner, hex(&self.sha.finalize())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads an index file entry by entry.
pub struct IndexReader {
    input: BufReader<flate2::read::MultiGzDecoder<File>>,
    buf: Vec<u8>,
    path: std::path::PathBuf,
    line: u64,
    done: bool,
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
            input: BufReader::with_capacity(128 << 10, flate2::read::MultiGzDecoder::new(f)),
            buf: Vec::with_capacity(1024),
            path: path.to_path_buf(),
            line: 0,
            done: false,
        })
    }
}

impl Iterator for IndexReader {
    type Item = Result<IndexEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.buf.clear();
        // As `BufRead::lines`: a line ends at `\n` (a `\r` before it is
        // dropped too), the last one may lack it, and it must be UTF-8.
        match self.input.read_until(b'\n', &mut self.buf) {
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.done = true;
                let path = self.path.display();
                return Some(Err(e).with_context(|| format!("cannot read index '{path}'")));
            }
        }
        Some(parse_line("index", &self.path, &mut self.line, &self.buf))
    }
}

/// Line `n + 1` of the index-format file at `path` (`what`: "index",
/// "listing", for the messages) as an entry: as `BufRead::lines`, the
/// newline and a `\r` before it are dropped, and it must be UTF-8.
pub(crate) fn parse_line(
    what: &str,
    path: &Path,
    n: &mut u64,
    mut line: &[u8],
) -> Result<IndexEntry> {
    *n += 1;
    if let Some(l) = line.strip_suffix(b"\n") {
        line = l.strip_suffix(b"\r").unwrap_or(l);
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })
        .with_context(|| format!("cannot read {what} '{}'", path.display()))?;
    serde_json::from_str(text)
        .with_context(|| format!("{what} '{}' line {n} is not valid", path.display()))
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
    fn names_read_as_the_untagged_enum_did() {
        let read = |j: &str| serde_json::from_str::<RawName>(j);
        assert_eq!(read(r#""a\nb""#).unwrap(), RawName::Text("a\nb".into()));
        assert_eq!(
            read(r#""caf\u00e9""#).unwrap(),
            RawName::Text("café".into())
        );
        assert_eq!(
            read(r#"{"hex":"ff00"}"#).unwrap(),
            RawName::Raw { hex: "ff00".into() }
        );
        assert_eq!(
            read(r#"{"other":[1,{"x":2}],"hex":"ff"}"#).unwrap(),
            RawName::Raw { hex: "ff".into() },
            "other keys are ignored"
        );
        for bad in [
            "{}",
            r#"{"hex":1}"#,
            r#"{"hex":"a","hex":"b"}"#,
            "5",
            "null",
            "[]",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let opt: Option<RawName> = serde_json::from_str("null").unwrap();
        assert_eq!(opt, None);
        // Inside an entry, borrowed and escaped strings alike.
        let line = r#"{"path":"d/\"q\"","type":"symlink","mode":511,"uid":0,"gid":0,"mtime_ns":1,"target":{"hex":"ff"},"link":"x"}"#;
        let e: IndexEntry = serde_json::from_str(line).unwrap();
        assert_eq!(e.path.to_bytes(), b"d/\"q\"");
        assert_eq!(e.target.unwrap().to_bytes(), b"\xff");
        assert_eq!(e.link, Some(RawName::Text("x".into())));
    }

    #[test]
    fn the_writer_counts_what_it_compresses() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.jsonl.gz");
        let mut w = IndexWriter::new_fast(HashingWriter::new(File::create(&p).unwrap()));
        for i in 0..1000u64 {
            let mut e: IndexEntry = serde_json::from_str(
                r#"{"path":".","type":"dir","mode":493,"uid":0,"gid":0,"mtime_ns":0}"#,
            )
            .unwrap();
            e.path = RawName::from_bytes(format!("f{i}").as_bytes());
            w.push(&e).unwrap();
        }
        let (raw, crc) = (w.raw_bytes(), w.crc32());
        let hw = w.finish().unwrap();
        let gz = hw.bytes();
        let (_, sha) = hw.finish().unwrap();
        let back = crate::gzip::inflate_file(&p, &mut |_| Ok(())).unwrap();
        assert_eq!(
            (back.gz_bytes, back.raw_bytes, back.crc32, back.sha256),
            (gz, raw, crc, sha)
        );
        assert_eq!(IndexReader::open(&p).unwrap().count(), 1000);
    }

    #[test]
    fn lines_are_read_as_buf_read_lines_did() {
        use std::io::Write as _;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.jsonl.gz");
        let dir = r#"{"path":".","type":"dir","mode":493,"uid":0,"gid":0,"mtime_ns":0}"#;
        let mut gz =
            flate2::write::GzEncoder::new(File::create(&p).unwrap(), flate2::Compression::new(1));
        write!(gz, "{dir}\r\n{dir}\n{dir}").unwrap();
        gz.finish().unwrap();
        let got: Vec<_> = IndexReader::open(&p).unwrap().collect();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|e| e.is_ok()), "{got:?}");
        let mut gz =
            flate2::write::GzEncoder::new(File::create(&p).unwrap(), flate2::Compression::new(1));
        gz.write_all(b"{\"path\":\"\xff\"}\n\n").unwrap();
        gz.finish().unwrap();
        let got: Vec<_> = IndexReader::open(&p).unwrap().collect();
        assert_eq!(got.len(), 2);
        let e = format!("{:#}", got[0].as_ref().unwrap_err());
        assert!(
            e.contains("cannot read index") && e.contains("UTF-8"),
            "{e}"
        );
        let e = format!("{:#}", got[1].as_ref().unwrap_err());
        assert!(e.contains("line 2 is not valid"), "{e}");
    }

    #[test]
    fn bad_hex_never_panics() {
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(RawName::Raw { hex: "zz".into() }.to_bytes(), b"zz");
    }
}
