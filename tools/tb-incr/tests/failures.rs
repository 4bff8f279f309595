//! tb-incr failures: killed, interrupted, a full disk, an unwritable
//! destination, a missing source or volume, a live PostgreSQL, a second
//! run at once. A failed run publishes no point (at most a `.tb-tmp.*`
//! directory, which the next run removes), leaves the older points
//! byte-identical and exits 2 (75 when busy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::*;
use nix::sys::signal::Signal;
use tb_testkit::{Sandbox, Tmpfs, events, is_root, noise, signal, summary, tree_listing, wait_for};

/// A small volume and a chain of two points of it in `dir`; the volume and
/// every file of the chain.
fn earlier(sb: &Sandbox, dir: &Path) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let vol = Vol::new(&sb.join("earlier-src"));
    vol.mkdir(b"a");
    vol.write(b"a/f.txt", b"earlier\n", day_ns(0, 1));
    backup_ok(&vol.root, dir, &[]);
    vol.write(b"a/g.txt", b"later\n", day_ns(1, 1));
    backup_ok(&vol.root, dir, &[]);
    let files = chain_files(&dir.join(LABEL));
    assert_eq!(points(&dir.join(LABEL)).len(), 2);
    (vol.root, files)
}

/// Exit 2 with one error of `cause` saying `says`, no point written, and
/// the chain as it was (no temporary left either).
fn assert_failed_cleanly(
    out: &Out,
    dir: &Path,
    before: &BTreeMap<String, Vec<u8>>,
    cause: &str,
    says: &str,
) {
    assert_eq!(out.code, 2, "{}\n{:#?}", out.stderr, out.recs);
    assert_eq!(out.error()["cause"], cause, "{:#?}", out.recs);
    assert!(events(&out.recs, "written").is_empty());
    assert_eq!(summary(&out.recs)["status"], "failed");
    assert!(
        out.stderr.contains(says),
        "stderr should say {says:?}: {}",
        out.stderr
    );
    let chain = dir.join(LABEL);
    assert_eq!(
        &chain_files(&chain),
        before,
        "older points byte-identical, nothing added"
    );
    assert!(temps(&chain).is_empty(), "{:?}", temps(&chain));
}

/// A volume big enough to be caught while it is archived (incompressible:
/// stored, 80 MB).
fn big_volume(sb: &Sandbox) -> PathBuf {
    let src = sb.join("big");
    std::fs::create_dir(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i:02}.bin")), noise(2_000_000, i)).unwrap();
    }
    src
}

/// Start tb-incr on `src` (the same label) and wait until the archive of
/// its temporary point has grown past 1 MB.
fn start_and_wait_for_archive(src: &Path, dir: &Path) -> Child {
    let child = incr()
        .arg("--source")
        .arg(src)
        .args(["--name", LABEL, "--level", "9", "--threads", "1", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let chain = dir.join(LABEL);
    wait_for(60, "the temporary point's archive to grow", || {
        let t = temps(&chain)
            .into_iter()
            .find(|n| n.starts_with(".tb-tmp.incr_") && n.ends_with(&format!(".{pid}")))?;
        let len = std::fs::metadata(chain.join(t).join("archive.tar.gz"))
            .ok()?
            .len();
        (len > 1_000_000).then_some(())
    });
    child
}

#[test]
fn a_killed_run_leaves_only_a_temp_that_the_next_run_removes() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let (small, before) = earlier(&sb, &dir);
    let big = big_volume(&sb);
    let mut child = start_and_wait_for_archive(&big, &dir);
    signal(child.id(), Signal::SIGKILL);
    let _ = child.wait();
    let chain = dir.join(LABEL);
    let left = temps(&chain);
    assert_eq!(left.len(), 1, "the killed run's temporary point: {left:?}");
    assert_eq!(
        chain_files(&chain),
        before,
        "nothing published, nothing changed"
    );
    // The next run removes it (a record says so) and continues the chain.
    let out = backup_ok(&small, &dir, &[]);
    let removed = events(&out.recs, "removed");
    assert_eq!(removed.len(), 1, "{:#?}", out.recs);
    assert_eq!(removed[0]["path"], chain.join(&left[0]).to_str().unwrap());
    assert!(temps(&chain).is_empty());
    assert_eq!(out.written()["kind"], "chain_incr");
    assert_eq!(
        out.written()["parent"],
        points(&chain)[1],
        "the killed run left no trace in the chain"
    );
    let mut after = chain_files(&chain);
    after.retain(|k, _| !k.starts_with(&id(&out.point())));
    assert_eq!(after, before);
}

#[test]
fn sigterm_ends_the_run_cleanly() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let (_, before) = earlier(&sb, &dir);
    let big = big_volume(&sb);
    let child = start_and_wait_for_archive(&big, &dir);
    signal(child.id(), Signal::SIGTERM);
    let out = Out::of(child.wait_with_output().unwrap());
    assert_failed_cleanly(&out, &dir, &before, "interrupted", "interrupted by SIGTERM");
}

