//! Safe extraction of volume archives: a `tar` stream -> a directory tree,
//! exactly as it was archived, and nothing outside that directory.
//!
//! # Safety against hostile archives
//!
//! Every name is checked before anything is created: absolute names, `..`
//! components and NUL bytes are refused. Everything is then created
//! relative to directory file descriptors opened from the target's own
//! descriptor one component at a time with `O_NOFOLLOW | O_DIRECTORY`, so a
//! symlink in the archive (or already in the target) can never be followed
//! to somewhere else, and a name can never resolve outside the target:
//!
//! - files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`; whatever
//!   non-directory is in the way (an earlier entry of the same name, a
//!   symlink) is unlinked first, never written through;
//! - hard links name an earlier member inside the target (checked the same
//!   way) and are made with `linkat` without following symlinks;
//! - symlinks are created as they are, never followed by the extractor;
//! - owners, modes, extended attributes and times are set through the
//!   descriptor of the entry itself, or with `AT_SYMLINK_NOFOLLOW`.
//!
//! Refused entries are reported through a callback and counted; the caller
//! decides (tb-restore fails the whole restore and takes it back).
//!
//! # Fidelity
//!
//! Numeric owners (as root), the 12 mode bits (set after the owner, so
//! setuid survives), nanosecond mtimes, extended attributes (ACLs are
//! `system.posix_acl_*`), symlinks, hard links, FIFOs and devices, empty
//! directories, sparse files (holes are seeked over, not written).
//! Directories get their mode, owner and times after their contents (a
//! read-only directory can be filled first), deepest first; the root
//! entry (`./`) is applied to the target itself, last.
//!
//! With an index, every member is compared with its index entry as it is
//! extracted (metadata, and the sha256 of file contents); a difference is
//! an error, so a restore either reproduces the index or fails.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    Mode, SFlag, UtimensatFlags, fchmod, fstatat, futimens, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use sha2::{Digest, Sha256};

use crate::archive::{Member, index_diffs, next_index_entry, read_member};
use crate::error::{Cause, Failure};
use crate::gzip::hex;
use crate::index::{EntryKind, IndexReader};

/// How to extract.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Set numeric owners (needs root; without it owners stay the caller's).
    pub owners: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            owners: nix::unistd::geteuid().is_root(),
        }
    }
}

/// An entry that was not extracted because it would reach outside the
/// target, or cannot be represented safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The name as stored in the archive, shown (`\xNN` for non-UTF-8).
    pub entry: String,
    /// Why, in plain words.
    pub reason: String,
}

/// What an extraction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Members extracted.
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Directories (the root included).
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Hard links (extra names).
    pub hardlinks: u64,
    /// FIFOs and devices.
    pub specials: u64,
    /// Bytes of file contents.
    pub file_bytes: u64,
    /// Entries refused as unsafe.
    pub refused: u64,
    /// Whether every member was checked against an index.
    pub indexed: bool,
    /// Devices that could not be created (not root): their names.
    pub devices_skipped: Vec<String>,
    /// Members whose owner could not be set (not root).
    pub owners_not_set: u64,
    /// Extended attributes that could not be set: `name: attribute: why`.
    pub xattrs_not_set: Vec<String>,
}

/// A directory whose metadata is applied at the end.
struct PendingDir {
    comps: Vec<Vec<u8>>,
    meta: Member,
}

