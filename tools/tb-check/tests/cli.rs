//! `tb-check verify` on real dumps (written by tb-dump in-process against
//! a throwaway PostgreSQL) and on every kind of damage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use clap::Parser;
use serde_json::Value;
use tb_shared::record::Reporter;
use tb_testkit::{Pg, Sandbox, events, records, summary};

/// A dump set written by tb-dump: (dump, roles, manifest) in its own dir.
struct DumpSet {
    _sb: Sandbox,
    dump: PathBuf,
    roles: PathBuf,
    manifest: PathBuf,
    records: Vec<Value>,
}

fn dump_set() -> DumpSet {
    static DB: OnceLock<()> = OnceLock::new();
    let pg = Pg::shared();
    DB.get_or_init(|| pg.toybox("toybox"));
    let sb = Sandbox::new();
    let mut args = vec![
        "tb-dump".to_string(),
        "--dbname".into(),
        "toybox".into(),
        "--dir".into(),
        sb.path().to_string_lossy().into(),
    ];
    args.extend(pg.conn_args());
    let mut rep = Reporter::quiet("tb-dump");
    let outcome = tb_dump::run(tb_dump::Args::parse_from(args), &mut rep).unwrap();
    assert_eq!(outcome.code, 0);
    let records = rep.records().to_vec();
    let path = |kind: &str| {
        PathBuf::from(
            records
                .iter()
                .find(|r| r["event"] == "written" && r["kind"] == kind)
                .unwrap()["path"]
                .as_str()
                .unwrap(),
        )
    };
    DumpSet {
        dump: path("dump"),
        roles: path("roles"),
        manifest: path("manifest"),
        records,
        _sb: sb,
    }
}

