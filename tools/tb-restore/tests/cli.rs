//! tb-restore on real volume archives: a restore equals the source tree
//! byte for byte, and any failure leaves the target as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use nix::sys::signal::Signal;
use serde_json::Value;
use tb_testkit::{
    Sandbox, Tmpfs, events, is_root, list_dir, noise, records, signal, summary, tree_listing,
    tree_with_every_kind, wait_for,
};

fn restore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-restore"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("TB_") {
            c.env_remove(&k);
        }
    }
    c.stdin(Stdio::null());
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

/// Archive `src` with tb-voltar (in-process) into `dir`; the archive's path.
fn archive(src: &Path, dir: &Path, label: &str) -> PathBuf {
    let args = tb_voltar::Args::parse_from([
        "tb-voltar".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
        "--name".as_ref(),
        label.as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
    ]);
    let mut rep = tb_shared::record::Reporter::quiet("tb-voltar");
    tb_voltar::run(args, &mut rep).unwrap();
    let rec = rep
        .records()
        .iter()
        .find(|r| r["event"] == "written" && r["kind"] == "volume")
        .unwrap()
        .clone();
    PathBuf::from(rec["path"].as_str().unwrap())
}

fn restored(recs: &[Value]) -> &Value {
    events(recs, "restored")
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no restored record: {recs:#?}"))
}

/// The listing of `src` as a restore must reproduce it: sockets are not
/// archived.
fn expected_listing(src: &Path) -> Vec<String> {
    tree_listing(src)
        .into_iter()
        .filter(|l| !l.contains(" socket "))
        .collect()
}

fn assert_failed(out: &Output, cause: &str, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let recs = records(&out.stdout);
    let errs = events(&recs, "error");
    assert_eq!(errs.len(), 1, "{recs:#?}");
    assert_eq!(errs[0]["cause"], cause, "{recs:#?}");
    assert!(events(&recs, "restored").is_empty());
    assert_eq!(summary(&recs)["status"], "failed");
    assert!(
        stderr.contains(says),
        "stderr should say {says:?}: {stderr}"
    );
}

fn no_temps(dir: &Path) {
    let left: Vec<String> = list_dir(dir)
        .into_iter()
        .filter(|n| n.starts_with(".tb-tmp."))
        .collect();
    assert!(
        left.is_empty(),
        "temporaries left in {}: {left:?}",
        dir.display()
    );
}

#[test]
fn a_volume_with_every_kind_of_entry_restores_exactly() {
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    let _sock = tree_with_every_kind(&src);
    let a = archive(&src, &sb.join("backups"), "media_volume");
    let target = sb.join("restored/media");
    let out = run(restore().arg(&a).arg("--target").arg(&target));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let recs = records(&out.stdout);
    // The archive's manifest notes the skipped socket: a warning, exit 1.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let warnings = events(&recs, "warning");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("1 warnings"),
        "{warnings:#?}"
    );
    let r = restored(&recs);
    assert_eq!(r["checked"], "index");
    assert_eq!(r["target"], target.to_str().unwrap());
    assert_eq!(r["hardlinks"], 2);
    assert_eq!(r["sha256"], tb_testkit::sha256sum(&a));
    assert_eq!(expected_listing(&src), tree_listing(&target));
    // Holes stay holes: 20 MiB logical, a few blocks on disk.
    use std::os::unix::fs::MetadataExt;
    let sparse = std::fs::metadata(target.join("sparse.img")).unwrap();
    assert_eq!(sparse.len(), 20 << 20);
    assert!(sparse.blocks() < 256, "{} blocks", sparse.blocks());
    no_temps(&sb.join("restored"));
}

#[test]
fn gnu_tar_alone_restores_the_same_tree() {
    // Restorable without tb: the README's command gives the same tree.
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    let _sock = tree_with_every_kind(&src);
    let a = archive(&src, &sb.join("backups"), "media_volume");
    let x = sb.join("by-tar");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .arg("-xzpf")
        .arg(&a)
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-C"])
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(expected_listing(&src), tree_listing(&x));
}

