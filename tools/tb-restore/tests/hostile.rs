//! tb-restore against hostile archives: no entry of a tar.gz, however it is
//! crafted, can create, change or follow anything outside the target, and
//! any refused entry fails the whole restore loudly (exit 2, one `refused`
//! record per refused entry, an error of cause `unsafe_archive`, a failed
//! summary) with the target as it was.
//!
//! Every archive is built here, one 512-byte header block at a time
//! ([`Tar`]), so names the `tar` crate's builder would refuse (absolute,
//! `..`, hidden in GNU long-name records, pax `path`/`linkpath` records or
//! the ustar prefix field) can be written exactly. The builder is proven
//! against GNU tar by `the_raw_tar_builder_agrees_with_gnu_tar`.
//!
//! Every hostile entry aims at a sentinel directory beside the target
//! (`outside/`). The whole sandbox is snapshotted before and after each run
//! (names, kinds, bytes, modes, owners, mtimes, ctimes, inodes, link counts,
//! xattrs, symlink targets): a write, a chmod, a hard link, or a file created
//! and removed again anywhere outside the target would show, if only in a
//! ctime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tb_testkit::{
    Sandbox, Tmpfs, events, is_root, list_dir, noise, records, summary, tree_listing,
};

/// The mtime of every archived entry.
const MTIME: u64 = 1_767_225_600;
/// Where absolute symlinks in the archives point: nowhere real, so that
/// even a regressed extractor that followed them could not touch the host.
const NOWHERE: &[u8] = b"/nonexistent/tb-hostile/target";
/// The mtimes of the sentinel files (long before any test runs).
const OLD: i64 = 1_600_000_000;

// ---------------------------------------------------------------------------
// A raw tar writer: header blocks written field by field.

/// The fields of one header block; what is not set is zero.
struct Head<'a> {
    name: &'a [u8],
    kind: u8,
    mode: u32,
    size: u64,
    link: &'a [u8],
    dev: (u32, u32),
    /// The ustar prefix field (only with `posix`).
    prefix: &'a [u8],
    /// POSIX ustar magic (`ustar\0` `00`) instead of GNU's (`ustar  \0`).
    posix: bool,
}

impl<'a> Head<'a> {
    fn new(name: &'a [u8], kind: u8, mode: u32) -> Head<'a> {
        Head {
            name,
            kind,
            mode,
            size: 0,
            link: b"",
            dev: (0, 0),
            prefix: b"",
            posix: false,
        }
    }
}

/// `v` in octal, zero-padded to the field's width less one, then NUL.
fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    assert!(s.len() <= w, "{v} does not fit {w} octal digits");
    field[..w].copy_from_slice(s.as_bytes());
    field[w] = 0;
}

fn header_block(h: &Head) -> [u8; 512] {
    assert!(
        h.name.len() <= 100,
        "name field overflow: use a long-name record"
    );
    assert!(
        h.link.len() <= 100,
        "link field overflow: use a long-link record"
    );
    assert!(h.prefix.len() <= 155);
    let mut b = [0u8; 512];
    b[..h.name.len()].copy_from_slice(h.name);
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], u64::from(nix::unistd::geteuid().as_raw()));
    octal(&mut b[116..124], u64::from(nix::unistd::getegid().as_raw()));
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], MTIME);
    b[156] = h.kind;
    b[157..157 + h.link.len()].copy_from_slice(h.link);
    if h.posix {
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[345..345 + h.prefix.len()].copy_from_slice(h.prefix);
    } else {
        assert!(h.prefix.is_empty(), "GNU headers have no prefix field");
        b[257..265].copy_from_slice(b"ustar  \0");
    }
    octal(&mut b[329..337], u64::from(h.dev.0));
    octal(&mut b[337..345], u64::from(h.dev.1));
    // The checksum counts its own field as eight spaces.
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

/// One pax record: `LEN KEY=VALUE\n`, LEN counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

/// The first 100 bytes of a name (what GNU tar puts in the header after a
/// long-name record).
fn trunc(name: &[u8]) -> &[u8] {
    &name[..name.len().min(100)]
}

/// A tar stream, built entry by entry.
#[derive(Default)]
struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    fn new() -> Tar {
        Tar::default()
    }

    /// A header and its data (padded to the block size); the size field is
    /// the data's length.
    fn entry(&mut self, mut h: Head, data: &[u8]) -> &mut Tar {
        h.size = data.len() as u64;
        self.buf.extend_from_slice(&header_block(&h));
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len().next_multiple_of(512), 0);
        self
    }

    fn dir(&mut self, name: &[u8]) -> &mut Tar {
        self.dir_mode(name, 0o755)
    }

    fn dir_mode(&mut self, name: &[u8], mode: u32) -> &mut Tar {
        self.entry(Head::new(name, b'5', mode), b"")
    }

    fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Tar {
        self.file_mode(name, 0o644, data)
    }

    fn file_mode(&mut self, name: &[u8], mode: u32, data: &[u8]) -> &mut Tar {
        self.entry(Head::new(name, b'0', mode), data)
    }

    fn symlink(&mut self, name: &[u8], target: &[u8]) -> &mut Tar {
        let mut h = Head::new(name, b'2', 0o777);
        h.link = target;
        self.entry(h, b"")
    }

    fn hardlink(&mut self, name: &[u8], target: &[u8]) -> &mut Tar {
        let mut h = Head::new(name, b'1', 0o644);
        h.link = target;
        self.entry(h, b"")
    }

    fn fifo(&mut self, name: &[u8]) -> &mut Tar {
        self.entry(Head::new(name, b'6', 0o640), b"")
    }

    fn device(&mut self, name: &[u8], kind: u8, major: u32, minor: u32) -> &mut Tar {
        let mut h = Head::new(name, kind, 0o600);
        h.dev = (major, minor);
        self.entry(h, b"")
    }

    /// A GNU long-name record (`L`): the next header's name is `name`,
    /// whatever its own name field says.
    fn long_name(&mut self, name: &[u8]) -> &mut Tar {
        let mut data = name.to_vec();
        data.push(0);
        self.entry(Head::new(b"././@LongLink", b'L', 0o644), &data)
    }

    /// A GNU long-link record (`K`): the next header's link name is `link`.
    fn long_link(&mut self, link: &[u8]) -> &mut Tar {
        let mut data = link.to_vec();
        data.push(0);
        self.entry(Head::new(b"././@LongLink", b'K', 0o644), &data)
    }

    /// A pax extended header (`x`) for the next entry.
    fn pax(&mut self, recs: &[(&str, &[u8])]) -> &mut Tar {
        let data: Vec<u8> = recs.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let mut h = Head::new(b"./PaxHeaders/entry", b'x', 0o644);
        h.posix = true;
        self.entry(h, &data)
    }

    /// A regular file in a POSIX ustar header whose name is split between
    /// the prefix field and the name field.
    fn prefixed_file(&mut self, prefix: &[u8], name: &[u8], data: &[u8]) -> &mut Tar {
        let mut h = Head::new(name, b'0', 0o644);
        h.posix = true;
        h.prefix = prefix;
        self.entry(h, data)
    }

    /// The stream with its end-of-archive blocks.
    fn bytes(&self) -> Vec<u8> {
        let mut b = self.buf.clone();
        b.extend_from_slice(&[0u8; 1024]);
        b
    }

    /// Write the archive gzipped (by GNU gzip) to `path` (`....tar.gz`).
    fn write_gz(&self, path: &Path) {
        let tar = path.with_extension("");
        assert_eq!(
            tar.extension(),
            Some(OsStr::new("tar")),
            "{}",
            path.display()
        );
        std::fs::write(&tar, self.bytes()).unwrap();
        let st = Command::new("gzip").arg("-n").arg(&tar).status().unwrap();
        assert!(st.success(), "gzip {}", tar.display());
        assert!(path.is_file());
    }
}

