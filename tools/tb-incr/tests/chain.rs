//! tb-incr chains on real trees: a scripted two-week history of a
//! media-like volume restored to every day (with tb-restore, and with
//! `xargs rm` and `tar` alone), differential points, broken chains, new
//! bases, and the counts of the `written` record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;
use tb_testkit::{Sandbox, events, list_dir, noise, sha256sum, tree_listing};

/// JPEG-like bytes (a JPEG magic, then noise).
fn jpeg(len: usize, seed: u64) -> Vec<u8> {
    let mut v = b"\xff\xd8\xff\xe0".to_vec();
    v.extend(noise(len - 4, seed));
    v
}

/// `len` bytes of text tagged `tag` (same length for any tag of one length).
fn text(len: usize, tag: &str) -> Vec<u8> {
    let line = format!("{tag}: the quick brown fox jumps over the lazy dog\n");
    line.repeat(len / line.len() + 1).into_bytes()[..len].to_vec()
}

/// Change the volume for day `d` of the history. Returns what was done,
/// whether the run needs `--checksum`, and the paths `deleted.nul` must
/// list. Day 9 copies the volume elsewhere (`cp -a`) and continues there.
fn change(d: usize, vol: &mut Vol, copy_to: &Path) -> (&'static str, bool, Vec<&'static [u8]>) {
    match d {
        0 => {
            for dir in [
                &b"archive"[..],
                b"docs",
                b"empty",
                b"photos/2026",
                b"run",
                b"thumbs",
                b"videos",
                b"weird",
                b"becomes-file/sub",
            ] {
                vol.mkdir(dir);
            }
            vol.write(b"photos/2026/img 001.jpg", &jpeg(30_000, 1), day_ns(0, 1));
            vol.link(b"photos/2026/img 001.jpg", b"archive/img001-link.jpg");
            vol.write(b"photos/2026/img 002.jpg", &jpeg(20_000, 2), day_ns(0, 2));
            vol.chown(b"photos/2026/img 002.jpg", 1000, 1000);
            vol.write(b"videos/clip.mp4", &noise(200_000, 3), day_ns(0, 3));
            vol.write(b"thumbs/t1.png", &noise(3_000, 4), day_ns(0, 4));
            vol.write(b"thumbs/t2.png", &noise(3_000, 5), day_ns(0, 5));
            vol.write(b"docs/readme.txt", &text(2_000, "readme v1"), day_ns(0, 6));
            vol.write(b"docs/notes.txt", &text(64, "notes v1"), day_ns(0, 7));
            vol.chmod(b"docs/notes.txt", 0o640);
            vol.write(b"becomes-dir", b"a file, later a directory\n", day_ns(0, 8));
            vol.write(b"becomes-file/inner.txt", b"inner\n", day_ns(0, 9));
            vol.write(b"becomes-file/sub/deep.txt", b"deep\n", day_ns(0, 10));
            vol.symlink(b"photos/2026", b"current");
            vol.symlink(b"photos/2026/img 001.jpg", b"latest.jpg");
            vol.fifo(b"run/app.fifo", 0o600);
            for (k, name) in [
                &b"weird/-leading-dash.txt"[..],
                b"weird/[brackets] (1).txt",
                b"weird/a*b?c[d].txt",
                b"weird/caf\xe9.txt",
                b"weird/line\nbreak.txt",
                b"weird/space name.txt",
            ]
            .into_iter()
            .enumerate()
            {
                vol.write(name, name, day_ns(0, 20 + k as i64));
            }
            vol.xattr(b"weird/space name.txt", "user.comment", b"hello \x00\xff");
            vol.chmod(b"docs", 0o750);
            vol.chmod(b"photos/2026", 0o2775);
            // A sparse disk image (2 MB, data in the middle) and, as root, a device.
            let img = std::fs::File::create(vol.p(b"videos/disk.img")).unwrap();
            img.set_len(2 << 20).unwrap();
            std::os::unix::fs::FileExt::write_at(&img, b"data in the middle", 1 << 20).unwrap();
            drop(img);
            vol.touch(b"videos/disk.img", day_ns(0, 30));
            if tb_testkit::is_root() {
                nix::sys::stat::mknod(
                    &vol.p(b"run/null"),
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::from_bits_truncate(0o666),
                    nix::sys::stat::makedev(1, 3),
                )
                .unwrap();
            }
            (
                "base: photos, a video, thumbnails, docs, odd names",
                false,
                vec![],
            )
        }
        1 => {
            vol.write(b"photos/2026/img 003.jpg", &jpeg(25_000, 6), day_ns(1, 1));
            // Same size, new contents and mtime.
            vol.write(b"docs/readme.txt", &text(2_000, "readme v2"), day_ns(1, 2));
            vol.rm(b"photos/2026/img 002.jpg");
            (
                "add, edit (same size, new mtime), delete",
                false,
                vec![b"photos/2026/img 002.jpg"],
            )
        }
        2 => {
            vol.mv(b"videos/clip.mp4", b"videos/clip renamed.mp4");
            vol.mv(b"thumbs", b"thumbnails");
            (
                "rename a file and a directory",
                false,
                vec![b"videos/clip.mp4", b"thumbs"],
            )
        }
        3 => {
            vol.rm(b"becomes-dir");
            vol.mkdir(b"becomes-dir");
            vol.write(
                b"becomes-dir/now-a-dir.txt",
                b"now a directory\n",
                day_ns(3, 1),
            );
            vol.rm_rf(b"becomes-file");
            vol.write(b"becomes-file", b"now a file\n", day_ns(3, 2));
            (
                "a file replaced by a directory, and the reverse",
                false,
                vec![b"becomes-dir", b"becomes-file"],
            )
        }
        4 => {
            vol.rm(b"current");
            vol.symlink(b"photos", b"current");
            vol.rm(b"latest.jpg");
            vol.symlink(b"photos/2026/img 003.jpg", b"latest.jpg");
            vol.rm(b"thumbnails/t2.png");
            vol.symlink(b"t1.png", b"thumbnails/t2.png");
            (
                "symlinks retargeted, a file replaced by a symlink",
                false,
                vec![b"thumbnails/t2.png"],
            )
        }
        5 => {
            // A link after the existing name, and one before it (the new
            // name becomes the first: the old one turns into a hard link).
            vol.link(b"docs/readme.txt", b"docs/readme.txt.link");
            vol.link(b"photos/2026/img 003.jpg", b"photos/2026/a-first.jpg");
            (
                "hard links added to existing files",
                false,
                vec![b"photos/2026/img 003.jpg"],
            )
        }
        6 => {
            vol.chmod(b"docs/notes.txt", 0o600);
            vol.chown(b"videos/clip renamed.mp4", 2000, 3000);
            vol.chmod(b"photos", 0o700);
            vol.chown(b"current", 1234, 1234);
            vol.chmod(b"run/app.fifo", 0o640);
            vol.chmod(b".", 0o750);
            vol.chown(b".", 0, 4321);
            ("modes and owners", false, vec![])
        }
        7 => {
            // Contents only: size and mtime kept (seen with --checksum only),
            // one of them the first name of a hard-linked pair.
            vol.rewrite_keeping_mtime(b"docs/notes.txt", &text(64, "notes v2"));
            vol.rewrite_keeping_mtime(b"archive/img001-link.jpg", &jpeg(30_000, 11));
            (
                "contents changed, size and mtime kept (--checksum)",
                true,
                vec![],
            )
        }
        8 => ("nothing", false, vec![]),
        9 => {
            std::fs::create_dir_all(copy_to.parent().unwrap()).unwrap();
            let st = Command::new("cp")
                .arg("-a")
                .arg(&vol.root)
                .arg(copy_to)
                .status()
                .unwrap();
            assert!(st.success());
            assert_eq!(
                tree_listing(copy_to),
                tree_listing(&vol.root),
                "cp -a keeps everything a listing shows"
            );
            std::fs::remove_dir_all(&vol.root).unwrap();
            *vol = Vol::new(copy_to);
            (
                "the whole volume copied to a new place (cp -a)",
                false,
                vec![],
            )
        }
        10 => {
            // The first name of a hard-linked pair goes: the other is a
            // plain file again.
            vol.rm_rf(b"archive");
            vol.rm(b"thumbnails/t1.png");
            (
                "a directory holding a hard link's first name deleted",
                false,
                vec![b"archive", b"photos/2026/img 001.jpg", b"thumbnails/t1.png"],
            )
        }
        11 => {
            vol.write(b"-rf", b"a name like an option\n", day_ns(11, 1));
            vol.write(b"*", b"a glob\n", day_ns(11, 2));
            vol.mkdir(b"new\nline dir");
            vol.write(b"new\nline dir/?", b"a question\n", day_ns(11, 3));
            vol.write(b"weird/\xff\xfe bytes", b"not utf-8\n", day_ns(11, 4));
            vol.xattr(b"weird/space name.txt", "user.comment", b"changed");
            vol.symlink(b"target \xfe not utf-8", b"weird/link \xff");
            vol.mkdir(&[b'd'; 120]);
            vol.write(LONG, b"a long path\n", day_ns(11, 5));
            ("more odd names, an xattr changed", false, vec![])
        }
        12 => {
            vol.rm(b"-rf");
            vol.rm(b"*");
            vol.rm_rf(b"new\nline dir");
            vol.rm(b"weird/a*b?c[d].txt");
            vol.rm(b"weird/-leading-dash.txt");
            vol.rm(b"weird/line\nbreak.txt");
            vol.rm(b"run/app.fifo");
            vol.rm_rf(b"empty");
            vol.rm(b"weird/link \xff");
            vol.rm(LONG);
            (
                "odd names deleted",
                false,
                vec![
                    b"-rf",
                    b"*",
                    b"new\nline dir",
                    b"weird/a*b?c[d].txt",
                    b"weird/-leading-dash.txt",
                    b"weird/line\nbreak.txt",
                    b"run/app.fifo",
                    b"empty",
                    b"weird/link \xff",
                    LONG,
                ],
            )
        }
        13 => {
            vol.mv(b"photos/2026", b"photos/2026-archive");
            vol.write(b"videos/new.mp4", &noise(300_000, 13), day_ns(13, 1));
            vol.write(
                b"docs/readme.txt.link",
                &text(2_000, "readme v3"),
                day_ns(13, 2),
            );
            vol.rm(b"current");
            vol.symlink(b"photos/2026-archive", b"current");
            (
                "a directory of hard links renamed, a new video, a hard link edited",
                false,
                vec![b"photos/2026"],
            )
        }
        _ => unreachable!(),
    }
}

