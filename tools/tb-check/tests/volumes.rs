//! `tb-check verify` on volume archives written by tb-voltar (in-process)
//! and on every kind of damage to them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use serde_json::Value;
use tb_shared::record::Reporter;
use tb_testkit::{Sandbox, events, noise, records, summary};

/// A small volume tree and its archive; returns (archive, entries).
fn archive(sb: &Sandbox, label: &str, text: &str) -> (PathBuf, u64) {
    let src = sb.join(format!("src-{label}"));
    std::fs::create_dir_all(src.join("img")).unwrap();
    std::fs::write(src.join("img/photo.jpg"), noise(300_000, 5)).unwrap();
    std::fs::write(src.join("notes.txt"), text.repeat(2000)).unwrap();
    std::os::unix::fs::symlink("notes.txt", src.join("link")).unwrap();
    let args = tb_voltar::Args::parse_from([
        "tb-voltar".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
        "--name".as_ref(),
        label.as_ref(),
        "--dir".as_ref(),
        sb.join(format!("out-{label}")).as_os_str(),
    ]);
    let mut rep = Reporter::quiet("tb-voltar");
    tb_voltar::run(args, &mut rep).unwrap();
    let rec = rep
        .records()
        .iter()
        .find(|r| r["event"] == "written" && r["kind"] == "volume")
        .unwrap()
        .clone();
    (
        PathBuf::from(rec["path"].as_str().unwrap()),
        rec["entries"].as_u64().unwrap(),
    )
}

fn verify(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .arg("verify")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn verdict(out: &Output) -> Value {
    let recs = records(&out.stdout);
    let v = events(&recs, "verified");
    assert_eq!(v.len(), 1, "{recs:#?}");
    v[0].clone()
}

#[test]
fn a_good_archive_verifies_against_its_index_and_manifest() {
    let sb = Sandbox::new();
    let (a, entries) = archive(&sb, "media_volume", "hello\n");
    let out = verify(&a);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verdict(&out);
    assert_eq!(v["kind"], "volume");
    assert_eq!(v["verdict"], "good");
    assert_eq!(v["manifest"], "checked");
    assert_eq!(v["entries"], entries);
    assert_eq!(v["sha256"], tb_testkit::sha256sum(&a));
    assert_eq!(summary(&records(&out.stdout))["good"], 1);
}

#[test]
fn a_truncated_archive_is_damaged() {
    let sb = Sandbox::new();
    let (a, _) = archive(&sb, "m", "hello\n");
    let bytes = std::fs::read(&a).unwrap();
    std::fs::write(&a, &bytes[..bytes.len() / 2]).unwrap();
    let out = verify(&a);
    assert_eq!(out.status.code(), Some(2));
    let v = verdict(&out);
    assert_eq!(v["verdict"], "damaged");
    assert!(v["reason"].as_str().unwrap().contains("truncated"), "{v}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
}

#[test]
fn a_flipped_byte_in_an_archive_is_damaged() {
    let sb = Sandbox::new();
    let (a, _) = archive(&sb, "m", "hello\n");
    let mut bytes = std::fs::read(&a).unwrap();
    let at = bytes.len() - 2000;
    bytes[at] ^= 0x01;
    std::fs::write(&a, &bytes).unwrap();
    let out = verify(&a);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(verdict(&out)["verdict"], "damaged");
}

#[test]
fn an_archive_that_differs_from_its_index_is_damaged() {
    let sb = Sandbox::new();
    let (a, _) = archive(&sb, "m", "hello\n");
    let (b, _) = archive(&sb, "n", "other\n");
    // The index of another tree in place of this archive's own.
    std::fs::copy(
        tb_shared::naming::index_path(&b),
        tb_shared::naming::index_path(&a),
    )
    .unwrap();
    let out = verify(&a);
    assert_eq!(out.status.code(), Some(2));
    let v = verdict(&out);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("does not match the index"),
        "{v}"
    );
}

#[test]
fn an_archive_swapped_for_another_fails_its_manifest() {
    let sb = Sandbox::new();
    let (a, _) = archive(&sb, "m", "hello\n");
    let (b, _) = archive(&sb, "n", "hello\n");
    std::fs::copy(&b, &a).unwrap();
    let out = verify(&a);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(verdict(&out)["verdict"], "damaged");
}

#[test]
fn a_plain_tar_czf_archive_verifies_without_a_manifest() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.join("t/d")).unwrap();
    std::fs::write(sb.join("t/d/f"), "x").unwrap();
    let a = sb.join("plain_20260119.tar.gz");
    let st = Command::new("tar")
        .arg("czf")
        .arg(&a)
        .arg("-C")
        .arg(sb.join("t"))
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let out = verify(&a);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verdict(&out);
    assert_eq!(v["verdict"], "good");
    assert_eq!(v["manifest"], "missing");
    assert_eq!(v["entries"], 3);
}