#[test]
fn a_full_disk_publishes_nothing() {
    if !is_root() {
        eprintln!("SKIP a_full_disk_publishes_nothing: needs root to mount a small tmpfs");
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.join("small");
    let _m = Tmpfs::mount(&dir, "1m");
    let (_, before) = earlier(&sb, &dir);
    let src = sb.join("big");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("video.bin"), noise(3_000_000, 1)).unwrap();
    let out = backup(&src, &dir, &[]);
    assert_failed_cleanly(&out, &dir, &before, "disk_full", "disk full");
    assert!(
        out.error()["message"]
            .as_str()
            .unwrap()
            .contains(&dir.join(LABEL).display().to_string()),
        "names where: {:#?}",
        out.recs
    );
}

#[test]
fn running_out_of_file_descriptors_fails_the_run_instead_of_leaving_a_subtree_out() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let (src, before) = earlier(&sb, &dir);
    // 40 levels, each a directory and a file after it: walking it keeps a
    // descriptor open per level. One core (one walking thread) and 16
    // descriptors: opening a directory fails with EMFILE. Left out, the
    // subtree would be listed as deleted by the increment.
    let mut p = src.join("deep");
    for _ in 0..40 {
        std::fs::create_dir_all(p.join("a")).unwrap();
        std::fs::write(p.join("b"), b"x").unwrap();
        p.push("a");
    }
    let run = std::process::Command::new("taskset")
        .args(["-c", "0", "bash", "-c", "ulimit -n 16; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_tb-incr"))
        .arg("--source")
        .arg(&src)
        .args(["--name", LABEL, "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output();
    let Ok(run) = run else {
        eprintln!("SKIP: no taskset");
        return;
    };
    let out = Out::of(run);
    assert_failed_cleanly(&out, &dir, &before, "other", "Too many open files");
    assert!(
        out.stderr
            .contains("the run stops rather than leave it out"),
        "{}",
        out.stderr
    );
    // With descriptors enough, the same tree is backed up whole.
    let ok = backup_ok(&src, &dir, &[]);
    assert_eq!(
        ok.written()["added"],
        40,
        "the 40 files (directories are stored, not counted): {:#}",
        ok.written()
    );
}

#[test]
fn an_unwritable_destination_publishes_nothing() {
    let sb = Sandbox::new();
    let dir = sb.join("ro");
    let _m;
    let (src, before) = if is_root() {
        _m = Tmpfs::mount(&dir, "4m");
        let b = earlier(&sb, &dir);
        _m.make_read_only();
        b
    } else {
        let b = earlier(&sb, &dir);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(LABEL), std::fs::Permissions::from_mode(0o500)).unwrap();
        b
    };
    std::fs::write(src.join("new.txt"), b"new\n").unwrap();
    let out = backup(&src, &dir, &[]);
    assert_failed_cleanly(&out, &dir, &before, "not_writable", "not writable");
}