#[test]
fn a_stream_on_stdin_restores_and_says_it_was_checked_by_gzip_only() {
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::write(src.join("d/e/f.txt"), "text\n".repeat(1000)).unwrap();
    std::fs::write(src.join("pic.jpg"), noise(300_000, 7)).unwrap();
    let a = archive(&src, &sb.join("backups"), "s");
    let target = sb.join("t");
    let out = run(restore()
        .args(["-", "--target"])
        .arg(&target)
        .stdin(std::fs::File::open(&a).unwrap()));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert_eq!(restored(&recs)["checked"], "gzip");
    assert_eq!(restored(&recs)["path"], "-");
    assert_eq!(tree_listing(&src), tree_listing(&target));
}

#[test]
fn a_damaged_archive_restores_nothing() {
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("f{i}.bin")), noise(200_000, i)).unwrap();
        std::fs::write(src.join(format!("t{i}.txt")), "line\n".repeat(20_000)).unwrap();
    }
    let a = archive(&src, &sb.join("backups"), "d");
    let good = std::fs::read(&a).unwrap();
    // A flipped byte in the middle, then a cut: neither restores anything.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    for (bytes, says) in [
        (flipped, "is damaged"),
        (good[..good.len() * 2 / 3].to_vec(), "is damaged"),
    ] {
        std::fs::write(&a, &bytes).unwrap();
        let target = sb.join("t");
        let out = run(restore().arg(&a).arg("--target").arg(&target));
        assert_failed(&out, "damaged", says);
        assert!(!target.exists(), "a new target is not created");
        no_temps(sb.path());
        // Into an existing empty directory: still empty, its mode unchanged.
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o751))
            .unwrap();
        let out = run(restore().arg(&a).arg("--target").arg(&target));
        assert_failed(&out, "damaged", says);
        assert!(list_dir(&target).is_empty());
        assert_eq!(tb_testkit::mode(&target), 0o751);
        std::fs::remove_dir(&target).unwrap();
        no_temps(sb.path());
    }
}

#[test]
fn an_archive_that_does_not_match_its_manifest_restores_nothing() {
    // Another valid archive put in place of the first: the index and the
    // manifest beside it catch the swap.
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), "first\n").unwrap();
    let a = archive(&src, &sb.join("backups"), "m");
    std::fs::write(src.join("a.txt"), "second\n").unwrap();
    let b = archive(&src, &sb.join("other"), "m");
    std::fs::copy(&b, &a).unwrap();
    let target = sb.join("t");
    let out = run(restore().arg(&a).arg("--target").arg(&target));
    assert_failed(&out, "damaged", "does not match");
    assert!(!target.exists());
    no_temps(sb.path());
}

#[test]
fn an_existing_empty_target_gets_the_archived_root() {
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("x"), "x").unwrap();
    std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let a = archive(&src, &sb.join("backups"), "m");
    let target = sb.join("empty");
    std::fs::create_dir(&target).unwrap();
    let out = run(restore().arg(&a).arg("--target").arg(&target));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree_listing(&src), tree_listing(&target));
    assert_eq!(tb_testkit::mode(&target), 0o750);
    no_temps(sb.path());
}

#[test]
fn a_target_that_is_not_empty_is_refused_unless_forced() {
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/new.txt"), "from the archive").unwrap();
    std::fs::write(src.join("same.txt"), "archived").unwrap();
    let a = archive(&src, &sb.join("backups"), "m");
    let target = sb.join("busy");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    std::fs::write(target.join("same.txt"), "old").unwrap();
    let out = run(restore().arg(&a).arg("--target").arg(&target));
    assert_failed(&out, "not_empty", "--force");
    assert_eq!(list_dir(&target), ["keep.txt", "same.txt"]);
    assert_eq!(std::fs::read(target.join("same.txt")).unwrap(), b"old");

    let out = run(restore()
        .arg(&a)
        .arg("--target")
        .arg(&target)
        .arg("--force"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(target.join("same.txt")).unwrap(), b"archived");
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read(target.join("sub/new.txt")).unwrap(),
        b"from the archive"
    );
}