const DAYS: usize = 14;

/// A 279-byte path (GNU long names in the archive).
const LONG: &[u8] = b"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";

/// One day of the history, after its run.
struct Day {
    what: &'static str,
    point: PathBuf,
    /// The volume's `tree_listing` that day.
    snapshot: Vec<String>,
}

struct History {
    dir: PathBuf,
    days: Vec<Day>,
}

/// The two-week history, made once for the tests that restore it (its
/// directory is removed when the test process exits).
fn history() -> &'static History {
    static H: OnceLock<History> = OnceLock::new();
    H.get_or_init(|| {
        let root = tempfile::Builder::new()
            .prefix("tb-test-history-")
            .tempdir()
            .unwrap()
            .keep();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; rm -rf '{}'",
                std::process::id(),
                root.display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        make_history(&root)
    })
}

fn make_history(root: &Path) -> History {
    let dir = root.join("chains");
    let mut vol = Vol::new(&root.join("volume"));
    let mut days: Vec<Day> = Vec::new();
    for d in 0..DAYS {
        let (what, checksum, want_deleted) = change(d, &mut vol, &root.join("moved/volume"));
        let out = backup_ok(
            &vol.root,
            &dir,
            if checksum { &["--checksum"] } else { &[] },
        );
        let w = out.written().clone();
        let point = out.point();
        let snapshot = tree_listing(&vol.root);
        let ctx = format!("day {d} ({what}): {w:#}");
        // Where it goes in the chain.
        if d == 0 {
            assert_eq!(w["kind"], "chain_base", "{ctx}");
            assert_eq!(w["chain"], id(&point), "{ctx}");
            assert!(w.get("parent").is_none(), "{ctx}");
        } else {
            assert_eq!(w["kind"], "chain_incr", "{ctx}");
            assert_eq!(w["mode"], "incremental", "{ctx}");
            assert_eq!(w["chain"], id(&days[0].point), "{ctx}");
            assert_eq!(w["parent"], id(&days[d - 1].point), "{ctx}");
        }
        // What it holds.
        let mut want: Vec<Vec<u8>> = want_deleted.iter().map(|p| p.to_vec()).collect();
        want.sort();
        assert_eq!(shown(&deleted(&point)), shown(&want), "deleted.nul, {ctx}");
        let (dirs, others) = dirs_and_others(&vol.root);
        let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("{k}: {ctx}"));
        assert_eq!(n("deleted"), want.len() as u64, "{ctx}");
        assert_eq!(n("entries"), snapshot.len() as u64, "{ctx}");
        assert_eq!(n("entries"), dirs + others, "{ctx}");
        assert_eq!(n("stored"), dirs + n("added") + n("changed"), "{ctx}");
        assert_eq!(n("added") + n("changed") + n("unchanged"), others, "{ctx}");
        let chain = &manifest(&point)["chain"];
        for k in ["added", "changed", "unchanged", "deleted"] {
            assert_eq!(chain[k], w[k], "manifest {k}, {ctx}");
        }
        assert_eq!(chain["listed"], w["entries"], "{ctx}");
        assert_eq!(chain["point"], id(&point), "{ctx}");
        assert_eq!(
            w["sha256"],
            sha256sum(&point.join("archive.tar.gz")),
            "{ctx}"
        );
        match d {
            7 => {
                // notes.txt, the pair's first name, and its other name
                // (stored again: tar replaces the first name's inode).
                assert_eq!(n("changed"), 3, "{ctx}");
                assert_eq!(n("added"), 0, "{ctx}");
            }
            8 | 9 => {
                // No change (day 9: new inodes, same everything else): only
                // the directories are stored.
                assert_eq!(n("stored"), dirs, "{ctx}");
                assert_eq!(n("unchanged"), others, "{ctx}");
                assert_eq!((n("added"), n("changed"), n("deleted")), (0, 0, 0), "{ctx}");
                assert_eq!(n("file_bytes"), 0, "{ctx}");
                assert_eq!(
                    std::fs::metadata(point.join("deleted.nul")).unwrap().len(),
                    0,
                    "{ctx}"
                );
                assert!(n("bytes") < 8 << 10, "a small increment, {ctx}");
            }
            _ => {}
        }
        days.push(Day {
            what,
            point,
            snapshot,
        });
    }
    let ids: Vec<String> = days.iter().map(|d| id(&d.point)).collect();
    assert_eq!(points(&dir.join(LABEL)), ids, "one point per day, in order");
    History { dir, days }
}

