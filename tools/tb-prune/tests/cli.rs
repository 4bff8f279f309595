//! `tb-check list ROOT | tb-prune` on real backup roots written by
//! tb-voltar and tb-incr: what is deleted and kept, and the safety rules
//! on stopped backups, damaged newest backups, lying mtimes, chains, cut
//! listings and busy directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use serde_json::Value;
use tb_shared::record::Reporter;
use tb_testkit::{Sandbox, events, noise, records, summary};

/// A full volume archive of `src` written as `name` (a name of ours with
/// the date we want) in `dir`.
fn archive(src: &Path, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join(name);
    let args = tb_voltar::Args::parse_from([
        "tb-voltar".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        // Other tests' children may hold an inherited lock descriptor for
        // the instant between their fork and exec.
        "--wait".as_ref(),
        "10".as_ref(),
    ]);
    let mut rep = Reporter::quiet("tb-voltar");
    tb_voltar::run(args, &mut rep).unwrap();
    out
}

/// One tb-incr run; the point directory.
fn incr(src: &Path, root: &Path, extra: &[&str]) -> PathBuf {
    let mut argv: Vec<std::ffi::OsString> = vec![
        "tb-incr".into(),
        "--source".into(),
        src.into(),
        "--name".into(),
        "media_volume".into(),
        "--dir".into(),
        root.into(),
        "--wait".into(),
        "10".into(),
    ];
    argv.extend(extra.iter().map(Into::into));
    let mut rep = Reporter::quiet("tb-incr");
    tb_incr::run(tb_incr::Args::parse_from(argv), &mut rep).unwrap();
    let rec = rep
        .records()
        .iter()
        .find(|r| r["event"] == "written")
        .unwrap()
        .clone();
    PathBuf::from(rec["path"].as_str().unwrap())
}

/// What `tb-check list ROOT` prints (run in-process), as bytes.
fn list(root: &Path) -> Vec<u8> {
    let args = tb_check::Args::parse_from(["tb-check".as_ref(), "list".as_ref(), root.as_os_str()]);
    let mut rep = Reporter::quiet("tb-check");
    let outcome = tb_check::run(args, &mut rep).unwrap();
    rep.summary(outcome);
    let mut out = Vec::new();
    for r in rep.records() {
        serde_json::to_writer(&mut out, r).unwrap();
        out.push(b'\n');
    }
    out
}