/// Components of a member name that is safe to create under the target,
/// or why it is not. The root (`.`, `./`) has no components.
pub fn safe_components(raw: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    if raw.contains(&0) {
        return Err("the name contains a NUL byte".into());
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute name (it would be created outside the target)".into());
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("'..' in the name (it would reach outside the target)".into()),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// Open directories under the target, one component at a time, never
/// following a symlink. Keeps the descriptors of the last path walked:
/// members come depth first, so most share their parent with the one before.
struct Walker {
    root: OwnedFd,
    stack: Vec<(Vec<u8>, OwnedFd)>,
}

/// Why a parent directory could not be reached.
enum WalkError {
    /// A component is a symlink or not a directory: refuse the entry.
    Unsafe(String),
    /// Anything else (I/O).
    Io(Errno, String),
}

fn cstr(b: &[u8]) -> std::result::Result<CString, String> {
    CString::new(b).map_err(|_| "the name contains a NUL byte".to_string())
}

impl Walker {
    fn new(root: OwnedFd) -> Walker {
        Walker {
            root,
            stack: Vec::new(),
        }
    }

    /// The directory `comps` (relative to the root), creating missing ones
    /// (mode 0755) when `create` (a foreign archive may omit parents).
    fn dir(&mut self, comps: &[Vec<u8>], create: bool) -> std::result::Result<OwnedFd, WalkError> {
        let common = self
            .stack
            .iter()
            .zip(comps)
            .take_while(|((a, _), b)| a == *b)
            .count();
        self.stack.truncate(common);
        for c in &comps[common..] {
            let name = cstr(c).map_err(WalkError::Unsafe)?;
            let parent = self
                .stack
                .last()
                .map(|(_, fd)| fd.as_fd())
                .unwrap_or(self.root.as_fd());
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = match openat(parent, name.as_c_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(parent, name.as_c_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(WalkError::Io(e, shown(c))),
                    }
                    openat(parent, name.as_c_str(), flags, Mode::empty())
                        .map_err(|e| classify(e, c))?
                }
                Err(e) => return Err(classify(e, c)),
            };
            self.stack.push((c.clone(), fd));
        }
        let fd = self.stack.last().map(|(_, fd)| fd).unwrap_or(&self.root);
        fd.try_clone()
            .map_err(|e| WalkError::Io(io_errno(&e), "(duplicate)".into()))
    }

    /// A fresh descriptor of directory `comps` (no creation), for the
    /// metadata pass.
    fn open_dir(&mut self, comps: &[Vec<u8>]) -> std::result::Result<OwnedFd, WalkError> {
        let parent = self.dir(&comps[..comps.len().saturating_sub(1)], false)?;
        match comps.last() {
            None => Ok(parent),
            Some(c) => {
                let name = cstr(c).map_err(WalkError::Unsafe)?;
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                openat(&parent, name.as_c_str(), flags, Mode::empty()).map_err(|e| classify(e, c))
            }
        }
    }
}

fn io_errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

fn classify(e: Errno, c: &[u8]) -> WalkError {
    match e {
        Errno::ELOOP | Errno::ENOTDIR => WalkError::Unsafe(format!(
            "'{}' on its path is a symlink or not a directory (it would be followed)",
            shown(c)
        )),
        e => WalkError::Io(e, shown(c)),
    }
}

fn shown(b: &[u8]) -> String {
    crate::record::display_bytes(b)
}

/// `/proc/self/fd/N/NAME`: a path to `name` in the directory `dir` that
/// resolves the directory by its descriptor (for the calls that only take
/// paths, such as `lsetxattr` on a symlink or a FIFO).
fn fd_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(std::ffi::OsStr::from_bytes(name));
    p
}

fn timespec(ns: i64) -> TimeSpec {
    TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

fn omit() -> TimeSpec {
    TimeSpec::new(0, nix::libc::UTIME_OMIT)
}

/// An extraction failure that is not about one entry's safety: the first
/// error stops the extraction.
fn io_fail(e: impl Into<io::Error>, target: &Path, rel: &[u8], what: &str) -> anyhow::Error {
    let e: io::Error = e.into();
    let path = target.join(std::ffi::OsStr::from_bytes(rel));
    if crate::error::io_cause(&e) == Some(Cause::DiskFull) {
        return Failure::new(
            Cause::DiskFull,
            format!(
                "disk full: no space left while writing '{}'; free space on that filesystem and restore again",
                path.display()
            ),
        )
        .into();
    }
    anyhow::Error::new(e).context(format!("cannot {what} '{}'", path.display()))
}

/// The extractor: members in, a tree out.
pub struct Extractor<'a> {
    target: PathBuf,
    walker: Walker,
    opts: ExtractOptions,
    pending: Vec<PendingDir>,
    root_meta: Option<Member>,
    stats: Extracted,
    buf: Vec<u8>,
    refuse: &'a mut dyn FnMut(Refusal),
}

impl<'a> Extractor<'a> {
    /// Extract into the directory `target` (which must exist); `refuse`
    /// hears every refused entry.
    pub fn new(
        target: &Path,
        opts: ExtractOptions,
        refuse: &'a mut dyn FnMut(Refusal),
    ) -> Result<Extractor<'a>> {
        let root = openat(
            nix::fcntl::AT_FDCWD,
            target,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .with_context(|| format!("cannot open the target directory '{}'", target.display()))?;
        Ok(Extractor {
            target: target.to_path_buf(),
            walker: Walker::new(root),
            opts,
            pending: Vec::new(),
            root_meta: None,
            stats: Extracted::default(),
            buf: vec![0u8; 1 << 20],
            refuse,
        })
    }

