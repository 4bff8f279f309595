//! tb-voltar on real trees: what it archives, what it refuses, and that a
//! failure publishes nothing and leaves earlier archives byte-identical.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::sys::signal::Signal;
use serde_json::Value;
use tb_testkit::{
    Pg, Sandbox, Tmpfs, events, is_root, list_dir, noise, records, sha256sum, signal,
    snapshot_files, summary, tree_with_every_kind, wait_for,
};

fn voltar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-voltar"));
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

fn written<'a>(recs: &'a [Value], kind: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["event"] == "written" && r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} record: {recs:#?}"))
}

fn backups(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot_files(dir)
        .into_iter()
        .filter(|(n, _)| n != ".tb.lock")
        .collect()
}

/// A small tree and an earlier archive of it in `dir`.
fn earlier(sb: &Sandbox, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let src = sb.join("earlier-src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("a/f.txt"), "earlier\n").unwrap();
    let out = run(voltar()
        .args(["--source"])
        .arg(&src)
        .args(["--name", "earlier", "--dir"])
        .arg(dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    backups(dir)
}

fn assert_failed_cleanly(
    out: &Output,
    dir: &Path,
    before: &BTreeMap<String, Vec<u8>>,
    cause: &str,
    says: &str,
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let recs = records(&out.stdout);
    let errs = events(&recs, "error");
    assert_eq!(errs.len(), 1, "{recs:#?}");
    assert_eq!(errs[0]["cause"], cause, "{recs:#?}");
    assert!(events(&recs, "written").is_empty());
    assert_eq!(summary(&recs)["status"], "failed");
    assert!(
        stderr.contains(says),
        "stderr should say {says:?}: {stderr}"
    );
    assert_eq!(
        &backups(dir),
        before,
        "earlier archives byte-identical, nothing added"
    );
}

#[test]
fn every_kind_of_entry_is_archived_and_verified() {
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    let _sock = tree_with_every_kind(&src);
    let out = run(voltar()
        .arg("--source")
        .arg(&src)
        .args(["--name", "media_volume", "--dir"])
        .arg(sb.join("out")));
    // A socket cannot be archived: done, with a warning.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let warnings = events(&recs, "warning");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("'app.sock' is a socket")
    );
    let v = written(&recs, "volume");
    let archive = PathBuf::from(v["path"].as_str().unwrap());
    let name = archive.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("media_volume_") && name.len() == "media_volume_20260119.tar.gz".len(),
        "{name}"
    );
    assert_eq!(v["sha256"], sha256sum(&archive));
    assert_eq!(v["bytes"], std::fs::metadata(&archive).unwrap().len());
    assert!(
        v["stored_chunks"].as_u64().unwrap() >= 1,
        "the JPEG-like file is stored, not compressed"
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(tb_shared::naming::manifest_path(&archive)).unwrap())
            .unwrap();
    assert_eq!(m["kind"], "volume");
    assert_eq!(m["volume"]["consistent"], true);
    assert_eq!(m["volume"]["sockets_skipped"], 1);
    assert_eq!(m["volume"]["hardlinks"], 2);
    assert_eq!(m["files"][0]["sha256"], sha256sum(&archive));
    for f in list_dir(&sb.join("out")) {
        assert_eq!(tb_testkit::mode(&sb.join("out").join(&f)), 0o600, "{f}");
    }
    // GNU tar reads it, in order, root first.
    let list = run(Command::new("tar").arg("-tzf").arg(&archive));
    assert!(list.status.success());
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(names.starts_with("./\n"), "the root comes first: {names}");
    assert!(
        !names.lines().any(|l| l == "./app.sock"),
        "the socket is not archived: {names}"
    );
}

#[test]
fn a_second_archive_the_same_day_gets_the_time() {
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let dir = sb.join("out");
    let mut names = Vec::new();
    for _ in 0..2 {
        let out = run(voltar()
            .arg("--source")
            .arg(&src)
            .args(["--name", "m", "--dir"])
            .arg(&dir));
        assert!(out.status.success());
        names.push(
            PathBuf::from(
                written(&records(&out.stdout), "volume")["path"]
                    .as_str()
                    .unwrap(),
            )
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        );
    }
    assert_eq!(names[0].len(), "m_20260119.tar.gz".len(), "{names:?}");
    assert_eq!(
        names[1].len(),
        "m_20260119_030000.tar.gz".len(),
        "{names:?}"
    );
    assert!(names[1].starts_with(names[0].trim_end_matches(".tar.gz")));
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, names, "ls | sort order is time order");
}

