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

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// Check one point's own files against its manifest.
fn check_own(p: &Point, depth: Depth) -> (Option<Manifest>, Option<String>, Option<String>) {
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
            match sha256_file(&path) {
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

/// Check `points` (oldest first), each with its ancestry.
pub fn check_points(points: Vec<Point>, depth: Depth) -> Result<Vec<PointCheck>> {
    let mut out: Vec<PointCheck> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for p in points {
        crate::signals::check()?;
        let (manifest, manifest_sha256, problem) = check_own(&p, depth);
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
