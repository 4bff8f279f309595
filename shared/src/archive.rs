//! Volume archives: a directory tree -> one standard `tar.gz`, and the
//! check that an archive holds exactly what its index says.
//!
//! # Format
//!
//! A tar stream that GNU tar reads (`tar -tzf`, `tar -xzpf --numeric-owner
//! --xattrs --xattrs-include='*'`), gzipped by [`ParGzWriter`] as one member:
//!
//! - entries depth first, children sorted by the raw bytes of their names;
//!   the first entry is `./`, the root itself (its mode, owner and mtime);
//! - GNU headers with numeric uid/gid (user and group names left empty, so
//!   every extractor uses the numbers), the 12 mode bits (setuid, setgid,
//!   sticky), GNU long-name and long-link records (`L`, `K`) for names
//!   over 100 bytes, raw bytes everywhere (names need not be UTF-8);
//! - a pax extended header (`x`) before an entry when needed: `mtime` with
//!   nanoseconds, `SCHILY.xattr.NAME` for every extended attribute (POSIX
//!   ACLs are the `system.posix_acl_*` attributes, in their binary form);
//! - regular files, hard links (`1`, data stored once, the link names the
//!   first name), symlinks (`2`, stored, never followed), character and
//!   block devices, FIFOs (never opened), directories; sparse files as GNU
//!   sparse entries (`S`: only the data is stored); sockets are skipped with
//!   a warning.
//!
//! A file that changes while it is read never corrupts the archive: its
//! header promises the size seen when it was opened, exactly that many
//! bytes follow (zeros if it shrank, the excess dropped if it grew), and a
//! warning names it.
//!
//! Already-compressed content (JPEG, PNG, MP4, ZIP, gzip…, recognised by
//! magic bytes for small files and by a quick level-1 trial on samples of
//! larger ones) is stored at level 0 instead of being compressed for nothing;
//! everything else is compressed at the chosen level, on every core.
//!
//! The index ([`crate::index`]) is written in the same pass.

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::gzip::{GzOptions, GzStats, Hint, ParGzWriter, deflate_chunk, hex};
use crate::index::{EntryKind, IndexEntry, IndexWriter, RawName};
use crate::listing::{Listed, ListingReader, ListingWriter, MemberPos, Written};
use crate::walk::{
    Step, Walk, XattrRead, Xattrs, out_of_resources, skipped_xattrs_warning, xattrs_of,
};

const BLOCK: u64 = 512;
const PIECE: usize = 1 << 20;

/// Something worth a look that did not stop the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveWarning {
    /// The entry (relative name).
    pub path: RawName,
    /// What happened.
    pub message: String,
}

/// Counts of what went into an archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveCounts {
    /// Entries in the archive (sockets not counted).
    pub entries: u64,
    /// Regular files with their data.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Extra names of hard-linked files.
    pub hardlinks: u64,
    /// FIFOs and devices.
    pub specials: u64,
    /// Sockets skipped.
    pub sockets_skipped: u64,
    /// Bytes of file contents (logical sizes).
    pub file_bytes: u64,
    /// Files stored as sparse.
    pub sparse_files: u64,
}

/// What archiving produced.
#[derive(Debug, Clone)]
pub struct ArchiveStats {
    /// Entry counts.
    pub counts: ArchiveCounts,
    /// The gzip stream.
    pub gz: GzStats,
    /// Uncompressed tar bytes.
    pub tar_bytes: u64,
    /// With a [`Baseline`]: what changed since it.
    pub changes: Option<ChangeCounts>,
    /// With a [`Baseline`]: the complete listing as it was written.
    pub listing: Option<Written>,
    /// When the walk of the tree began (before any entry was looked at).
    pub walk_started: std::time::SystemTime,
}

/// What an incremental archive found, compared with its baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    /// Entries in the complete listing (the whole tree at this moment).
    pub listed: u64,
    /// Bytes of all regular files in the listing.
    pub listed_file_bytes: u64,
    /// Entries not in the baseline.
    pub added: u64,
    /// Entries in the baseline that changed (content, metadata or type).
    pub changed: u64,
    /// Entries the same as in the baseline, left out of the archive.
    pub unchanged: u64,
    /// Paths in the baseline that are gone (a deleted directory counts once).
    pub deleted: u64,
    /// Directories, stored in every archive (their modes, owners and times
    /// must come back exactly after entries inside them were added or removed).
    pub dirs: u64,
}

/// The point an incremental archive is taken against, and the two extra
/// outputs it writes: the complete listing of the tree now (every entry,
/// stored or not, with its content hash) and the NUL-separated list of the
/// paths that disappeared since the baseline (`deleted.nul`, for
/// `xargs -0 rm -rf --`).
///
/// "Changed" is decided from type, size, mtime (nanoseconds), mode, owner,
/// link target, device numbers and extended attributes, never from inode,
/// device or link count, so a volume moved or copied elsewhere continues
/// its chain. With `checksum`, files whose metadata did not change are read
/// and their sha256 compared too. A path whose type changed is listed as
/// deleted and stored again, so a restore (with tb or with tar) removes the
/// old one first. Directories are always stored.
///
/// The previous listing is read (inflated and parsed) ahead in a thread of
/// its own, and the new one is encoded and compressed in another, while
/// the walk waits for the filesystem.
pub struct Baseline {
    prev: Option<std::iter::Peekable<ReadAhead>>,
    listing: WriteBehind,
    deleted: Box<dyn Write + Send>,
    checksum: bool,
    /// Entries whose inode last changed before this (ns since the epoch)
    /// have the extended attributes the previous listing gives them.
    xattrs_unchanged_before: Option<i64>,
    last_deleted: Option<Vec<u8>>,
    counts: ChangeCounts,
}

/// The previous point's listing could not be read to its end: a run that
/// compares with it fails with this (in its chain of causes).
#[derive(Debug, Clone, Copy)]
pub struct ListingDamaged;

impl std::fmt::Display for ListingDamaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the previous point's listing is damaged")
    }
}