#[test]
fn a_two_week_history_restores_to_every_day() {
    let h = history();
    let sb = Sandbox::new();
    let ids: Vec<String> = h.days.iter().map(|d| id(&d.point)).collect();
    for (i, day) in h.days.iter().enumerate() {
        let target = sb.join(format!("day{i:02}"));
        // Even days by --at and the point's time, odd days by the point directory.
        let r = restore_ok(&h.dir, &day.point, i % 2 == 0, &target);
        assert_eq!(r["points"], serde_json::json!(ids[..=i]), "day {i}");
        assert_eq!(
            tree_listing(&target),
            day.snapshot,
            "day {i} ({}): the restored tree is the volume of that day",
            day.what
        );
    }
    // The chain directory alone names the chain; without --at, the newest
    // point; an existing empty target gets the tree. Every point is
    // restorable.
    let newest = sb.join("newest");
    std::fs::create_dir(&newest).unwrap();
    let (code, recs) = restore(&[
        h.dir.join(LABEL).as_os_str(),
        "--target".as_ref(),
        newest.as_os_str(),
    ]);
    assert_eq!(code, 0, "{recs:#?}");
    assert_eq!(events(&recs, "restored")[0]["point"], ids[DAYS - 1]);
    let p = events(&recs, "point");
    assert_eq!(p.len(), DAYS);
    assert!(p.iter().all(|r| r["restorable"] == true), "{p:#?}");
    assert_eq!(events(&recs, "applied").len(), DAYS);
    assert_eq!(tree_listing(&newest), h.days[DAYS - 1].snapshot);
    // Before the base: nothing to restore, said so.
    let (code, recs) = restore(&[
        h.dir.as_os_str(),
        "--name".as_ref(),
        LABEL.as_ref(),
        "--at".as_ref(),
        "2000-01-01".as_ref(),
        "--target".as_ref(),
        sb.join("too-early").as_os_str(),
    ]);
    assert_eq!(code, 2);
    let err = &events(&recs, "error")[0];
    assert_eq!(err["cause"], "not_found");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("has no point at or before 2000-01-01"),
        "{err}"
    );
    assert!(!sb.join("too-early").exists());
}

#[test]
fn a_two_week_history_restores_with_xargs_rm_and_tar_alone() {
    let h = history();
    let sb = Sandbox::new();
    let target = sb.join("target");
    std::fs::create_dir(&target).unwrap();
    for (i, day) in h.days.iter().enumerate() {
        apply_with_tar(&day.point, &target);
        assert_eq!(
            tree_listing(&target),
            day.snapshot,
            "day {i} ({}): base up to this point applied with xargs rm and tar",
            day.what
        );
    }
}