// ---------------------------------------------------------------------------
// Snapshots of everything in a directory tree.

/// Everything that would show a change to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    ino: u64,
    nlink: u64,
    size: u64,
    rdev: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    bytes: Option<Vec<u8>>,
    link: Option<PathBuf>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn node(p: &Path) -> Node {
    let m = std::fs::symlink_metadata(p).unwrap();
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "socket"
    };
    let mut xattrs: Vec<(String, Vec<u8>)> = xattr::list(p)
        .map(|names| {
            names
                .map(|k| {
                    let v = xattr::get(p, &k).ok().flatten().unwrap_or_default();
                    (k.to_string_lossy().into_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    xattrs.sort();
    Node {
        kind,
        mode: m.mode() & 0o7777,
        owner: (m.uid(), m.gid()),
        ino: m.ino(),
        nlink: m.nlink(),
        size: m.size(),
        rdev: m.rdev(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        bytes: ft.is_file().then(|| std::fs::read(p).unwrap()),
        link: ft.is_symlink().then(|| std::fs::read_link(p).unwrap()),
        xattrs,
    }
}

/// Every path under `root` (not `root` itself), never following symlinks.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let rel = rel.join(e.unwrap().file_name());
            let n = node(&root.join(&rel));
            let is_dir = n.kind == "dir";
            out.insert(rel.clone(), n);
            if is_dir {
                walk(root, &rel, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// Panic, listing every difference, unless the snapshots are equal.
fn assert_unchanged(before: &BTreeMap<PathBuf, Node>, after: &BTreeMap<PathBuf, Node>, what: &str) {
    let mut diffs = Vec::new();
    for (p, n) in before {
        match after.get(p) {
            None => diffs.push(format!("removed: {}", p.display())),
            Some(a) if a != n => diffs.push(format!(
                "changed: {}\n  before {n:?}\n  after  {a:?}",
                p.display()
            )),
            Some(_) => {}
        }
    }
    for (p, a) in after {
        if !before.contains_key(p) {
            diffs.push(format!("appeared: {} {a:?}", p.display()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: outside the target:\n{}",
        diffs.join("\n")
    );
}

/// A snapshot without the paths under `prefix`.
fn without(snap: &BTreeMap<PathBuf, Node>, prefix: &str) -> BTreeMap<PathBuf, Node> {
    snap.iter()
        .filter(|(p, _)| !p.starts_with(prefix))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect()
}

fn set_mtime(p: &Path, secs: i64) {
    let ts = nix::sys::time::TimeSpec::new(secs, 123_456_789);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

// ---------------------------------------------------------------------------
// A sandbox with a sentinel directory, an archive and a target.

const SECRET: &[u8] = b"the real secret, never to be overwritten\n";
const VICTIM: &[u8] = b"victim bytes\n";

struct World {
    sb: Sandbox,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// The target does not exist (renamed into place).
    New,
    /// The target is an empty directory (swapped into place).
    Empty,
}

impl World {
    /// A sandbox holding `outside/` (the sentinel: files, a subdirectory, a
    /// symlink, old mtimes) and `in/` (for the archive).
    fn new() -> World {
        let sb = Sandbox::new();
        let o = sb.join("outside");
        std::fs::create_dir_all(o.join("sub")).unwrap();
        std::fs::write(o.join("secret.txt"), SECRET).unwrap();
        std::fs::set_permissions(o.join("secret.txt"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(o.join("victim"), VICTIM).unwrap();
        std::fs::set_permissions(o.join("victim"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(o.join("sub/deep.txt"), b"deep\n").unwrap();
        std::os::unix::fs::symlink("../secret.txt", o.join("sub/link")).unwrap();
        std::fs::set_permissions(o.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
        for p in [
            "secret.txt",
            "victim",
            "sub/deep.txt",
            "sub/link",
            "sub",
            "",
        ] {
            set_mtime(&o.join(p), OLD);
        }
        std::fs::create_dir(sb.join("in")).unwrap();
        World { sb }
    }

    /// An absolute path in the sandbox, as archive-name bytes.
    fn abs(&self, rel: &str) -> Vec<u8> {
        self.sb.join(rel).as_os_str().as_bytes().to_vec()
    }

    /// The sandbox directory's own name (to come back into it from its parent).
    fn sb_name(&self) -> String {
        self.sb
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn archive(&self) -> PathBuf {
        self.sb.join("in/archive.tar.gz")
    }

    fn target(&self) -> PathBuf {
        self.sb.join("restore")
    }

    /// Make the target as `t` says; its path.
    fn prepare(&self, t: Target) -> PathBuf {
        let dest = self.target();
        if let Target::Empty = t {
            std::fs::create_dir(&dest).unwrap();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o751)).unwrap();
            set_mtime(&dest, OLD);
        }
        dest
    }

    fn no_temps(&self) {
        let temps: Vec<String> = self
            .sb
            .list("")
            .into_iter()
            .filter(|n| n.starts_with(".tb-tmp."))
            .collect();
        assert!(temps.is_empty(), "temporary directories left: {temps:?}");
    }
}

fn restore(archive: &Path, target: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-restore"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("TB_") {
            c.env_remove(&k);
        }
    }
    c.arg(archive)
        .arg("--target")
        .arg(target)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A refusal a run must report: the entry's name as stored in the archive
/// and a word of the reason.
type Want = (Vec<u8>, &'static str);

fn shown(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("test names are UTF-8")
}

/// The run failed as a hostile archive must fail: exit 2, exactly the
/// `refused` records of `want` (each naming its entry, with its reason),
/// one error of cause `unsafe_archive`, nothing restored, a failed summary.
fn assert_unsafe(out: &Output, want: &[Want], what: &str) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let recs = records(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: stderr: {stderr}\n{recs:#?}"
    );
    let errs = events(&recs, "error");
    assert_eq!(errs.len(), 1, "{what}: {recs:#?}");
    assert_eq!(errs[0]["cause"], "unsafe_archive", "{what}: {recs:#?}");
    assert!(
        errs[0]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was restored"),
        "{what}: {}",
        errs[0]["message"]
    );
    assert!(events(&recs, "restored").is_empty(), "{what}: {recs:#?}");
    let s = summary(&recs);
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].as_u64()),
        (Some("failed"), Some(2))
    );
    let refused = events(&recs, "refused");
    for (entry, reason) in want {
        let entry = shown(entry);
        assert!(
            refused
                .iter()
                .any(|r| r["entry"] == entry.as_str()
                    && r["reason"].as_str().unwrap().contains(reason)),
            "{what}: no refused record for {entry:?} saying {reason:?}: {refused:#?}"
        );
    }
    assert_eq!(
        refused.len(),
        want.len(),
        "{what}: one refused record per refused entry: {refused:#?}"
    );
    assert!(
        stderr.contains("unsafe") || stderr.contains("outside the target"),
        "{what}: {stderr}"
    );
    recs
}

/// The run succeeded with nothing refused: exit 1 (the only warning: no
/// manifest beside an archive built here), a `restored` record.
fn assert_restored(out: &Output, what: &str) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let recs = records(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: stderr: {stderr}\n{recs:#?}"
    );
    assert!(events(&recs, "refused").is_empty(), "{what}: {recs:#?}");
    assert!(events(&recs, "error").is_empty(), "{what}: {recs:#?}");
    assert_eq!(events(&recs, "restored").len(), 1, "{what}: {recs:#?}");
    let warnings = events(&recs, "warning");
    assert!(
        warnings
            .iter()
            .any(|w| w["message"].as_str().unwrap().contains("no manifest")),
        "{what}: {warnings:#?}"
    );
    assert_eq!(summary(&recs)["exit_code"], 1);
    recs
}

/// Build the archive `build` makes in a fresh world, restore it into a new
/// target and into an existing empty one: both runs must fail with exactly
/// the refusals `build` names, and leave the whole sandbox (the target, its
/// parent, the sentinel) as it was.
fn assert_refused_everywhere(what: &str, build: impl Fn(&World) -> (Tar, Vec<Want>)) {
    for t in [Target::New, Target::Empty] {
        let what = format!("{what} ({t:?} target)");
        let w = World::new();
        let (tar, want) = build(&w);
        assert!(!want.is_empty());
        tar.write_gz(&w.archive());
        let dest = w.prepare(t);
        let before = snapshot(w.sb.path());
        let out = restore(&w.archive(), &dest, &[]);
        assert_unsafe(&out, &want, &what);
        assert_unchanged(&before, &snapshot(w.sb.path()), &what);
        match t {
            Target::New => assert!(!dest.exists(), "{what}: the new target must not exist"),
            Target::Empty => assert!(list_dir(&dest).is_empty(), "{what}: still empty"),
        }
        w.no_temps();
    }
}

/// Restore `build`'s archive into a new target: it must succeed with nothing
/// refused, and change nothing in the sandbox but the target. Returns the
/// world (for checks of the target).
fn assert_accepted(what: &str, build: impl Fn(&World) -> Tar) -> World {
    let w = World::new();
    build(&w).write_gz(&w.archive());
    let before = snapshot(w.sb.path());
    let out = restore(&w.archive(), &w.target(), &[]);
    assert_restored(&out, what);
    assert_unchanged(&before, &without(&snapshot(w.sb.path()), "restore"), what);
    w.no_temps();
    w
}

/// A few ordinary entries (the root, a directory, files) for archives to
/// start with.
fn benign(t: &mut Tar) -> &mut Tar {
    t.dir_mode(b"./", 0o750)
        .dir(b"./docs/")
        .file(b"./docs/readme.txt", b"hello\n")
        .file(b"ok.txt", b"fine\n")
}

// ---------------------------------------------------------------------------
// Names that leave the target.

#[test]
fn absolute_names_are_refused_and_nothing_outside_changes() {
    assert_refused_everywhere("absolute names", |w| {
        let secret = w.abs("outside/secret.txt");
        let new = w.abs("outside/new.txt");
        let deep = w.abs("outside/sub/deep.txt");
        let dir = [w.abs("outside/newdir"), b"/".to_vec()].concat();
        let link = w.abs("outside/newlink");
        let double = [b"/".to_vec(), w.abs("outside/double-slash")].concat();
        let mut t = Tar::new();
        benign(&mut t)
            .file(&secret, b"pwned\n")
            .file(&new, b"pwned\n")
            .file_mode(&deep, 0o777, b"pwned\n")
            .dir_mode(&dir, 0o777)
            .symlink(&link, NOWHERE)
            .file(&double, b"pwned\n");
        let why = "absolute name";
        let want = vec![
            (secret, why),
            (new, why),
            (deep, why),
            (dir, why),
            (link, why),
            (double, why),
        ];
        (t, want)
    });
    // An absolute name alone, as the very first entry.
    assert_refused_everywhere("a lone absolute name", |w| {
        let secret = w.abs("outside/secret.txt");
        let mut t = Tar::new();
        t.file(&secret, b"pwned\n");
        (t, vec![(secret, "absolute name")])
    });
}

#[test]
fn dot_dot_names_are_refused_and_nothing_outside_changes() {
    assert_refused_everywhere("'..' names", |w| {
        let back_in = format!("../../{}/outside/pwned-via-parent", w.sb_name()).into_bytes();
        let mut t = Tar::new();
        benign(&mut t)
            .file(b"../outside/pwned", b"pwned\n")
            .file(b"../outside/secret.txt", b"pwned\n")
            .dir(b"a/")
            .file(b"a/../../outside/pwned-a", b"pwned\n")
            .file(b"./../outside/pwned-dot", b"pwned\n")
            .file(&back_in, b"pwned\n")
            .dir(b"../outside/newdir/")
            .symlink(b"../outside/newlink", b"secret.txt")
            .hardlink(b"../outside/newhard", b"ok.txt")
            .file(b"docs/..", b"names the root through '..'\n");
        let why = "'..' in the name";
        let want = vec![
            (b"../outside/pwned".to_vec(), why),
            (b"../outside/secret.txt".to_vec(), why),
            (b"a/../../outside/pwned-a".to_vec(), why),
            (b"./../outside/pwned-dot".to_vec(), why),
            (back_in, why),
            (b"../outside/newdir/".to_vec(), why),
            (b"../outside/newlink".to_vec(), why),
            (b"../outside/newhard".to_vec(), why),
            (b"docs/..".to_vec(), why),
        ];
        (t, want)
    });
    assert_refused_everywhere("'..' deep in a name", |_| {
        let mut t = Tar::new();
        benign(&mut t).file(b"a/b/c/../../../../outside/victim", b"pwned\n");
        (
            t,
            vec![(b"a/b/c/../../../../outside/victim".to_vec(), "'..'")],
        )
    });
}

#[test]
fn dot_dot_hidden_in_a_gnu_long_name_record_is_refused() {
    assert_refused_everywhere("'..' in a GNU long name", |w| {
        // Longer than a header's name field, as GNU tar writes them: the
        // header itself carries only the first 100 bytes, all 'd's.
        let long = [b"d".repeat(120), b"/../../outside/pwned-long".to_vec()].concat();
        let abs = w.abs("outside/secret.txt");
        let mut t = Tar::new();
        benign(&mut t)
            .long_name(&long)
            .file(trunc(&long), b"pwned\n")
            // Short hostile names behind innocent header names.
            .long_name(b"../outside/pwned-short")
            .file(b"innocent.txt", b"pwned\n")
            .long_name(&abs)
            .file(b"innocent-too.txt", b"pwned\n")
            .long_name(b"../outside/newdir-long/")
            .dir(b"innocent-dir/");
        let want = vec![
            (long, "'..'"),
            (b"../outside/pwned-short".to_vec(), "'..'"),
            (abs, "absolute name"),
            (b"../outside/newdir-long/".to_vec(), "'..'"),
        ];
        (t, want)
    });
}

#[test]
fn dot_dot_hidden_in_a_pax_path_or_linkpath_record_is_refused() {
    assert_refused_everywhere("'..' in pax records", |w| {
        let abs = w.abs("outside/secret.txt");
        let long = [b"p".repeat(150), b"/../../outside/pwned-pax-long".to_vec()].concat();
        let mut t = Tar::new();
        benign(&mut t)
            .pax(&[("path", b"../outside/pwned-pax")])
            .file(b"innocent.txt", b"pwned\n")
            .pax(&[("path", &abs), ("mtime", b"1767225600.5")])
            .file(b"innocent-too.txt", b"pwned\n")
            .pax(&[("path", &long)])
            .file(trunc(&long), b"pwned\n")
            // A hard link whose header names a file in the archive, and
            // whose pax linkpath leaves the target.
            .pax(&[("linkpath", b"../outside/secret.txt")])
            .hardlink(b"h-pax", b"ok.txt");
        let want = vec![
            (b"../outside/pwned-pax".to_vec(), "'..'"),
            (abs, "absolute name"),
            (long, "'..'"),
            (b"h-pax".to_vec(), "hard link to a name that is not safe"),
        ];
        (t, want)
    });
}

#[test]
fn dot_dot_in_the_ustar_prefix_field_is_refused() {
    assert_refused_everywhere("'..' in the ustar prefix", |w| {
        let parent = w.abs("outside");
        let mut t = Tar::new();
        benign(&mut t)
            .prefixed_file(b"..", b"outside/pwned-prefix", b"pwned\n")
            .prefixed_file(b"a/../..", b"outside/victim", b"pwned\n")
            .prefixed_file(&parent, b"secret.txt", b"pwned\n");
        let want = vec![
            (b"../outside/pwned-prefix".to_vec(), "'..'"),
            (b"a/../../outside/victim".to_vec(), "'..'"),
            ([parent, b"/secret.txt".to_vec()].concat(), "absolute name"),
        ];
        (t, want)
    });
}

#[test]
fn entries_naming_the_target_itself_as_a_non_directory_are_refused() {
    assert_refused_everywhere("the root as a symlink or a file", |w| {
        let outside = w.abs("outside");
        let mut t = Tar::new();
        t.symlink(b"./", &outside)
            .file(b"./pwned", b"lands in the target, not outside\n")
            .file(b".", b"the root as a file\n")
            .hardlink(b"h-root", b".");
        let want = vec![
            (b"./".to_vec(), "names the target itself"),
            (b".".to_vec(), "names the target itself"),
            (b"h-root".to_vec(), "the target directory itself"),
        ];
        (t, want)
    });
}

// ---------------------------------------------------------------------------
// Symlinks.

#[test]
fn writing_through_a_symlinked_directory_is_refused() {
    assert_refused_everywhere("an absolute symlink to an outside directory", |w| {
        let outside = w.abs("outside");
        let mut t = Tar::new();
        benign(&mut t)
            .symlink(b"evil", &outside)
            .file(b"evil/pwned", b"pwned\n")
            .file(b"evil/secret.txt", b"pwned\n")
            .file(b"evil/sub/deep.txt", b"pwned\n")
            .dir(b"evil/newdir/")
            .symlink(b"evil/newlink", NOWHERE)
            .hardlink(b"evil/newhard", b"ok.txt")
            .fifo(b"evil/fifo")
            .file(b"evil/newdir2/f", b"pwned\n");
        let why = "is a symlink or not a directory";
        let want = vec![
            (b"evil/pwned".to_vec(), why),
            (b"evil/secret.txt".to_vec(), why),
            (b"evil/sub/deep.txt".to_vec(), why),
            (b"evil/newdir/".to_vec(), why),
            (b"evil/newlink".to_vec(), why),
            (b"evil/newhard".to_vec(), why),
            (b"evil/fifo".to_vec(), why),
            (b"evil/newdir2/f".to_vec(), why),
        ];
        (t, want)
    });
    let escape = format!("tb-hostile-escape-{}", std::process::id());
    assert_refused_everywhere("a relative symlink up and out", |w| {
        let back_in = format!("up/{}/outside/pwned", w.sb_name()).into_bytes();
        let up_x = format!("up/{escape}").into_bytes();
        let mut t = Tar::new();
        benign(&mut t)
            .symlink(b"up", b"../..")
            .file(&up_x, b"pwned\n")
            .file(&back_in, b"pwned\n")
            .symlink(b"rel", b"../outside")
            .file(b"rel/pwned", b"pwned\n")
            .dir(b"a/")
            .symlink(b"a/b", b"../../outside")
            .file(b"a/b/pwned", b"pwned\n")
            .file(b"a/b/sub/deep.txt", b"pwned\n");
        let why = "is a symlink or not a directory";
        let want = vec![
            (up_x, why),
            (back_in, why),
            (b"rel/pwned".to_vec(), why),
            (b"a/b/pwned".to_vec(), why),
            (b"a/b/sub/deep.txt".to_vec(), why),
        ];
        (t, want)
    });
    // `up` resolves to the sandbox's parent: nothing appeared there.
    let parent = std::env::temp_dir();
    assert!(
        !parent.join(&escape).exists(),
        "{}",
        parent.join(&escape).display()
    );
    // Through a regular file: not a directory, refused the same way.
    assert_refused_everywhere("a path through a file", |_| {
        let mut t = Tar::new();
        benign(&mut t).file(b"ok.txt/inside", b"x\n");
        (t, vec![(b"ok.txt/inside".to_vec(), "not a directory")])
    });
}

#[test]
fn a_directory_entry_replaces_a_symlink_of_its_name_and_files_land_inside() {
    // Decided by the code: a directory entry whose name is a symlink
    // (extracted earlier) unlinks the symlink and makes a real directory;
    // what follows lands in the target. Nothing is refused, nothing outside
    // is touched.
    let w = assert_accepted("symlink, then a directory of its name, then a file", |w| {
        let outside = w.abs("outside");
        let mut t = Tar::new();
        benign(&mut t)
            .symlink(b"d", &outside)
            .dir_mode(b"d/", 0o700)
            .file(b"d/pwned", b"inside after all\n")
            .file(b"d/secret.txt", b"inside too\n");
        t
    });
    let d = w.target().join("d");
    let m = std::fs::symlink_metadata(&d).unwrap();
    assert!(m.is_dir(), "a real directory, not the symlink");
    assert_eq!(m.mode() & 0o7777, 0o700);
    assert_eq!(
        std::fs::read(d.join("pwned")).unwrap(),
        b"inside after all\n"
    );
    assert_eq!(
        std::fs::read(d.join("secret.txt")).unwrap(),
        b"inside too\n"
    );
    assert_eq!(list_dir(&d), ["pwned", "secret.txt"]);
    assert_eq!(
        std::fs::read(w.sb.join("outside/secret.txt")).unwrap(),
        SECRET
    );
}

#[test]
fn a_file_entry_replaces_a_symlink_of_its_name_instead_of_writing_through_it() {
    // Decided by the code: a later regular file of a symlink's name
    // unlinks the symlink and is created afresh (O_CREAT|O_EXCL|O_NOFOLLOW);
    // the file the symlink pointed to keeps its bytes, mode and times.
    let w = assert_accepted("symlink to an outside file, then a file of its name", |w| {
        let secret = w.abs("outside/secret.txt");
        let mut t = Tar::new();
        benign(&mut t)
            .symlink(b"s", &secret)
            .file_mode(b"s", 0o640, b"archived bytes\n")
            .symlink(b"s2", b"../outside/victim")
            .file(b"s2", b"archived too\n")
            // Kept as it is: a symlink out is content, never followed.
            .symlink(b"kept", &secret);
        t
    });
    let t = w.target();
    for (name, bytes, mode) in [
        ("s", &b"archived bytes\n"[..], 0o640),
        ("s2", b"archived too\n", 0o644),
    ] {
        let m = std::fs::symlink_metadata(t.join(name)).unwrap();
        assert!(m.file_type().is_file(), "{name} is a regular file");
        assert_eq!(m.mode() & 0o7777, mode, "{name}");
        assert_eq!(m.nlink(), 1, "{name}");
        assert_eq!(std::fs::read(t.join(name)).unwrap(), bytes, "{name}");
    }
    assert_eq!(
        std::fs::read_link(t.join("kept")).unwrap(),
        w.sb.join("outside/secret.txt")
    );
    let kept = std::fs::symlink_metadata(t.join("kept")).unwrap();
    assert_eq!(
        kept.mtime(),
        MTIME as i64,
        "the symlink's own time, set without following"
    );
    assert_eq!(
        std::fs::read(w.sb.join("outside/secret.txt")).unwrap(),
        SECRET
    );
    assert_eq!(std::fs::read(w.sb.join("outside/victim")).unwrap(), VICTIM);
}

#[test]
fn metadata_and_xattrs_of_a_symlink_out_never_reach_its_target() {
    // A symlink to an outside file with an odd mode, a foreign owner (as
    // root), a pax mtime and xattrs: all of it is for the symlink itself
    // (or not set at all), never for the file it names.
    let w = World::new();
    let secret = w.abs("outside/secret.txt");
    let mut t = Tar::new();
    benign(&mut t);
    t.pax(&[
        ("mtime", b"1767225600.25"),
        ("SCHILY.xattr.user.tb-hostile", b"pwned"),
        ("SCHILY.xattr.trusted.tb-hostile", b"pwned"),
    ]);
    let mut h = Head::new(b"meta-link", b'2', 0o7777);
    h.link = &secret;
    t.entry(h, b"");
    t.write_gz(&w.archive());
    let before = snapshot(w.sb.path());
    let out = restore(&w.archive(), &w.target(), &[]);
    let recs = assert_restored(&out, "xattrs on a symlink out");
    assert_unchanged(
        &before,
        &without(&snapshot(w.sb.path()), "restore"),
        "xattrs on a symlink out",
    );
    let secret_path = w.sb.join("outside/secret.txt");
    assert!(
        xattr::list(&secret_path).unwrap().next().is_none(),
        "no xattr on the outside file"
    );
    let link = w.target().join("meta-link");
    assert_eq!(std::fs::read_link(&link).unwrap(), secret_path);
    let m = std::fs::symlink_metadata(&link).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (MTIME as i64, 250_000_000));
    // user.* xattrs cannot be set on a symlink: a warning says so.
    let warned = events(&recs, "warning").iter().any(|r| {
        r["message"]
            .as_str()
            .unwrap()
            .contains("extended attributes could not be set")
    });
    let on_link: Vec<_> = xattr::list(&link).unwrap().collect();
    assert!(
        warned || !on_link.is_empty(),
        "the xattrs are either on the symlink itself or reported as not set: {recs:#?}"
    );
}

// ---------------------------------------------------------------------------
// Hard links.

#[test]
fn hard_links_to_outside_or_through_symlinks_are_refused() {
    assert_refused_everywhere("hard links out", |w| {
        let abs = w.abs("outside/secret.txt");
        let outside = w.abs("outside");
        let long_link = [b"k".repeat(110), b"/../../outside/victim".to_vec()].concat();
        let mut t = Tar::new();
        benign(&mut t)
            .symlink(b"lnk", &outside)
            .hardlink(b"h-abs", &abs)
            .hardlink(b"h-up", b"../outside/secret.txt")
            .hardlink(b"h-deep", b"docs/../../outside/victim")
            .hardlink(b"h-through", b"lnk/secret.txt")
            .hardlink(b"h-through-deep", b"lnk/sub/deep.txt")
            .long_link(&long_link)
            .hardlink(b"h-long", trunc(&long_link))
            // The new name itself in a symlinked directory, or outside.
            .hardlink(b"lnk/h-new", b"ok.txt")
            .hardlink(b"../outside/h-new", b"ok.txt");
        let unsafe_name = "hard link to a name that is not safe";
        let want = vec![
            (b"h-abs".to_vec(), unsafe_name),
            (b"h-up".to_vec(), unsafe_name),
            (b"h-deep".to_vec(), unsafe_name),
            (b"h-through".to_vec(), "hard link whose source is not safe"),
            (
                b"h-through-deep".to_vec(),
                "hard link whose source is not safe",
            ),
            (b"h-long".to_vec(), unsafe_name),
            (b"lnk/h-new".to_vec(), "is a symlink or not a directory"),
            (b"../outside/h-new".to_vec(), "'..'"),
        ];
        (t, want)
    });
    assert_refused_everywhere("a file under a hard link to a symlink out", |w| {
        let outside = w.abs("outside");
        let mut t = Tar::new();
        benign(&mut t)
            .symlink(b"sd", &outside)
            .hardlink(b"hd", b"sd")
            .file(b"hd/pwned", b"pwned\n")
            .file(b"hd/secret.txt", b"pwned\n");
        let why = "is a symlink or not a directory";
        (
            t,
            vec![
                (b"hd/pwned".to_vec(), why),
                (b"hd/secret.txt".to_vec(), why),
            ],
        )
    });
    assert_refused_everywhere("a hard link to a name not in the archive", |_| {
        let mut t = Tar::new();
        benign(&mut t).hardlink(b"h-missing", b"not-here.txt");
        (
            t,
            vec![(b"h-missing".to_vec(), "not in the archive before it")],
        )
    });
}

#[test]
fn a_hard_link_to_a_symlink_out_is_replaced_not_written_through() {
    // Decided by the code: `h` becomes a second name of the symlink `s`
    // (linkat without following); a later file `h` unlinks that name and
    // is created afresh. The outside file keeps its bytes and link count.
    let w = assert_accepted("hard link to a symlink out, then a file of its name", |w| {
        let secret = w.abs("outside/secret.txt");
        let mut t = Tar::new();
        benign(&mut t)
            .symlink(b"s", &secret)
            .hardlink(b"h", b"s")
            .file(b"h", b"new bytes\n")
            .hardlink(b"h2", b"s");
        t
    });
    let t = w.target();
    let h = std::fs::symlink_metadata(t.join("h")).unwrap();
    assert!(h.file_type().is_file());
    assert_eq!(h.nlink(), 1);
    assert_eq!(std::fs::read(t.join("h")).unwrap(), b"new bytes\n");
    // `s` and `h2` are one symlink, pointing out, never followed.
    let s = std::fs::symlink_metadata(t.join("s")).unwrap();
    let h2 = std::fs::symlink_metadata(t.join("h2")).unwrap();
    assert!(s.file_type().is_symlink() && h2.file_type().is_symlink());
    assert_eq!((s.ino(), s.nlink()), (h2.ino(), 2));
    let secret = std::fs::metadata(w.sb.join("outside/secret.txt")).unwrap();
    assert_eq!(secret.nlink(), 1);
    assert_eq!(
        std::fs::read(w.sb.join("outside/secret.txt")).unwrap(),
        SECRET
    );
}

// ---------------------------------------------------------------------------
// Devices and FIFOs.

#[test]
fn devices_and_fifos_with_escaping_names_are_refused() {
    // Refused before anything is created: needs no root.
    assert_refused_everywhere("FIFOs and devices out", |w| {
        let outside = w.abs("outside");
        let fifo_abs = w.abs("outside/fifo-abs");
        let blk_abs = w.abs("outside/blk-abs");
        let long = [b"f".repeat(110), b"/../../outside/fifo-long".to_vec()].concat();
        let mut t = Tar::new();
        benign(&mut t)
            .fifo(b"../outside/fifo")
            .fifo(&fifo_abs)
            .device(b"../outside/null", b'3', 1, 3)
            .device(&blk_abs, b'4', 7, 0)
            .device(b"docs/../../outside/zero", b'3', 1, 5)
            .symlink(b"lnk", &outside)
            .fifo(b"lnk/fifo")
            .device(b"lnk/null", b'3', 1, 3)
            .long_name(&long)
            .fifo(trunc(&long))
            .pax(&[("path", b"../outside/random")])
            .device(b"innocent-dev", b'3', 1, 8);
        let up = "'..'";
        let link = "is a symlink or not a directory";
        let want = vec![
            (b"../outside/fifo".to_vec(), up),
            (fifo_abs, "absolute name"),
            (b"../outside/null".to_vec(), up),
            (blk_abs, "absolute name"),
            (b"docs/../../outside/zero".to_vec(), up),
            (b"lnk/fifo".to_vec(), link),
            (b"lnk/null".to_vec(), link),
            (long, up),
            (b"../outside/random".to_vec(), up),
        ];
        (t, want)
    });
}

// ---------------------------------------------------------------------------
// One bad entry among good ones.

/// A realistic archive: root, directories, text and incompressible files,
/// a symlink, hard links, a FIFO, a long name, a pax name and time.
fn rich(t: &mut Tar) -> &mut Tar {
    // Grouped by directory, as tar writes them (GNU tar sets a directory's
    // times when it leaves it, so a directory visited twice would differ).
    let long = [b"./media/".to_vec(), b"n".repeat(150), b".jpg".to_vec()].concat();
    let pax_name = pax_name_of_rich();
    t.dir_mode(b"./", 0o750)
        .file(b"./readme.txt", "hello, world\n".repeat(500).as_bytes())
        .file(b"./empty.txt", b"")
        .file_mode(b"./tool", 0o755, b"#!/bin/sh\n")
        .symlink(b"./link-rel", b"readme.txt")
        .symlink(b"./link-abs", NOWHERE)
        .fifo(b"./fifo")
        .dir(b"./media/")
        .file(b"./media/photo.jpg", &noise(200_000, 3))
        .hardlink(b"./media/hard", b"./readme.txt")
        .long_name(&long)
        .file(trunc(&long), b"long name\n")
        .pax(&[("path", &pax_name), ("mtime", b"1767225600.123456789")])
        .file(b"./media/short.png", b"pax name\n")
        .dir_mode(b"./media/thumbs/", 0o700)
        .file(b"./media/thumbs/t1.png", &noise(5_000, 4))
}

#[test]
fn one_hostile_entry_in_a_benign_archive_fails_the_whole_restore() {
    assert_refused_everywhere("one bad entry at the end", |_| {
        let mut t = Tar::new();
        rich(&mut t).file(b"../outside/pwned", b"pwned\n");
        (t, vec![(b"../outside/pwned".to_vec(), "'..'")])
    });
    assert_refused_everywhere("one bad entry in the middle", |w| {
        let outside = w.abs("outside");
        let mut t = Tar::new();
        t.dir_mode(b"./", 0o777)
            .file(b"first.txt", b"first\n")
            .symlink(b"media", &outside)
            .file(b"media/secret.txt", b"pwned\n");
        rich(&mut t);
        // `rich` makes `./media/` a real directory (the symlink is
        // replaced) and fills it: only the file through the symlink is
        // refused.
        (
            t,
            vec![(
                b"media/secret.txt".to_vec(),
                "is a symlink or not a directory",
            )],
        )
    });
    // The same archive without the bad entry restores (so the refusal,
    // and nothing else, failed the runs above).
    let w = assert_accepted("the benign part alone", |_| {
        let mut t = Tar::new();
        rich(&mut t);
        t
    });
    assert_eq!(
        std::fs::read(w.target().join("media/hard")).unwrap(),
        "hello, world\n".repeat(500).as_bytes()
    );
}

#[test]
fn a_hostile_archive_into_a_mount_point_is_taken_back_to_empty() {
    // A mount point cannot be swapped: the archive is extracted in place,
    // and a refusal empties it again and puts its own metadata back.
    if !is_root() {
        eprintln!(
            "SKIP a_hostile_archive_into_a_mount_point_is_taken_back_to_empty: needs root (mount)"
        );
        return;
    }
    let w = World::new();
    let mut t = Tar::new();
    rich(&mut t).file(b"../outside/pwned", b"pwned\n");
    t.write_gz(&w.archive());
    let mnt = w.sb.join("mnt");
    let _fs = Tmpfs::mount(&mnt, "16m");
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o751)).unwrap();
    set_mtime(&mnt, OLD);
    let before = snapshot(w.sb.path());
    let mnt_before = node(&mnt);
    let out = restore(&w.archive(), &mnt, &[]);
    let recs = assert_unsafe(
        &out,
        &[(b"../outside/pwned".to_vec(), "'..'")],
        "mount point",
    );
    assert!(
        events(&recs, "error")[0]["message"]
            .as_str()
            .unwrap()
            .contains("emptied again"),
        "{recs:#?}"
    );
    assert!(list_dir(&mnt).is_empty(), "{:?}", list_dir(&mnt));
    let mnt_after = node(&mnt);
    assert_eq!(
        (mnt_after.mode, mnt_after.owner, mnt_after.mtime),
        (mnt_before.mode, mnt_before.owner, mnt_before.mtime),
        "the mount point's own mode, owner and mtime are put back (the archive's root said 0750)"
    );
    // Only the mount point's ctime may differ (its metadata was put back).
    let mut after = snapshot(w.sb.path());
    after.get_mut(Path::new("mnt")).unwrap().ctime = before[Path::new("mnt")].ctime;
    assert_unchanged(&before, &after, "mount point");
    w.no_temps();
}

#[test]
fn force_into_a_target_holding_links_out_never_writes_through_them() {
    // --force extracts into a non-empty target in place, and a failure is
    // not taken back; still, symlinks and hard links already in the target
    // are never followed or written through.
    let w = World::new();
    let shared = w.sb.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("victim2"), b"shared bytes\n").unwrap();
    set_mtime(&shared.join("victim2"), OLD);
    let dest = w.target();
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(w.sb.join("outside"), dest.join("evil")).unwrap();
    std::os::unix::fs::symlink(w.sb.join("outside/secret.txt"), dest.join("s")).unwrap();
    std::fs::hard_link(shared.join("victim2"), dest.join("hl")).unwrap();
    let mut t = Tar::new();
    benign(&mut t)
        .file(b"evil/pwned", b"pwned\n")
        .file(b"evil/secret.txt", b"pwned\n")
        .file(b"s", b"replaced\n")
        .file(b"hl", b"replaced\n");
    t.write_gz(&w.archive());
    let before = snapshot(w.sb.path());
    let out = restore(&w.archive(), &dest, &["--force"]);
    let why = "is a symlink or not a directory";
    let recs = assert_unsafe(
        &out,
        &[
            (b"evil/pwned".to_vec(), why),
            (b"evil/secret.txt".to_vec(), why),
        ],
        "--force over links out",
    );
    assert!(
        events(&recs, "error")[0]["message"]
            .as_str()
            .unwrap()
            .contains("partly restored"),
        "{recs:#?}"
    );
    // The sentinel and everything else outside: untouched.
    let after = snapshot(w.sb.path());
    assert_unchanged(
        &without(&without(&before, "restore"), "shared"),
        &without(&without(&after, "restore"), "shared"),
        "--force over links out",
    );
    // The file shared by a hard link keeps its bytes, mode and time; only
    // its link count dropped (the target's name for it was replaced).
    let v = node(&shared.join("victim2"));
    let b = &before[Path::new("shared/victim2")];
    assert_eq!(
        (&v.bytes, v.mode, v.mtime, v.ino),
        (&b.bytes, b.mode, b.mtime, b.ino)
    );
    assert_eq!(v.nlink, 1);
    // In the target: `s` and `hl` are new files; `evil` is still the symlink.
    for n in ["s", "hl"] {
        let m = std::fs::symlink_metadata(dest.join(n)).unwrap();
        assert!(m.file_type().is_file() && m.nlink() == 1, "{n}");
        assert_eq!(std::fs::read(dest.join(n)).unwrap(), b"replaced\n", "{n}");
    }
    assert_eq!(
        std::fs::read_link(dest.join("evil")).unwrap(),
        w.sb.join("outside")
    );
}

// ---------------------------------------------------------------------------
// The builder itself.

#[test]
fn the_raw_tar_builder_agrees_with_gnu_tar() {
    // Every kind of header the hostile tests write (GNU and POSIX magic,
    // long-name and long-link records, pax path/linkpath/mtime, the ustar
    // prefix, devices), with benign names: GNU tar lists the names tb-restore
    // reports and extracts the same tree tb-restore does.
    let sb = Sandbox::new();
    let long_dir = b"./deep/".to_vec();
    let long = [long_dir.clone(), b"l".repeat(140), b".txt".to_vec()].concat();
    let pax_long = [b"./deep/".to_vec(), b"x".repeat(160), b".bin".to_vec()].concat();
    let mut t = Tar::new();
    rich(&mut t)
        .dir(&long_dir)
        .long_name(&long)
        .file(trunc(&long), b"gnu long name\n")
        .long_link(&long)
        .hardlink(b"./deep/second-name", trunc(&long))
        .pax(&[("path", &pax_long), ("linkpath", &long)])
        .hardlink(b"./deep/third", b"./ignored-by-pax")
        .dir(b"./pre/")
        .dir(b"./pre/fix/")
        .prefixed_file(b"./pre/fix", b"file.txt", b"prefixed\n");
    if is_root() {
        t.device(b"./null", b'3', 1, 3);
    }
    let archive = sb.join("builder.tar.gz");
    t.write_gz(&archive);

    // GNU tar's view of the names.
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let names: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for want in [
        "./",
        &shown(&pax_name_of_rich()),
        &shown(&long),
        "./deep/second-name",
        &shown(&pax_long),
        "./pre/fix/file.txt",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "GNU tar lists {want:?}: {names:#?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("ignored-by-pax") || n == "./media/short.png"),
        "{names:#?}"
    );
    // Bytes of a prefixed entry, as GNU tar reads them.
    let cat = Command::new("tar")
        .arg("-xzOf")
        .arg(&archive)
        .arg("./pre/fix/file.txt")
        .output()
        .unwrap();
    assert_eq!(cat.stdout, b"prefixed\n");

    // The same tree from GNU tar and from tb-restore.
    let gnu = sb.join("gnu");
    std::fs::create_dir(&gnu).unwrap();
    let st = Command::new("tar")
        .arg("-xzpf")
        .arg(&archive)
        .args(["--numeric-owner", "-C"])
        .arg(&gnu)
        .status()
        .unwrap();
    assert!(st.success());
    let tb = sb.join("tb");
    let out = restore(&archive, &tb, &[]);
    let recs = assert_restored(&out, "builder");
    let r = events(&recs, "restored")[0];
    assert_eq!(r["hardlinks"], 3, "{r}");
    assert_eq!(tree_listing(&gnu), tree_listing(&tb));
    // A few facts, in case both readers misread the same way.
    assert_eq!(
        std::fs::read(tb.join(OsStr::from_bytes(&long))).unwrap(),
        b"gnu long name\n"
    );
    let l = std::fs::metadata(tb.join(OsStr::from_bytes(&long))).unwrap();
    assert_eq!(l.nlink(), 3, "the long-named file has its two hard links");
    let p = std::fs::metadata(tb.join(OsStr::from_bytes(&pax_name_of_rich()))).unwrap();
    assert_eq!((p.mtime(), p.mtime_nsec()), (MTIME as i64, 123_456_789));
    assert_eq!(
        std::fs::read(tb.join("pre/fix/file.txt")).unwrap(),
        b"prefixed\n"
    );
    assert_eq!(tb_testkit::mode(&tb), 0o750, "the root entry's mode");
    assert_eq!(
        std::fs::read_link(tb.join("link-abs")).unwrap(),
        Path::new(OsStr::from_bytes(NOWHERE))
    );
    assert!(
        std::fs::symlink_metadata(tb.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(!tb.join("media/short.png").exists(), "the pax path wins");
}

/// The pax-named file of [`rich`].
fn pax_name_of_rich() -> Vec<u8> {
    [b"./media/".to_vec(), b"p".repeat(130), b".png".to_vec()].concat()
}