/// How long before the previous walk began an inode must have last changed
/// for its extended attributes to be taken from that walk's listing rather
/// than read: far more than the kernel's coarse clock lags (a few ms), so
/// also a filesystem whose clock is a little off (a network one) is safe.
pub const CTIME_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Before what ctime (ns since the epoch) an entry's extended attributes
/// are those of a listing whose walk began at `started`, when it is `now`:
/// [`CTIME_MARGIN`] before `started`. Setting an attribute changes the
/// ctime, so this is exact, as GNU tar's incremental mode is, unless the
/// clock was set back: when `now` is before `started`, none (every entry's
/// are read).
pub fn ctime_threshold(started: std::time::SystemTime, now: std::time::SystemTime) -> Option<i64> {
    if now < started {
        return None;
    }
    let t = started.checked_sub(CTIME_MARGIN)?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

impl Baseline {
    /// Compare with the listing `prev` (none for a base: everything is
    /// added), writing the new listing and the deleted paths. Fails only
    /// when its threads cannot be started.
    pub fn new(
        prev: Option<ListingReader>,
        listing: Box<dyn Write + Send>,
        deleted: Box<dyn Write + Send>,
        checksum: bool,
    ) -> Result<Baseline> {
        Ok(Baseline {
            prev: prev
                .map(ReadAhead::spawn)
                .transpose()
                .context("cannot start a thread")?
                .map(Iterator::peekable),
            listing: WriteBehind::spawn(listing).context("cannot start a thread")?,
            deleted,
            checksum,
            xattrs_unchanged_before: None,
            last_deleted: None,
            counts: ChangeCounts::default(),
        })
    }

    /// The previous listing was made by a walk that began at `started`:
    /// extended attributes are then read only for entries whose inode
    /// changed (ctime) less than [`CTIME_MARGIN`] before that or since,
    /// the others' come from the listing (see [`ctime_threshold`]).
    pub fn listing_walk_started(self, started: std::time::SystemTime) -> Baseline {
        let t = ctime_threshold(started, std::time::SystemTime::now());
        self.xattrs_unchanged_before(t)
    }

    /// Take the extended attributes of entries whose inode last changed
    /// before `ns` (since the epoch; none: of no entry) from the listing.
    pub fn xattrs_unchanged_before(mut self, ns: Option<i64>) -> Baseline {
        self.xattrs_unchanged_before = ns;
        self
    }

    /// The baseline's entry for `rel`, if it has one; every baseline entry
    /// before it in archive order is gone and recorded as deleted.
    fn matching(&mut self, rel: &[u8]) -> Result<Option<Listed>> {
        loop {
            let Some(prev) = self.prev.as_mut() else {
                return Ok(None);
            };
            let order = match prev.peek() {
                None => return Ok(None),
                Some(Err(_)) => {
                    let e = prev.next().map(|r| r.err());
                    let e = e.flatten().unwrap_or_else(|| anyhow::anyhow!("unreadable"));
                    return Err(e.context(ListingDamaged));
                }
                Some(Ok((p, _))) => walk_cmp(&p.path.bytes(), rel),
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some(Ok((p, _))) = prev.next() {
                        self.delete(&p.path.to_bytes(), p.kind == EntryKind::Dir)?;
                    }
                }
                std::cmp::Ordering::Equal => return prev.next().transpose(),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
    }

    /// Record `rel` as deleted, unless a deleted directory holds it.
    fn delete(&mut self, rel: &[u8], is_dir: bool) -> Result<()> {
        if let Some(d) = &self.last_deleted
            && rel.len() > d.len()
            && rel.starts_with(d)
            && rel[d.len()] == b'/'
        {
            return Ok(());
        }
        self.deleted
            .write_all(rel)
            .and_then(|()| self.deleted.write_all(b"\0"))
            .context("cannot write the list of deleted paths")?;
        self.counts.deleted += 1;
        self.last_deleted = is_dir.then(|| rel.to_vec());
        Ok(())
    }

    /// List `e`; `from` is its place in the previous listing when it is
    /// unchanged (its member may then be copied).
    fn list(&mut self, e: IndexEntry, from: Option<MemberPos>) -> Result<()> {
        self.counts.listed += 1;
        self.counts.listed_file_bytes += e.size;
        self.listing
            .push(e, from)
            .context("cannot write the listing")
    }

    fn finish(mut self) -> Result<(ChangeCounts, Written)> {
        while let Some(prev) = self.prev.as_mut() {
            match prev.next() {
                None => break,
                Some(Ok((p, _))) => self.delete(&p.path.to_bytes(), p.kind == EntryKind::Dir)?,
                Some(Err(e)) => return Err(e.context(ListingDamaged)),
            }
        }
        let written = self.listing.finish().context("cannot write the listing")?;
        self.deleted
            .flush()
            .context("cannot write the list of deleted paths")?;
        Ok((self.counts, written))
    }
}

/// Compression level of listings: most members are copied from the
/// previous listing; the others are written with this.
const LISTING_LEVEL: u32 = 1;

/// Entries passed between the walk and the listing threads at a time.
const BATCH: usize = 512;
/// Batches in flight each way.
const BATCHES: usize = 8;

/// A listing read ahead by a thread, entry by entry (the first error
/// ends it).
pub struct ReadAhead {
    rx: std::sync::mpsc::Receiver<Vec<Result<Listed>>>,
    batch: std::vec::IntoIter<Result<Listed>>,
}

impl ReadAhead {
    /// Read `r` in a new thread.
    pub fn spawn(r: ListingReader) -> io::Result<ReadAhead> {
        let (tx, rx) = std::sync::mpsc::sync_channel(BATCHES);
        std::thread::Builder::new()
            .name("tb-listing-in".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                for e in r {
                    let failed = e.is_err();
                    batch.push(e);
                    if batch.len() == BATCH || failed {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        // A send fails when the reader was dropped: done.
                        if tx.send(full).is_err() || failed {
                            return;
                        }
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
            })?;
        Ok(ReadAhead {
            rx,
            batch: Vec::new().into_iter(),
        })
    }
}

impl Iterator for ReadAhead {
    type Item = Result<Listed>;

    fn next(&mut self) -> Option<Result<Listed>> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(e);
            }
            // The thread ended: the listing is over (or failed, and the
            // error was the last item).
            self.batch = self.rx.recv().ok()?.into_iter();
        }
    }
}

/// A listing written by a thread (encoded, compressed level 1, counted and
/// hashed on the way to its file).
struct WriteBehind {
    tx: Option<std::sync::mpsc::SyncSender<Vec<Listed>>>,
    batch: Vec<Listed>,
    thread: Option<std::thread::JoinHandle<io::Result<Written>>>,
}

impl WriteBehind {
    fn spawn(out: Box<dyn Write + Send>) -> io::Result<WriteBehind> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Listed>>(BATCHES);
        let thread = std::thread::Builder::new()
            .name("tb-listing-out".into())
            .spawn(move || {
                let mut w = ListingWriter::new(out, LISTING_LEVEL);
                for batch in rx {
                    for (e, from) in batch {
                        w.push(e, from)?;
                    }
                }
                let (mut out, written) = w.finish()?;
                out.flush()?;
                Ok(written)
            })?;
        Ok(WriteBehind {
            tx: Some(tx),
            batch: Vec::with_capacity(BATCH),
            thread: Some(thread),
        })
    }

    fn push(&mut self, e: IndexEntry, from: Option<MemberPos>) -> io::Result<()> {
        self.batch.push((e, from));
        if self.batch.len() >= BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent {
            Ok(())
        } else {
            // The thread stopped: its error says why.
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the listing writer stopped")))
        }
    }

    /// Wait for the thread: what it wrote, or why it could not.
    fn join(&mut self) -> io::Result<Written> {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the listing writer failed")),
            None => Err(io::Error::other("the listing writer stopped")),
        }
    }

    fn finish(mut self) -> io::Result<Written> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        self.join()
    }
}

/// Whether `now` is the same entry as `prev` for an increment (metadata;
/// content is compared by the caller with `--checksum`).
fn same_entry(prev: &IndexEntry, now: &IndexEntry) -> bool {
    !prev.changed
        && prev.kind == now.kind
        && prev.mode == now.mode
        && prev.uid == now.uid
        && prev.gid == now.gid
        && prev.mtime_ns == now.mtime_ns
        && prev.size == now.size
        && prev.target == now.target
        && prev.link == now.link
        && prev.rdev == now.rdev
        && prev.xattrs == now.xattrs
}

/// Archive order of two relative names (`.` first, then depth first with
/// children sorted by the raw bytes of their names): component by
/// component, which is not plain byte order (`a/b` comes before `a-c`).
///
/// Compares in place (this runs for every entry of an increment): the
/// first byte where the names differ decides, a `/` there (the end of a
/// component on that side) sorting first; a name that is a prefix of the
/// other sorts first.
pub fn walk_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a == b".", b == b".") {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        (false, false) => {}
    }
    let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    match (a.get(same), b.get(same)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(b'/'), Some(_)) => Ordering::Less,
        (Some(_), Some(b'/')) => Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(y),
    }
}

/// Classify a piece of file content: store what does not compress.
pub fn content_hint(piece: &[u8], whole_file: bool) -> Hint {
    const MAGICS: &[&[u8]] = &[
        b"\xff\xd8\xff",       // JPEG
        b"\x89PNG\r\n\x1a\n",  // PNG
        b"GIF8",               // GIF
        b"PK\x03\x04",         // ZIP, docx, jar, apk
        b"\x1f\x8b",           // gzip
        b"BZh",                // bzip2
        b"\xfd7zXZ\x00",       // xz
        b"\x28\xb5\x2f\xfd",   // zstd
        b"7z\xbc\xaf\x27\x1c", // 7z
        b"OggS",               // Ogg
        b"ID3",                // MP3
        b"fLaC",               // FLAC
        b"wOF2",               // WOFF2
        b"\x1a\x45\xdf\xa3",   // Matroska, WebM
    ];
    let magic = MAGICS.iter().any(|m| piece.starts_with(m))
        || (piece.len() >= 12 && &piece[4..8] == b"ftyp") // MP4, MOV, HEIC, AVIF
        || (piece.len() >= 12 && &piece[..4] == b"RIFF" && &piece[8..12] == b"WEBP");
    if piece.len() < 64 << 10 {
        // Small: the magic decides (a trial would cost as much as compressing).
        return if magic && whole_file && piece.len() >= 4096 {
            Hint::Store
        } else {
            Hint::Compress
        };
    }
    // Larger: a level-1 trial on three 8 KiB samples.
    const SAMPLE: usize = 8 << 10;
    let step = (piece.len() - SAMPLE) / 2;
    let mut inb = 0;
    let mut outb = 0;
    for i in 0..3 {
        let s = &piece[i * step..i * step + SAMPLE];
        let Ok(out) = deflate_chunk(s, 1, true) else {
            return Hint::Compress;
        };
        inb += s.len();
        outb += out.len();
    }
    if outb * 100 >= inb * 95 {
        Hint::Store
    } else {
        Hint::Compress
    }
}