#[test]
fn differential_points_each_apply_on_the_base_alone() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let vol = Vol::new(&sb.join("vol"));
    vol.mkdir(b"dir");
    vol.write(b"keep.txt", b"kept\n", day_ns(0, 1));
    vol.write(b"x.txt", b"x v1\n", day_ns(0, 2));
    vol.write(b"dir/y.txt", b"y v1\n", day_ns(0, 3));
    vol.write(b"photo.jpg", &jpeg(50_000, 1), day_ns(0, 4));
    let diff = ["--mode", "differential"];
    let base = backup_ok(&vol.root, &dir, &diff);
    assert_eq!(base.written()["kind"], "chain_base");
    let base_point = base.point();
    let base_sha = sha256sum(&base_point.join("manifest.json"));
    let mut points = vec![(base_point.clone(), tree_listing(&vol.root))];
    // (deleted since the base, added, changed, unchanged)
    let steps: [(&[&[u8]], u64, u64, u64); 3] = [
        // d1: add a.txt, delete x.txt, edit dir/y.txt
        (&[b"x.txt"], 1, 1, 2),
        // d2: a.txt (never in the base) deleted, b.txt added, dir renamed
        (&[b"dir", b"x.txt"], 2, 0, 2),
        // d3: x.txt back with new contents, keep.txt edited
        (&[b"dir"], 2, 2, 1),
    ];
    for (k, (want_deleted, added, changed, unchanged)) in steps.iter().enumerate() {
        match k {
            0 => {
                vol.write(b"a.txt", b"added in d1\n", day_ns(1, 1));
                vol.rm(b"x.txt");
                vol.write(b"dir/y.txt", b"y v2\n", day_ns(1, 2));
            }
            1 => {
                vol.rm(b"a.txt");
                vol.write(b"b.txt", b"added in d2\n", day_ns(2, 1));
                vol.mv(b"dir", b"dir2");
            }
            _ => {
                vol.write(b"x.txt", b"x v2, longer\n", day_ns(3, 1));
                vol.write(b"keep.txt", b"edited\n", day_ns(3, 2));
            }
        }
        let out = backup_ok(&vol.root, &dir, &diff);
        let w = out.written();
        assert_eq!(w["kind"], "chain_incr");
        assert_eq!(w["mode"], "differential");
        assert_eq!(
            w["parent"],
            id(&base_point),
            "d{}: the base is the parent",
            k + 1
        );
        assert_eq!(w["chain"], id(&base_point));
        let m = manifest(&out.point());
        assert_eq!(m["chain"]["parent_manifest_sha256"], base_sha);
        assert_eq!(m["chain"]["mode"], "differential");
        let want: Vec<Vec<u8>> = want_deleted.iter().map(|p| p.to_vec()).collect();
        assert_eq!(shown(&deleted(&out.point())), shown(&want), "d{}", k + 1);
        assert_eq!(
            (&w["added"], &w["changed"], &w["unchanged"]),
            (
                &Value::from(*added),
                &Value::from(*changed),
                &Value::from(*unchanged)
            ),
            "d{}: {w:#}",
            k + 1
        );
        points.push((out.point(), tree_listing(&vol.root)));
    }
    for (k, (point, snapshot)) in points.iter().enumerate().skip(1) {
        let target = sb.join(format!("d{k}"));
        let r = restore_ok(&dir, point, k % 2 == 1, &target);
        assert_eq!(
            r["points"],
            serde_json::json!([id(&base_point), id(point)]),
            "d{k}: the base and that point alone"
        );
        assert_eq!(&tree_listing(&target), snapshot, "d{k}");
        // And without tb: the base, then that point.
        let t = sb.join(format!("tar-d{k}"));
        std::fs::create_dir(&t).unwrap();
        apply_with_tar(&base_point, &t);
        apply_with_tar(point, &t);
        assert_eq!(&tree_listing(&t), snapshot, "d{k} with tar");
    }
    // Applying every point in order is not a restore of a differential
    // point: d2 does not delete a.txt, which d1 added after the base.
    let t = sb.join("every-point");
    std::fs::create_dir(&t).unwrap();
    for (point, _) in &points[..3] {
        apply_with_tar(point, &t);
    }
    assert!(t.join("a.txt").exists());
    assert_ne!(tree_listing(&t), points[2].1);
    // A damaged differential point breaks no other.
    let archive = points[2].0.join("archive.tar.gz");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&archive, &bytes).unwrap();
    let (p2, p3) = (&points[2].0, &points[3].0);
    let res = restore_chain(&dir, Some(p2), &sb.join("refused"));
    assert_refused(
        &res,
        p2,
        &[&points[0].0, &points[1].0, p3],
        &points.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
    );
    assert!(!sb.join("refused").exists());
    let t = sb.join("d3-again");
    restore_ok(&dir, p3, true, &t);
    assert_eq!(tree_listing(&t), points[3].1);
    // The newest point is whole: the chain goes on, no new base, no warning.
    let out = backup_ok(&vol.root, &dir, &diff);
    assert_eq!(out.written()["kind"], "chain_incr");
    assert_eq!(out.written()["parent"], id(&base_point));
}

/// A chain of a base and three increments of a changing volume: the
/// volume, the chain root, the points and the volume's listing at each.
fn four_points(sb: &Sandbox) -> (Vol, PathBuf, Vec<PathBuf>, Vec<Vec<String>>) {
    let dir = sb.join("chains");
    let vol = Vol::new(&sb.join("vol"));
    vol.mkdir(b"photos");
    vol.write(b"photos/a.jpg", &jpeg(40_000, 1), day_ns(0, 1));
    vol.write(b"notes.txt", b"v0\n", day_ns(0, 2));
    let mut points = Vec::new();
    let mut snaps = Vec::new();
    for k in 0..4i64 {
        if k > 0 {
            vol.write(
                format!("photos/p{k}.jpg").as_bytes(),
                &jpeg(10_000, k as u64 + 10),
                day_ns(k, 1),
            );
            vol.write(b"notes.txt", format!("v{k}\n").as_bytes(), day_ns(k, 2));
        }
        let out = backup_ok(&vol.root, &dir, &[]);
        assert_eq!(
            out.written()["kind"],
            if k == 0 { "chain_base" } else { "chain_incr" }
        );
        points.push(out.point());
        snaps.push(tree_listing(&vol.root));
    }
    (vol, dir, points, snaps)
}

