//! Helpers shared by the tb-incr test files: running tb-incr (the binary)
//! and tb-restore (in-process, as the other tools' tests run tools that are
//! not their own), reading points, changing a volume, restoring with tar.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use serde_json::Value;
use tb_shared::error::{Cause, cause_of};
use tb_shared::exit::Outcome;
use tb_shared::record::Reporter;
use tb_testkit::{events, records, summary};

/// The chain label every test uses.
pub const LABEL: &str = "media";

/// `tb-incr` (this package's binary), without the caller's TB_ variables.
pub fn incr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-incr"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("TB_") {
            c.env_remove(&k);
        }
    }
    c.stdin(Stdio::null());
    c
}

/// What a run of a tool said.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub recs: Vec<Value>,
    pub stderr: String,
}

impl Out {
    pub fn of(out: Output) -> Out {
        let recs = records(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().unwrap_or(-1);
        if let Some(last) = recs.last() {
            assert_eq!(last["event"], "summary", "{recs:#?}");
            assert_eq!(last["exit_code"], code, "{recs:#?}");
        }
        Out { code, recs, stderr }
    }

    /// The one `written` record.
    pub fn written(&self) -> &Value {
        let w = events(&self.recs, "written");
        assert_eq!(
            w.len(),
            1,
            "one written record: {:#?}\n{}",
            self.recs,
            self.stderr
        );
        w[0]
    }

    /// The one `error` record.
    pub fn error(&self) -> &Value {
        let e = events(&self.recs, "error");
        assert_eq!(e.len(), 1, "one error record: {:#?}", self.recs);
        e[0]
    }

    /// The point directory the run published.
    pub fn point(&self) -> PathBuf {
        PathBuf::from(self.written()["path"].as_str().unwrap())
    }

    pub fn warnings(&self) -> Vec<String> {
        events(&self.recs, "warning")
            .iter()
            .map(|w| w["message"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `tb-incr --source SRC --name media --dir DIR EXTRA...`.
pub fn backup(src: &Path, dir: &Path, extra: &[&str]) -> Out {
    Out::of(
        incr()
            .arg("--source")
            .arg(src)
            .args(["--name", LABEL, "--dir"])
            .arg(dir)
            .args(extra)
            .output()
            .unwrap(),
    )
}

/// As [`backup`], which must succeed with exit 0.
pub fn backup_ok(src: &Path, dir: &Path, extra: &[&str]) -> Out {
    let out = backup(src, dir, extra);
    assert_eq!(out.code, 0, "{}\n{:#?}", out.stderr, out.recs);
    out
}

/// The last path component as a string.
pub fn id(point: &Path) -> String {
    point.file_name().unwrap().to_string_lossy().into_owned()
}

/// A point's time as `--at` takes it (`YYYY-MM-DD HH:MM:SS`).
pub fn at_time(point: &Path) -> String {
    tb_shared::naming::BackupName::parse(point.file_name().unwrap())
        .unwrap()
        .time
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A point's manifest.
pub fn manifest(point: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(point.join("manifest.json")).unwrap()).unwrap()
}

/// The paths of a point's deleted.nul, sorted.
pub fn deleted(point: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(point.join("deleted.nul")).unwrap();
    if !data.is_empty() {
        assert_eq!(data.last(), Some(&0), "every path ends with a NUL");
    }
    let mut v: Vec<Vec<u8>> = data
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    v.sort();
    v
}

/// Names shown readably (for assertion messages).
pub fn shown(paths: &[Vec<u8>]) -> Vec<String> {
    paths
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// `tb-restore ARGS`, in-process (its library, as `main` runs it): the exit
/// code `run_tool` would give, and the records, error and summary included.
pub fn restore(args: &[&OsStr]) -> (u8, Vec<Value>) {
    let mut argv: Vec<OsString> = vec!["tb-restore".into()];
    argv.extend(args.iter().map(|a| a.to_os_string()));
    let parsed = tb_restore::Args::try_parse_from(&argv).unwrap();
    let mut rep = Reporter::quiet("tb-restore");
    let outcome = match tb_restore::run(parsed, &mut rep) {
        Ok(o) => o,
        Err(e) => {
            rep.error(&e);
            if cause_of(&e) == Cause::Busy {
                Outcome::BUSY
            } else {
                Outcome::FAILED
            }
        }
    };
    rep.summary(outcome);
    let recs = rep.records().to_vec();
    assert_eq!(summary(&recs)["exit_code"], outcome.code);
    (outcome.code, recs)
}

/// Restore the chain in `dir` to `point` (by `--at` its time, or by naming
/// the point directory) into `target`; must succeed. The `restored` record.
pub fn restore_ok(dir: &Path, point: &Path, by_at: bool, target: &Path) -> Value {
    let (code, recs) = if by_at {
        let at = at_time(point);
        restore(&[
            dir.as_os_str(),
            "--name".as_ref(),
            LABEL.as_ref(),
            "--at".as_ref(),
            at.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
    } else {
        restore(&[point.as_os_str(), "--target".as_ref(), target.as_os_str()])
    };
    assert_eq!(code, 0, "restore to {}: {recs:#?}", point.display());
    let r = events(&recs, "restored");
    assert_eq!(r.len(), 1, "{recs:#?}");
    assert_eq!(r[0]["kind"], "chain");
    assert_eq!(r[0]["point"], id(point));
    r[0].clone()
}

/// Restore without tb: for each point, `xargs -0 -r rm -rf --` of its
/// deleted.nul inside `target`, then `tar -xzpf` of its archive (the
/// commands of `tb-incr --help`).
pub fn apply_with_tar(point: &Path, target: &Path) {
    let rm = Command::new("sh")
        .arg("-c")
        .arg(r#"cd "$1" && xargs -0 -r rm -rf -- < "$2""#)
        .arg("sh")
        .arg(target)
        .arg(point.join("deleted.nul"))
        .output()
        .unwrap();
    assert!(
        rm.status.success(),
        "xargs rm in {}: {}",
        target.display(),
        String::from_utf8_lossy(&rm.stderr)
    );
    let tar = Command::new("tar")
        .arg("-xzpf")
        .arg(point.join("archive.tar.gz"))
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-C"])
        .arg(target)
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "tar -x {}: {}",
        point.display(),
        String::from_utf8_lossy(&tar.stderr)
    );
}

/// Every file under `dir` (recursively, by relative path) with its bytes,
/// leaving out the lock file and temporaries: to prove a failed run
/// changed nothing.
pub fn chain_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name();
            let n = name.to_string_lossy();
            if n == ".tb.lock" || n == ".tb-verified.json" || n.starts_with(".tb-tmp.") {
                continue;
            }
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The `.tb-tmp.*` entries in `dir`.
pub fn temps(dir: &Path) -> Vec<String> {
    tb_testkit::list_dir(dir)
        .into_iter()
        .filter(|n| n.starts_with(".tb-tmp."))
        .collect()
}

/// The point directories in a chain directory, oldest first.
pub fn points(chain: &Path) -> Vec<String> {
    let mut v: Vec<String> = tb_testkit::list_dir(chain)
        .into_iter()
        .filter(|n| n.starts_with("base_") || n.starts_with("incr_"))
        .collect();
    // base_D / incr_D (the first of a day) before the timed ones: by time.
    v.sort_by_key(|n| tb_shared::naming::BackupName::parse(OsStr::new(n)).unwrap());
    v
}

/// Changes to a volume tree, by raw relative names.
pub struct Vol {
    pub root: PathBuf,
}

impl Vol {
    pub fn new(root: &Path) -> Vol {
        std::fs::create_dir_all(root).unwrap();
        Vol {
            root: root.to_path_buf(),
        }
    }
    pub fn p(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }
    /// Write a file and give it `mtime_ns`.
    pub fn write(&self, rel: &[u8], data: &[u8], mtime_ns: i64) {
        std::fs::write(self.p(rel), data).unwrap();
        self.touch(rel, mtime_ns);
    }
    /// Rewrite a file's contents, keeping its size and mtime.
    pub fn rewrite_keeping_mtime(&self, rel: &[u8], data: &[u8]) {
        let before = self.mtime(rel);
        assert_eq!(
            std::fs::metadata(self.p(rel)).unwrap().len(),
            data.len() as u64,
            "same size"
        );
        assert_ne!(std::fs::read(self.p(rel)).unwrap(), data, "new contents");
        // In place (the inode, and so its hard links, stay).
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.p(rel))
            .and_then(|mut f| std::io::Write::write_all(&mut f, data))
            .unwrap();
        self.touch(rel, before);
        assert_eq!(self.mtime(rel), before);
    }
    pub fn mkdir(&self, rel: &[u8]) {
        std::fs::create_dir_all(self.p(rel)).unwrap();
    }
    /// Remove a non-directory.
    pub fn rm(&self, rel: &[u8]) {
        std::fs::remove_file(self.p(rel)).unwrap();
    }
    pub fn rm_rf(&self, rel: &[u8]) {
        std::fs::remove_dir_all(self.p(rel)).unwrap();
    }
    pub fn mv(&self, from: &[u8], to: &[u8]) {
        std::fs::rename(self.p(from), self.p(to)).unwrap();
    }
    pub fn symlink(&self, target: &[u8], rel: &[u8]) {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), self.p(rel)).unwrap();
    }
    /// `ln EXISTING NEW`.
    pub fn link(&self, existing: &[u8], new: &[u8]) {
        std::fs::hard_link(self.p(existing), self.p(new)).unwrap();
    }
    pub fn fifo(&self, rel: &[u8], mode: u32) {
        nix::unistd::mkfifo(&self.p(rel), nix::sys::stat::Mode::from_bits_truncate(mode)).unwrap();
        self.chmod(rel, mode);
    }
    pub fn chmod(&self, rel: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.p(rel), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    /// `chown -h` (as root; elsewhere nothing).
    pub fn chown(&self, rel: &[u8], uid: u32, gid: u32) {
        if !tb_testkit::is_root() {
            return;
        }
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &self.p(rel),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    /// Set the mtime (nanoseconds) of `rel` itself (not through a symlink).
    pub fn touch(&self, rel: &[u8], ns: i64) {
        let t = nix::sys::time::TimeSpec::new(
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000),
        );
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &self.p(rel),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    pub fn mtime(&self, rel: &[u8]) -> i64 {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(self.p(rel)).unwrap();
        m.mtime() * 1_000_000_000 + m.mtime_nsec()
    }
    pub fn xattr(&self, rel: &[u8], name: &str, value: &[u8]) {
        xattr::set(self.p(rel), name, value).unwrap();
    }
}

/// A nanosecond mtime on "day" `day` of the history (from 2026-01-01), the
/// `k`th of that day: distinct and with a non-zero nanosecond part.
pub fn day_ns(day: i64, k: i64) -> i64 {
    const T0: i64 = 1_767_225_600; // 2026-01-01 00:00:00 UTC
    (T0 + day * 86_400 + k * 61) * 1_000_000_000 + 123_456_789 + k
}

/// The directories and the other entries (sockets aside) of the tree at `root`.
pub fn dirs_and_others(root: &Path) -> (u64, u64) {
    let (mut dirs, mut others) = (1, 0);
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            let (d, o) = dirs_and_others(&e.path());
            dirs += d;
            others += o;
        } else if !std::os::unix::fs::FileTypeExt::is_socket(&t) {
            others += 1;
        }
    }
    (dirs, others)
}