/// The tar stream going into the gzip writer, with the position kept for
/// padding.
struct TarOut<W: Write + Send + 'static> {
    gz: ParGzWriter<W>,
    pos: u64,
}

impl<W: Write + Send + 'static> TarOut<W> {
    fn put(&mut self, data: &[u8], hint: Hint) -> io::Result<()> {
        self.gz.write_hinted(data, hint)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (BLOCK - self.pos % BLOCK) % BLOCK;
        if rem > 0 {
            self.put(&[0u8; 512][..rem as usize], Hint::Compress)?;
        }
        Ok(())
    }

    fn header(&mut self, h: &tar::Header) -> io::Result<()> {
        self.put(h.as_bytes(), Hint::Compress)
    }
}

/// Writes a tree as a tar.gz archive and its index.
pub struct Archiver<W: Write + Send + 'static, I: Write> {
    out: TarOut<W>,
    index: IndexWriter<I>,
    root: PathBuf,
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    /// Inodes whose first name is stored in this archive (an increment):
    /// their other names must be stored too, as links to it.
    stored_inodes: HashSet<(u64, u64)>,
    counts: ArchiveCounts,
    buf: Vec<u8>,
    warn: Box<dyn FnMut(ArchiveWarning) + Send>,
    baseline: Option<Baseline>,
    walk_started: Option<std::time::SystemTime>,
}

/// A pax record `LEN KEY=VALUE\n` (LEN counts itself).
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// `SECONDS.NANOSECONDS` for pax `mtime` (negative times too).
fn pax_time(secs: i64, nsec: i64) -> String {
    let total = i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    let sign = if total < 0 { "-" } else { "" };
    let abs = total.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

/// A GNU header block with the raw `name` (its first 100 bytes).
fn gnu_header(
    name: &[u8],
    kind: tar::EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name[..n]);
    }
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(mtime.max(0) as u64);
    h.set_size(size);
    h
}

/// Octal field `[u8; 12]` as GNU tar writes sparse maps.
fn octal12(field: &mut [u8; 12], v: u64) {
    let s = format!("{v:011o}");
    if s.len() <= 11 {
        field[..11].copy_from_slice(s.as_bytes());
        field[11] = 0;
    } else {
        // Base-256 for values too large for 11 octal digits.
        field[0] = 0x80;
        field[1..4].fill(0);
        field[4..].copy_from_slice(&v.to_be_bytes());
    }
}

/// Data segments `(offset, len)` of a file with holes, or `None` when it
/// has none (or the filesystem cannot tell).
fn data_segments(f: &File, size: u64) -> Option<Vec<(u64, u64)>> {
    use nix::unistd::{Whence, lseek};
    let mut segs = Vec::new();
    let mut off: i64 = 0;
    let size = size as i64;
    while off < size {
        let data = match lseek(f, off, Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole left
            Err(_) => return None,
        };
        let hole = lseek(f, data, Whence::SeekHole).ok()?.min(size);
        if hole > data {
            segs.push((data as u64, (hole - data) as u64));
        }
        off = hole;
    }
    let stored: u64 = segs.iter().map(|s| s.1).sum();
    (stored < size as u64).then_some(segs)
}

