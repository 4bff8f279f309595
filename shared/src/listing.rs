//! The complete listing of a chain point (`listing.jsonl.gz`), read and
//! written gzip member by gzip member so that an increment copies the
//! members in which nothing changed instead of compressing them again.
//!
//! A listing is index lines ([`crate::index`]) in archive order, gzipped
//! as a series of members of about [`MEMBER_TARGET`] uncompressed bytes,
//! each holding whole lines: a standard gzip file (`zcat`, `gzip -t`, `jq`
//! read it as one stream). Compressing the listing was the largest part of
//! a no-change increment of a tree of small files; now such a run copies
//! almost every member of the previous listing byte for byte.
//!
//! A copied member holds exactly the lines that would be written: it is
//! copied only when every entry it holds was found unchanged, in the same
//! order, with no new entry among them (an unchanged entry is equal field
//! for field to the listed one, see `same_entry` in [`crate::archive`]).
//! Its bytes were checked when the previous point was (the listing's
//! sha256) and again as they were read here (the member's CRC-32).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::index::{HashingWriter, IndexEntry, parse_line};

/// Uncompressed bytes after which a member is ended (at the end of a line).
/// Small members are copied more often when a few entries change here and
/// there; a member costs 18 bytes of gzip header and trailer and compresses
/// about 1 % worse than one long stream.
pub const MEMBER_TARGET: usize = 16 << 10;
/// A member bigger than this (compressed; from another writer, or an old
/// listing written as one member) is read but never copied, so memory
/// stays bounded.
const MEMBER_CAP: usize = 1 << 20;
/// Entries of one member held before it is known whether it can be copied.
const MEMBER_ENTRIES_CAP: usize = 8192;

/// A member of a listing that may be copied as it is.
#[derive(Debug)]
pub struct Member {
    /// Its bytes in the file, header to trailer.
    gz: Vec<u8>,
    /// CRC-32 of its uncompressed bytes.
    crc32: u32,
    /// Its uncompressed bytes.
    raw_len: u64,
    /// Entries (lines) it holds.
    entries: u32,
}

/// Where a listed entry came from: its member, and its place in it.
pub type MemberPos = (Arc<Member>, u32);

/// A listed entry, and where it is when its member can be copied.
pub type Listed = (IndexEntry, Option<MemberPos>);

/// A [`BufRead`] that keeps a copy of what is consumed from it while asked.
struct Capture<R> {
    inner: R,
    copy: Option<Vec<u8>>,
}

impl<R: BufRead> Read for Capture<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Capture<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        if let Some(c) = self.copy.as_mut() {
            match self.inner.fill_buf() {
                Ok(b) if c.len() + n <= MEMBER_CAP && n <= b.len() => c.extend_from_slice(&b[..n]),
                _ => self.copy = None,
            }
        }
        self.inner.consume(n);
    }
}

/// The file under a listing's members.
type Input = Capture<BufReader<File>>;

/// A member being read.
struct Reading {
    lines: BufReader<flate2::bufread::GzDecoder<Input>>,
    /// Whole lines only so far, and all of them still held in `ready`.
    whole: bool,
    held: usize,
    raw_len: u64,
}

/// Reads a listing entry by entry, telling for each whether its member
/// could be copied.
pub struct ListingReader {
    /// The file between members (none while one is read).
    input: Option<Input>,
    member: Option<Reading>,
    path: PathBuf,
    line: u64,
    /// A line begun in the previous member.
    carry: Vec<u8>,
    buf: Vec<u8>,
    ready: std::collections::VecDeque<Result<Listed>>,
    done: bool,
}