    fn refused(&mut self, m: &Member, reason: String) {
        self.stats.refused += 1;
        (self.refuse)(Refusal {
            entry: crate::record::display_bytes(&m.raw_name),
            reason,
        });
    }

    /// Extract a whole tar stream, comparing with `index` when given.
    /// Returns what was done; refused entries are counted, not errors.
    pub fn extract_all(
        mut self,
        r: &mut dyn Read,
        mut index: Option<&mut IndexReader>,
    ) -> Result<Extracted> {
        let mut ar = tar::Archive::new(r);
        let members = ar
            .entries()
            .map_err(|e| damaged(format!("not a tar archive: {e}")))?;
        let mut last = String::from("(the start)");
        for m in members {
            crate::signals::check()?;
            let mut m =
                m.map_err(|e| damaged(format!("the tar stream is damaged after '{last}': {e}")))?;
            let ty = m.header().entry_type();
            // pax global headers and GNU volume labels carry nothing to restore.
            if ty == tar::EntryType::XGlobalHeader || ty.as_byte() == b'V' {
                continue;
            }
            let meta = match read_member(&mut m) {
                Ok(meta) => meta,
                Err(why) => {
                    // An unknown type: refuse it, go on (its data is skipped).
                    self.stats.refused += 1;
                    (self.refuse)(Refusal {
                        entry: crate::record::display_bytes(&m.path_bytes()),
                        reason: why,
                    });
                    continue;
                }
            };
            let want = match index.as_deref_mut() {
                Some(idx) => Some(next_index_entry(idx, &meta).map_err(damaged)?),
                None => None,
            };
            let sha = self.member(&mut m, &meta)?;
            if let Some(want) = want {
                let diffs = index_diffs(&meta, sha.as_ref(), &want);
                if !diffs.is_empty() {
                    return Err(damaged(format!(
                        "'{}' does not match the index: {}",
                        meta.shown(),
                        diffs.join("; ")
                    )));
                }
            }
            last = meta.shown();
        }
        if let Some(idx) = index.as_deref_mut()
            && let Some(extra) = idx.next()
        {
            let what = extra
                .map(|e| e.path.display())
                .unwrap_or_else(|e| format!("{e:#}"));
            return Err(damaged(format!(
                "the index lists '{what}', which is not in the archive"
            )));
        }
        self.stats.indexed = index.is_some();
        self.finish()
    }

