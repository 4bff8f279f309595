//! Incremental chains: one directory per volume label, one directory per
//! point (`base_YYYYMMDD[_HHMMSS]/`, `incr_YYYYMMDD[_HHMMSS]/`), each
//! holding fixed file names:
//!
//! | file | what |
//! |---|---|
//! | `archive.tar.gz` | standard tar.gz of what changed (directories always) |
//! | `index.jsonl.gz` | the archive's entries (as a volume archive's index) |
//! | `listing.jsonl.gz` | the whole tree at that moment, with content hashes |
//! | `deleted.nul` | paths gone since the parent, NUL-separated |
//! | `manifest.json` | sizes and sha256 of the four, the parent's name and manifest hash |
//!
//! A point applies on top of its parent: delete what `deleted.nul` lists,
//! then extract the archive. A base has no parent. An incremental point's
//! parent is the point before it; a differential point's parent is the
//! base. Restoring a point is applying every point from the base down its
//! parent links, so both modes restore the same way, with tb or with
//! `xargs -0 rm -rf --` and `tar -x` alone.
//!
//! A point is restorable when its own files match its manifest and its
//! parent is restorable and is the very point it was taken against (the
//! parent's manifest sha256 matches).
//!
//! Before continuing a chain, tb-incr checks it with
//! [`check_chain_cached`]: the sha256 of a point's file is taken from the
//! chain's verification cache ([`VERIFIED`], see [`VerifyCache`]) while the
//! file's size, mtime, ctime, inode and device are still the ones it had
//! when it was last hashed, and the file is hashed again otherwise. tb-restore
//! and `tb-check verify` always hash (and `verify` reads) everything.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gzip::sha256_file;
use crate::index::{EntryKind, IndexEntry, IndexReader};
use crate::manifest::Manifest;
use crate::naming::{BackupName, Kind};

/// The archive of a point.
pub const ARCHIVE: &str = "archive.tar.gz";
/// The index of the archive.
pub const INDEX: &str = "index.jsonl.gz";
/// The complete listing of the tree at that point.
pub const LISTING: &str = "listing.jsonl.gz";
/// Paths deleted since the parent.
pub const DELETED: &str = "deleted.nul";
/// The manifest.
pub const MANIFEST: &str = "manifest.json";

/// Roles of the files of a point, as in its manifest.
pub const ROLES: [(&str, &str); 4] = [
    ("archive", ARCHIVE),
    ("index", INDEX),
    ("listing", LISTING),
    ("deleted", DELETED),
];

/// One point directory of a chain.
#[derive(Debug, Clone)]
pub struct Point {
    /// Its parsed name.
    pub name: BackupName,
    /// Its directory.
    pub dir: PathBuf,
}