/// Restore the chain's newest point, or the one at `at`, into `target`.
fn restore_chain(dir: &Path, at: Option<&Path>, target: &Path) -> (u8, Vec<Value>) {
    let at = at.map(at_time);
    let mut args: Vec<&std::ffi::OsStr> = vec![dir.as_os_str(), "--name".as_ref(), LABEL.as_ref()];
    if let Some(a) = &at {
        args.push("--at".as_ref());
        args.push(a.as_ref());
    }
    args.push("--target".as_ref());
    args.push(target.as_os_str());
    restore(&args)
}

/// A refused restore: exit 2, `damaged`, nothing restored, the message
/// naming the restorable points (and only those); the `point` records.
fn assert_refused(
    (code, recs): &(u8, Vec<Value>),
    point: &Path,
    restorable: &[&PathBuf],
    all: &[PathBuf],
) -> Vec<Value> {
    assert_eq!(*code, 2, "{recs:#?}");
    let err = events(recs, "error");
    assert_eq!(err.len(), 1, "{recs:#?}");
    assert_eq!(err[0]["cause"], "damaged");
    let msg = err[0]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("the point '{}' cannot be restored", id(point))),
        "{msg}"
    );
    assert!(msg.contains("nothing was touched"), "{msg}");
    let named = msg.split("Restorable points: ").nth(1).unwrap();
    if restorable.is_empty() {
        assert_eq!(named, "none", "{msg}");
    }
    for p in all {
        assert_eq!(
            named.contains(&id(p)),
            restorable.contains(&p),
            "{} named as restorable? {msg}",
            id(p)
        );
    }
    assert!(events(recs, "restored").is_empty());
    assert!(events(recs, "applied").is_empty());
    events(recs, "point").into_iter().cloned().collect()
}

/// The `point` record of `p`.
fn point_rec<'a>(recs: &'a [Value], p: &Path) -> &'a Value {
    recs.iter()
        .find(|r| r["point"] == id(p))
        .unwrap_or_else(|| panic!("no point record for {}: {recs:#?}", id(p)))
}

/// The run after the damage: a new base, exit 1, a warning naming the
/// broken point; the old points left as they were; the new base restores.
fn assert_new_base(sb: &Sandbox, vol: &Vol, dir: &Path, broken: &Path) {
    let before = chain_files(&dir.join(LABEL));
    let out = backup(&vol.root, dir, &[]);
    assert_eq!(out.code, 1, "{}\n{:#?}", out.stderr, out.recs);
    let w = out.written();
    assert_eq!(w["kind"], "chain_base");
    assert_eq!(w["chain"], id(&out.point()));
    assert!(w.get("parent").is_none());
    let reason = w["base_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("chain broken at '{}'", id(broken))),
        "{reason}"
    );
    let warnings = out.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("the chain cannot be continued") && warnings[0].contains(&id(broken)),
        "{warnings:?}"
    );
    assert_eq!(tb_testkit::summary(&out.recs)["status"], "warning");
    let mut after = chain_files(&dir.join(LABEL));
    after.retain(|k, _| !k.starts_with(&id(&out.point())));
    assert_eq!(after, before, "the old points are left as they were");
    let target = sb.join("after-new-base");
    let r = restore_ok(dir, &out.point(), true, &target);
    assert_eq!(r["points"], serde_json::json!([id(&out.point())]));
    assert_eq!(tree_listing(&target), tree_listing(&vol.root));
    // The new chain goes on quietly; the old broken points stay as they are.
    let next = backup_ok(&vol.root, dir, &[]);
    assert_eq!(next.written()["kind"], "chain_incr");
    assert_eq!(next.written()["parent"], id(&out.point()));
    assert!(next.warnings().is_empty());
}

#[test]
fn a_deleted_base_leaves_nothing_restorable_and_the_next_run_starts_a_new_base() {
    let sb = Sandbox::new();
    let (vol, dir, points, _) = four_points(&sb);
    std::fs::remove_dir_all(&points[0]).unwrap();
    let left = &points[1..];
    for at in [None, Some(&points[1]), Some(&points[3])] {
        let target = sb.join("target");
        let res = restore_chain(&dir, at.map(|p| p.as_path()), &target);
        let chosen = at.unwrap_or(&points[3]);
        let recs = assert_refused(&res, chosen, &[], left);
        assert!(!target.exists(), "the target is not created");
        assert!(temps(sb.path()).is_empty());
        assert_eq!(recs.len(), 3, "{recs:#?}");
        assert!(recs.iter().all(|r| r["restorable"] == false), "{recs:#?}");
        let why = point_rec(&recs, &points[1])["reason"].as_str().unwrap();
        assert_eq!(
            why,
            format!(
                "its parent '{}' is missing (deleted or moved)",
                id(&points[0])
            )
        );
        let why = point_rec(&recs, &points[2])["reason"].as_str().unwrap();
        assert!(
            why.starts_with(&format!(
                "its parent '{}' is not restorable",
                id(&points[1])
            )),
            "{why}"
        );
    }
    assert_new_base(&sb, &vol, &dir, &points[3]);
}