impl ListingReader {
    /// Open a listing.
    pub fn open(path: &Path) -> Result<ListingReader> {
        let f = File::open(path)
            .with_context(|| format!("cannot open listing '{}'", path.display()))?;
        if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
            anyhow::bail!("listing '{}' is not a regular file", path.display());
        }
        Ok(ListingReader {
            input: Some(Capture {
                inner: BufReader::with_capacity(128 << 10, f),
                copy: None,
            }),
            member: None,
            path: path.to_path_buf(),
            line: 0,
            carry: Vec::new(),
            buf: Vec::with_capacity(1024),
            ready: Default::default(),
            done: false,
        })
    }

    fn context(&self) -> String {
        format!("cannot read listing '{}'", self.path.display())
    }

    /// Read on into `ready`: the rest of a member, or as much of it as
    /// may be held; false at the end of the file.
    fn fill(&mut self) -> Result<bool> {
        let mut reading = match self.member.take() {
            Some(r) => r,
            None => {
                let mut input = self.input.take().context("listing reader misused")?;
                let more = !input.fill_buf().with_context(|| self.context())?.is_empty();
                if !more {
                    self.input = Some(input);
                    if !self.carry.is_empty() {
                        // The last line may lack its newline.
                        let last = std::mem::take(&mut self.carry);
                        let e = parse_line("listing", &self.path, &mut self.line, &last);
                        self.ready.push_back(e.map(|e| (e, None)));
                    }
                    return Ok(false);
                }
                input.copy = Some(Vec::new());
                Reading {
                    lines: BufReader::with_capacity(
                        64 << 10,
                        flate2::bufread::GzDecoder::new(input),
                    ),
                    whole: self.carry.is_empty(),
                    held: 0,
                    raw_len: 0,
                }
            }
        };
        loop {
            self.buf.clear();
            let n = reading
                .lines
                .read_until(b'\n', &mut self.buf)
                .with_context(|| self.context())?;
            if n == 0 {
                break;
            }
            reading.raw_len += n as u64;
            if self.buf.last() != Some(&b'\n') {
                // Goes on in the next member (or is the last line).
                self.carry.extend_from_slice(&self.buf);
                continue;
            }
            let e = if self.carry.is_empty() {
                parse_line("listing", &self.path, &mut self.line, &self.buf)?
            } else {
                self.carry.extend_from_slice(&self.buf);
                let line = std::mem::take(&mut self.carry);
                parse_line("listing", &self.path, &mut self.line, &line)?
            };
            self.ready.push_back(Ok((e, None)));
            reading.held += 1;
            if reading.held >= MEMBER_ENTRIES_CAP {
                // Too big to hold back until its end: passed on as read,
                // never copied.
                reading.whole = false;
                reading.held = 0;
                self.member = Some(reading);
                return Ok(true);
            }
        }
        // The member's end: the file goes on after its trailer.
        let mut input = reading.lines.into_inner().into_inner();
        let gz = input.copy.take();
        self.input = Some(input);
        if let Some(gz) = gz
            && reading.whole
            && self.carry.is_empty()
            && gz.len() >= 18
            && reading.held > 0
        {
            let t = &gz[gz.len() - 8..];
            let m = Arc::new(Member {
                crc32: u32::from_le_bytes([t[0], t[1], t[2], t[3]]),
                raw_len: reading.raw_len,
                entries: reading.held as u32,
                gz,
            });
            let first = self.ready.len() - reading.held;
            for (i, l) in self.ready.range_mut(first..).enumerate() {
                if let Ok((_, from)) = l {
                    *from = Some((m.clone(), i as u32));
                }
            }
        }
        Ok(true)
    }
}

impl Iterator for ListingReader {
    type Item = Result<Listed>;

    fn next(&mut self) -> Option<Result<Listed>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    // After the entries read before it, and last.
                    self.done = true;
                    self.ready.push_back(Err(e));
                }
            }
        }
    }
}

/// What a listing writer wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Bytes of the file.
    pub gz_bytes: u64,
    /// Uncompressed bytes.
    pub raw_bytes: u64,
    /// sha256 of the file, lowercase hex.
    pub sha256: String,
    /// CRC-32 of the uncompressed bytes.
    pub crc32: u32,
    /// Entries (lines).
    pub entries: u64,
    /// Members copied from the previous listing.
    pub copied_members: u64,
    /// Members compressed here.
    pub new_members: u64,
}

/// Writes a listing member by member, copying the previous listing's
/// members where nothing in them changed.
pub struct ListingWriter<W: Write> {
    out: HashingWriter<W>,
    level: flate2::Compression,
    /// The member being compressed, and its uncompressed size.
    open: Option<(flate2::write::GzEncoder<Vec<u8>>, usize)>,
    /// Unchanged entries of one previous member, from its first, in order:
    /// copied as that member once its last one arrives.
    run: Option<(Arc<Member>, Vec<IndexEntry>)>,
    crc: crc32fast::Hasher,
    raw_bytes: u64,
    entries: u64,
    copied: u64,
    compressed: u64,
    line: Vec<u8>,
}

impl<W: Write> ListingWriter<W> {
    /// A writer into `out`, compressing at `level`.
    pub fn new(out: W, level: u32) -> ListingWriter<W> {
        ListingWriter {
            out: HashingWriter::new(out),
            level: flate2::Compression::new(level),
            open: None,
            run: None,
            crc: crc32fast::Hasher::new(),
            raw_bytes: 0,
            entries: 0,
            copied: 0,
            compressed: 0,
            line: Vec::with_capacity(512),
        }
    }