impl Point {
    /// The directory name (`incr_20260120`).
    pub fn id(&self) -> String {
        self.name.file_name()
    }
    /// Path of one of the point's files.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The points of the chain directory `dir` (label = its name), oldest
/// first. Names that do not parse are not ours and are ignored.
pub fn points(dir: &Path) -> Result<Vec<Point>> {
    let label = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", dir.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("cannot read '{}'", dir.display()))?;
        let Some(name) = BackupName::parse_in_chain(&e.file_name(), &label) else {
            continue;
        };
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(Point {
                name,
                dir: e.path(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// How thoroughly to check a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Manifests, links and the sizes of every file (cheap: a listing).
    Sizes,
    /// Manifests, links, sizes and sha256 of every file.
    Hashes,
    /// Also every archive entry against its index, and the listing readable
    /// to its end (`tb-check verify`).
    Full,
}

/// The verdict on one point.
#[derive(Debug, Clone)]
pub struct PointCheck {
    /// The point.
    pub point: Point,
    /// Its manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// sha256 of its manifest file.
    pub manifest_sha256: Option<String>,
    /// What is wrong with the point itself (its own files), if anything.
    pub problem: Option<String>,
    /// Why it cannot be restored: its own problem, or its ancestry's.
    pub unrestorable: Option<String>,
    /// Indices (into the checked list) of the points to apply, base first,
    /// ending with this one (when restorable).
    pub path: Vec<usize>,
}

impl PointCheck {
    /// Whether it can be restored.
    pub fn restorable(&self) -> bool {
        self.unrestorable.is_none()
    }
    /// `chain_base` or `chain_incr`.
    pub fn kind(&self) -> &'static str {
        self.point.name.kind.as_str()
    }
    /// The parent's id, from the manifest.
    pub fn parent(&self) -> Option<&str> {
        self.manifest
            .as_ref()
            .and_then(|m| m.chain.as_ref())
            .and_then(|c| c.parent.as_deref())
    }
    /// The chain id, from the manifest.
    pub fn chain(&self) -> Option<&str> {
        self.manifest
            .as_ref()
            .and_then(|m| m.chain.as_ref())
            .map(|c| c.chain.as_str())
    }
}

/// The verification cache of a chain directory (hidden, 0600).
pub const VERIFIED: &str = ".tb-verified.json";
/// `format` of the verification cache.
const VERIFIED_FORMAT: &str = "tb-verified";
/// Largest verification cache read (a few hundred bytes per point file).
const VERIFIED_MAX_BYTES: u64 = 16 << 20;

/// A point file as it was when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Device number of its filesystem.
    pub device: u64,
    /// sha256 of its contents, lowercase hex.
    pub sha256: String,
}

impl Verified {
    fn new(meta: &std::fs::Metadata, sha256: &str) -> Verified {
        Verified {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
            device: meta.dev(),
            sha256: sha256.to_string(),
        }
    }

    /// Whether `meta` is still the file that was hashed.
    fn same_file(&self, meta: &std::fs::Metadata) -> bool {
        let now = Verified::new(meta, "");
        (
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            self.inode,
            self.device,
        ) == (now.size, now.mtime_ns, now.ctime_ns, now.inode, now.device)
    }
}

/// The file [`VERIFIED`].
#[derive(Debug, Serialize, Deserialize)]
struct VerifiedFile {
    format: String,
    version: u32,
    /// By `POINT/FILE` (`base_20260119/archive.tar.gz`).
    files: BTreeMap<String, Verified>,
}

/// The verification cache of a chain directory: for each point file that
/// was hashed, its relative path, size, mtime, ctime, inode, device and
/// sha256, so that tb-incr need not read every point of the chain (a base
/// of a gigabyte or more) again on every run.
///
/// A cached sha256 is used only while size, mtime (nanoseconds), ctime,
/// inode and device all still match: writing to the file changes mtime
/// and ctime, `touch` (even back to the old mtime) and `chmod` change
/// ctime, which no one can set back, and a file copied, restored or
/// renamed over it is another inode. A point whose files were changed or
/// replaced is therefore hashed again and never continued from. What this
/// cannot see is damage that changes no stat field at all: bits rotting on
/// the disk, or a raw write to the block device. Finding those means
/// reading every byte of every point, which is what `tb-check verify`
/// does (and tb-restore hashes every file before applying it), so the
/// scheduled verification, not each backup run, is what finds bit rot.
/// (Nor can it see a change made within the same timestamp tick as the
/// file's last write on a filesystem with coarse timestamps; the files
/// of a point are written once, by tb, under the chain's lock.)
///
/// A missing, unreadable or damaged cache only means hashing everything.
/// It is written atomically (a temporary `.tb-tmp.` file, fsync, rename),
/// 0600, under the chain's lock, and holds only the points there were on
/// the last check (and the one just written).
#[derive(Debug, Default)]
pub struct VerifyCache {
    path: PathBuf,
    /// As read.
    known: BTreeMap<String, Verified>,
    /// As read, updated by this run.
    entries: BTreeMap<String, Verified>,
    /// The points checked or recorded on this run: only theirs are saved.
    live: std::collections::BTreeSet<String>,
    hashed: u64,
    trusted: u64,
    /// Entries were dropped by [`VerifyCache::forget`].
    forgot: bool,
}

impl VerifyCache {
    /// The cache of the chain directory `dir` (empty when there is none or
    /// it cannot be read).
    pub fn load(dir: &Path) -> VerifyCache {
        let path = dir.join(VERIFIED);
        let known = (|| {
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if !meta.is_file() || meta.len() > VERIFIED_MAX_BYTES {
                return None;
            }
            let f: VerifiedFile = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            (f.format == VERIFIED_FORMAT && f.version == 1).then_some(f.files)
        })()
        .unwrap_or_default();
        VerifyCache {
            path,
            entries: known.clone(),
            known,
            ..VerifyCache::default()
        }
    }

    /// Files hashed (read whole) on this run.
    pub fn hashed(&self) -> u64 {
        self.hashed
    }

    /// Files whose cached sha256 was used on this run.
    pub fn trusted(&self) -> u64 {
        self.trusted
    }

    fn key(point: &str, name: &str) -> String {
        format!("{point}/{name}")
    }

    /// The sha256 of `point`'s file `name`, whose `symlink_metadata` is
    /// `meta`: the cached one while the file is the same, else read.
    fn sha256(
        &mut self,
        point: &Point,
        name: &str,
        meta: &std::fs::Metadata,
    ) -> io::Result<String> {
        let id = point.id();
        let key = VerifyCache::key(&id, name);
        self.live.insert(id);
        if let Some(v) = self.entries.get(&key).filter(|v| v.same_file(meta)) {
            self.trusted += 1;
            return Ok(v.sha256.clone());
        }
        self.hashed += 1;
        let (sha, stable) = hash_stable(&point.file(name))?;
        // Cached only when the file did not change while it was read and
        // is the one `meta` describes.
        if let Some(m) = stable.filter(|m| (m.ino(), m.dev()) == (meta.ino(), meta.dev())) {
            self.entries.insert(key, Verified::new(&m, &sha));
        } else {
            self.entries.remove(&key);
        }
        Ok(sha)
    }

    /// Record a file of a point just written, whose contents were read back
    /// and found to have `sha256` while its metadata was `before` (taken
    /// before the read): cached when it is still that file at `path`.
    /// Returns whether it was.
    pub fn record(
        &mut self,
        point: &str,
        name: &str,
        path: &Path,
        before: &std::fs::Metadata,
        sha256: &str,
    ) -> bool {
        let Ok(now) = std::fs::symlink_metadata(path) else {
            return false;
        };
        let was = Verified::new(before, sha256);
        if !now.is_file() || !was.same_file(&now) {
            return false;
        }
        self.live.insert(point.to_string());
        self.entries.insert(VerifyCache::key(point, name), was);
        true
    }

    /// Forget what is cached of `point`'s files: the next check reads them
    /// all (a file found damaged although its attributes did not change).
    pub fn forget(&mut self, point: &str) {
        let prefix = format!("{point}/");
        self.entries.retain(|k, _| !k.starts_with(&prefix));
        self.forgot = true;
    }

    /// Whether there is anything to save: files hashed, recorded or
    /// forgotten since the cache was read (entries of points gone alone
    /// are not worth a write).
    pub fn has_news(&self) -> bool {
        self.forgot || self.kept().any(|(k, v)| self.known.get(k) != Some(v))
    }

    /// The entries to keep: those of the points checked or recorded.
    fn kept(&self) -> impl Iterator<Item = (&String, &Verified)> {
        self.entries.iter().filter(|(k, _)| {
            k.split_once('/')
                .is_some_and(|(point, _)| self.live.contains(point))
        })
    }

    /// Write the cache (what this run saw) atomically: a temporary file,
    /// fsync, rename over the old one. Call only under the chain's lock.
    pub fn save(&mut self) -> Result<()> {
        let dir = crate::atomic::parent_of(&self.path).to_path_buf();
        let file = VerifiedFile {
            format: VERIFIED_FORMAT.into(),
            version: 1,
            files: self.kept().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let mut text =
            serde_json::to_vec_pretty(&file).context("cannot encode the verification cache")?;
        text.push(b'\n');
        let temp = dir.join(format!(
            "{}verified.{}",
            crate::naming::TEMP_PREFIX,
            std::process::id()
        ));
        crate::signals::track_temp(&temp);
        let res = (|| -> io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(crate::atomic::FILE_MODE)
                .open(&temp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&temp, &self.path)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        crate::signals::untrack_temp(&temp);
        res.with_context(|| format!("cannot write '{}'", self.path.display()))?;
        self.known = file.files;
        Ok(())
    }
}

/// sha256 of the file at `path`, and its metadata when it did not change
/// while it was read (the same before and after).
fn hash_stable(path: &Path) -> io::Result<(String, Option<std::fs::Metadata>)> {
    let mut f = File::open(path)?;
    let before = f.metadata()?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
    }
    let after = f.metadata()?;
    let same = Verified::new(&before, "") == Verified::new(&after, "");
    Ok((crate::gzip::hex(&sha.finalize()), same.then_some(after)))
}

/// Check one point's own files against its manifest (with `cache`, the
/// sha256 of files that did not change since they were hashed are not
/// read again).
fn check_own(
    p: &Point,
    depth: Depth,
    mut cache: Option<&mut VerifyCache>,
) -> (Option<Manifest>, Option<String>, Option<String>) {
    let mpath = p.file(MANIFEST);
    let m = match Manifest::load(&mpath) {
        Ok(m) => m,
        Err(e) => return (None, None, Some(format!("its manifest: {e:#}"))),
    };
    let msha = sha256_file(&mpath).ok();
    let problem = (|| {
        let Some(c) = &m.chain else {
            return Some("its manifest is not a chain point's".to_string());
        };
        if c.point != p.id() {
            return Some(format!(
                "its manifest describes '{}', not '{}' (a copied or renamed point)",
                c.point,
                p.id()
            ));
        }
        let want_kind = p.name.kind.as_str();
        if m.kind != want_kind {
            return Some(format!("its manifest says kind '{}'", m.kind));
        }
        for (role, name) in ROLES {
            let Some(f) = m.files.iter().find(|f| f.role == role) else {
                return Some(format!("its manifest does not list the {role}"));
            };
            let path = p.file(name);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => m,
                Ok(_) => return Some(format!("{name} is not a regular file")),
                Err(e) => return Some(format!("{name} is missing ({e})")),
            };
            if meta.len() != f.bytes {
                return Some(format!(
                    "{name} has {} bytes; its manifest says {}",
                    meta.len(),
                    f.bytes
                ));
            }
            if depth == Depth::Sizes {
                continue;
            }
            let sha = match cache.as_deref_mut() {
                Some(c) => c.sha256(p, name, &meta),
                None => sha256_file(&path),
            };
            match sha {
                Ok(h) if h == f.sha256 => {}
                Ok(_) => return Some(format!("{name} does not match its sha256 in the manifest")),
                Err(e) => return Some(format!("cannot read {name}: {e}")),
            }
        }
        if depth == Depth::Full {
            let chunks = m
                .files
                .iter()
                .find(|f| f.role == "archive")
                .and_then(|f| f.chunks.as_ref())
                .and_then(|c| c.chunks());
            if let Err((_, why)) =
                crate::archive::verify_archive(&p.file(ARCHIVE), chunks, Some(&p.file(INDEX)))
            {
                return Some(format!("{ARCHIVE}: {why}"));
            }
            match IndexReader::open(&p.file(LISTING)) {
                Ok(r) => {
                    for e in r {
                        if let Err(e) = e {
                            return Some(format!("{LISTING}: {e:#}"));
                        }
                    }
                }
                Err(e) => return Some(format!("{LISTING}: {e:#}")),
            }
        }
        None
    })();
    (Some(m), msha, problem)
}

/// Check every point of the chain directory `dir`, oldest first.
pub fn check_chain(dir: &Path, depth: Depth) -> Result<Vec<PointCheck>> {
    check_points(points(dir)?, depth)
}

/// Check every point of the chain directory `dir` as [`Depth::Hashes`]
/// does, but taking the sha256 of files that did not change since they
/// were last hashed from `cache` (see [`VerifyCache`]); the files it reads
/// are added to it. For tb-incr, before it continues the chain.
pub fn check_chain_cached(dir: &Path, cache: &mut VerifyCache) -> Result<Vec<PointCheck>> {
    check_points_with(points(dir)?, Depth::Hashes, Some(cache))
}

/// Check `points` (oldest first), each with its ancestry.
pub fn check_points(points: Vec<Point>, depth: Depth) -> Result<Vec<PointCheck>> {
    check_points_with(points, depth, None)
}

fn check_points_with(
    points: Vec<Point>,
    depth: Depth,
    mut cache: Option<&mut VerifyCache>,
) -> Result<Vec<PointCheck>> {
    let mut out: Vec<PointCheck> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for p in points {
        crate::signals::check()?;
        let (manifest, manifest_sha256, problem) = check_own(&p, depth, cache.as_deref_mut());
        let mut c = PointCheck {
            point: p,
            manifest,
            manifest_sha256,
            problem: problem.clone(),
            unrestorable: problem.map(|w| format!("{} is damaged: {w}", "this point")),
            path: Vec::new(),
        };
        if c.restorable() {
            let info = c.manifest.as_ref().and_then(|m| m.chain.clone());
            match (c.point.name.kind, info) {
                (Kind::ChainBase, Some(i)) => {
                    if i.parent.is_some() || i.chain != c.point.id() {
                        c.unrestorable = Some("its manifest gives a base a parent".into());
                    }
                }
                (_, Some(i)) => match i.parent.as_deref() {
                    None => c.unrestorable = Some("its manifest names no parent".into()),
                    Some(parent) => match by_id.get(parent) {
                        None => {
                            c.unrestorable = Some(format!(
                                "its parent '{parent}' is missing (deleted or moved)"
                            ))
                        }
                        Some(&pi) => {
                            let pc: &PointCheck = &out[pi];
                            if let Some(why) = &pc.unrestorable {
                                c.unrestorable = Some(if pc.problem.is_some() {
                                    format!("its parent '{parent}' is damaged")
                                } else {
                                    format!("its parent '{parent}' is not restorable ({why})")
                                });
                            } else if pc.manifest_sha256 != i.parent_manifest_sha256 {
                                c.unrestorable = Some(format!(
                                    "its parent '{parent}' is not the point it was taken against (manifest hash differs)"
                                ));
                            } else if pc.chain() != Some(i.chain.as_str()) {
                                c.unrestorable =
                                    Some(format!("its parent '{parent}' is of another chain"));
                            } else {
                                c.path = pc.path.clone();
                            }
                        }
                    },
                },
                (_, None) => c.unrestorable = Some("its manifest is not a chain point's".into()),
            }
        }
        let i = out.len();
        if c.restorable() {
            c.path.push(i);
        } else {
            c.path.clear();
        }
        by_id.insert(c.point.id(), i);
        out.push(c);
    }
    Ok(out)
}

/// The components of a relative listing name (`.` has none).
fn components(rel: &[u8]) -> Result<Vec<&[u8]>> {
    if rel == b"." {
        return Ok(Vec::new());
    }
    let comps: Vec<&[u8]> = rel.split(|c| *c == b'/').collect();
    if rel.contains(&0)
        || comps
            .iter()
            .any(|c| c.is_empty() || *c == b"." || *c == b"..")
    {
        anyhow::bail!(
            "unsafe path '{}' in a list of deleted paths",
            crate::record::display_bytes(rel)
        );
    }
    Ok(comps)
}

/// Remove `rel` (a file, or a directory with everything in it) under
/// `root`, never following a symlink on the way: every directory above it
/// must be a real directory under `root`. A path that is not there is
/// left as it is (returns false).
pub fn remove_under(root: &Path, rel: &[u8]) -> Result<bool> {
    let comps = components(rel)?;
    let Some((last, parents)) = comps.split_last() else {
        anyhow::bail!("a list of deleted paths names the root itself");
    };
    let mut at = root.to_path_buf();
    for c in parents {
        at.push(OsString::from_vec(c.to_vec()));
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", at.display())),
        }
    }
    at.push(OsString::from_vec(last.to_vec()));
    let meta = match std::fs::symlink_metadata(&at) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", at.display())),
    };
    if meta.is_dir() {
        crate::extract::make_writable(&at);
        std::fs::remove_dir_all(&at)
    } else {
        std::fs::remove_file(&at)
    }
    .with_context(|| format!("cannot remove '{}'", at.display()))?;
    Ok(true)
}