    /// One member: its safety, then its creation. Returns the sha256 of a
    /// file's contents (also for a refused file, whose data is read to
    /// check the archive).
    fn member<R: Read>(
        &mut self,
        m: &mut tar::Entry<'_, R>,
        meta: &Member,
    ) -> Result<Option<String>> {
        let comps = match safe_components(&meta.raw_name) {
            Ok(c) => c,
            Err(why) => {
                self.refused(meta, why);
                return self.drain(m, meta);
            }
        };
        if comps.is_empty() {
            if meta.kind != EntryKind::Dir {
                self.refused(
                    meta,
                    "names the target itself but is not a directory".into(),
                );
                return self.drain(m, meta);
            }
            self.root_meta = Some(meta.clone());
            self.stats.entries += 1;
            self.stats.dirs += 1;
            return Ok(None);
        }
        let (name, parent_comps) = comps
            .split_last()
            .map(|(n, p)| (n.clone(), p.to_vec()))
            .unwrap_or_default();
        let link_comps = match (meta.kind, &meta.link) {
            (EntryKind::Hardlink, Some(l)) => match safe_components(l) {
                Ok(c) if !c.is_empty() => Some(c),
                Ok(_) => {
                    self.refused(meta, "is a hard link to the target directory itself".into());
                    return Ok(None);
                }
                Err(why) => {
                    self.refused(
                        meta,
                        format!("is a hard link to a name that is not safe: {why}"),
                    );
                    return Ok(None);
                }
            },
            (EntryKind::Hardlink, None) => {
                self.refused(meta, "is a hard link without a source".into());
                return Ok(None);
            }
            _ => None,
        };
        let rel = meta.name.clone();
        let cname = cstr(&name).map_err(|e| anyhow::anyhow!(e))?;
        // The source of a hard link, resolved first (the walker keeps one path).
        let link_src = match &link_comps {
            Some(lc) => {
                let (lname, lparent) = lc
                    .split_last()
                    .map(|(n, p)| (n.clone(), p.to_vec()))
                    .unwrap_or_default();
                match self.walker.open_dir(&lparent) {
                    Ok(fd) => Some((fd, lname)),
                    Err(WalkError::Unsafe(why)) => {
                        self.refused(
                            meta,
                            format!("is a hard link whose source is not safe: {why}"),
                        );
                        return Ok(None);
                    }
                    Err(WalkError::Io(e, c)) => {
                        self.refused(
                            meta,
                            format!(
                                "is a hard link to a name that is not in the target ('{c}': {e})"
                            ),
                        );
                        return Ok(None);
                    }
                }
            }
            None => None,
        };
        let parent_fd = match self.walker.dir(&parent_comps, true) {
            Ok(fd) => fd,
            Err(WalkError::Unsafe(why)) => {
                self.refused(meta, why);
                return self.drain(m, meta);
            }
            Err(WalkError::Io(e, c)) => {
                return Err(io_fail(
                    io::Error::from(e),
                    &self.target,
                    &rel,
                    &format!("open the directory '{c}' of"),
                ));
            }
        };
        let parent = parent_fd.as_fd();
        // Make room: a directory is reused for a directory; any other thing
        // in the way is unlinked, never written through.
        match fstatat(parent, cname.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let is_dir =
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                if is_dir && meta.kind == EntryKind::Dir {
                    // Reused: metadata comes at the end.
                } else if is_dir {
                    self.refused(meta, "a directory of the same name is in the way".into());
                    return self.drain(m, meta);
                } else {
                    unlinkat(parent, cname.as_c_str(), UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| io_fail(e, &self.target, &rel, "replace"))?;
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(io_fail(e, &self.target, &rel, "look at")),
        }
        match meta.kind {
            EntryKind::Dir => {
                match mkdirat(parent, cname.as_c_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_fail(e, &self.target, &rel, "create the directory")),
                }
                let mut c = parent_comps;
                c.push(name);
                self.pending.push(PendingDir {
                    comps: c,
                    meta: meta.clone(),
                });
                self.stats.dirs += 1;
            }
            EntryKind::File => {
                let sha = self.file(m, meta, parent, &cname, &rel)?;
                self.stats.entries += 1;
                self.stats.files += 1;
                self.stats.file_bytes += meta.size;
                return Ok(Some(sha));
            }
            EntryKind::Symlink => {
                let target = meta.link.clone().unwrap_or_default();
                let t = cstr(&target).map_err(|e| anyhow::anyhow!(e))?;
                symlinkat(t.as_c_str(), parent, cname.as_c_str())
                    .map_err(|e| io_fail(e, &self.target, &rel, "create the symlink"))?;
                self.path_meta(parent, &name, &cname, meta, true)?;
                self.stats.symlinks += 1;
            }
            EntryKind::Hardlink => {
                let Some((src_dir, src_name)) = link_src else {
                    self.refused(meta, "is a hard link without a source".into());
                    return Ok(None);
                };
                let s = cstr(&src_name).map_err(|e| anyhow::anyhow!(e))?;
                match linkat(
                    src_dir.as_fd(),
                    s.as_c_str(),
                    parent,
                    cname.as_c_str(),
                    AtFlags::empty(),
                ) {
                    Ok(()) => {}
                    Err(Errno::ENOENT) => {
                        self.refused(
                            meta,
                            format!(
                                "is a hard link to '{}', which is not in the archive before it",
                                shown(meta.link.as_deref().unwrap_or_default())
                            ),
                        );
                        return Ok(None);
                    }
                    Err(Errno::EPERM) => {
                        self.refused(
                            meta,
                            format!(
                                "is a hard link to '{}', which cannot be linked (a directory?)",
                                shown(meta.link.as_deref().unwrap_or_default())
                            ),
                        );
                        return Ok(None);
                    }
                    Err(e) => return Err(io_fail(e, &self.target, &rel, "create the hard link")),
                }
                self.stats.hardlinks += 1;
            }
            EntryKind::Fifo | EntryKind::Char | EntryKind::Block => {
                let (kind, dev) = match meta.kind {
                    EntryKind::Fifo => (SFlag::S_IFIFO, 0),
                    EntryKind::Char => (SFlag::S_IFCHR, rdev(meta)),
                    _ => (SFlag::S_IFBLK, rdev(meta)),
                };
                match mknodat(
                    parent,
                    cname.as_c_str(),
                    kind,
                    Mode::from_bits_truncate(0o600),
                    dev,
                ) {
                    Ok(()) => {}
                    Err(Errno::EPERM) if meta.kind != EntryKind::Fifo => {
                        self.stats.devices_skipped.push(meta.shown());
                        return Ok(None);
                    }
                    Err(e) => return Err(io_fail(e, &self.target, &rel, "create")),
                }
                self.path_meta(parent, &name, &cname, meta, false)?;
                self.stats.specials += 1;
            }
        }
        self.stats.entries += 1;
        Ok(None)
    }