#[test]
fn a_missing_source_or_volume_publishes_nothing() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let (_, before) = earlier(&sb, &dir);
    let out = backup(&sb.join("nope"), &dir, &[]);
    assert_failed_cleanly(&out, &dir, &before, "not_found", "cannot read the source");
    // Nothing is created for a missing source either.
    let out = backup(&sb.join("nope"), &sb.join("other-root"), &[]);
    assert_eq!(out.code, 2);
    assert!(!sb.join("other-root").exists());
    if tb_testkit::docker::docker_or_skip("a_missing_source_or_volume_publishes_nothing") {
        let out = Out::of(
            incr()
                .args([
                    "--volume",
                    "tbtest-no-such-volume",
                    "--name",
                    LABEL,
                    "--dir",
                ])
                .arg(&dir)
                .output()
                .unwrap(),
        );
        assert_failed_cleanly(
            &out,
            &dir,
            &before,
            "not_found",
            "no Docker volume named 'tbtest-no-such-volume'",
        );
    }
}

#[test]
fn a_live_postgres_data_directory_is_refused_without_stop() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let (_, before) = earlier(&sb, &dir);
    // What makes a data directory live: PG_VERSION and postmaster.pid,
    // here or one level down (a volume holding PGDATA in a subdirectory).
    let vol = Vol::new(&sb.join("pgvol"));
    vol.mkdir(b"pgdata/base");
    vol.write(b"pgdata/PG_VERSION", b"16\n", day_ns(0, 1));
    vol.write(
        b"pgdata/postmaster.pid",
        b"4242\n/var/lib/postgresql/data\n",
        day_ns(0, 2),
    );
    vol.write(b"pgdata/base/1", &noise(8192, 1), day_ns(0, 3));
    let out = backup(&vol.root, &dir, &[]);
    assert_failed_cleanly(&out, &dir, &before, "live_database", "--stop");
    assert!(
        out.error()["message"]
            .as_str()
            .unwrap()
            .contains("holds a running PostgreSQL"),
        "{:#?}",
        out.recs
    );
    // --allow-live: archived, said to be inconsistent, exit 1.
    let out = backup(&vol.root, &dir, &["--allow-live"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let w = out.written();
    assert_eq!(w["consistent"], false);
    assert_eq!(manifest(&out.point())["volume"]["consistent"], false);
    assert!(
        out.warnings()
            .iter()
            .any(|m| m.contains("archived live (--allow-live)")),
        "{:?}",
        out.warnings()
    );
    // A cold data directory (no postmaster.pid) is archived as usual.
    vol.rm(b"pgdata/postmaster.pid");
    let out = backup_ok(&vol.root, &dir, &[]);
    assert_eq!(out.written()["consistent"], true);
    assert_eq!(out.written()["kind"], "chain_incr");
}

#[test]
fn a_second_run_on_the_same_chain_is_busy() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let (src, before) = earlier(&sb, &dir);
    let lock = dir.join(LABEL).join(".tb.lock");
    // Hold the chain's lock as another run would (flock -F: the process
    // holding it is the one started here, killed below).
    let mut holder = std::process::Command::new("flock")
        .arg("-F")
        .arg(&lock)
        .args(["sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(10, "flock to hold the lock", || {
        let free = std::process::Command::new("flock")
            .args(["-n", "-E", "9"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        (free.code() == Some(9)).then_some(())
    });
    let out = backup(&src, &dir, &[]);
    let started = std::time::Instant::now();
    let waited = backup(&src, &dir, &["--wait", "1"]);
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    for o in [&out, &waited] {
        assert_eq!(o.code, 75, "{}\n{:#?}", o.stderr, o.recs);
        assert_eq!(o.error()["cause"], "busy");
        assert_eq!(summary(&o.recs)["status"], "busy");
        assert!(o.stderr.contains("is locked by"), "{}", o.stderr);
        assert!(events(&o.recs, "written").is_empty());
    }
    assert!(
        took >= std::time::Duration::from_secs(1),
        "--wait 1 waited {took:?}"
    );
    assert_eq!(chain_files(&dir.join(LABEL)), before);
    // Free again: the next run goes on.
    let out = backup_ok(&src, &dir, &[]);
    assert_eq!(out.written()["kind"], "chain_incr");
    let t = sb.join("t");
    restore_ok(&dir, &out.point(), true, &t);
    assert_eq!(tree_listing(&t), tree_listing(&src));
}