impl<W: Write + Send + 'static, I: Write> Archiver<W, I> {
    /// An archiver of the tree at `root` into `out` (gzipped with `gz`) and
    /// its index into `index`. `warn` hears every warning as it happens.
    pub fn new(
        root: &Path,
        out: W,
        index: I,
        gz: GzOptions,
        warn: Box<dyn FnMut(ArchiveWarning) + Send>,
    ) -> Archiver<W, I> {
        Archiver {
            out: TarOut {
                gz: ParGzWriter::new(out, gz),
                pos: 0,
            },
            index: IndexWriter::new(index),
            root: root.to_path_buf(),
            hardlinks: HashMap::new(),
            stored_inodes: HashSet::new(),
            counts: ArchiveCounts::default(),
            buf: vec![0u8; PIECE],
            warn,
            baseline: None,
            walk_started: None,
        }
    }

    /// Make an incremental archive: only what differs from `baseline` is
    /// stored (directories always), and the complete listing and the
    /// deleted paths are written beside it.
    pub fn with_baseline(mut self, baseline: Baseline) -> Self {
        self.baseline = Some(baseline);
        self
    }

    fn warning(&mut self, rel: &[u8], message: String) {
        (self.warn)(ArchiveWarning {
            path: RawName::from_bytes(rel),
            message,
        });
    }

    /// Archive the whole tree, then finish: end-of-archive blocks, gzip
    /// trailer, index. Returns the archive writer, the index writer and
    /// what was archived.
    pub fn archive_all(mut self) -> Result<(W, I, ArchiveStats)> {
        let root = self.root.clone();
        self.walk_started = Some(std::time::SystemTime::now());
        let meta = std::fs::metadata(&root)
            .with_context(|| format!("cannot read '{}'", root.display()))?;
        anyhow::ensure!(meta.is_dir(), "'{}' is not a directory", root.display());
        let (xattrs, skipped) = xattrs_of(&root);
        if skipped > 0 {
            self.warning(b".", skipped_xattrs_warning(skipped));
        }
        self.entry(b".", &root, &meta, Some(xattrs))?;
        let read = match &self.baseline {
            Some(b) if !b.checksum => b
                .xattrs_unchanged_before
                .map_or(XattrRead::All, XattrRead::ChangedSince),
            _ => XattrRead::All,
        };
        let walk = Walk::spawn(&root, read).context("cannot start a thread")?;
        for step in walk {
            match step? {
                Step::Entry(f) => {
                    if f.xattrs_skipped > 0 {
                        self.warning(&f.rel, skipped_xattrs_warning(f.xattrs_skipped));
                    }
                    self.entry(&f.rel, &f.full, &f.meta, f.xattrs)?
                }
                Step::Warning(rel, message) => self.warning(&rel, message),
            }
        }
        self.finish()
    }

    /// Archive one entry (not its children).
    ///
    /// `xattrs` are the entry's extended attributes, or none when the walk
    /// left them unread because its inode did not change since the
    /// baseline's listing was made: then the listing's are used to compare
    /// and, if the entry is stored after all, they are read.
    fn entry(
        &mut self,
        rel: &[u8],
        full: &Path,
        meta: &Metadata,
        xattrs: Option<Xattrs>,
    ) -> Result<()> {
        let ft = meta.file_type();
        if ft.is_socket() {
            self.counts.sockets_skipped += 1;
            self.warning(
                rel,
                "is a socket: skipped (sockets cannot be archived; the program recreates it)"
                    .into(),
            );
            return Ok(());
        }
        let mut ie = IndexEntry {
            path: RawName::from_bytes(rel),
            kind: EntryKind::File,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: 0,
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            sha256: None,
            target: None,
            link: None,
            rdev: None,
            xattrs: Default::default(),
            sparse: false,
            changed: false,
        };
        if let Some(x) = &xattrs {
            ie.xattrs = x.iter().map(|(k, v)| (k.clone(), hex(v))).collect();
        }
        // What it is, before anything is written (an increment decides from it).
        let inode = (meta.dev(), meta.ino());
        let first_name = (ft.is_file() && meta.nlink() > 1)
            .then(|| self.hardlinks.get(&inode).cloned())
            .flatten();
        let mut link_bytes = None;
        let mut dev = None;
        if ft.is_dir() {
            ie.kind = EntryKind::Dir;
        } else if ft.is_symlink() {
            ie.kind = EntryKind::Symlink;
            let target = std::fs::read_link(full)
                .with_context(|| format!("cannot read symlink '{}'", full.display()))?;
            let t = target.as_os_str().as_bytes().to_vec();
            ie.target = Some(RawName::from_bytes(&t));
            link_bytes = Some(t);
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            ie.kind = if ft.is_fifo() {
                EntryKind::Fifo
            } else if ft.is_char_device() {
                EntryKind::Char
            } else {
                EntryKind::Block
            };
            let rdev = meta.rdev();
            let d = (
                nix::sys::stat::major(rdev) as u32,
                nix::sys::stat::minor(rdev) as u32,
            );
            dev = Some(d);
            if ie.kind != EntryKind::Fifo {
                ie.rdev = Some(d);
            }
        } else if let Some(first) = &first_name {
            ie.kind = EntryKind::Hardlink;
            ie.link = Some(RawName::from_bytes(first));
        } else {
            ie.size = meta.len();
        }

        let mut prev = None;
        // Where its line is in the previous listing, when that line stays.
        let mut listed_from = None;
        // Extracting the first name of an inode makes a new file: a name
        // linked to it must be stored again, or it keeps the old file.
        let first_stored = ie.kind == EntryKind::Hardlink && self.stored_inodes.contains(&inode);
        if let Some(b) = self.baseline.as_mut()
            && let Some((p, from)) = b.matching(rel)?
        {
            if p.kind != ie.kind {
                // A type change: the old one goes first, then the new is stored.
                b.delete(rel, p.kind == EntryKind::Dir)?;
            } else if ie.kind == EntryKind::Dir {
                // Stored in every archive; listed as before when it is the same.
                if same_entry(&p, &ie) {
                    listed_from = from;
                }
            } else if !first_stored {
                if xattrs.is_none() {
                    // Its inode did not change since the listing was made.
                    ie.xattrs = p.xattrs.clone();
                }
                let same_content = || {
                    !b.checksum
                        || ie.kind != EntryKind::File
                        || crate::gzip::sha256_file(full).ok() == p.sha256
                };
                if same_entry(&p, &ie) && same_content() {
                    ie.sha256 = p.sha256.clone();
                    ie.sparse = p.sparse;
                    if ie.kind == EntryKind::File && meta.nlink() > 1 {
                        self.hardlinks.insert(inode, rel.to_vec());
                    }
                    b.counts.unchanged += 1;
                    return b.list(ie, from);
                }
            }
            prev = Some(p);
        }

        // Stored: its own extended attributes, never the listing's.
        let xattrs = match xattrs {
            Some(x) => x,
            None => {
                let (x, skipped) = xattrs_of(full);
                if skipped > 0 {
                    self.warning(rel, skipped_xattrs_warning(skipped));
                }
                ie.xattrs = x.iter().map(|(k, v)| (k.clone(), hex(v))).collect();
                x
            }
        };
        let name = archive_name(rel, ft.is_dir());
        let mut pax = Vec::new();
        if meta.mtime_nsec() != 0 || meta.mtime() < 0 {
            pax_record(
                &mut pax,
                "mtime",
                pax_time(meta.mtime(), meta.mtime_nsec()).as_bytes(),
            );
        }
        for (k, v) in &xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
        }
        let owner = (ie.mode, ie.uid, ie.gid, meta.mtime());
        match ie.kind {
            EntryKind::Dir => {
                self.counts.dirs += 1;
                self.write_entry(&name, tar::EntryType::Directory, &pax, None, owner, 0, None)?;
            }
            EntryKind::Symlink => {
                self.counts.symlinks += 1;
                self.write_entry(
                    &name,
                    tar::EntryType::Symlink,
                    &pax,
                    link_bytes.as_deref(),
                    owner,
                    0,
                    None,
                )?;
            }
            EntryKind::Fifo | EntryKind::Char | EntryKind::Block => {
                let ty = match ie.kind {
                    EntryKind::Fifo => tar::EntryType::Fifo,
                    EntryKind::Char => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                };
                self.counts.specials += 1;
                self.write_entry(&name, ty, &pax, None, owner, 0, dev)?;
            }
            EntryKind::Hardlink => {
                let first = first_name.clone().unwrap_or_default();
                self.counts.hardlinks += 1;
                let link_name = archive_name(&first, false);
                self.write_entry(
                    &name,
                    tar::EntryType::Link,
                    &pax,
                    Some(&link_name),
                    owner,
                    0,
                    None,
                )?;
            }
            EntryKind::File => {
                match self.file(rel, &name, full, meta, &pax, &mut ie) {
                    Err(e) if e.is::<SkipEntry>() => {
                        // Left out: a restore must not keep an older copy.
                        if let (Some(b), Some(p)) = (self.baseline.as_mut(), &prev) {
                            b.delete(rel, p.kind == EntryKind::Dir)?;
                        }
                        return Ok(());
                    }
                    r => r?,
                }
                if meta.nlink() > 1 {
                    self.hardlinks.insert(inode, rel.to_vec());
                    self.stored_inodes.insert(inode);
                }
            }
        }
        self.counts.entries += 1;
        self.index.push(&ie).context("cannot write the index")?;
        if let Some(b) = self.baseline.as_mut() {
            if ie.kind == EntryKind::Dir {
                b.counts.dirs += 1;
            } else if prev.is_some() {
                b.counts.changed += 1;
            } else {
                b.counts.added += 1;
            }
            b.list(ie, listed_from)?;
        }
        Ok(())
    }

    /// Header records (pax, long name, long link) and the header itself.
    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &mut self,
        name: &[u8],
        ty: tar::EntryType,
        pax: &[u8],
        link: Option<&[u8]>,
        (mode, uid, gid, mtime): (u32, u32, u32, i64),
        size: u64,
        dev: Option<(u32, u32)>,
    ) -> io::Result<()> {
        if !pax.is_empty() {
            let mut pname = b"./PaxHeaders/".to_vec();
            let base = name
                .rsplit(|b| *b == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"x");
            pname.extend_from_slice(&base[..base.len().min(80)]);
            let h = gnu_header(
                &pname,
                tar::EntryType::XHeader,
                0o644,
                0,
                0,
                mtime,
                pax.len() as u64,
            );
            self.finish_header(h)?;
            self.out.put(pax, Hint::Compress)?;
            self.out.pad()?;
        }
        if name.len() > 100 {
            self.long_record(b'L', name)?;
        }
        let mut h = gnu_header(name, ty, mode, uid, gid, mtime, size);
        if let Some(l) = link {
            if l.len() > 100 {
                self.long_record(b'K', l)?;
            }
            let n = l.len().min(100);
            h.as_old_mut().linkname[..n].copy_from_slice(&l[..n]);
        }
        if let Some((maj, min)) = dev {
            h.set_device_major(maj)?;
            h.set_device_minor(min)?;
        }
        self.finish_header(h)
    }

    fn finish_header(&mut self, mut h: tar::Header) -> io::Result<()> {
        h.set_cksum();
        self.out.header(&h)
    }

    /// A GNU `././@LongLink` record of type `L` (name) or `K` (link).
    fn long_record(&mut self, ty: u8, value: &[u8]) -> io::Result<()> {
        let mut data = value.to_vec();
        data.push(0);
        let h = gnu_header(
            b"././@LongLink",
            tar::EntryType::new(ty),
            0o644,
            0,
            0,
            0,
            data.len() as u64,
        );
        self.finish_header(h)?;
        self.out.put(&data, Hint::Compress)?;
        self.out.pad()
    }

    /// A regular file: plain or sparse, with its data.
    fn file(
        &mut self,
        rel: &[u8],
        name: &[u8],
        full: &Path,
        meta: &Metadata,
        pax: &[u8],
        ie: &mut IndexEntry,
    ) -> Result<()> {
        // O_NONBLOCK: if the name turned into a FIFO since lstat, do not hang.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOATIME)
            .open(full)
            .or_else(|_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                    .open(full)
            });
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if out_of_resources(&e) => {
                // Not about the file: leaving it out would record it as
                // deleted in an increment.
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot open '{}'; the run stops rather than leave it out",
                    full.display()
                )));
            }
            Err(e) => {
                self.warning(rel, format!("cannot open: {e}; not in the archive"));
                return Err(anyhow::Error::new(SkipEntry));
            }
        };
        let fmeta = f
            .metadata()
            .with_context(|| format!("cannot read '{}'", full.display()))?;
        if !fmeta.is_file() || fmeta.ino() != meta.ino() {
            self.warning(
                rel,
                "was replaced while the archive was made; not in the archive".into(),
            );
            return Err(anyhow::Error::new(SkipEntry));
        }
        let size = fmeta.len();
        // The header's mtime is the one seen by lstat (the pax record
        // already written from it); a change after that shows up below.
        let mode = (ie.mode, ie.uid, ie.gid, meta.mtime());
        let sparse = if fmeta.blocks() * 512 < size {
            data_segments(&f, size)
        } else {
            None
        };
        let is_sparse = sparse.is_some();
        let mut sha = Sha256::new();
        let mut short = false;
        match sparse {
            None => {
                self.write_entry(name, tar::EntryType::Regular, pax, None, mode, size, None)?;
                let mut left = size;
                let mut hint = Hint::Compress;
                let mut first = true;
                while left > 0 {
                    let want = left.min(PIECE as u64) as usize;
                    let got = read_full(&mut f, &mut self.buf[..want])
                        .with_context(|| format!("cannot read '{}'", full.display()))?;
                    if got < want {
                        // Shrank: keep the entry consistent with zeros.
                        self.buf[got..want].fill(0);
                        short = true;
                    }
                    let piece = &self.buf[..want];
                    sha.update(piece);
                    // A short last piece keeps the verdict of the pieces before.
                    if first || piece.len() >= 64 << 10 {
                        hint = content_hint(piece, size as usize == want);
                    }
                    first = false;
                    self.out.put(piece, hint)?;
                    left -= want as u64;
                    if short {
                        let zeros = vec![0u8; PIECE.min(left as usize)];
                        while left > 0 {
                            let n = left.min(zeros.len() as u64) as usize;
                            sha.update(&zeros[..n]);
                            self.out.put(&zeros[..n], Hint::Compress)?;
                            left -= n as u64;
                        }
                    }
                }
                self.out.pad()?;
            }
            Some(segs) => {
                self.sparse_file(name, &mut f, full, size, &segs, pax, mode, &mut sha)?;
                ie.sparse = true;
                self.counts.sparse_files += 1;
            }
        }
        // Did it change while we read it?
        let mut probe = [0u8; 1];
        let grew = !short && !is_sparse && matches!(f.read(&mut probe), Ok(1));
        let after = f.metadata().ok();
        let changed_meta = after.as_ref().is_some_and(|a| {
            a.len() != size
                || a.len() != meta.len()
                || a.mtime() != meta.mtime()
                || a.mtime_nsec() != meta.mtime_nsec()
        });
        if short || grew || changed_meta {
            ie.changed = true;
            let what = if short {
                "shrank while it was read (the rest is stored as zeros)"
            } else if grew {
                "grew while it was read (only the first bytes are stored)"
            } else {
                "changed while it was read"
            };
            self.warning(
                rel,
                format!("{what}; the archive entry is consistent, the content may be mixed"),
            );
        }
        ie.kind = EntryKind::File;
        ie.size = size;
        ie.sha256 = Some(hex(&sha.finalize()));
        self.counts.files += 1;
        self.counts.file_bytes += size;
        Ok(())
    }

    /// A GNU sparse entry: map in the header (4 slots) and extension blocks
    /// (21 each), then the data segments.
    #[allow(clippy::too_many_arguments)]
    fn sparse_file(
        &mut self,
        name: &[u8],
        f: &mut File,
        full: &Path,
        size: u64,
        segs: &[(u64, u64)],
        pax: &[u8],
        mode: (u32, u32, u32, i64),
        sha: &mut Sha256,
    ) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let mut map: Vec<(u64, u64)> = segs.to_vec();
        // The map must reach the end of the file (tar readers check it).
        if map.last().map(|(o, l)| o + l).unwrap_or(0) < size {
            map.push((size, 0));
        }
        let stored: u64 = segs.iter().map(|s| s.1).sum();
        if !pax.is_empty() {
            let mut pname = b"./PaxHeaders/".to_vec();
            let base = name
                .rsplit(|b| *b == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"x");
            pname.extend_from_slice(&base[..base.len().min(80)]);
            let h = gnu_header(
                &pname,
                tar::EntryType::XHeader,
                0o644,
                0,
                0,
                mode.3,
                pax.len() as u64,
            );
            self.finish_header(h)?;
            self.out.put(pax, Hint::Compress)?;
            self.out.pad()?;
        }
        if name.len() > 100 {
            self.long_record(b'L', name)?;
        }
        let mut h = gnu_header(
            name,
            tar::EntryType::GNUSparse,
            mode.0,
            mode.1,
            mode.2,
            mode.3,
            stored,
        );
        {
            let gnu = h.as_gnu_mut().context("GNU header expected")?;
            for (slot, (o, l)) in gnu.sparse.iter_mut().zip(map.iter()) {
                octal12(&mut slot.offset, *o);
                octal12(&mut slot.numbytes, *l);
            }
            octal12(&mut gnu.realsize, size);
            gnu.isextended[0] = u8::from(map.len() > 4);
        }
        self.finish_header(h)?;
        let rest: Vec<(u64, u64)> = map.iter().skip(4).copied().collect();
        for (i, group) in rest.chunks(21).enumerate() {
            let mut ext = [0u8; 512];
            for (j, (o, l)) in group.iter().enumerate() {
                let mut off = [0u8; 12];
                let mut len = [0u8; 12];
                octal12(&mut off, *o);
                octal12(&mut len, *l);
                ext[j * 24..j * 24 + 12].copy_from_slice(&off);
                ext[j * 24 + 12..j * 24 + 24].copy_from_slice(&len);
            }
            ext[504] = u8::from((i + 1) * 21 < rest.len());
            self.out.put(&ext, Hint::Compress)?;
        }
        // Data of each segment; holes hashed as zeros for the logical sha256.
        let zeros = vec![0u8; PIECE];
        let mut at = 0u64;
        for &(off, len) in segs {
            let mut hole = off - at;
            while hole > 0 {
                let n = hole.min(PIECE as u64) as usize;
                sha.update(&zeros[..n]);
                hole -= n as u64;
            }
            let mut done = 0u64;
            while done < len {
                let want = (len - done).min(PIECE as u64) as usize;
                let got = f
                    .read_at(&mut self.buf[..want], off + done)
                    .with_context(|| format!("cannot read '{}'", full.display()))?;
                if got < want {
                    self.buf[got..want].fill(0);
                }
                let piece = &self.buf[..want];
                sha.update(piece);
                self.out.put(piece, content_hint(piece, false))?;
                done += want as u64;
            }
            at = off + len;
        }
        let mut tail = size - at;
        while tail > 0 {
            let n = tail.min(PIECE as u64) as usize;
            sha.update(&zeros[..n]);
            tail -= n as u64;
        }
        self.out.pad()?;
        Ok(())
    }

    /// End-of-archive blocks, gzip trailer, index.
    fn finish(mut self) -> Result<(W, I, ArchiveStats)> {
        self.out.put(&[0u8; 1024], Hint::Compress)?;
        let tar_bytes = self.out.pos;
        let (w, gz) = self.out.gz.finish()?;
        let index = self.index.finish().context("cannot write the index")?;
        let (changes, listing) = match self.baseline.map(Baseline::finish).transpose()? {
            Some((c, l)) => (Some(c), Some(l)),
            None => (None, None),
        };
        Ok((
            w,
            index,
            ArchiveStats {
                counts: self.counts,
                gz,
                tar_bytes,
                changes,
                listing,
                walk_started: self.walk_started.unwrap_or_else(std::time::SystemTime::now),
            },
        ))
    }
}