#[test]
fn a_corrupted_increment_is_refused_and_the_points_before_it_still_restore() {
    let sb = Sandbox::new();
    let (vol, dir, points, snaps) = four_points(&sb);
    let archive = points[2].join("archive.tar.gz");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&archive, &bytes).unwrap();
    assert_eq!(
        std::fs::metadata(&archive).unwrap().len(),
        bytes.len() as u64
    );
    // An existing empty target stays empty, as it was.
    let target = sb.join("target");
    std::fs::create_dir(&target).unwrap();
    let before = tree_listing(&target);
    let ok = [&points[0], &points[1]];
    for at in [&points[2], &points[3]] {
        let res = restore_chain(&dir, Some(at), &target);
        let recs = assert_refused(&res, at, &ok, &points);
        assert_eq!(tree_listing(&target), before, "the target is untouched");
        assert!(list_dir(&target).is_empty());
        assert!(temps(sb.path()).is_empty());
        assert_eq!(recs.len(), 4);
        for (p, restorable) in points.iter().zip([true, true, false, false]) {
            assert_eq!(point_rec(&recs, p)["restorable"], restorable, "{recs:#?}");
        }
        let why = point_rec(&recs, &points[2])["reason"].as_str().unwrap();
        assert!(
            why.contains("archive.tar.gz does not match its sha256 in the manifest"),
            "{why}"
        );
        let why = point_rec(&recs, &points[3])["reason"].as_str().unwrap();
        assert_eq!(why, format!("its parent '{}' is damaged", id(&points[2])));
    }
    // The points before the damage restore as they were.
    for k in [0, 1] {
        let t = sb.join(format!("ok{k}"));
        restore_ok(&dir, &points[k], k == 0, &t);
        assert_eq!(tree_listing(&t), snaps[k]);
    }
    assert_new_base(&sb, &vol, &dir, &points[3]);
}

#[test]
fn a_listing_damaged_behind_the_verification_cache_fails_once_then_a_new_base_is_made() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    let (vol, dir, points, _) = four_points(&sb);
    let newest = &points[3];
    let listing = newest.join("listing.jsonl.gz");
    let mut bytes = std::fs::read(&listing).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&listing, &bytes).unwrap();
    // Bit rot that changes no attribute: the cache is made to vouch for
    // the damaged file, as it would for one rotted in place.
    let cache_path = dir.join(LABEL).join(".tb-verified.json");
    let mut cache: Value = serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
    let m = std::fs::metadata(&listing).unwrap();
    let key = format!("{}/listing.jsonl.gz", id(newest));
    let entry = &mut cache["files"][&key];
    assert!(entry.is_object(), "{cache:#}");
    entry["size"] = m.len().into();
    entry["mtime_ns"] = (m.mtime() * 1_000_000_000 + m.mtime_nsec()).into();
    entry["ctime_ns"] = (m.ctime() * 1_000_000_000 + m.ctime_nsec()).into();
    entry["inode"] = m.ino().into();
    entry["device"] = m.dev().into();
    std::fs::write(&cache_path, serde_json::to_vec(&cache).unwrap()).unwrap();

    let before = chain_files(&dir.join(LABEL));
    let out = backup(&vol.root, &dir, &[]);
    assert_eq!(out.code, 2, "{}\n{:#?}", out.stderr, out.recs);
    let msg = out.error()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("damaged after it was checked")
            && msg.contains("the next run checks the whole chain again"),
        "{msg}"
    );
    assert_eq!(
        chain_files(&dir.join(LABEL)),
        before,
        "nothing published, nothing else touched"
    );
    assert!(temps(sb.path()).is_empty());
    // The next run reads the listing again, finds the damage, and starts
    // a new base instead of failing every night.
    assert_new_base(&sb, &vol, &dir, newest);
}

#[test]
fn a_missing_middle_point_is_refused_and_the_points_before_it_still_restore() {
    let sb = Sandbox::new();
    let (vol, dir, points, snaps) = four_points(&sb);
    std::fs::remove_dir_all(&points[2]).unwrap();
    let target = sb.join("target");
    let res = restore_chain(&dir, None, &target);
    let left = [points[0].clone(), points[1].clone(), points[3].clone()];
    let recs = assert_refused(&res, &points[3], &[&points[0], &points[1]], &left);
    assert!(!target.exists());
    assert_eq!(recs.len(), 3);
    let why = point_rec(&recs, &points[3])["reason"].as_str().unwrap();
    assert_eq!(
        why,
        format!(
            "its parent '{}' is missing (deleted or moved)",
            id(&points[2])
        )
    );
    assert_eq!(point_rec(&recs, &points[1])["restorable"], true);
    let t = sb.join("ok1");
    let r = restore_ok(&dir, &points[1], false, &t);
    assert_eq!(
        r["points"],
        serde_json::json!([id(&points[0]), id(&points[1])])
    );
    assert_eq!(tree_listing(&t), snaps[1]);
    assert_new_base(&sb, &vol, &dir, &points[3]);
}

#[test]
fn full_forces_a_base_and_a_young_base_is_continued_under_max_chain_days() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let vol = Vol::new(&sb.join("vol"));
    vol.write(b"a.txt", b"a\n", day_ns(0, 1));
    let first = backup_ok(&vol.root, &dir, &[]);
    assert_eq!(first.written()["kind"], "chain_base");
    assert_eq!(
        first.written()["base_reason"],
        "first run (no point in the chain directory)"
    );
    vol.write(b"b.txt", b"b\n", day_ns(1, 1));
    let full = backup_ok(&vol.root, &dir, &["--full"]);
    let w = full.written();
    assert_eq!(w["kind"], "chain_base");
    assert_eq!(w["base_reason"], "--full");
    assert_eq!(w["chain"], id(&full.point()));
    assert!(w.get("parent").is_none());
    assert_eq!(
        (&w["added"], &w["unchanged"], &w["stored"]),
        (&Value::from(2), &Value::from(0), &Value::from(3)),
        "a base stores everything: {w:#}"
    );
    assert_eq!(manifest(&full.point())["chain"]["mode"], "base");
    assert_eq!(manifest(&full.point())["chain"]["base_reason"], "--full");
    // The base is from today: one day is not reached, the chain goes on.
    let next = backup_ok(&vol.root, &dir, &["--max-chain-days", "1"]);
    let w = next.written();
    assert_eq!(w["kind"], "chain_incr");
    assert_eq!(w["parent"], id(&full.point()));
    assert_eq!(w["chain"], id(&full.point()));
    assert!(w.get("base_reason").is_none());
    assert_eq!(w["unchanged"], 2);
    let t = sb.join("t");
    let r = restore_ok(&dir, &next.point(), true, &t);
    assert_eq!(
        r["points"],
        serde_json::json!([id(&full.point()), id(&next.point())]),
        "the restore starts from the newer base"
    );
    assert_eq!(tree_listing(&t), tree_listing(&vol.root));
}