#[test]
fn a_live_postgres_data_directory_is_refused_or_marked_inconsistent() {
    let pg = Pg::start();
    let data = pg.data_dir();
    let sb = Sandbox::new();
    let before = earlier(&sb, &sb.join("out"));
    let out = run(voltar()
        .arg("--source")
        .arg(&data)
        .args(["--name", "postgres_data", "--dir"])
        .arg(sb.join("out")));
    assert_failed_cleanly(&out, &sb.join("out"), &before, "live_database", "--stop");
    let out = run(voltar()
        .arg("--source")
        .arg(&data)
        .args(["--name", "postgres_data", "--allow-live", "--dir"])
        .arg(sb.join("out")));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let archive = PathBuf::from(written(&recs, "volume")["path"].as_str().unwrap());
    assert_eq!(written(&recs, "volume")["consistent"], false);
    let m: Value =
        serde_json::from_slice(&std::fs::read(tb_shared::naming::manifest_path(&archive)).unwrap())
            .unwrap();
    assert_eq!(m["volume"]["consistent"], false);
}

#[test]
fn missing_source_and_missing_volume_publish_nothing() {
    let sb = Sandbox::new();
    let dir = sb.join("out");
    let before = earlier(&sb, &dir);
    let out = run(voltar()
        .arg("--source")
        .arg(sb.join("nope"))
        .args(["--name", "x", "--dir"])
        .arg(&dir));
    assert_failed_cleanly(&out, &dir, &before, "not_found", "cannot read the source");
    if tb_testkit::docker::docker_or_skip("missing_source_and_missing_volume_publish_nothing") {
        let out = run(voltar()
            .args(["--volume", "tbtest-no-such-volume", "--dir"])
            .arg(&dir));
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
fn a_full_disk_publishes_nothing() {
    if !is_root() {
        eprintln!("SKIP a_full_disk_publishes_nothing: needs root to mount a small tmpfs");
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.join("small");
    let _m = Tmpfs::mount(&dir, "1m");
    let before = earlier(&sb, &dir);
    let src = sb.join("big");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("video.bin"), noise(3_000_000, 1)).unwrap();
    let out = run(voltar()
        .arg("--source")
        .arg(&src)
        .args(["--name", "big", "--dir"])
        .arg(&dir));
    assert_failed_cleanly(&out, &dir, &before, "disk_full", "disk full");
    assert!(list_dir(&dir).iter().all(|n| !n.starts_with(".tb-tmp.")));
}

#[test]
fn an_unwritable_destination_publishes_nothing() {
    let sb = Sandbox::new();
    let dir = sb.join("ro");
    let _m;
    let before = if is_root() {
        _m = Tmpfs::mount(&dir, "4m");
        let b = earlier(&sb, &dir);
        _m.make_read_only();
        b
    } else {
        let b = earlier(&sb, &dir);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o500))
            .unwrap();
        b
    };
    let src = sb.join("earlier-src");
    let out = run(voltar()
        .arg("--source")
        .arg(&src)
        .args(["--name", "x", "--dir"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        events(&records(&out.stdout), "error")[0]["cause"],
        "not_writable"
    );
    assert_eq!(backups(&dir), before);
}

#[test]
fn a_killed_run_leaves_only_a_temp_that_the_next_run_removes() {
    let sb = Sandbox::new();
    let dir = sb.join("out");
    let before = earlier(&sb, &dir);
    let src = sb.join("big");
    std::fs::create_dir(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i:02}.bin")), noise(2_000_000, i)).unwrap();
    }
    let mut child = voltar()
        .arg("--source")
        .arg(&src)
        .args(["--name", "big", "--level", "9", "--threads", "1", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for(60, "the temporary archive to grow", || {
        let t = list_dir(&dir)
            .into_iter()
            .find(|n| n.starts_with(".tb-tmp.big_") && n.ends_with(&format!(".tar.gz.{pid}")))?;
        (std::fs::metadata(dir.join(&t)).ok()?.len() > 1_000_000).then_some(())
    });
    signal(pid, Signal::SIGKILL);
    let _ = child.wait();
    let mut after = backups(&dir);
    after.retain(|n, _| !n.starts_with(".tb-tmp."));
    assert_eq!(after, before, "only temporaries are new");
    let out = run(voltar()
        .arg("--source")
        .arg(sb.join("earlier-src"))
        .args(["--name", "again", "--dir"])
        .arg(&dir));
    assert!(out.status.success());
    let recs = records(&out.stdout);
    assert!(!events(&recs, "removed").is_empty());
    assert!(list_dir(&dir).iter().all(|n| !n.starts_with(".tb-tmp.")));
}

#[test]
fn sigterm_ends_the_run_cleanly() {
    let sb = Sandbox::new();
    let dir = sb.join("out");
    let before = earlier(&sb, &dir);
    let src = sb.join("big");
    std::fs::create_dir(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i:02}.bin")), noise(2_000_000, i)).unwrap();
    }
    let child = voltar()
        .arg("--source")
        .arg(&src)
        .args(["--name", "big", "--level", "9", "--threads", "1", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for(60, "the temporary archive to grow", || {
        let t = list_dir(&dir)
            .into_iter()
            .find(|n| n.starts_with(".tb-tmp.big_") && n.ends_with(&format!(".tar.gz.{pid}")))?;
        (std::fs::metadata(dir.join(&t)).ok()?.len() > 1_000_000).then_some(())
    });
    signal(pid, Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_failed_cleanly(&out, &dir, &before, "interrupted", "interrupted by SIGTERM");
}

#[test]
fn files_that_change_while_read_give_consistent_entries_and_exit_1() {
    if !is_root() {
        eprintln!(
            "SKIP files_that_change_while_read_give_consistent_entries_and_exit_1: needs root for bind mounts"
        );
        return;
    }
    // Kernel files lie about their size the way a file being written does:
    // /proc files say 0 bytes and then give more (it "grew"), sysfs files
    // say 4096 and give less (it "shrank"). Bind-mounted into the tree,
    // they are read exactly like such a file.
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("grows"), b"").unwrap();
    std::fs::write(src.join("shrinks"), b"").unwrap();
    let sys = [
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/uevent_seqnum",
        "/sys/kernel/profiling",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("a sysfs file");
    let bind = |from: &str, to: &Path| {
        assert!(
            Command::new("mount")
                .args(["--bind", from])
                .arg(to)
                .status()
                .unwrap()
                .success()
        );
    };
    bind("/proc/meminfo", &src.join("grows"));
    bind(sys, &src.join("shrinks"));
    let out = run(voltar()
        .arg("--source")
        .arg(&src)
        .args(["--name", "changing", "--dir"])
        .arg(sb.join("out")));
    for f in ["grows", "shrinks"] {
        let _ = Command::new("umount").arg(src.join(f)).status();
    }
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let msgs: Vec<String> = events(&recs, "warning")
        .iter()
        .map(|w| w["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("'grows' grew while it was read")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("'shrinks' shrank while it was read")),
        "{msgs:?}"
    );
    // The archive itself is whole and matches its index.
    let archive = PathBuf::from(written(&recs, "volume")["path"].as_str().unwrap());
    let t = run(Command::new("tar").arg("-tzvf").arg(&archive));
    assert!(t.status.success());
    let listing = String::from_utf8_lossy(&t.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with("./shrinks") && l.contains(" 4096 ")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with("./grows") && l.contains(" 0 ")),
        "{listing}"
    );
}

#[test]
fn the_stream_to_stdout_is_a_gzip_tar_and_records_go_to_stderr() {
    let sb = Sandbox::new();
    let src = sb.join("vol");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f.txt"), "text\n".repeat(100)).unwrap();
    let out = run(voltar()
        .arg("--source")
        .arg(&src)
        .args(["--name", "s", "-o", "-"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = sb.join("s.tar.gz");
    std::fs::write(&file, &out.stdout).unwrap();
    let t = run(Command::new("tar").arg("-tzf").arg(&file));
    assert_eq!(String::from_utf8_lossy(&t.stdout), "./\n./d/\n./d/f.txt\n");
    let recs = records(&out.stderr);
    assert_eq!(written(&recs, "volume")["path"], "-");
    assert_eq!(written(&recs, "volume")["sha256"], sha256sum(&file));
}

#[test]
fn help_explains_restore_without_tb() {
    let out = run(voltar().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "tar -xzpf",
        "--numeric-owner",
        "--stop",
        "--allow-live",
        "75 busy",
    ] {
        assert!(help.contains(needle), "{needle}");
    }
}

#[test]
fn progress_shows_on_a_terminal_and_never_in_pipes_or_the_log() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), noise(8 << 20, 3)).unwrap();
    let bin = env!("CARGO_BIN_EXE_tb-voltar");
    // A pseudo-terminal (util-linux `script`), as a person at a shell.
    let typescript = sb.join("typescript");
    let cmd = format!(
        "{bin} --source {} --name tty -o {} --threads 1",
        src.display(),
        sb.join("tty.tar.gz").display()
    );
    let st = std::process::Command::new("script")
        .args(["-qec", &cmd])
        .arg(&typescript)
        .env_remove("TB_NO_PROGRESS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let seen = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(
        seen.contains("archiving"),
        "no progress on a terminal: {seen}"
    );
    // Piped, with a log: no progress anywhere.
    let log = sb.join("log.jsonl");
    let out = std::process::Command::new(bin)
        .arg("--source")
        .arg(&src)
        .args(["--name", "pipe", "-o"])
        .arg(sb.join("pipe.tar.gz"))
        .arg("--log")
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("archiving"));
    assert!(!std::fs::read_to_string(&log).unwrap().contains("archiving"));
}
