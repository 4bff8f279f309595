//! `tb-check verify` on incremental chains written by tb-incr (in-process):
//! every point read completely, every link followed, the restorable range
//! reported, and each kind of damage named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use serde_json::Value;
use tb_shared::record::Reporter;
use tb_testkit::{Sandbox, events, noise, records, summary};

/// One tb-incr run of `src` into `root` as `label`; returns the point dir.
fn incr(src: &Path, root: &Path, label: &str) -> PathBuf {
    let args = tb_incr::Args::parse_from([
        "tb-incr".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
        "--name".as_ref(),
        label.as_ref(),
        "--dir".as_ref(),
        root.as_os_str(),
    ]);
    let mut rep = Reporter::quiet("tb-incr");
    tb_incr::run(args, &mut rep).unwrap();
    let rec = rep
        .records()
        .iter()
        .find(|r| r["event"] == "written")
        .unwrap()
        .clone();
    PathBuf::from(rec["path"].as_str().unwrap())
}

/// A chain of three points (base, two increments) of a small tree.
fn chain(sb: &Sandbox, label: &str) -> Vec<PathBuf> {
    let src = sb.join(format!("src-{label}"));
    std::fs::create_dir_all(src.join("img")).unwrap();
    std::fs::write(src.join("img/photo.jpg"), noise(200_000, 3)).unwrap();
    std::fs::write(src.join("notes.txt"), "day one\n".repeat(500)).unwrap();
    let root = sb.join("incremental");
    let mut points = vec![incr(&src, &root, label)];
    std::fs::write(src.join("img/second.jpg"), noise(100_000, 4)).unwrap();
    points.push(incr(&src, &root, label));
    std::fs::remove_file(src.join("notes.txt")).unwrap();
    std::fs::write(src.join("news.txt"), "day three\n".repeat(300)).unwrap();
    points.push(incr(&src, &root, label));
    points
}

fn verify(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .arg("verify")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn id(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn by_point(recs: &[Value]) -> Vec<(String, String, bool)> {
    events(recs, "verified")
        .iter()
        .map(|r| {
            (
                id(Path::new(r["path"].as_str().unwrap())),
                r["verdict"].as_str().unwrap().to_string(),
                r["restorable"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_good_chain_verifies_every_point_and_reports_the_restorable_range() {
    let sb = Sandbox::new();
    let points = chain(&sb, "media_volume");
    let ids: Vec<String> = points.iter().map(|p| id(p)).collect();
    assert!(
        ids[0].starts_with("base_") && ids[1].starts_with("incr_"),
        "{ids:?}"
    );
    for target in [
        sb.join("incremental"),
        sb.join("incremental/media_volume"),
        points[1].clone(),
    ] {
        let out = verify(&target);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recs = records(&out.stdout);
        let want: Vec<(String, String, bool)> = ids
            .iter()
            .map(|i| (i.clone(), "good".into(), true))
            .collect();
        assert_eq!(by_point(&recs), want);
        let c = events(&recs, "chain");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["points"], 3);
        assert_eq!(c[0]["restorable_points"], serde_json::json!(ids));
        assert_eq!(c[0]["unrestorable_points"], serde_json::json!([]));
        let parents: Vec<Value> = events(&recs, "verified")
            .iter()
            .map(|r| r["parent"].clone())
            .collect();
        assert_eq!(
            parents,
            vec![Value::Null, ids[0].clone().into(), ids[1].clone().into()]
        );
        assert_eq!(summary(&recs)["good"], 3);
    }
}

#[test]
fn a_flipped_byte_in_an_increment_makes_it_and_its_children_unrestorable() {
    let sb = Sandbox::new();
    let points = chain(&sb, "media_volume");
    let archive = points[1].join("archive.tar.gz");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&archive, &bytes).unwrap();
    let out = verify(&sb.join("incremental"));
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    let got = by_point(&recs);
    assert_eq!(got[0].1, "good");
    assert!(got[0].2);
    assert_eq!((got[1].1.as_str(), got[1].2), ("damaged", false));
    assert_eq!(
        (got[2].1.as_str(), got[2].2),
        ("good", false),
        "intact but its parent is damaged"
    );
    let v = events(&recs, "verified");
    assert!(
        v[1]["reason"].as_str().unwrap().contains("archive.tar.gz"),
        "{:?}",
        v[1]
    );
    assert!(
        v[2]["reason"].as_str().unwrap().contains("parent"),
        "{:?}",
        v[2]
    );
    let c = events(&recs, "chain")[0];
    assert_eq!(c["restorable_points"], serde_json::json!([id(&points[0])]));
    assert_eq!(c["restorable_from"], c["restorable_to"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not restorable"), "{err}");
}

#[test]
fn a_deleted_base_leaves_no_restorable_point() {
    let sb = Sandbox::new();
    let points = chain(&sb, "media_volume");
    std::fs::remove_dir_all(&points[0]).unwrap();
    let out = verify(&sb.join("incremental/media_volume"));
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    let v = events(&recs, "verified");
    assert_eq!(v.len(), 2);
    assert!(
        v[0]["reason"].as_str().unwrap().contains("missing"),
        "{:?}",
        v[0]
    );
    assert_eq!(v[0]["verdict"], "good", "its own files are intact");
    let c = events(&recs, "chain")[0];
    assert_eq!(c["restorable_points"], serde_json::json!([]));
    assert!(c.get("restorable_from").is_none());
}

#[test]
fn damage_that_keeps_the_sha256_is_found_by_reading_the_archive() {
    // An archive replaced together with its manifest entry (a copy gone
    // wrong, or tampering): sizes and hashes agree, the index does not.
    let sb = Sandbox::new();
    let points = chain(&sb, "media_volume");
    let p = &points[2];
    std::fs::copy(points[1].join("index.jsonl.gz"), p.join("index.jsonl.gz")).unwrap();
    let mpath = p.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let sha = tb_testkit::sha256sum(&p.join("index.jsonl.gz"));
    let bytes = std::fs::metadata(p.join("index.jsonl.gz")).unwrap().len();
    for f in m["files"].as_array_mut().unwrap() {
        if f["role"] == "index" {
            f["sha256"] = sha.clone().into();
            f["bytes"] = bytes.into();
        }
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let out = verify(p);
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    let got = by_point(&recs);
    assert_eq!(got[2].1, "damaged", "{recs:#?}");
    assert!(got[0].2 && got[1].2);
}

#[test]
fn a_directory_without_a_chain_cannot_be_verified() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.join("empty/sub")).unwrap();
    let out = verify(&sb.join("empty"));
    assert_eq!(out.status.code(), Some(3));
    let recs = records(&out.stdout);
    assert_eq!(events(&recs, "verified")[0]["verdict"], "unreadable");
}