#[test]
fn a_no_change_increment_copies_the_listing_and_a_change_rewrites_only_its_members() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let vol = Vol::new(&sb.join("vol"));
    // 12 directories of 40 files: a listing of many gzip members.
    for d in 0..12 {
        let sub = format!("d{d:02}");
        vol.mkdir(sub.as_bytes());
        for f in 0..40 {
            let rel = format!("{sub}/file-{f:03}.txt");
            vol.write(rel.as_bytes(), rel.as_bytes(), day_ns(0, f));
        }
    }
    let base = backup_ok(&vol.root, &dir, &[]);
    let members = base.written()["listing_members_written"].as_u64().unwrap();
    assert!(members >= 4, "{:#}", base.written());
    assert_eq!(base.written()["listing_members_copied"], 0);

    let same = backup_ok(&vol.root, &dir, &[]);
    let w = same.written();
    assert_eq!(w["unchanged"], 480, "{w:#}");
    assert_eq!(
        (
            w["listing_members_copied"].as_u64(),
            w["listing_members_written"].as_u64()
        ),
        (Some(members), Some(0)),
        "{w:#}"
    );
    let listing = |p: &Path| std::fs::read(p.join("listing.jsonl.gz")).unwrap();
    assert_eq!(
        listing(&same.point()),
        listing(&base.point()),
        "the same bytes"
    );

    // One file edited in the last directory: only the members holding it
    // (and its directory, whose entry is the same) are written again.
    vol.write(b"d11/file-039.txt", b"edited", day_ns(1, 0));
    let edit = backup_ok(&vol.root, &dir, &[]);
    let w = edit.written();
    assert_eq!(
        (&w["changed"], &w["unchanged"]),
        (&Value::from(1), &Value::from(479))
    );
    let written = w["listing_members_written"].as_u64().unwrap();
    assert!((1..=2).contains(&written), "{w:#}");
    assert_eq!(
        w["listing_members_copied"].as_u64().unwrap() + written,
        members,
        "{w:#}"
    );
    // And the chain restores to exactly the tree.
    let t = sb.join("t");
    restore_ok(&dir, &edit.point(), false, &t);
    assert_eq!(tree_listing(&t), tree_listing(&vol.root));
}

#[test]
fn an_xattr_whose_name_is_not_utf8_is_warned_about() {
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let vol = Vol::new(&sb.join("vol"));
    vol.write(b"f.txt", b"f\n", day_ns(0, 1));
    let name = std::ffi::OsStr::from_bytes(b"user.caf\xe9");
    if xattr::set(vol.p(b"f.txt"), name, b"1").is_err() {
        eprintln!("SKIP: no user xattrs here");
        return;
    }
    let out = backup(&vol.root, &dir, &[]);
    assert_eq!(out.code, 1, "{}\n{:#?}", out.stderr, out.recs);
    let w = out.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("not UTF-8") && w[0].contains("not in the archive"),
        "{w:?}"
    );
}

#[test]
fn the_written_record_counts_a_known_change_set() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let vol = Vol::new(&sb.join("vol"));
    for d in [&b"d"[..], b"gone-dir", b"keep"] {
        vol.mkdir(d);
    }
    for (k, f) in [
        &b"d/a"[..],
        b"d/b",
        b"d/c",
        b"gone-dir/1",
        b"gone-dir/2",
        b"gone-dir/3",
        b"keep/k1",
        b"keep/k2",
        b"mode.txt",
        b"type.txt",
    ]
    .into_iter()
    .enumerate()
    {
        vol.write(f, f, day_ns(0, k as i64));
    }
    vol.symlink(b"d/a", b"link");
    let base = backup_ok(&vol.root, &dir, &[]);
    let w = base.written();
    // . d gone-dir keep, 10 files and a symlink.
    assert_eq!(
        [
            &w["entries"],
            &w["stored"],
            &w["added"],
            &w["changed"],
            &w["unchanged"],
            &w["deleted"]
        ],
        [15, 15, 11, 0, 0, 0].map(Value::from).each_ref(),
        "{w:#}"
    );
    // Added: two files (a new directory is stored, not counted as added).
    vol.write(b"new1.txt", b"new one\n", day_ns(1, 1));
    vol.mkdir(b"newdir");
    vol.write(b"newdir/new2.txt", b"new two\n", day_ns(1, 2));
    // Changed: contents and mtime, mode, symlink target, and a type change
    // (also listed as deleted).
    vol.write(b"d/a", b"d/a, edited\n", day_ns(1, 3));
    vol.chmod(b"mode.txt", 0o600);
    vol.rm(b"link");
    vol.symlink(b"d/b", b"link");
    vol.rm(b"type.txt");
    vol.symlink(b"d/b", b"type.txt");
    // Deleted: a file, and a directory of three (listed once).
    vol.rm(b"d/c");
    vol.rm_rf(b"gone-dir");
    let out = backup_ok(&vol.root, &dir, &[]);
    let w = out.written();
    let point = out.point();
    // Listed: . d keep newdir, new1 new2, d/a mode link type, d/b k1 k2.
    assert_eq!(
        [
            &w["entries"],
            &w["stored"],
            &w["added"],
            &w["changed"],
            &w["unchanged"],
            &w["deleted"]
        ],
        [13, 10, 2, 4, 3, 3].map(Value::from).each_ref(),
        "{w:#}"
    );
    assert_eq!(w["parent"], id(&base.point()));
    assert_eq!(w["chain"], id(&base.point()));
    assert_eq!(w["mode"], "incremental");
    assert_eq!(
        w["file_bytes"],
        (b"new one\n".len() + b"new two\n".len() + b"d/a, edited\n".len() + b"mode.txt".len())
            as u64
    );
    assert_eq!(
        w["bytes"],
        std::fs::metadata(point.join("archive.tar.gz"))
            .unwrap()
            .len()
    );
    assert_eq!(w["sha256"], sha256sum(&point.join("archive.tar.gz")));
    assert_eq!(
        shown(&deleted(&point)),
        ["d/c", "gone-dir", "type.txt"].map(String::from)
    );
    // The archive holds exactly the stored entries, and so does its index.
    let t = Command::new("tar")
        .arg("-tzf")
        .arg(point.join("archive.tar.gz"))
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&t.stdout)
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "./",
            "./d/",
            "./d/a",
            "./keep/",
            "./link",
            "./mode.txt",
            "./new1.txt",
            "./newdir/",
            "./newdir/new2.txt",
            "./type.txt"
        ]
        .map(String::from)
    );
    let index = tb_testkit::gunzip(&point.join("index.jsonl.gz"));
    assert_eq!(String::from_utf8_lossy(&index).lines().count(), 10);
    let listing = tb_testkit::gunzip(&point.join("listing.jsonl.gz"));
    assert_eq!(String::from_utf8_lossy(&listing).lines().count(), 13);
    let m = manifest(&point);
    for k in ["added", "changed", "unchanged", "deleted"] {
        assert_eq!(m["chain"][k], w[k], "{k}");
    }
    assert_eq!(m["chain"]["listed"], 13);
    assert_eq!(m["chain"]["parent"], id(&base.point()));
    assert_eq!(
        m["chain"]["parent_manifest_sha256"],
        sha256sum(&base.point().join("manifest.json"))
    );
    let s = tb_testkit::summary(&out.recs);
    assert_eq!(s["written"], 1);
    assert_eq!(s["path"], point.to_str().unwrap());
    // Private: the chain directories 0700, the point's files 0600.
    for d in [dir.clone(), dir.join(LABEL), base.point(), point.clone()] {
        assert_eq!(tb_testkit::mode(&d), 0o700, "{}", d.display());
    }
    for f in list_dir(&point) {
        assert_eq!(tb_testkit::mode(&point.join(&f)), 0o600, "{f}");
    }
    assert_eq!(
        list_dir(&point),
        [
            "archive.tar.gz",
            "deleted.nul",
            "index.jsonl.gz",
            "listing.jsonl.gz",
            "manifest.json"
        ]
        .map(String::from)
    );
}