    /// Read (and hash) the data of a member that is not extracted.
    fn drain<R: Read>(
        &mut self,
        m: &mut tar::Entry<'_, R>,
        meta: &Member,
    ) -> Result<Option<String>> {
        if meta.kind != EntryKind::File {
            return Ok(None);
        }
        let mut sha = Sha256::new();
        loop {
            let n = m
                .read(&mut self.buf)
                .map_err(|e| damaged(format!("cannot read the data of '{}': {e}", meta.shown())))?;
            if n == 0 {
                break;
            }
            sha.update(&self.buf[..n]);
        }
        Ok(Some(hex(&sha.finalize())))
    }

    /// A regular file: data, then owner, xattrs, mode, times.
    fn file<R: Read>(
        &mut self,
        m: &mut tar::Entry<'_, R>,
        meta: &Member,
        parent: BorrowedFd<'_>,
        cname: &CString,
        rel: &[u8],
    ) -> Result<String> {
        let fd = openat(
            parent,
            cname.as_c_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| io_fail(e, &self.target, rel, "create"))?;
        let mut f = File::from(fd);
        let mut sha = Sha256::new();
        let mut got = 0u64;
        let mut skipped_tail = false;
        loop {
            let n = m
                .read(&mut self.buf)
                .map_err(|e| damaged(format!("cannot read the data of '{}': {e}", meta.shown())))?;
            if n == 0 {
                break;
            }
            let piece = &self.buf[..n];
            sha.update(piece);
            got += n as u64;
            if meta.sparse {
                // Holes stay holes: seek over whole zero blocks.
                let mut at = 0;
                while at < piece.len() {
                    let end = (at + 4096).min(piece.len());
                    let block = &piece[at..end];
                    if block.iter().all(|b| *b == 0) {
                        f.seek(SeekFrom::Current(block.len() as i64))
                            .map_err(|e| io_fail(e, &self.target, rel, "write"))?;
                        skipped_tail = true;
                    } else {
                        f.write_all(block)
                            .map_err(|e| io_fail(e, &self.target, rel, "write"))?;
                        skipped_tail = false;
                    }
                    at = end;
                }
            } else {
                f.write_all(piece)
                    .map_err(|e| io_fail(e, &self.target, rel, "write"))?;
            }
        }
        if got != meta.size {
            return Err(damaged(format!(
                "'{}' holds {got} bytes, its header says {}",
                meta.shown(),
                meta.size
            )));
        }
        if skipped_tail || meta.sparse {
            f.set_len(meta.size)
                .map_err(|e| io_fail(e, &self.target, rel, "write"))?;
        }
        self.fd_meta(&f, meta, rel)?;
        Ok(hex(&sha.finalize()))
    }