/// Not an error: an entry that could not be read and was left out (a
/// warning says so).
#[derive(Debug)]
struct SkipEntry;

impl std::fmt::Display for SkipEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("entry skipped")
    }
}

impl std::error::Error for SkipEntry {}

/// `./` + name, `/` after directories; the root is `./`.
fn archive_name(rel: &[u8], dir: bool) -> Vec<u8> {
    if rel == b"." {
        return b"./".to_vec();
    }
    let mut n = b"./".to_vec();
    n.extend_from_slice(rel);
    if dir {
        n.push(b'/');
    }
    n
}

/// Read until `buf` is full or EOF; returns the bytes read.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What a good archive holds.
#[derive(Debug, Clone)]
pub struct ArchiveCheck {
    /// Entries in the archive.
    pub entries: u64,
    /// Bytes of file contents.
    pub file_bytes: u64,
    /// What decompression found.
    pub gz: crate::gzip::Inflated,
    /// Whether an index was compared.
    pub indexed: bool,
}

/// The normalised relative name of an archive member: `./a/b/` -> `a/b`,
/// `./` -> `.`.
pub fn member_name(raw: &[u8]) -> Vec<u8> {
    let mut n = raw;
    while let Some(rest) = n.strip_prefix(b"./") {
        n = rest;
    }
    while let Some(rest) = n.strip_suffix(b"/") {
        n = rest;
    }
    if n.is_empty() || n == b"." {
        b".".to_vec()
    } else {
        n.to_vec()
    }
}