/// The paths of a `deleted.nul` file.
pub fn read_deleted(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    Ok(data
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Compare the tree at `root` with a listing: every path, type, mode,
/// owner (when `owners`), size, mtime, symlink target, device numbers and
/// extended attributes, hard links sharing their inode, and nothing extra.
/// Contents are not re-read (each file was checked against its sha256 when
/// it was extracted). With `extras_ok` (a restore over a non-empty target)
/// paths that are not in the listing are not differences. Returns the
/// differences, at most `max`.
pub fn compare_tree(
    root: &Path,
    listing: &Path,
    owners: bool,
    extras_ok: bool,
    max: usize,
) -> Result<Vec<String>> {
    let mut diffs = Vec::new();
    let mut want = IndexReader::open(listing)?.peekable();
    let mut inodes: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), b".".to_vec())];
    // Depth first, children sorted by raw bytes (pushed in reverse): the
    // listing's order.
    while let Some((path, rel)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read '{}'", path.display()))?;
        if meta.is_dir() {
            let mut names: Vec<OsString> = std::fs::read_dir(&path)
                .with_context(|| format!("cannot read '{}'", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
            for n in names {
                let mut child = if rel == b"." { Vec::new() } else { rel.clone() };
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(n.as_bytes());
                stack.push((path.join(&n), child));
            }
        }
        {
            let e = loop {
                match want.peek() {
                    Some(Ok(e)) if crate::archive::walk_cmp(&e.path.to_bytes(), &rel).is_lt() => {
                        if diffs.len() < max {
                            diffs.push(format!("'{}' is missing", e.path.display()));
                        }
                        want.next();
                    }
                    Some(Ok(e)) if e.path.to_bytes() == rel => {
                        break want.next().and_then(|r| r.ok());
                    }
                    Some(Err(_)) => {
                        let e = want.next().and_then(|r| r.err());
                        return Err(e.unwrap_or_else(|| anyhow::anyhow!("unreadable listing")));
                    }
                    _ => break None,
                }
            };
            let shown = crate::record::display_bytes(&rel);
            let Some(e) = e else {
                if !extras_ok && diffs.len() < max {
                    diffs.push(format!("'{shown}' is there but not in the listing"));
                }
                continue;
            };
            for d in entry_diffs(&meta, &path, &e, owners, &mut inodes) {
                if diffs.len() < max {
                    diffs.push(format!("'{shown}': {d}"));
                }
            }
        }
    }
    for e in want {
        let e = e?;
        if diffs.len() < max {
            diffs.push(format!("'{}' is missing", e.path.display()));
        }
    }
    Ok(diffs)
}

fn entry_diffs(
    meta: &std::fs::Metadata,
    path: &Path,
    e: &IndexEntry,
    owners: bool,
    inodes: &mut HashMap<Vec<u8>, (u64, u64)>,
) -> Vec<String> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_char_device() {
        EntryKind::Char
    } else if ft.is_block_device() {
        EntryKind::Block
    } else {
        EntryKind::File
    };
    let mut d = Vec::new();
    let want_kind = if e.kind == EntryKind::Hardlink {
        EntryKind::File
    } else {
        e.kind
    };
    if kind != want_kind {
        d.push(format!(
            "is a {} (listing: {})",
            kind.as_str(),
            e.kind.as_str()
        ));
        return d;
    }
    if meta.mode() & 0o7777 != e.mode && kind != EntryKind::Symlink {
        d.push(format!(
            "mode {:o} (listing: {:o})",
            meta.mode() & 0o7777,
            e.mode
        ));
    }
    if owners && (meta.uid() != e.uid || meta.gid() != e.gid) {
        d.push(format!(
            "owner {}:{} (listing: {}:{})",
            meta.uid(),
            meta.gid(),
            e.uid,
            e.gid
        ));
    }
    let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    if mtime != e.mtime_ns {
        d.push(format!("mtime {mtime} (listing: {})", e.mtime_ns));
    }
    if e.kind == EntryKind::File && meta.len() != e.size {
        d.push(format!("{} bytes (listing: {})", meta.len(), e.size));
    }
    if kind == EntryKind::Symlink {
        let t = std::fs::read_link(path)
            .map(|t| t.as_os_str().as_bytes().to_vec())
            .unwrap_or_default();
        if Some(t) != e.target.as_ref().map(|t| t.to_bytes()) {
            d.push("symlink target differs".into());
        }
    }
    if matches!(kind, EntryKind::Char | EntryKind::Block) {
        let r = meta.rdev();
        let dev = (
            nix::sys::stat::major(r) as u32,
            nix::sys::stat::minor(r) as u32,
        );
        if Some(dev) != e.rdev {
            d.push("device numbers differ".into());
        }
    }
    let inode = (meta.dev(), meta.ino());
    if let Some(first) = &e.link {
        if inodes.get(&first.to_bytes()) != Some(&inode) {
            d.push(format!("is not a hard link of '{}'", first.display()));
        }
    } else if kind == EntryKind::File && meta.nlink() > 1 {
        inodes.insert(e.path.to_bytes(), inode);
    }
    let mut xa = std::collections::BTreeMap::new();
    if let Ok(names) = xattr::list(path) {
        for n in names {
            if let (Some(k), Ok(Some(v))) = (n.to_str(), xattr::get(path, &n)) {
                xa.insert(k.to_string(), crate::gzip::hex(&v));
            }
        }
    }
    if xa != e.xattrs {
        d.push("extended attributes differ".into());
    }
    d
}