    /// Owner, xattrs, mode and times through an open descriptor.
    fn fd_meta(&mut self, fd: &File, meta: &Member, rel: &[u8]) -> Result<()> {
        if self.opts.owners {
            fchown(
                fd.as_fd(),
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| io_fail(e, &self.target, rel, "set the owner of"))?;
        } else {
            self.stats.owners_not_set += 1;
        }
        for (k, v) in &meta.xattrs {
            if let Err(e) = xattr::FileExt::set_xattr(fd, k, v) {
                self.xattr_failed(meta, k, e);
            }
        }
        fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode))
            .map_err(|e| io_fail(e, &self.target, rel, "set the mode of"))?;
        futimens(fd.as_fd(), &omit(), &timespec(meta.mtime_ns))
            .map_err(|e| io_fail(e, &self.target, rel, "set the time of"))?;
        Ok(())
    }

    /// Owner, xattrs, mode and times by name, never following a symlink
    /// (symlinks, FIFOs, devices: nothing to open safely).
    fn path_meta(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        cname: &CString,
        meta: &Member,
        symlink: bool,
    ) -> Result<()> {
        let rel = meta.name.clone();
        if self.opts.owners {
            fchownat(
                parent,
                cname.as_c_str(),
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_fail(e, &self.target, &rel, "set the owner of"))?;
        } else {
            self.stats.owners_not_set += 1;
        }
        if !meta.xattrs.is_empty() {
            let p = fd_path(parent, name);
            for (k, v) in &meta.xattrs {
                // lsetxattr: the last component is not followed.
                if let Err(e) = xattr::set(&p, k, v) {
                    self.xattr_failed(meta, k, e);
                }
            }
        }
        if !symlink {
            // Just created by us, not a symlink: following is harmless.
            nix::sys::stat::fchmodat(
                parent,
                cname.as_c_str(),
                Mode::from_bits_truncate(meta.mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| io_fail(e, &self.target, &rel, "set the mode of"))?;
        }
        utimensat(
            parent,
            cname.as_c_str(),
            &omit(),
            &timespec(meta.mtime_ns),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| io_fail(e, &self.target, &rel, "set the time of"))?;
        Ok(())
    }

    fn xattr_failed(&mut self, meta: &Member, key: &str, e: io::Error) {
        if self.stats.xattrs_not_set.len() < 1000 {
            self.stats
                .xattrs_not_set
                .push(format!("'{}': {key}: {e}", meta.shown()));
        }
    }

    /// Directories' metadata, deepest first, then the root's.
    fn finish(mut self) -> Result<Extracted> {
        let pending = std::mem::take(&mut self.pending);
        for d in pending.iter().rev() {
            crate::signals::check()?;
            let fd = match self.walker.open_dir(&d.comps) {
                Ok(fd) => fd,
                Err(WalkError::Unsafe(why)) => {
                    let meta = d.meta.clone();
                    self.refused(&meta, why);
                    continue;
                }
                Err(WalkError::Io(e, c)) => {
                    return Err(io_fail(
                        io::Error::from(e),
                        &self.target,
                        &d.meta.name,
                        &format!("open '{c}' of"),
                    ));
                }
            };
            self.fd_meta(&File::from(fd), &d.meta, &d.meta.name)?;
        }
        self.walker.stack.clear();
        if let Some(root) = self.root_meta.take() {
            let fd = self
                .walker
                .root
                .try_clone()
                .context("cannot duplicate a descriptor")?;
            self.fd_meta(&File::from(fd), &root, b".")?;
        }
        Ok(self.stats)
    }

    /// Flush everything written to the target's filesystem to disk.
    pub fn sync(target: &Path) -> Result<()> {
        let f =
            File::open(target).with_context(|| format!("cannot open '{}'", target.display()))?;
        nix::unistd::syncfs(f.as_fd())
            .map_err(io::Error::from)
            .with_context(|| format!("cannot flush '{}' to disk", target.display()))
    }
}

fn damaged(msg: String) -> anyhow::Error {
    Failure::new(Cause::Damaged, msg).into()
}

fn rdev(m: &Member) -> u64 {
    let (maj, min) = m.rdev.unwrap_or((0, 0));
    nix::sys::stat::makedev(u64::from(maj), u64::from(min))
}

/// Remove everything inside `dir` (not `dir` itself), never following
/// symlinks: how a failed restore into an empty directory is taken back.
pub fn empty_dir(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read '{}'", dir.display()))? {
        let e = e.with_context(|| format!("cannot read '{}'", dir.display()))?;
        let p = e.path();
        let ft = e
            .file_type()
            .with_context(|| format!("cannot read '{}'", p.display()))?;
        if ft.is_dir() {
            make_writable(&p);
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("cannot remove '{}'", p.display()))?;
    }
    Ok(())
}

/// Give the owner write and search permission on every directory under
/// `dir` (not following symlinks), so a tree restored with read-only
/// directories can be removed.
pub fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                make_writable(&e.path());
            }
        }
    }
}