#[test]
fn a_same_size_same_mtime_edit_is_caught_only_with_checksum() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let vol = Vol::new(&sb.join("vol"));
    vol.write(b"f.txt", b"old contents\n", day_ns(0, 1));
    vol.write(b"g.txt", b"other\n", day_ns(0, 2));
    let base = backup_ok(&vol.root, &dir, &[]);
    vol.rewrite_keeping_mtime(b"f.txt", b"NEW contents\n");
    let plain = backup_ok(&vol.root, &dir, &[]);
    let w = plain.written();
    assert_eq!(
        (&w["changed"], &w["unchanged"], &w["stored"]),
        (&Value::from(0), &Value::from(2), &Value::from(1)),
        "metadata alone cannot see it: {w:#}"
    );
    let sum = backup_ok(&vol.root, &dir, &["--checksum"]);
    let w = sum.written();
    assert_eq!(
        (&w["changed"], &w["unchanged"], &w["stored"]),
        (&Value::from(1), &Value::from(1), &Value::from(2)),
        "{w:#}"
    );
    // Restored: the point without --checksum holds what its listing says
    // (the old contents); the one with it, the new.
    let t = sb.join("plain");
    restore_ok(&dir, &plain.point(), false, &t);
    assert_eq!(std::fs::read(t.join("f.txt")).unwrap(), b"old contents\n");
    let t = sb.join("sum");
    restore_ok(&dir, &sum.point(), true, &t);
    assert_eq!(tree_listing(&t), tree_listing(&vol.root));
    assert_eq!(plain.written()["parent"], id(&base.point()));
    assert_eq!(sum.written()["parent"], id(&plain.point()));
}

#[test]
fn a_checksum_change_to_a_hard_linked_file_keeps_its_links() {
    let sb = Sandbox::new();
    let dir = sb.join("chains");
    let vol = Vol::new(&sb.join("vol"));
    vol.write(b"a.bin", &noise(5_000, 1), day_ns(0, 1));
    vol.link(b"a.bin", b"z.bin");
    vol.write(b"solo", b"solo\n", day_ns(0, 2));
    let base = backup_ok(&vol.root, &dir, &[]);
    vol.rewrite_keeping_mtime(b"a.bin", &noise(5_000, 2));
    let out = backup_ok(&vol.root, &dir, &["--checksum"]);
    let w = out.written();
    // a.bin is stored again: as tar replaces it with a new file, its other
    // name must be stored again too (as a link to it).
    assert_eq!(
        (&w["changed"], &w["unchanged"], &w["stored"]),
        (&Value::from(2), &Value::from(1), &Value::from(3)),
        "{w:#}"
    );
    let want = tree_listing(&vol.root);
    let t = sb.join("tb");
    restore_ok(&dir, &out.point(), true, &t);
    assert_eq!(tree_listing(&t), want);
    let t = sb.join("tar");
    std::fs::create_dir(&t).unwrap();
    apply_with_tar(&base.point(), &t);
    apply_with_tar(&out.point(), &t);
    assert_eq!(tree_listing(&t), want);
}

#[test]
fn help_explains_restore_without_tb() {
    let out = incr().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "xargs -0 -r rm -rf -- < POINT/deleted.nul",
        "tar -xzpf POINT/archive.tar.gz --numeric-owner --xattrs --xattrs-include='*' -C TARGET",
        "with --mode differential the base, so just the base and the",
        "--max-chain-days",
        "--checksum",
        "75 busy",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