    /// Append an entry; `from` is where it is in the previous listing when
    /// it is unchanged and its member can be copied.
    pub fn push(&mut self, e: IndexEntry, from: Option<MemberPos>) -> io::Result<()> {
        self.entries += 1;
        match from {
            Some((m, 0)) => {
                self.flush_run()?;
                if m.entries == 1 {
                    return self.copy(&m);
                }
                self.run = Some((m, vec![e]));
                Ok(())
            }
            Some((m, i)) => {
                let continues = self
                    .run
                    .as_ref()
                    .is_some_and(|(r, held)| Arc::ptr_eq(r, &m) && held.len() == i as usize);
                if !continues {
                    self.flush_run()?;
                    return self.encode(&e);
                }
                let complete = {
                    let (_, held) = self.run.as_mut().expect("a run");
                    held.push(e);
                    held.len() == m.entries as usize
                };
                if complete {
                    self.run = None;
                    self.copy(&m)?;
                }
                Ok(())
            }
            None => {
                self.flush_run()?;
                self.encode(&e)
            }
        }
    }

    /// A run cut short: its entries are compressed after all.
    fn flush_run(&mut self) -> io::Result<()> {
        if let Some((_, held)) = self.run.take() {
            for e in &held {
                self.encode(e)?;
            }
        }
        Ok(())
    }