/// Parse pax `mtime` (`SECONDS[.FRACTION]`) into nanoseconds.
pub fn parse_pax_time(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let ns = secs
        .checked_mul(1_000_000_000)?
        .checked_add(digits.parse::<i64>().ok()?)?;
    Some(if neg { -ns } else { ns })
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Check a volume archive completely: it decompresses (CRC-32, length,
/// nothing after it), the tar stream is well formed and ends with its
/// end-of-archive blocks, every entry's data reads, and, with an index,
/// every entry matches it (name, type, mode, owner, mtime, link target,
/// device, extended attributes, size and sha256 of the contents) with
/// nothing missing or extra. The error is the verdict and the reason.
pub fn verify_archive(
    path: &Path,
    chunks: Option<Vec<crate::gzip::Chunk>>,
    index: Option<&Path>,
) -> std::result::Result<ArchiveCheck, (crate::verify::Verdict, String)> {
    use crate::verify::Verdict;
    let damaged = |s: String| (Verdict::Damaged, s);
    let gz_problem = |p: crate::gzip::GzProblem| match p {
        crate::gzip::GzProblem::Unreadable(e) => {
            (Verdict::Unreadable, format!("cannot read the file: {e}"))
        }
        other => (Verdict::Damaged, other.to_string()),
    };
    let mut idx = match index {
        Some(p) => Some(crate::index::IndexReader::open(p).map_err(|e| damaged(format!("{e:#}")))?),
        None => None,
    };
    let reader = crate::gzip::InflateReader::open(path, chunks, crate::gzip::default_threads());
    let mut counting = Counting {
        inner: reader,
        n: 0,
    };
    // Parse; on any tar-level problem, the gzip verdict (truncation,
    // corruption) is the real reason when there is one.
    let parsed = parse_members(&mut counting, idx.as_mut());
    let mut rest_nonzero = 0u64;
    if parsed.is_ok() {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match counting.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => rest_nonzero += buf[..n].iter().filter(|b| **b != 0).count() as u64,
                Err(_) => break,
            }
        }
    }
    let tar_bytes = counting.n;
    let gz = counting.inner.finish().map_err(gz_problem)?;
    let (entries, file_bytes) = parsed.map_err(damaged)?;
    if rest_nonzero > 0 {
        return Err(damaged(format!(
            "{rest_nonzero} bytes of data after the end of the tar archive"
        )));
    }
    if tar_bytes < 1024 || tar_bytes % 512 != 0 {
        return Err(damaged(
            "the tar stream does not end with its end-of-archive blocks".into(),
        ));
    }
    if let Some(mut idx) = idx
        && let Some(extra) = idx.next()
    {
        let what = extra
            .map(|e| e.path.display())
            .unwrap_or_else(|e| format!("{e:#}"));
        return Err(damaged(format!(
            "the index lists '{what}', which is not in the archive"
        )));
    }
    Ok(ArchiveCheck {
        entries,
        file_bytes,
        gz,
        indexed: index.is_some(),
    })
}

/// One archive member's metadata, as a restore or a check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name as stored (`./a/b/`), raw bytes.
    pub raw_name: Vec<u8>,
    /// The normalised relative name (`a/b`, `.` for the root).
    pub name: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// The 12 mode bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time in nanoseconds (pax `mtime`, else the header's seconds).
    pub mtime_ns: i64,
    /// Extended attributes (`SCHILY.xattr.*`), raw values.
    pub xattrs: std::collections::BTreeMap<String, Vec<u8>>,
    /// Symlink target or hard-link source, raw.
    pub link: Option<Vec<u8>>,
    /// Device numbers (char and block devices).
    pub rdev: Option<(u32, u32)>,
    /// Bytes of content (files).
    pub size: u64,
    /// Stored as a GNU sparse file.
    pub sparse: bool,
}

impl Member {
    /// Shown in messages: UTF-8 as is, other bytes as `\xNN`.
    pub fn shown(&self) -> String {
        crate::record::display_bytes(&self.name)
    }

    /// The member's extended attributes as the index writes them (hex).
    pub fn xattrs_hex(&self) -> std::collections::BTreeMap<String, String> {
        self.xattrs
            .iter()
            .map(|(k, v)| (k.clone(), hex(v)))
            .collect()
    }
}

/// What kind of tar member this is, when it is one a volume archive holds.
/// `Err` carries the type byte of any other (pax globals, volume labels,
/// multi-volume continuations…).
pub fn member_kind(ty: tar::EntryType) -> std::result::Result<EntryKind, u8> {
    Ok(match ty {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File
        }
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => EntryKind::Hardlink,
        tar::EntryType::Fifo => EntryKind::Fifo,
        tar::EntryType::Char => EntryKind::Char,
        tar::EntryType::Block => EntryKind::Block,
        other => return Err(other.as_byte()),
    })
}

/// Read a member's metadata (not its data). The error is the reason in
/// plain words.
pub fn read_member<R: Read>(m: &mut tar::Entry<'_, R>) -> std::result::Result<Member, String> {
    let raw_name = m.path_bytes().into_owned();
    let name = member_name(&raw_name);
    let shown = crate::record::display_bytes(&name);
    let ty = m.header().entry_type();
    let kind = member_kind(ty).map_err(|b| {
        format!(
            "'{shown}' has an unexpected entry type '{}'",
            (b as char).escape_default()
        )
    })?;
    let mut pax_mtime = None;
    let mut xattrs = std::collections::BTreeMap::new();
    if let Ok(Some(exts)) = m.pax_extensions() {
        for ext in exts.flatten() {
            let Ok(key) = ext.key() else { continue };
            if key == "mtime" {
                pax_mtime = ext.value().ok().and_then(parse_pax_time);
            } else if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.insert(x.to_string(), ext.value_bytes().to_vec());
            }
        }
    }
    let h = m.header();
    let mode = h.mode().map_err(|e| format!("'{shown}': bad mode: {e}"))? & 0o7777;
    let uid = u32::try_from(h.uid().map_err(|e| format!("'{shown}': bad uid: {e}"))?)
        .map_err(|_| format!("'{shown}': uid out of range"))?;
    let gid = u32::try_from(h.gid().map_err(|e| format!("'{shown}': bad gid: {e}"))?)
        .map_err(|_| format!("'{shown}': gid out of range"))?;
    let mtime_ns =
        pax_mtime.unwrap_or_else(|| (h.mtime().unwrap_or(0) as i64).saturating_mul(1_000_000_000));
    let rdev = match kind {
        EntryKind::Char | EntryKind::Block => Some((
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        )),
        _ => None,
    };
    let sparse = ty == tar::EntryType::GNUSparse;
    let link = m.link_name_bytes().map(|l| l.into_owned());
    Ok(Member {
        raw_name,
        name,
        kind,
        mode,
        uid,
        gid,
        mtime_ns,
        xattrs,
        link,
        rdev,
        size: m.size(),
        sparse,
    })
}

/// How `m` (with content hash `sha`, for files) differs from its index
/// entry `want`; empty when it matches.
pub fn index_diffs(m: &Member, sha: Option<&String>, want: &IndexEntry) -> Vec<String> {
    let kind = m.kind;
    let mut diffs = Vec::new();
    if want.kind != kind {
        diffs.push(format!(
            "type {} (index: {})",
            kind.as_str(),
            want.kind.as_str()
        ));
    }
    if want.mode != m.mode || want.uid != m.uid || want.gid != m.gid {
        diffs.push(format!(
            "mode/owner {:o} {}:{} (index: {:o} {}:{})",
            m.mode, m.uid, m.gid, want.mode, want.uid, want.gid
        ));
    }
    if want.mtime_ns != m.mtime_ns {
        diffs.push(format!("mtime {} (index: {})", m.mtime_ns, want.mtime_ns));
    }
    if kind == EntryKind::File && (want.size != m.size || want.sha256.as_ref() != sha) {
        diffs.push("contents differ from the index (size or sha256)".into());
    }
    let want_link = match kind {
        EntryKind::Symlink => want.target.as_ref().map(|t| t.to_bytes()),
        EntryKind::Hardlink => want
            .link
            .as_ref()
            .map(|l| archive_name(&l.to_bytes(), false)),
        _ => None,
    };
    if matches!(kind, EntryKind::Symlink | EntryKind::Hardlink) && m.link != want_link {
        diffs.push("link target differs from the index".into());
    }
    if want.rdev != m.rdev {
        diffs.push("device numbers differ from the index".into());
    }
    if want.xattrs != m.xattrs_hex() {
        diffs.push("extended attributes differ from the index".into());
    }
    diffs
}