/// The chain directory for `label` under the incremental root `dir`.
pub fn chain_dir(dir: &Path, label: &str) -> PathBuf {
    dir.join(label)
}

/// Is `dir` itself a chain directory (it holds point directories)?
pub fn looks_like_chain(dir: &Path) -> bool {
    points(dir).map(|p| !p.is_empty()).unwrap_or(false)
}

/// The point directory name `dir` is, if it is one (inside its chain).
pub fn as_point(dir: &Path) -> Option<Point> {
    let chain = dir.parent()?;
    let label = chain.file_name()?.to_string_lossy().into_owned();
    let name = BackupName::parse_in_chain(dir.file_name()?, &label)?;
    Some(Point {
        name,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::walk_cmp;
    use std::cmp::Ordering;

    #[test]
    fn archive_order_is_component_by_component() {
        assert_eq!(walk_cmp(b".", b"a"), Ordering::Less);
        assert_eq!(walk_cmp(b"a/b", b"a-c"), Ordering::Less);
        assert_eq!(walk_cmp(b"a", b"a/b"), Ordering::Less);
        assert_eq!(walk_cmp(b"a/b", b"a/b"), Ordering::Equal);
        assert_eq!(walk_cmp(b"b", b"a/z"), Ordering::Greater);
        assert_eq!(walk_cmp(b"a\xff", b"a/\x01"), Ordering::Greater);
    }

    /// A base point `base_20260101` in `chain` (a directory named after
    /// its label) with four files and their manifest; the files' mtimes
    /// are a year old, so that a rewrite always changes them.
    fn base_point(chain: &Path) -> PathBuf {
        let id = "base_20260101";
        let dir = chain.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = Manifest::new("chain_base", "media", "test", "2026-01-01T00:00:00Z");
        for (i, (role, name)) in ROLES.iter().enumerate() {
            let data = format!("{role} {}", "x".repeat(1000 * i)).into_bytes();
            let path = dir.join(name);
            std::fs::write(&path, &data).unwrap();
            let old = std::time::SystemTime::now() - std::time::Duration::from_secs(365 * 86400);
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
            m.files.push(crate::manifest::FileEntry {
                role: role.to_string(),
                name: name.to_string(),
                bytes: data.len() as u64,
                raw_bytes: data.len() as u64,
                sha256: crate::gzip::hex(&Sha256::digest(&data)),
                crc32: 0,
                chunks: None,
            });
        }
        m.chain = Some(crate::manifest::ChainInfo {
            point: id.into(),
            chain: id.into(),
            mode: "base".into(),
            parent: None,
            parent_manifest_sha256: None,
            base_reason: None,
            listed: 0,
            listed_file_bytes: 0,
            added: 0,
            changed: 0,
            unchanged: 0,
            deleted: 0,
            walk_started_at: None,
        });
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        dir
    }

    /// One cached check: (restorable, its problem, files hashed, files trusted).
    fn cached_check(chain: &Path) -> (bool, Option<String>, u64, u64) {
        let mut cache = VerifyCache::load(chain);
        let checks = check_chain_cached(chain, &mut cache).unwrap();
        assert_eq!(checks.len(), 1);
        if cache.has_news() {
            cache.save().unwrap();
        }
        let c = &checks[0];
        (
            c.restorable(),
            c.problem.clone(),
            cache.hashed(),
            cache.trusted(),
        )
    }

    #[test]
    fn the_verification_cache_skips_only_files_that_did_not_change() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let chain = d.path().join("media");
        let point = base_point(&chain);
        // The first check hashes everything and keeps it (0600).
        assert_eq!(cached_check(&chain), (true, None, 4, 0));
        let cache = chain.join(VERIFIED);
        assert_eq!(
            std::fs::metadata(&cache).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        // Unchanged: nothing is read again.
        assert_eq!(cached_check(&chain), (true, None, 0, 4));
        // The cached sha256 is what is used: forged in the cache, the
        // untouched file is reported damaged (it was not read).
        let text = std::fs::read_to_string(&cache).unwrap();
        let sha = sha256_file(&point.join(DELETED)).unwrap();
        std::fs::write(&cache, text.replace(&sha, &"0".repeat(64))).unwrap();
        let (ok, why, hashed, trusted) = cached_check(&chain);
        assert!(!ok && (hashed, trusted) == (0, 4), "{why:?}");
        assert!(why.unwrap().contains("deleted.nul does not match"));
        std::fs::write(&cache, &text).unwrap();
        assert_eq!(cached_check(&chain), (true, None, 0, 4));

        // A flipped byte written in place (same size): hashed again, caught.
        let archive = point.join(ARCHIVE);
        let good = std::fs::read(&archive).unwrap();
        let mut bad = good.clone();
        bad[3] ^= 0x20;
        std::fs::write(&archive, &bad).unwrap();
        let (ok, why, hashed, trusted) = cached_check(&chain);
        assert!(!ok, "a changed file is never trusted");
        assert_eq!((hashed, trusted), (1, 0), "the first bad file decides");
        assert!(
            why.unwrap()
                .contains("archive.tar.gz does not match its sha256 in the manifest")
        );
        // Still damaged on the next run (the cache now knows it is).
        assert!(!cached_check(&chain).0);
        // Put back as it was: read again, good again.
        std::fs::write(&archive, &good).unwrap();
        assert_eq!(cached_check(&chain), (true, None, 1, 3));

        // Replaced by an identical copy (another inode): read again.
        let copy = chain.join("copy");
        std::fs::copy(&archive, &copy).unwrap();
        std::fs::rename(&copy, &archive).unwrap();
        assert_eq!(cached_check(&chain), (true, None, 1, 3));
        // A damaged copy renamed over it is caught too.
        std::fs::write(&copy, &bad).unwrap();
        std::fs::rename(&copy, &archive).unwrap();
        assert!(!cached_check(&chain).0);
        std::fs::write(&archive, &good).unwrap();
        assert!(cached_check(&chain).0);

        // A mode change alone (ctime): read again.
        std::fs::set_permissions(point.join(INDEX), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert_eq!(cached_check(&chain), (true, None, 1, 3));

        // A damaged or missing cache: everything is hashed again.
        std::fs::write(&cache, b"{not json").unwrap();
        assert_eq!(cached_check(&chain), (true, None, 4, 0));
        std::fs::remove_file(&cache).unwrap();
        assert_eq!(cached_check(&chain), (true, None, 4, 0));
        // Without the cache (tb-restore, tb-check) nothing changes.
        let checks = check_chain(&chain, Depth::Hashes).unwrap();
        assert!(checks[0].restorable());
        assert!(
            crate::atomic::remove_stale_temps(&chain)
                .unwrap()
                .is_empty(),
            "no temporary left"
        );
    }

    #[test]
    fn a_recorded_file_is_cached_only_while_it_is_the_same() {
        let d = tempfile::tempdir().unwrap();
        let chain = d.path().join("media");
        let point = base_point(&chain);
        let mut cache = VerifyCache::load(&chain);
        for (_, name) in ROLES {
            let path = point.join(name);
            let before = std::fs::symlink_metadata(&path).unwrap();
            let sha = sha256_file(&path).unwrap();
            assert!(cache.record("base_20260101", name, &path, &before, &sha));
        }
        // Changed since `before`: not recorded.
        let path = point.join(DELETED);
        let before = std::fs::symlink_metadata(&path).unwrap();
        std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
        assert!(!cache.record("base_20260101", DELETED, &path, &before, "x"));
        assert!(cache.has_news());
        cache.save().unwrap();
        assert_eq!(cached_check(&chain), (true, None, 1, 3));
    }

    #[test]
    fn removal_never_follows_a_symlink_on_the_way() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        std::fs::write(root.join("real/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        assert!(!remove_under(&root, b"link/keep").unwrap());
        assert!(outside.join("keep").exists());
        assert!(
            remove_under(&root, b"link").unwrap(),
            "the symlink itself goes"
        );
        assert!(outside.join("keep").exists());
        assert!(remove_under(&root, b"real").unwrap());
        assert!(!root.join("real").exists());
        assert!(remove_under(&root, b"../outside").is_err());
        assert!(remove_under(&root, b"/etc").is_err());
        assert!(!remove_under(&root, b"gone").unwrap());
    }
}