    fn encode(&mut self, e: &IndexEntry) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, e).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.raw_bytes += self.line.len() as u64;
        self.crc.update(&self.line);
        let level = self.level;
        let (enc, raw) = self
            .open
            .get_or_insert_with(|| (flate2::write::GzEncoder::new(Vec::new(), level), 0));
        enc.write_all(&self.line)?;
        *raw += self.line.len();
        if *raw >= MEMBER_TARGET {
            self.close()?;
        }
        Ok(())
    }

    /// End the member being compressed, if any.
    fn close(&mut self) -> io::Result<()> {
        if let Some((enc, _)) = self.open.take() {
            let gz = enc.finish()?;
            self.out.write_all(&gz)?;
            self.compressed += 1;
        }
        Ok(())
    }

    fn copy(&mut self, m: &Member) -> io::Result<()> {
        self.close()?;
        self.out.write_all(&m.gz)?;
        self.crc
            .combine(&crc32fast::Hasher::new_with_initial_len(m.crc32, m.raw_len));
        self.raw_bytes += m.raw_len;
        self.copied += 1;
        Ok(())
    }

    /// Finish: the last member, and what was written.
    pub fn finish(mut self) -> io::Result<(W, Written)> {
        self.flush_run()?;
        self.close()?;
        if self.entries == 0 {
            // An empty gzip file is not one: write an empty member.
            let gz = flate2::write::GzEncoder::new(Vec::new(), self.level).finish()?;
            self.out.write_all(&gz)?;
        }
        let gz_bytes = self.out.bytes();
        let (w, sha256) = self.out.finish()?;
        Ok((
            w,
            Written {
                gz_bytes,
                raw_bytes: self.raw_bytes,
                sha256,
                crc32: self.crc.finalize(),
                entries: self.entries,
                copied_members: self.copied,
                new_members: self.compressed,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{EntryKind, IndexReader, RawName};
    use sha2::Digest;

    fn entry(i: usize) -> IndexEntry {
        IndexEntry {
            path: RawName::from_bytes(format!("d{:03}/file {i:06}.txt", i / 100).as_bytes()),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            size: i as u64 * 7,
            mtime_ns: 1_768_000_000_000_000_000 + i as i64,
            sha256: Some(format!("{:064x}", i * 2_654_435_761)),
            target: None,
            link: None,
            rdev: None,
            xattrs: Default::default(),
            sparse: false,
            changed: false,
        }
    }

    /// Write `entries` as a listing at `path`, each with where it came from.
    fn write(path: &Path, entries: Vec<Listed>) -> Written {
        let mut w = ListingWriter::new(File::create(path).unwrap(), 1);
        for (e, from) in entries {
            w.push(e, from).unwrap();
        }
        w.finish().unwrap().1
    }

    fn check_file(path: &Path, w: &Written, want: &[IndexEntry]) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.len() as u64, w.gz_bytes);
        assert_eq!(crate::gzip::hex(&sha2::Sha256::digest(&bytes)), w.sha256);
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len() as u64, w.raw_bytes);
        assert_eq!(crc32fast::hash(&raw), w.crc32, "CRC of the whole");
        // Both readers read the same entries.
        let by_index: Vec<IndexEntry> = IndexReader::open(path)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(by_index, want);
        let by_member: Vec<IndexEntry> = ListingReader::open(path)
            .unwrap()
            .map(|e| e.unwrap().0)
            .collect();
        assert_eq!(by_member, want);
    }

    #[test]
    fn unchanged_members_are_copied_and_the_listing_reads_the_same() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            d.path().join("a.gz"),
            d.path().join("b.gz"),
            d.path().join("c.gz"),
        );
        let all: Vec<IndexEntry> = (0..3000).map(entry).collect();
        let wa = write(&a, all.iter().cloned().map(|e| (e, None)).collect());
        assert!(wa.new_members > 10, "{wa:?}");
        assert_eq!(wa.copied_members, 0);
        check_file(&a, &wa, &all);

        // Nothing changed: every member copied, the file is the same bytes.
        let wb = write(
            &b,
            ListingReader::open(&a)
                .unwrap()
                .map(|e| e.unwrap())
                .collect(),
        );
        assert_eq!((wb.copied_members, wb.new_members), (wa.new_members, 0));
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        check_file(&b, &wb, &all);

        // One entry changed, one added in another member, one deleted in
        // a third: those members are compressed again, the others copied.
        let mut want = Vec::new();
        let mut listed = Vec::new();
        for (i, l) in ListingReader::open(&b).unwrap().enumerate() {
            let (e, from) = l.unwrap();
            match i {
                500 => {
                    let mut e = e;
                    e.size += 1;
                    want.push(e.clone());
                    listed.push((e, None));
                }
                1500 => {
                    want.push(e.clone());
                    listed.push((e.clone(), from));
                    let mut n = e;
                    n.path = RawName::from_bytes(b"d015/new");
                    want.push(n.clone());
                    listed.push((n, None));
                }
                2500 => {}
                _ => {
                    want.push(e.clone());
                    listed.push((e, from));
                }
            }
        }
        let wc = write(&c, listed);
        assert!(wc.copied_members >= wa.new_members - 3, "{wc:?}");
        assert!(wc.new_members >= 3 && wc.new_members <= 6, "{wc:?}");
        check_file(&c, &wc, &want);
    }

    #[test]
    fn a_listing_in_one_member_is_read_and_nothing_is_copied_from_it() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.gz"), d.path().join("b.gz"));
        let all: Vec<IndexEntry> = (0..300).map(entry).collect();
        let mut w = crate::index::IndexWriter::new(File::create(&a).unwrap());
        for e in &all {
            w.push(e).unwrap();
        }
        w.finish().unwrap();
        let read: Vec<Listed> = ListingReader::open(&a)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        // One member of 300 entries can be copied whole (nothing else in it).
        assert!(read.iter().all(|(_, f)| f.is_some()));
        let wb = write(&b, read);
        assert_eq!((wb.copied_members, wb.new_members), (1, 0));
        check_file(&b, &wb, &all);

        // A member of more entries than are held back: read in order in
        // parts, none of it copied.
        let many: Vec<IndexEntry> = (0..MEMBER_ENTRIES_CAP + 500).map(entry).collect();
        let mut w = crate::index::IndexWriter::new(File::create(&a).unwrap());
        for e in &many {
            w.push(e).unwrap();
        }
        w.finish().unwrap();
        let read: Vec<Listed> = ListingReader::open(&a)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert!(read.iter().all(|(_, f)| f.is_none()));
        assert_eq!(read.into_iter().map(|l| l.0).collect::<Vec<_>>(), many);
    }

    #[test]
    fn lines_across_members_and_damage_are_handled() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.gz");
        let all: Vec<IndexEntry> = (0..4).map(entry).collect();
        let mut text = Vec::new();
        for e in &all {
            serde_json::to_writer(&mut text, e).unwrap();
            text.push(b'\n');
        }
        text.pop(); // the last line without its newline
        // Members cut in the middle of lines.
        let mut gz = Vec::new();
        for piece in text.chunks(70) {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(piece).unwrap();
            gz.extend(enc.finish().unwrap());
        }
        std::fs::write(&p, &gz).unwrap();
        let read: Vec<Listed> = ListingReader::open(&p)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(read.iter().map(|l| l.0.clone()).collect::<Vec<_>>(), all);
        assert!(
            read.iter().all(|(_, f)| f.is_none()),
            "no member holds whole lines only"
        );

        // Cut inside its last member: an error, after the entries before.
        std::fs::write(&p, &gz[..gz.len() - 3]).unwrap();
        let r: Vec<Result<Listed>> = ListingReader::open(&p).unwrap().collect();
        assert!(
            r.last().is_some_and(|e| e.is_err()),
            "a cut listing is an error"
        );
        assert!(
            r[..r.len() - 1].iter().all(|e| e.is_ok()),
            "the error comes last"
        );
        // A flipped byte in the middle: an error, not a shorter listing.
        let mid = gz.len() / 2;
        gz[mid] ^= 0x55;
        std::fs::write(&p, &gz).unwrap();
        let r: Vec<Result<Listed>> = ListingReader::open(&p).unwrap().collect();
        assert!(r.last().is_some_and(|e| e.is_err()), "damage is an error");
        assert!(r.len() <= all.len(), "nothing after the error");
    }
}