/// The next index entry, which must be `m`'s; the error says how not.
pub fn next_index_entry(
    idx: &mut crate::index::IndexReader,
    m: &Member,
) -> std::result::Result<IndexEntry, String> {
    let want = match idx.next() {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(format!("{e:#}")),
        None => {
            return Err(format!(
                "'{}' is in the archive but not in the index",
                m.shown()
            ));
        }
    };
    if want.path.to_bytes() != m.name {
        return Err(format!(
            "the archive has '{}' where the index has '{}'",
            m.shown(),
            want.path.display()
        ));
    }
    Ok(want)
}

/// Read every member; compare with the index when given. Returns
/// (entries, file bytes) or the reason for damage.
fn parse_members(
    r: &mut dyn Read,
    mut idx: Option<&mut crate::index::IndexReader>,
) -> std::result::Result<(u64, u64), String> {
    let mut ar = tar::Archive::new(r);
    let members = ar
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    let mut entries = 0u64;
    let mut file_bytes = 0u64;
    let mut last = String::from("(the start)");
    let mut buf = vec![0u8; 256 << 10];
    for m in members {
        if crate::signals::received().is_some() {
            return Err("interrupted".into());
        }
        let mut m = m.map_err(|e| format!("the tar stream is damaged after '{last}': {e}"))?;
        let meta = read_member(&mut m)?;
        let shown = meta.shown();
        let mut sha = None;
        if meta.kind == EntryKind::File {
            let mut hasher = Sha256::new();
            let mut got = 0u64;
            loop {
                let n = m
                    .read(&mut buf)
                    .map_err(|e| format!("cannot read the data of '{shown}': {e}"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                got += n as u64;
            }
            if got != meta.size {
                return Err(format!(
                    "'{shown}' holds {got} bytes, its header says {}",
                    meta.size
                ));
            }
            file_bytes += meta.size;
            sha = Some(hex(&hasher.finalize()));
        }
        entries += 1;
        if let Some(idx) = idx.as_deref_mut() {
            let want = next_index_entry(idx, &meta)?;
            let diffs = index_diffs(&meta, sha.as_ref(), &want);
            if !diffs.is_empty() {
                return Err(format!(
                    "'{shown}' does not match the index: {}",
                    diffs.join("; ")
                ));
            }
        }
        last = shown;
    }
    Ok((entries, file_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn archive(root: &Path, dir: &Path) -> (PathBuf, PathBuf, ArchiveStats, Vec<ArchiveWarning>) {
        let a = dir.join("a.tar.gz");
        let i = dir.join("a.index.jsonl.gz");
        let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let w2 = warnings.clone();
        let arch = Archiver::new(
            root,
            File::create(&a).unwrap(),
            File::create(&i).unwrap(),
            GzOptions {
                level: 5,
                threads: 2,
                adaptive: false,
            },
            Box::new(move |w| w2.lock().unwrap().push(w)),
        );
        let (_, _, stats) = arch.archive_all().unwrap();
        let w = warnings.lock().unwrap().clone();
        (a, i, stats, w)
    }

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("a.txt"), "hello\n".repeat(1000)).unwrap();
        std::fs::write(root.join("sub/empty"), b"").unwrap();
        let mut jpeg = b"\xff\xd8\xff\xe0".to_vec();
        let mut x = 1u32;
        while jpeg.len() < 300_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            jpeg.push((x >> 16) as u8);
        }
        std::fs::write(root.join("sub/photo.jpg"), &jpeg).unwrap();
        std::os::unix::fs::symlink("../a.txt", root.join("sub/link")).unwrap();
        std::fs::hard_link(root.join("a.txt"), root.join("sub/deeper/hard")).unwrap();
        let long = "n".repeat(150);
        std::fs::write(root.join(&long), b"long name").unwrap();
        std::fs::write(
            root.join(std::ffi::OsStr::from_bytes(b"caf\xe9")),
            b"latin1",
        )
        .unwrap();
        std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        let f = File::create(root.join("sparse")).unwrap();
        f.set_len(50 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_at(b"middle", 20 << 20).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o750)).unwrap();
    }

    #[test]
    fn an_archive_verifies_against_its_index_and_gnu_tar_reads_it() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        tree(&root);
        let (a, i, stats, warnings) = archive(&root, d.path());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("socket"));
        assert_eq!(stats.counts.hardlinks, 1);
        assert_eq!(stats.counts.sparse_files, 1);
        assert!(
            stats.gz.stored_chunks >= 1,
            "the JPEG was stored: {:?}",
            stats.gz.chunks
        );
        let check = verify_archive(&a, Some(stats.gz.chunks.clone()), Some(&i)).unwrap();
        assert_eq!(check.entries, stats.counts.entries);
        // GNU tar lists and extracts it.
        let out = std::process::Command::new("tar")
            .arg("-tzf")
            .arg(&a)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.starts_with("./\n"), "{listing}");
        assert!(listing.contains(&format!("./{}", "n".repeat(150))));
        let x = d.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let st = std::process::Command::new("tar")
            .args(["-xzpf"])
            .arg(&a)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            std::fs::read(x.join("sub/photo.jpg")).unwrap(),
            std::fs::read(root.join("sub/photo.jpg")).unwrap()
        );
        assert_eq!(
            std::fs::read(x.join("sparse")).unwrap(),
            std::fs::read(root.join("sparse")).unwrap()
        );
        assert_eq!(
            std::fs::read_link(x.join("sub/link")).unwrap(),
            Path::new("../a.txt")
        );
        assert_eq!(
            std::fs::metadata(x.join("a.txt")).unwrap().ino(),
            std::fs::metadata(x.join("sub/deeper/hard")).unwrap().ino()
        );
        assert_eq!(
            std::fs::metadata(x.join("a.txt")).unwrap().mode() & 0o7777,
            0o4755
        );
        assert_eq!(
            std::fs::metadata(&x).unwrap().mode() & 0o7777,
            0o750,
            "the root's own mode"
        );
        assert!(
            std::fs::metadata(x.join("sparse")).unwrap().blocks() < 1000,
            "holes stay holes"
        );
        assert_eq!(
            std::fs::metadata(x.join("a.txt")).unwrap().mtime_nsec(),
            std::fs::metadata(root.join("a.txt")).unwrap().mtime_nsec()
        );
    }

    #[test]
    fn damage_and_index_mismatch_are_found() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        tree(&root);
        let (a, i, stats, _) = archive(&root, d.path());
        let bytes = std::fs::read(&a).unwrap();
        std::fs::write(&a, &bytes[..bytes.len() - 100]).unwrap();
        let err = verify_archive(&a, Some(stats.gz.chunks.clone()), Some(&i)).unwrap_err();
        assert!(err.1.contains("truncated"), "{err:?}");
        std::fs::write(&a, &bytes).unwrap();
        // An index from another tree does not match.
        std::fs::write(root.join("a.txt"), b"changed").unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let (_, i2, _, _) = archive(&root, d2.path());
        let err = verify_archive(&a, None, Some(&i2)).unwrap_err();
        assert!(err.1.contains("does not match the index"), "{err:?}");
    }

    #[test]
    fn ctime_threshold_keeps_a_margin_and_gives_up_when_the_clock_went_back() {
        use std::time::{Duration, UNIX_EPOCH};
        let started = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ns = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
        assert_eq!(
            ctime_threshold(started, started + Duration::from_secs(86_400)),
            Some(ns(started - CTIME_MARGIN))
        );
        assert_eq!(
            ctime_threshold(started, started),
            Some(ns(started - CTIME_MARGIN))
        );
        assert_eq!(
            ctime_threshold(started, started - Duration::from_nanos(1)),
            None
        );
        assert_eq!(
            ctime_threshold(UNIX_EPOCH, UNIX_EPOCH),
            None,
            "before the epoch"
        );
    }

    /// Archive `root` against the listing `prev` (none: a base) into
    /// `dir/NAME.*`; returns the listing written and the index entries.
    fn increment(
        root: &Path,
        dir: &Path,
        name: &str,
        prev: Option<&Path>,
        unchanged_before: Option<i64>,
    ) -> (PathBuf, Vec<IndexEntry>, ChangeCounts) {
        let listing = dir.join(format!("{name}.listing.gz"));
        let index = dir.join(format!("{name}.index.gz"));
        let baseline = Baseline::new(
            prev.map(|p| ListingReader::open(p).unwrap()),
            Box::new(File::create(&listing).unwrap()),
            Box::new(File::create(dir.join(format!("{name}.deleted"))).unwrap()),
            false,
        )
        .unwrap()
        .xattrs_unchanged_before(unchanged_before);
        let arch = Archiver::new(
            root,
            File::create(dir.join(format!("{name}.tar.gz"))).unwrap(),
            File::create(&index).unwrap(),
            GzOptions {
                level: 1,
                threads: 1,
                adaptive: false,
            },
            Box::new(|w| panic!("{w:?}")),
        )
        .with_baseline(baseline);
        let (_, _, stats) = arch.archive_all().unwrap();
        let stored = crate::index::IndexReader::open(&index)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        (listing, stored, stats.changes.unwrap())
    }

    #[test]
    fn xattrs_are_read_again_only_for_inodes_changed_since_the_threshold() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        std::fs::create_dir(&root).unwrap();
        let file = root.join("a.txt");
        std::fs::write(&file, b"same bytes").unwrap();
        if xattr::set(&file, "user.tag", b"one").is_err() {
            eprintln!("SKIP: no user xattrs on this filesystem");
            return;
        }
        let (base, _, _) = increment(&root, d.path(), "base", None, None);
        xattr::set(&file, "user.tag", b"two").unwrap();
        let stored_names =
            |v: &[IndexEntry]| -> Vec<String> { v.iter().map(|e| e.path.display()).collect() };
        // The threshold after the change (as if the inode were older than
        // the listing): the listing's attributes are kept, nothing stored
        // but the root directory.
        let later = i64::MAX;
        let (kept, stored, c) = increment(&root, d.path(), "trusted", Some(&base), Some(later));
        assert_eq!(stored_names(&stored), ["."]);
        assert_eq!(c.unchanged, 1);
        let listed: Vec<IndexEntry> = ListingReader::open(&kept)
            .unwrap()
            .map(|e| e.unwrap().0)
            .collect();
        assert_eq!(
            listed[1].xattrs.get("user.tag").map(String::as_str),
            Some("6f6e65")
        );
        // The threshold before the change (what tb-incr gives: a minute
        // before the previous walk): read, changed, stored with the new value.
        let (_, stored, c) = increment(&root, d.path(), "read", Some(&base), Some(0));
        assert_eq!(stored_names(&stored), [".", "a.txt"]);
        assert_eq!(c.changed, 1);
        assert_eq!(
            stored[1].xattrs.get("user.tag").map(String::as_str),
            Some("74776f")
        );
    }

    #[test]
    fn xattrs_of_entries_under_a_moved_directory_are_read_again() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        for dir in ["s/d1", "s/d2", "keep"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        // Same size, mtime, mode and owner: only the xattrs tell them apart.
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for (f, tag) in [("s/d1/f", "one"), ("s/d2/f", "two"), ("keep/g", "k")] {
            let p = root.join(f);
            std::fs::write(&p, b"same").unwrap();
            if xattr::set(&p, "user.tag", tag.as_bytes()).is_err() {
                eprintln!("SKIP: no user xattrs on this filesystem");
                return;
            }
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
        let (base, _, _) = increment(&root, d.path(), "base", None, None);
        // Changed before the threshold (as if before the previous walk):
        // the listing's value stands for it, not read.
        xattr::set(root.join("keep/g"), "user.tag", b"k2").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        std::thread::sleep(std::time::Duration::from_millis(30));
        // s/d1 and s/d2 swapped: their files keep their ctimes, the
        // directories' (and s's, but not the root's) change.
        std::fs::rename(root.join("s/d1"), root.join("s/tmp")).unwrap();
        std::fs::rename(root.join("s/d2"), root.join("s/d1")).unwrap();
        std::fs::rename(root.join("s/tmp"), root.join("s/d2")).unwrap();
        let (listing, stored, c) = increment(&root, d.path(), "swap", Some(&base), Some(t));
        let names: Vec<String> = stored.iter().map(|e| e.path.display()).collect();
        assert_eq!(
            names,
            [".", "keep", "s", "s/d1", "s/d1/f", "s/d2", "s/d2/f"]
        );
        assert_eq!(c.changed, 2);
        let tag = |rel: &str| -> Option<String> {
            ListingReader::open(&listing)
                .unwrap()
                .map(|e| e.unwrap().0)
                .find(|e| e.path.display() == rel)
                .and_then(|e| e.xattrs.get("user.tag").cloned())
        };
        assert_eq!(tag("s/d1/f").as_deref(), Some("74776f"), "two");
        assert_eq!(tag("s/d2/f").as_deref(), Some("6f6e65"), "one");
        assert_eq!(
            tag("keep/g").as_deref(),
            Some("6b"),
            "the listing's, not read"
        );
    }

    #[test]
    fn a_tree_deeper_than_the_open_directories_is_walked_whole() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        let mut at = root.clone();
        use crate::walk::OPEN_DEPTH;
        for i in 0..OPEN_DEPTH + 5 {
            at.push(if i % 2 == 0 { "d" } else { "e" });
            std::fs::create_dir_all(&at).unwrap();
            std::fs::write(at.join("f"), format!("{i}")).unwrap();
            std::fs::write(at.join("a"), b"a").unwrap();
        }
        let (a, i, stats, warnings) = archive(&root, d.path());
        assert!(warnings.is_empty(), "{warnings:?}");
        let levels = (OPEN_DEPTH + 5) as u64;
        assert_eq!(stats.counts.dirs, levels + 1);
        assert_eq!(stats.counts.files, 2 * levels);
        verify_archive(&a, None, Some(&i)).unwrap();
    }

    #[test]
    fn walk_order_is_the_order_of_the_components() {
        // Every name of up to 4 bytes over an alphabet with the bytes
        // around '/', against the definition (component lists compared).
        fn by_components(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
            let comps = |n: &[u8]| -> Vec<Vec<u8>> {
                if n == b"." {
                    Vec::new()
                } else {
                    n.split(|c| *c == b'/').map(<[u8]>::to_vec).collect()
                }
            };
            comps(a).cmp(&comps(b))
        }
        let alphabet = [b'.', b'/', b'a', b'-', b'0', 0x01, 0xff];
        let mut names: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..4 {
            let next: Vec<Vec<u8>> = last
                .iter()
                .flat_map(|n| {
                    alphabet.iter().map(move |c| {
                        let mut m = n.clone();
                        m.push(*c);
                        m
                    })
                })
                .collect();
            names.extend(next.iter().cloned());
            last = next;
        }
        for a in &names {
            for b in names.iter().step_by(7) {
                assert_eq!(walk_cmp(a, b), by_components(a, b), "{a:?} {b:?}");
                assert_eq!(walk_cmp(b, a), by_components(b, a), "{b:?} {a:?}");
            }
        }
    }

    #[test]
    fn pax_times_round_trip() {
        for (s, ns) in [
            (0i64, 0i64),
            (1_700_000_000, 123_456_789),
            (-2, 500_000_000),
        ] {
            let t = pax_time(s, ns);
            assert_eq!(parse_pax_time(&t), Some(s * 1_000_000_000 + ns), "{t}");
        }
        assert_eq!(parse_pax_time("12.5"), Some(12_500_000_000));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let mut v = Vec::new();
        pax_record(&mut v, "mtime", b"1.5");
        assert_eq!(v, b"13 mtime=1.5\n");
        let mut v = Vec::new();
        pax_record(&mut v, "k", &[b'x'; 95]);
        assert_eq!(v.len(), 102);
        assert!(v.starts_with(b"102 k="));
    }
}