#[test]
fn a_full_disk_during_restore_names_the_file_and_leaves_nothing() {
    if !is_root() {
        eprintln!(
            "SKIP a_full_disk_during_restore_names_the_file_and_leaves_nothing: needs root to mount a small tmpfs"
        );
        return;
    }
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("small.txt"), "fits").unwrap();
    std::fs::write(src.join("video.mp4"), noise(3_000_000, 3)).unwrap();
    let a = archive(&src, &sb.join("backups"), "big");
    let small = sb.join("small");
    let _m = Tmpfs::mount(&small, "1m");
    let target = small.join("restored");
    let out = run(restore().arg(&a).arg("--target").arg(&target));
    assert_failed(&out, "disk_full", "video.mp4");
    assert!(list_dir(&small).is_empty(), "{:?}", list_dir(&small));
}

fn big_tree(sb: &Sandbox) -> PathBuf {
    let src = sb.join("big");
    std::fs::create_dir(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i:02}.bin")), noise(2_000_000, i)).unwrap();
    }
    src
}

/// The temporary directory of a running restore into `target`.
fn restore_temp(target: &Path, pid: u32) -> PathBuf {
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    target
        .parent()
        .unwrap()
        .join(format!(".tb-tmp.{name}.{pid}"))
}

#[test]
fn a_killed_restore_leaves_only_a_temp_that_the_next_restore_removes() {
    let sb = Sandbox::new();
    let src = big_tree(&sb);
    let a = archive(&src, &sb.join("backups"), "big");
    let target = sb.join("out/t");
    let mut child = restore()
        .arg(&a)
        .arg("--target")
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let temp = restore_temp(&target, pid);
    wait_for(60, "the restore to write files", || {
        (list_dir(&temp).len() >= 2).then_some(())
    });
    signal(pid, Signal::SIGKILL);
    let _ = child.wait();
    assert!(!target.exists(), "a killed restore never looks done");
    assert!(temp.exists());
    let out = run(restore().arg(&a).arg("--target").arg(&target));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let removed = events(&recs, "removed");
    assert_eq!(removed.len(), 1, "{recs:#?}");
    assert_eq!(removed[0]["path"], temp.to_str().unwrap());
    assert_eq!(tree_listing(&src), tree_listing(&target));
    no_temps(&sb.join("out"));
}

#[test]
fn sigterm_takes_the_restore_back() {
    let sb = Sandbox::new();
    let src = big_tree(&sb);
    let a = archive(&src, &sb.join("backups"), "big");
    let target = sb.join("out/t");
    let child = restore()
        .arg(&a)
        .arg("--target")
        .arg(&target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let temp = restore_temp(&target, pid);
    wait_for(60, "the restore to write files", || {
        (list_dir(&temp).len() >= 2).then_some(())
    });
    signal(pid, Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_failed(&out, "interrupted", "interrupted by SIGTERM");
    assert!(!target.exists());
    no_temps(&sb.join("out"));
}

#[test]
fn a_dump_given_a_directory_target_is_pointed_to_dbname() {
    let sb = Sandbox::new();
    let dump = sb.join("toybox_20260123_030000.sql.gz");
    std::fs::write(&dump, b"not really").unwrap();
    let out = run(restore().arg(&dump).arg("--target").arg(sb.join("t")));
    assert_failed(&out, "bad_input", "give --dbname NAME");
    assert!(!sb.join("t").exists());
}

#[test]
fn a_missing_archive_is_named() {
    let sb = Sandbox::new();
    let out = run(restore()
        .arg(sb.join("nope.tar.gz"))
        .arg("--target")
        .arg(sb.join("t")));
    assert_failed(&out, "not_found", "nope.tar.gz");
    assert!(!sb.join("t").exists());
}

#[test]
fn help_explains_restore_without_tb() {
    let out = run(restore().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "tar -xzpf",
        "--numeric-owner",
        "--force",
        "--volume",
        "75 busy",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