fn prune(input: &[u8], args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tb-prune"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every file under `root` with its bytes (directories as names ending in /).
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.ends_with(".tb.lock") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn decided(recs: &[Value], event: &str) -> Vec<String> {
    let mut v: Vec<String> = events(recs, event)
        .iter()
        .filter(|r| r["path"].is_string())
        .map(|r| name(Path::new(r["path"].as_str().unwrap())))
        .collect();
    v.sort();
    v
}

/// A small media tree.
fn tree(sb: &Sandbox) -> PathBuf {
    let src = sb.join("media");
    std::fs::create_dir_all(src.join("img")).unwrap();
    std::fs::write(src.join("img/a.jpg"), noise(20_000, 1)).unwrap();
    std::fs::write(src.join("index.html"), "<p>hi</p>\n".repeat(100)).unwrap();
    src
}

/// Full archives of the 1st to the 20th of January 2026, and a note.
fn volume_root(sb: &Sandbox) -> PathBuf {
    let src = tree(sb);
    let vols = sb.join("root/volumes");
    for d in 1..=20 {
        archive(&src, &vols, &format!("media_volume_202601{d:02}.tar.gz"));
    }
    std::fs::write(vols.join("README.txt"), "not a backup\n").unwrap();
    std::fs::write(vols.join("media_volume_2026.tar.gz"), "not ours either\n").unwrap();
    sb.join("root")
}

#[test]
fn the_plan_keeps_fourteen_days_of_volume_archives_and_their_sidecars_only() {
    let sb = Sandbox::new();
    let root = volume_root(&sb);
    let out = prune(&list(&root), &["--now", "2026-01-20T04:00:00"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let deleted = decided(&recs, "deleted");
    let want: Vec<String> = (1..=6)
        .map(|d| format!("media_volume_202601{d:02}.tar.gz"))
        .collect();
    assert_eq!(
        deleted, want,
        "older than 14 days at Jan 20 04:00: the 1st..6th"
    );
    assert_eq!(decided(&recs, "kept").len(), 14);
    let left: Vec<String> = snapshot(&root.join("volumes")).into_keys().collect();
    for d in 1..=6 {
        for ext in ["tar.gz", "index.jsonl.gz", "manifest.json"] {
            let n = format!("media_volume_202601{d:02}.{ext}");
            assert!(!left.contains(&n), "{n} should be gone: {left:?}");
        }
    }
    for d in 7..=20 {
        for ext in ["tar.gz", "index.jsonl.gz", "manifest.json"] {
            assert!(left.contains(&format!("media_volume_202601{d:02}.{ext}")));
        }
    }
    assert!(
        left.contains(&"README.txt".to_string())
            && left.contains(&"media_volume_2026.tar.gz".to_string())
    );
    let r = &events(&recs, "deleted")[0];
    assert_eq!(r["kind"], "volume");
    assert_eq!(r["label"], "media_volume");
    assert!(
        r["rule"]
            .as_str()
            .unwrap()
            .starts_with("older than 14 days"),
        "{r}"
    );
    assert_eq!(summary(&recs)["deleted"], 6);
}

#[test]
fn a_dry_run_deletes_nothing_and_says_what_it_would() {
    let sb = Sandbox::new();
    let root = volume_root(&sb);
    let before = snapshot(&root);
    let out = prune(&list(&root), &["--dry-run", "--now", "2026-01-20T04:00:00"]);
    assert_eq!(out.status.code(), Some(0));
    let recs = records(&out.stdout);
    assert_eq!(decided(&recs, "would_delete").len(), 6);
    assert!(events(&recs, "deleted").is_empty());
    assert_eq!(snapshot(&root), before);
}

#[test]
fn backups_stopped_for_weeks_keep_the_newest_whatever_its_age() {
    for days_later in [10, 20, 40] {
        let sb = Sandbox::new();
        let root = volume_root(&sb);
        let now = chrono::NaiveDate::from_ymd_opt(2026, 1, 20).unwrap()
            + chrono::Duration::days(days_later);
        let out = prune(&list(&root), &["--now", &format!("{now}T04:00:00")]);
        assert_eq!(out.status.code(), Some(0));
        let recs = records(&out.stdout);
        // Younger than 14 days at that time, or else the newest alone.
        let want: Vec<String> = if days_later == 10 {
            (17..=20)
                .map(|d| format!("media_volume_202601{d}.tar.gz"))
                .collect()
        } else {
            vec!["media_volume_20260120.tar.gz".to_string()]
        };
        assert_eq!(decided(&recs, "kept"), want, "{days_later} days later");
        let newest = events(&recs, "kept")
            .into_iter()
            .find(|r| r["path"].as_str().unwrap().ends_with("20260120.tar.gz"))
            .unwrap();
        assert!(
            newest["rule"]
                .as_str()
                .unwrap()
                .contains("the newest verified backup")
        );
        assert!(root.join("volumes/media_volume_20260120.tar.gz").exists());
    }
}

#[test]
fn mtimes_never_decide_only_the_names_do() {
    let sb = Sandbox::new();
    let root = volume_root(&sb);
    let vols = root.join("volumes");
    // Today's files look a month old; month-old files look brand new.
    let set = |f: &str, when: &str| {
        let ok = Command::new("touch")
            .args(["-h", "-d", when])
            .arg(vols.join(f))
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    set("media_volume_20260120.tar.gz", "2025-12-20 03:30");
    set("media_volume_20260101.tar.gz", "2026-01-20 03:59");
    let out = prune(&list(&root), &["--now", "2026-01-20T04:00:00"]);
    let recs = records(&out.stdout);
    assert!(decided(&recs, "deleted").contains(&"media_volume_20260101.tar.gz".to_string()));
    assert!(decided(&recs, "kept").contains(&"media_volume_20260120.tar.gz".to_string()));
}

#[test]
fn a_damaged_newest_backup_does_not_push_out_the_last_good_one() {
    let sb = Sandbox::new();
    let root = volume_root(&sb);
    let newest = root.join("volumes/media_volume_20260120.tar.gz");
    // Truncated on disk: its size no longer matches its manifest.
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let out = prune(&list(&root), &["--now", "2026-03-01T04:00:00"]);
    assert_eq!(out.status.code(), Some(0));
    let recs = records(&out.stdout);
    let kept = decided(&recs, "kept");
    assert_eq!(
        kept,
        vec!["media_volume_20260119.tar.gz"],
        "the newest good one stays"
    );
    let d = events(&recs, "deleted");
    let dn = d
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("20260120.tar.gz"))
        .unwrap();
    assert_eq!(dn["verdict"], "damaged");
    assert!(dn["rule"].as_str().unwrap().contains("not verified"));
}

#[test]
fn a_cut_listing_or_a_failed_one_deletes_nothing() {
    let sb = Sandbox::new();
    let root = volume_root(&sb);
    let before = snapshot(&root);
    let full = list(&root);
    let lines: Vec<&[u8]> = full.split_inclusive(|b| *b == b'\n').collect();
    // The producer died: no summary at the end.
    let cut: Vec<u8> = lines[..5].concat();
    let out = prune(&cut, &["--now", "2026-03-01T04:00:00"]);
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    assert_eq!(events(&recs, "error")[0]["cause"], "incomplete");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was deleted"));
    // Cut in the middle of a line.
    let mid = &full[..full.len() - 7];
    assert_eq!(
        prune(mid, &["--now", "2026-03-01T04:00:00"]).status.code(),
        Some(2)
    );
    // A listing whose own summary says it failed.
    let mut failed = lines[..5].concat();
    failed.extend_from_slice(
        b"{\"event\":\"summary\",\"tool\":\"tb-check\",\"status\":\"unknown\",\"exit_code\":3}\n",
    );
    assert_eq!(
        prune(&failed, &["--now", "2026-03-01T04:00:00"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(snapshot(&root), before);
}

#[test]
fn an_empty_listing_deletes_nothing_and_warns() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.join("root")).unwrap();
    let out = prune(&list(&sb.join("root")), &[]);
    assert_eq!(out.status.code(), Some(1));
    let recs = records(&out.stdout);
    assert_eq!(summary(&recs)["deleted"], 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
    let out = prune(b"", &[]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn plain_paths_from_ls_work_and_names_not_ours_are_never_deleted() {
    let sb = Sandbox::new();
    let root = volume_root(&sb);
    let vols = root.join("volumes");
    let mut input = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&vols)
        .unwrap()
        .flatten()
        .map(|e| name(&e.path()))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for n in &names {
        input.extend_from_slice(vols.join(n).as_os_str().as_encoded_bytes());
        input.push(b'\n');
    }
    let out = prune(
        &input,
        &["--keep-last", "3", "--now", "2026-01-20T04:00:00"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "skipped lines are warnings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert_eq!(
        decided(&recs, "kept"),
        vec![
            "media_volume_20260118.tar.gz",
            "media_volume_20260119.tar.gz",
            "media_volume_20260120.tar.gz"
        ]
    );
    assert_eq!(decided(&recs, "deleted").len(), 17);
    let skipped = decided(&recs, "warning");
    assert_eq!(skipped, vec!["README.txt", "media_volume_2026.tar.gz"]);
    assert!(vols.join("README.txt").exists() && vols.join("media_volume_2026.tar.gz").exists());
}

#[test]
fn chains_are_deleted_only_as_a_whole_once_their_newest_point_expired() {
    let sb = Sandbox::new();
    let src = tree(&sb);
    let incr_root = sb.join("root/volumes-incremental");
    let c1 = [incr(&src, &incr_root, &[]), {
        std::fs::write(src.join("new.txt"), "x").unwrap();
        incr(&src, &incr_root, &[])
    }];
    let c2 = [incr(&src, &incr_root, &["--full"]), {
        std::fs::write(src.join("newer.txt"), "y").unwrap();
        incr(&src, &incr_root, &[])
    }];
    assert!(name(&c2[0]).starts_with("base_") && name(&c2[1]).starts_with("incr_"));
    // Today: both chains are young, everything stays.
    let out = prune(&list(&sb.join("root")), &[]);
    assert_eq!(out.status.code(), Some(0));
    let recs = records(&out.stdout);
    assert_eq!(decided(&recs, "kept").len(), 4);
    // A month later: the older chain goes whole, the newest chain stays whole.
    let later = (chrono::Local::now() + chrono::Duration::days(30))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let out = prune(&list(&sb.join("root")), &["--now", &later]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let mut want_deleted: Vec<String> = c1.iter().map(|p| name(p)).collect();
    want_deleted.sort();
    assert_eq!(decided(&recs, "deleted"), want_deleted);
    // Newest point first: a cut deletion leaves a shorter chain that restores.
    let order: Vec<String> = events(&recs, "deleted")
        .iter()
        .map(|r| name(Path::new(r["path"].as_str().unwrap())))
        .collect();
    assert_eq!(order, vec![name(&c1[1]), name(&c1[0])]);
    assert!(!c1[0].exists() && !c1[1].exists());
    assert!(c2[0].exists() && c2[1].exists());
    for r in events(&recs, "kept") {
        assert!(r["kind"].as_str().unwrap().starts_with("chain_"));
        assert!(r["rule"].as_str().unwrap().contains("newest verified"));
    }
}

#[test]
fn a_base_is_never_deleted_under_its_increments() {
    // Listing only the base (an `ls` of base_*) still keeps or deletes the
    // whole chain: the increments on disk make it young.
    let sb = Sandbox::new();
    let src = tree(&sb);
    let incr_root = sb.join("root/volumes-incremental");
    let base = incr(&src, &incr_root, &[]);
    std::fs::write(src.join("new.txt"), "x").unwrap();
    let inc = incr(&src, &incr_root, &[]);
    let mut input = base.as_os_str().as_encoded_bytes().to_vec();
    input.push(b'\n');
    let out = prune(&input, &[]);
    assert_eq!(out.status.code(), Some(0));
    let recs = records(&out.stdout);
    assert_eq!(decided(&recs, "kept"), {
        let mut v = vec![name(&base), name(&inc)];
        v.sort();
        v
    });
    assert!(base.exists() && inc.exists());
}

#[test]
fn a_busy_directory_exits_75_and_deletes_nothing() {
    let sb = Sandbox::new();
    let root = volume_root(&sb);
    let before = snapshot(&root);
    // Another tool is writing there: it holds the directory's lock.
    let mut holder = Command::new("flock")
        .arg(root.join("volumes/.tb.lock"))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    tb_testkit::wait_for(10, "the lock holder", || {
        let busy = Command::new("flock")
            .args(["-n"])
            .arg(root.join("volumes/.tb.lock"))
            .arg("true")
            .status()
            .unwrap();
        (!busy.success()).then_some(())
    });
    let out = prune(&list(&root), &["--now", "2026-03-01T04:00:00"]);
    holder.kill().unwrap();
    let _ = holder.wait();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&root), before);
}

#[test]
fn the_plan_keeps_seven_days_of_dumps_with_their_roles_and_manifests() {
    let pg = tb_testkit::Pg::shared();
    pg.toybox("toybox");
    let sb = Sandbox::new();
    let db = sb.join("root/database");
    std::fs::create_dir_all(&db).unwrap();
    for d in 1..=10 {
        let mut args = vec![
            "tb-dump".to_string(),
            "--dbname".into(),
            "toybox".into(),
            "--wait".into(),
            "10".into(),
            "-o".into(),
            db.join(format!("toybox_202601{d:02}_030000.sql.gz"))
                .to_string_lossy()
                .into(),
        ];
        args.extend(pg.conn_args());
        let mut rep = Reporter::quiet("tb-dump");
        let outcome = tb_dump::run(tb_dump::Args::parse_from(args), &mut rep).unwrap();
        assert_eq!(outcome.code, 0);
    }
    let names: Vec<String> = std::fs::read_dir(&db)
        .unwrap()
        .flatten()
        .map(|e| name(&e.path()))
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names.len(), 30, "dump, roles and manifest each: {names:?}");
    let listing = list(&sb.join("root"));
    let listed = records(&listing);
    assert_eq!(
        events(&listed, "backup").len(),
        10,
        "roles and manifests are sidecars"
    );
    assert_eq!(
        events(&listed, "backup")[0]["sidecars"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let out = prune(&listing, &["--now", "2026-01-10T03:30:00"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert_eq!(
        decided(&recs, "deleted"),
        vec![
            "toybox_20260101_030000.sql.gz",
            "toybox_20260102_030000.sql.gz",
            "toybox_20260103_030000.sql.gz"
        ]
    );
    let mut left: Vec<String> = snapshot(&db).into_keys().collect();
    left.retain(|n| n.starts_with("toybox_2026"));
    assert_eq!(left.len(), 21, "{left:?}");
    for d in 1..=3 {
        for ext in ["sql.gz", "roles.sql.gz", "manifest.json"] {
            assert!(
                !db.join(format!("toybox_202601{d:02}_030000.{ext}"))
                    .exists()
            );
        }
    }
}

// Regressions from a hostile review: each of these used to delete the
// last good backup or something that was not a backup.

#[test]
fn one_backup_listed_under_two_spellings_is_one_backup_and_is_kept() {
    let sb = Sandbox::new();
    let src = tree(&sb);
    let db = sb.join("root/volumes");
    let only = archive(&src, &db, "media_volume_20260101.tar.gz");
    std::os::unix::fs::symlink(&db, sb.join("alias")).unwrap();
    let mut input = Vec::new();
    for p in [
        only.clone(),
        sb.join("alias/media_volume_20260101.tar.gz"),
        sb.join("root/volumes/../volumes/media_volume_20260101.tar.gz"),
    ] {
        input.extend_from_slice(p.as_os_str().as_encoded_bytes());
        input.push(b'\n');
    }
    let out = prune(&input, &["--now", "2026-06-01T00:00:00"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert!(events(&recs, "deleted").is_empty(), "{recs:#?}");
    assert_eq!(events(&recs, "kept").len(), 1);
    assert!(only.exists());
}

#[test]
fn the_newest_backup_of_each_directory_is_kept_even_with_newer_copies_elsewhere() {
    let sb = Sandbox::new();
    let src = tree(&sb);
    let prod = archive(
        &src,
        &sb.join("root/prod/volumes"),
        "media_volume_20260101.tar.gz",
    );
    archive(
        &src,
        &sb.join("root/staging/volumes"),
        "media_volume_20260115.tar.gz",
    );
    archive(
        &src,
        &sb.join("root/staging/volumes"),
        "media_volume_20260120.tar.gz",
    );
    let out = prune(&list(&sb.join("root")), &["--now", "2026-03-01T00:00:00"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(prod.exists(), "prod's only backup must stay");
    let recs = records(&out.stdout);
    assert_eq!(
        decided(&recs, "deleted"),
        vec!["media_volume_20260115.tar.gz"]
    );
}

#[test]
fn a_newest_backup_with_a_flipped_byte_is_found_before_older_ones_are_deleted() {
    let sb = Sandbox::new();
    let src = tree(&sb);
    let dir = sb.join("root/volumes");
    let good = archive(&src, &dir, "media_volume_20260101.tar.gz");
    let bad = archive(&src, &dir, "media_volume_20260120.tar.gz");
    // Same size, so the manifest's sizes cannot see it.
    let mut bytes = std::fs::read(&bad).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let out = prune(&list(&sb.join("root")), &["--now", "2026-06-01T00:00:00"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a warning names the damaged one: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(good.exists(), "the only intact archive stays");
    let recs = records(&out.stdout);
    let v = events(&recs, "verified");
    assert_eq!(v[0]["verdict"], "damaged");
    assert!(decided(&recs, "kept").contains(&"media_volume_20260101.tar.gz".to_string()));
}

#[test]
fn a_name_in_the_future_never_pushes_out_real_backups() {
    let sb = Sandbox::new();
    let src = tree(&sb);
    let dir = sb.join("root/volumes");
    let real = archive(&src, &dir, "media_volume_20260115.tar.gz");
    archive(&src, &dir, "media_volume_20300110.tar.gz");
    let out = prune(&list(&sb.join("root")), &["--now", "2026-03-01T00:00:00"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        real.exists(),
        "the real newest stays: the 2030 name does not count"
    );
}

#[test]
fn a_directory_named_like_a_sidecar_is_never_deleted() {
    let sb = Sandbox::new();
    let src = tree(&sb);
    let dir = sb.join("root/volumes");
    archive(&src, &dir, "media_volume_20260101.tar.gz");
    archive(&src, &dir, "media_volume_20260120.tar.gz");
    // Replace the old archive's index by a directory holding something precious.
    let idx = dir.join("media_volume_20260101.index.jsonl.gz");
    std::fs::remove_file(&idx).unwrap();
    std::fs::create_dir(&idx).unwrap();
    std::fs::write(idx.join("important.txt"), "precious").unwrap();
    let _ = prune(&list(&sb.join("root")), &["--now", "2026-06-01T00:00:00"]);
    assert_eq!(
        std::fs::read_to_string(idx.join("important.txt")).unwrap(),
        "precious"
    );
}

#[test]
fn a_symlinked_layout_directory_is_listed_and_pruned() {
    let sb = Sandbox::new();
    let src = tree(&sb);
    let real = sb.join("disk2/volumes");
    archive(&src, &real, "media_volume_20260101.tar.gz");
    archive(&src, &real, "media_volume_20260120.tar.gz");
    std::fs::create_dir_all(sb.join("root")).unwrap();
    std::os::unix::fs::symlink(&real, sb.join("root/volumes")).unwrap();
    let listing = list(&sb.join("root"));
    assert_eq!(events(&records(&listing), "backup").len(), 2);
    let out = prune(&listing, &["--now", "2026-06-01T00:00:00"]);
    let recs = records(&out.stdout);
    assert_eq!(
        decided(&recs, "deleted"),
        vec!["media_volume_20260101.tar.gz"]
    );
    assert!(real.join("media_volume_20260120.tar.gz").exists());
}