fn verify(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .arg("verify")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn verify_stdin(input: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .arg("verify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn verdicts(out: &Output) -> Vec<(String, String, String)> {
    events(&records(&out.stdout), "verified")
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["verdict"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn assert_damaged(out: &Output, path: &Path, reason: &str) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = verdicts(out);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, path.to_str().unwrap());
    assert_eq!(v[0].1, "damaged");
    assert!(
        v[0].2.contains(reason),
        "reason {:?} should contain {reason:?}",
        v[0].2
    );
    let recs = records(&out.stdout);
    assert_eq!(summary(&recs)["status"], "critical");
}

#[test]
fn good_dump_and_roles_verify_against_their_manifest() {
    let set = dump_set();
    let out = verify(&[&set.dump, &set.roles]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let recs = records(&out.stdout);
    let v = events(&recs, "verified");
    assert_eq!(
        (
            v[0]["kind"].as_str(),
            v[0]["verdict"].as_str(),
            v[0]["manifest"].as_str()
        ),
        (Some("dump"), Some("good"), Some("checked"))
    );
    assert_eq!(
        (v[1]["kind"].as_str(), v[1]["verdict"].as_str()),
        (Some("roles"), Some("good"))
    );
    assert_eq!(v[0]["tables"], 10);
    assert_eq!(v[0]["sha256"], tb_testkit::sha256sum(&set.dump));
    let s = summary(&recs);
    assert_eq!(
        (
            s["good"].as_u64(),
            s["status"].as_str(),
            s["exit_code"].as_u64()
        ),
        (Some(2), Some("ok"), Some(0))
    );
}

#[test]
fn truncated_dump_is_damaged() {
    let set = dump_set();
    let bytes = std::fs::read(&set.dump).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 1, 5] {
        std::fs::write(&set.dump, &bytes[..cut]).unwrap();
        assert_damaged(&verify(&[&set.dump]), &set.dump, "truncated");
    }
}

#[test]
fn flipped_byte_is_damaged() {
    let set = dump_set();
    let mut bytes = std::fs::read(&set.dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&set.dump, &bytes).unwrap();
    let out = verify(&[&set.dump]);
    assert_eq!(out.status.code(), Some(2));
    let v = verdicts(&out);
    assert_eq!(v[0].1, "damaged");
    assert!(
        v[0].2.contains("corrupt") || v[0].2.contains("does not match"),
        "{}",
        v[0].2
    );
}

#[test]
fn trailing_garbage_is_damaged() {
    let set = dump_set();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&set.dump)
        .unwrap();
    f.write_all(b"\0\0\0garbage").unwrap();
    assert_damaged(
        &verify(&[&set.dump]),
        &set.dump,
        "10 bytes of trailing garbage",
    );
}

#[test]
fn plain_sql_posing_as_gz_is_damaged() {
    let sb = Sandbox::new();
    let p = sb.join("toybox_20260101_030000.sql.gz");
    std::fs::write(&p, "--\n-- PostgreSQL database dump\n--\nSELECT 1;\n").unwrap();
    assert_damaged(&verify(&[&p]), &p, "not a gzip file");
    let empty = sb.join("empty.sql.gz");
    std::fs::write(&empty, b"").unwrap();
    assert_damaged(&verify(&[&empty]), &empty, "empty");
}

#[test]
fn complete_gzip_of_a_cut_dump_is_damaged() {
    let set = dump_set();
    let sql = tb_testkit::gunzip(&set.dump);
    let sb = Sandbox::new();
    let p = sb.join("cut.sql.gz");
    let cut = &sql[..sql.len() - 200];
    let mut gz = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    gz.stdin.take().unwrap().write_all(cut).unwrap();
    std::fs::write(&p, gz.wait_with_output().unwrap().stdout).unwrap();
    assert_damaged(&verify(&[&p]), &p, "cut short");
}

#[test]
fn a_file_replaced_after_writing_does_not_match_its_manifest() {
    let a = dump_set();
    let b = dump_set();
    // b's complete, valid dump put in a's place: valid gzip, valid SQL, but
    // not what a's manifest says was written.
    std::fs::copy(&b.dump, &a.dump).unwrap();
    assert_damaged(&verify(&[&a.dump]), &a.dump, "does not match");
    // A manifest that is not JSON is damage too.
    std::fs::write(&b.manifest, "{ not json").unwrap();
    assert_damaged(&verify(&[&b.dump]), &b.dump, "not valid");
}

#[test]
fn a_dump_without_manifest_is_checked_on_its_own() {
    let set = dump_set();
    std::fs::remove_file(&set.manifest).unwrap();
    let out = verify(&[&set.dump]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        events(&records(&out.stdout), "verified")[0]["manifest"],
        "missing"
    );
}

#[test]
fn missing_file_is_unknown_and_damage_outranks_it() {
    let set = dump_set();
    let sb = Sandbox::new();
    let missing = sb.join("nope.sql.gz");
    let out = verify(&[&missing]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(verdicts(&out)[0].1, "unreadable");
    assert_eq!(summary(&records(&out.stdout))["status"], "unknown");
    let bad = sb.join("bad.sql.gz");
    std::fs::write(&bad, b"x").unwrap();
    let out = verify(&[&missing, &bad, &set.dump]);
    assert_eq!(out.status.code(), Some(2));
    let v: Vec<String> = verdicts(&out).into_iter().map(|v| v.1).collect();
    assert_eq!(v, ["unreadable", "damaged", "good"]);
}

#[test]
fn records_of_tb_dump_on_stdin_are_verified() {
    let set = dump_set();
    let lines: String = set.records.iter().map(|r| format!("{r}\n")).collect();
    let out = verify_stdin(&lines);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verdicts(&out);
    let paths: Vec<&str> = v.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(
        paths,
        [set.dump.to_str().unwrap(), set.roles.to_str().unwrap()],
        "dump and roles, not the manifest or summary"
    );
}

#[test]
fn plain_paths_on_stdin_are_verified() {
    let set = dump_set();
    let out = verify_stdin(&format!(
        "{}\n\n{}\n",
        set.dump.display(),
        set.roles.display()
    ));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(verdicts(&out).len(), 2);
}

#[test]
fn nothing_to_verify_is_unknown() {
    let out = verify_stdin("");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn help_states_the_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .args(["verify", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("0 all good, 1 all good but")
            && help.contains("2 a file is")
            && help.contains("3 a file cannot be read"),
        "{help}"
    );
}

#[test]
fn manifests_given_alone_are_checked_for_their_files() {
    let set = dump_set();
    let out = verify(&[&set.manifest]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        events(&records(&out.stdout), "verified")[0]["kind"],
        "manifest"
    );
    std::fs::remove_file(&set.roles).unwrap();
    let out = verify(&[&set.manifest]);
    assert_damaged(&out, &set.manifest, "missing");
}

#[test]
fn fifos_and_directories_are_unreadable_not_a_hang() {
    let sb = Sandbox::new();
    let fifo = sb.join("toybox_20260101_030000.sql.gz");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = verify(&[&fifo, sb.path()]);
    assert_eq!(out.status.code(), Some(3));
    let v = verdicts(&out);
    assert_eq!(
        v.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
        ["unreadable", "unreadable"]
    );
    assert!(v[0].2.contains("not a regular file"));
    assert_eq!(events(&records(&out.stdout), "verified")[0]["kind"], "dump");
}

#[test]
fn damaged_records_keep_size_and_manifest_status() {
    let set = dump_set();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&set.dump)
        .unwrap();
    f.write_all(b"junk").unwrap();
    let out = verify(&[&set.dump]);
    let r = &events(&records(&out.stdout), "verified")[0].clone();
    assert_eq!(r["bytes"], std::fs::metadata(&set.dump).unwrap().len());
    assert_eq!(r["manifest"], "checked");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tb-check: damaged: "));
}

// Regression tests for what a hostile review found (see the issue notes).

fn set_chunk_index(manifest: &Path, dump_name: &str, raw: &str, gz: &str) {
    let mut m: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    for f in m["files"].as_array_mut().unwrap() {
        if f["name"] == dump_name {
            f["chunks"] = serde_json::json!({"raw_sizes": raw, "gz_sizes": gz});
        }
    }
    std::fs::write(manifest, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[test]
fn hostile_chunk_indexes_neither_crash_nor_allocate_nor_decide() {
    let set = dump_set();
    let name = set.dump.file_name().unwrap().to_str().unwrap().to_string();
    for (raw, gz) in [
        ("1", "99999999999"),
        ("1", "18446744073709551615"),
        (
            "1048576",
            &std::fs::metadata(&set.dump).unwrap().len().to_string(),
        ),
        ("x", "y"),
    ] {
        set_chunk_index(&set.manifest, &name, raw, gz);
        let out = verify(&[&set.dump]);
        // The index is only a way to go faster: the file itself is good.
        assert_eq!(
            out.status.code(),
            Some(0),
            "{raw} {gz}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        assert_eq!(verdicts(&out)[0].1, "good");
    }
}

#[test]
fn paths_on_stdin_need_not_be_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let set = dump_set();
    let sb = Sandbox::new();
    let odd = sb.join(std::ffi::OsStr::from_bytes(b"\xff\xfe.sql.gz"));
    std::fs::copy(&set.dump, &odd).unwrap();
    let mut input = format!("{}\n", set.dump.display()).into_bytes();
    input.extend_from_slice(odd.as_os_str().as_bytes());
    input.push(b'\n');
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .arg("verify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&input).unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verdicts(&out);
    assert_eq!(v.len(), 2);
    assert!(v[1].0.ends_with("\\xff\\xfe.sql.gz"), "{}", v[1].0);
}

#[test]
fn a_fifo_or_device_as_manifest_does_not_hang_or_eat_memory() {
    let set = dump_set();
    std::fs::remove_file(&set.manifest).unwrap();
    nix::unistd::mkfifo(
        &set.manifest,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = verify(&[&set.dump]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        verdicts(&out)[0].2.contains("not a regular file"),
        "{:?}",
        verdicts(&out)
    );
    std::fs::remove_file(&set.manifest).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &set.manifest).unwrap();
    let out = verify(&[&set.dump]);
    assert_eq!(out.status.code(), Some(2));
    assert!(verdicts(&out)[0].2.contains("not a regular file"));
}

#[test]
fn an_endless_line_on_stdin_is_refused_with_bounded_memory() {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .arg("verify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let block = vec![b'a'; 1 << 20];
        for _ in 0..200 {
            if stdin.write_all(&block).is_err() {
                break;
            }
        }
    });
    let out = c.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "cannot tell: UNKNOWN");
    let recs = records(&out.stdout);
    assert_eq!(events(&recs, "error")[0]["cause"], "bad_input");
    assert!(summary(&recs)["max_rss_bytes"].as_u64().unwrap() < 32 << 20);
}

#[test]
fn an_interrupted_check_is_unknown_not_critical() {
    let set = dump_set();
    let many: Vec<&Path> = std::iter::repeat_n(set.dump.as_path(), 5000).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .arg("verify")
        .args(&many)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    tb_testkit::signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert_eq!(events(&recs, "error")[0]["cause"], "interrupted");
    assert_eq!(summary(&recs)["status"], "unknown");
}
