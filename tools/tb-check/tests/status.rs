//! `tb-check status` on constructed backup roots: every finding (stale,
//! missing, damaged, shrunk, retention not working, disk nearly full, a
//! container left stopped, the drill and the last failure from the log),
//! the Prometheus textfile read by a real parser, and `--alert-cmd`
//! receiving exactly the records that are not OK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use serde_json::Value;
use tb_shared::record::Reporter;
use tb_testkit::{Sandbox, Tmpfs, events, is_root, noise, records, summary};

fn archive(src: &Path, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join(name);
    let a = tb_voltar::Args::parse_from([
        "tb-voltar".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--wait".as_ref(),
        "10".as_ref(),
    ]);
    tb_voltar::run(a, &mut Reporter::quiet("tb-voltar")).unwrap();
    out
}

fn incr(src: &Path, root: &Path) -> PathBuf {
    let a = tb_incr::Args::parse_from([
        "tb-incr".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
        "--name".as_ref(),
        "media_volume".as_ref(),
        "--dir".as_ref(),
        root.join("volumes-incremental").as_os_str(),
        "--wait".as_ref(),
        "10".as_ref(),
    ]);
    let mut rep = Reporter::quiet("tb-incr");
    tb_incr::run(a, &mut rep).unwrap();
    PathBuf::from(
        rep.records()
            .iter()
            .find(|r| r["event"] == "written")
            .unwrap()["path"]
            .as_str()
            .unwrap(),
    )
}

/// A dump file of ours without a database: a tiny gzipped plain dump with
/// a manifest that says it was verified (the catalog reads names and
/// manifests; `tb-check status` does not restore).
fn fake_dump(dir: &Path, stamp: &str, rows: u64, bytes_pad: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let name = format!("toybox_{stamp}.sql.gz");
    let sql = format!(
        "--\n-- PostgreSQL database dump\n--\n\nCOPY public.users (id, pad) FROM stdin;\n{}\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n",
        (0..rows)
            .map(|i| format!("{i}\t{}\n", "x".repeat(bytes_pad)))
            .collect::<String>()
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, sql.as_bytes()).unwrap();
    let data = gz.finish().unwrap();
    std::fs::write(dir.join(&name), &data).unwrap();
    let manifest = serde_json::json!({
        "format": "tb-manifest", "version": 1, "kind": "dump", "label": "toybox",
        "created_by": "test", "host": "h", "started_at": "", "finished_at": "", "duration_ms": 0,
        "files": [{"role": "dump", "name": name, "bytes": data.len(), "raw_bytes": sql.len(), "sha256": tb_testkit::sha256sum(&dir.join(&name)), "crc32": 0}],
        "database": {"name": "toybox", "server_version": null, "pg_dump_version": null, "encoding": "UTF8",
                     "tables": {"public.users": rows}, "rows": rows, "large_objects": 0},
        "verified": {"at": "", "verdict": "good", "by": "test"}
    });
    std::fs::write(
        dir.join(format!("toybox_{stamp}.manifest.json")),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

fn tree(sb: &Sandbox) -> PathBuf {
    let src = sb.join("media");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.jpg"), noise(30_000, 4)).unwrap();
    src
}

/// A healthy root "today" (2026-12-03 at 04:00 as far as --now goes for
/// dumps and archives; the chain is really from today).
fn healthy(sb: &Sandbox) -> PathBuf {
    let root = sb.join("backup");
    for d in 1..=3 {
        fake_dump(
            &root.join("database"),
            &format!("2026120{d}_030000"),
            100,
            50,
        );
    }
    let src = tree(sb);
    for d in ["20261122", "20261129", "20261201"] {
        archive(
            &src,
            &root.join("volumes"),
            &format!("media_volume_{d}.tar.gz"),
        );
    }
    root
}

/// A log that says a drill passed `days_ago` days before now.
fn drill_log(sb: &Sandbox, days_ago: i64, ok: bool) -> PathBuf {
    let when = (chrono::Local::now() - chrono::Duration::days(days_ago)).to_rfc3339();
    let log = sb.join("toybox_backup.log");
    let code = if ok { 0 } else { 2 };
    let text = format!(
        "{{\"event\":\"drill\",\"tool\":\"tb-check\",\"time\":\"{when}\",\"check\":\"dump\",\"ok\":{ok}}}\n{{\"event\":\"summary\",\"tool\":\"tb-check\",\"time\":\"{when}\",\"status\":\"x\",\"exit_code\":{code}}}\n"
    );
    std::fs::write(&log, text).unwrap();
    log
}

fn status(root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .arg("status")
        .arg(root)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn finding<'a>(recs: &'a [Value], check: &str) -> Vec<&'a Value> {
    events(recs, "finding")
        .into_iter()
        .filter(|r| r["check"] == check)
        .collect()
}

fn worst(recs: &[Value], check: &str) -> String {
    let order = ["ok", "warning", "critical", "unknown"];
    finding(recs, check)
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .max_by_key(|s| order.iter().position(|o| o == s))
        .unwrap_or_default()
}

#[test]
fn a_healthy_root_is_ok_and_its_prometheus_file_parses() {
    let sb = Sandbox::new();
    let root = healthy(&sb);
    incr(&tree(&sb), &root);
    let log = drill_log(&sb, 3, true);
    let prom = sb.join("tb.prom");
    // Judge the dumps and archives at 04:00 on the 3rd, the chain now:
    // use a time when all are fresh by their own limits.
    let out = status(
        &root,
        &[
            "--now",
            "2026-12-03T04:00:00",
            "--read-log",
            log.to_str().unwrap(),
            "--prom",
            prom.to_str().unwrap(),
            "--incr-max-age-hours",
            "1000000",
        ],
    );
    let recs = records(&out.stdout);
    let bad: Vec<&Value> = events(&recs, "finding")
        .into_iter()
        .filter(|f| f["status"] != "ok")
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "freshness",
        "verified",
        "restore_points",
        "size",
        "rows",
        "retention",
        "disk",
        "drill",
    ] {
        assert!(!finding(&recs, check).is_empty(), "no {check} finding");
    }
    let rp = finding(&recs, "restore_points");
    assert!(rp.iter().any(|r| r["kind"] == "dump" && r["good"] == 3));
    // A real parser reads the textfile.
    let text = std::fs::read_to_string(&prom).unwrap();
    // Debian's python3-prometheus-client (tests/ensure-deps installs it).
    let py = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
             fams = {f.name: f for f in p(open(sys.argv[1]).read())}\n\
             print(int(fams['tb_status'].samples[0].value))\n\
             print(sorted((s.labels['kind'], s.labels['label'], int(s.value)) for s in fams['tb_backup_restore_points'].samples))",
        ])
        .arg(&prom)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "prometheus_client could not parse it ({}):\n{text}",
        String::from_utf8_lossy(&py.stderr)
    );
    let said = String::from_utf8_lossy(&py.stdout);
    assert_eq!(
        said,
        "0\n[('chain', 'media_volume', 1), ('dump', 'toybox', 3), ('volume', 'media_volume', 3)]\n"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&prom).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn stale_missing_damaged_and_shrunk_backups_are_found() {
    let sb = Sandbox::new();
    let root = healthy(&sb);
    // No chain at all, and the newest dump is tiny with few rows.
    fake_dump(&root.join("database"), "20261204_030000", 2, 50);
    // The newest archive is truncated (its size no longer matches).
    let newest = archive(
        &tree(&sb),
        &root.join("volumes"),
        "media_volume_20261204.tar.gz",
    );
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 3]).unwrap();
    // Two days later: the dump is stale.
    let out = status(
        &root,
        &["--now", "2026-12-06T04:00:00", "--read-log", "/dev/null"],
    );
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    let fresh = finding(&recs, "freshness");
    let dump = fresh.iter().find(|f| f["kind"] == "dump").unwrap();
    assert_eq!(dump["status"], "critical");
    assert!(
        dump["message"]
            .as_str()
            .unwrap()
            .contains("backups have stopped")
    );
    assert!(
        fresh
            .iter()
            .any(|f| f["kind"] == "chain" && f["status"] == "critical"),
        "no chain at all"
    );
    let v = finding(&recs, "verified");
    let vol = v.iter().find(|f| f["kind"] == "volume").unwrap();
    assert_eq!(vol["status"], "critical");
    assert!(
        vol["message"]
            .as_str()
            .unwrap()
            .contains("media_volume_20261201.tar.gz"),
        "names the newest good one: {vol}"
    );
    assert_eq!(worst(&recs, "size"), "warning");
    assert_eq!(worst(&recs, "rows"), "warning");
    assert!(String::from_utf8_lossy(&out.stderr).contains("critical"));
    assert_eq!(summary(&recs)["status"], "critical");
}

#[test]
fn retention_that_does_not_run_is_a_warning_and_safety_keeps_are_explained() {
    let sb = Sandbox::new();
    let root = sb.join("backup");
    let src = tree(&sb);
    for d in ["20261001", "20261101", "20261201"] {
        archive(
            &src,
            &root.join("volumes"),
            &format!("media_volume_{d}.tar.gz"),
        );
    }
    let out = status(
        &root,
        &[
            "--now",
            "2026-12-02T04:00:00",
            "--volume-max-age-days",
            "30",
        ],
    );
    let recs = records(&out.stdout);
    let r = finding(&recs, "retention");
    let overdue = r.iter().find(|f| f["status"] == "warning").unwrap();
    assert_eq!(overdue["overdue"], 2);
    assert!(overdue["message"].as_str().unwrap().contains("tb-prune"));
    // Months later with only old backups: the newest is kept by the safety rule.
    let out = status(&root, &["--now", "2027-03-01T04:00:00"]);
    let recs = records(&out.stdout);
    let kept: Vec<&Value> = finding(&recs, "retention")
        .into_iter()
        .filter(|f| f["kept"] == true)
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0]["rule"]
            .as_str()
            .unwrap()
            .contains("newest verified")
    );
}

#[test]
fn a_container_left_stopped_is_critical() {
    let sb = Sandbox::new();
    let root = healthy(&sb);
    std::fs::write(
        root.join("volumes/.tb-stopped-containers.json"),
        r#"{"containers":["backend-db-1"],"by":"tb-voltar pid 999999999","time":"2026-12-01T03:31:00+00:00"}"#,
    )
    .unwrap();
    let out = status(&root, &["--now", "2026-12-03T04:00:00"]);
    let recs = records(&out.stdout);
    let c = finding(&recs, "containers");
    assert_eq!(c[0]["status"], "critical");
    assert!(
        c[0]["message"]
            .as_str()
            .unwrap()
            .contains("docker start backend-db-1")
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_drill_and_the_last_failure_come_from_the_log() {
    let sb = Sandbox::new();
    let root = healthy(&sb);
    let old = drill_log(&sb, 50, true);
    let out = status(
        &root,
        &[
            "--now",
            "2026-12-03T04:00:00",
            "--read-log",
            old.to_str().unwrap(),
        ],
    );
    let recs = records(&out.stdout);
    assert_eq!(worst(&recs, "drill"), "warning", "a drill 50 days ago");
    let failed = drill_log(&sb, 1, false);
    // The log also holds a failed tb-dump run.
    let mut text = std::fs::read_to_string(&failed).unwrap();
    text.push_str("{\"event\":\"error\",\"tool\":\"tb-dump\",\"time\":\"2026-12-03T03:00:05+00:00\",\"cause\":\"wrong_password\",\"message\":\"wrong password for user \\\"postgres\\\"\"}\n");
    text.push_str("{\"event\":\"summary\",\"tool\":\"tb-dump\",\"time\":\"2026-12-03T03:00:05+00:00\",\"status\":\"failed\",\"exit_code\":2}\n");
    std::fs::write(&failed, text).unwrap();
    let out = status(
        &root,
        &[
            "--now",
            "2026-12-03T04:00:00",
            "--read-log",
            failed.to_str().unwrap(),
        ],
    );
    let recs = records(&out.stdout);
    assert_eq!(worst(&recs, "drill"), "critical");
    let last = finding(&recs, "last_run");
    assert_eq!(last[0]["tool"], "tb-dump");
    assert_eq!(last[0]["cause"], "wrong_password");
    assert!(
        last[0]["message"]
            .as_str()
            .unwrap()
            .contains("wrong password")
    );
}

#[test]
fn a_nearly_full_disk_is_critical() {
    if !is_root() {
        eprintln!("SKIP a_nearly_full_disk_is_critical: needs root for a tmpfs");
        return;
    }
    let sb = Sandbox::new();
    let root = sb.join("backup");
    let _fs = Tmpfs::mount(&root, "4m");
    fake_dump(&root.join("database"), "20261203_030000", 10, 10);
    // A big backup yesterday: at that growth the rest lasts less than a day.
    std::fs::create_dir_all(root.join("volumes")).unwrap();
    std::fs::write(
        root.join("volumes/media_volume_20261202.tar.gz"),
        noise(3_800_000, 1),
    )
    .unwrap();
    let out = status(&root, &["--now", "2026-12-03T04:00:00"]);
    let recs = records(&out.stdout);
    let d = finding(&recs, "disk");
    assert_eq!(d[0]["status"], "critical", "{d:?}");
    assert!(d[0]["used_percent"].as_f64().unwrap() >= 90.0);
    assert_eq!(
        worst(&recs, "forecast"),
        "warning",
        "a day's growth no longer fits for two weeks"
    );
}

#[test]
fn the_alert_command_receives_exactly_the_records_that_are_not_ok() {
    let sb = Sandbox::new();
    let root = healthy(&sb);
    let got = sb.join("alert.jsonl");
    let cmd = format!("cat > '{}'", got.display());
    let out = status(
        &root,
        &[
            "--now",
            "2026-12-06T04:00:00",
            "--read-log",
            "/dev/null",
            "--alert-cmd",
            &cmd,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let printed = records(&out.stdout);
    let want: Vec<Value> = printed
        .iter()
        .filter(|r| (r["event"] == "finding" && r["status"] != "ok") || r["event"] == "summary")
        .cloned()
        .collect();
    let heard = records(&std::fs::read(&got).unwrap());
    assert_eq!(heard, want);
    assert!(heard.len() >= 3);
    // An OK run alerts nobody.
    std::fs::remove_file(&got).unwrap();
    incr(&tree(&sb), &root);
    let log = drill_log(&sb, 1, true);
    let out = status(
        &root,
        &[
            "--now",
            "2026-12-03T04:00:00",
            "--read-log",
            log.to_str().unwrap(),
            "--alert-cmd",
            &cmd,
            "--incr-max-age-hours",
            "1000000",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!got.exists(), "the alert ran on an OK result");
}

#[test]
fn the_newest_backup_deleted_by_hand_is_missed_loudly_but_not_what_prune_deleted() {
    let sb = Sandbox::new();
    let root = healthy(&sb);
    let newest = root.join("volumes/media_volume_20261201.tar.gz");
    let old = root.join("volumes/media_volume_20261122.tar.gz");
    let log = drill_log(&sb, 1, true);
    let mut text = std::fs::read_to_string(&log).unwrap();
    for (event, p) in [("written", &old), ("written", &newest), ("deleted", &old)] {
        text.push_str(&format!(
            "{{\"event\":\"{event}\",\"tool\":\"x\",\"time\":\"2026-12-01T03:31:00+00:00\",\"kind\":\"volume\",\"label\":\"media_volume\",\"path\":\"{}\"}}\n",
            p.display()
        ));
    }
    std::fs::write(&log, text).unwrap();
    std::fs::remove_file(&old).unwrap();
    let out = status(
        &root,
        &[
            "--now",
            "2026-12-03T04:00:00",
            "--read-log",
            log.to_str().unwrap(),
        ],
    );
    assert!(
        finding(&records(&out.stdout), "missing").is_empty(),
        "pruned, not missing"
    );
    for ext in ["tar.gz", "index.jsonl.gz", "manifest.json"] {
        std::fs::remove_file(newest.with_file_name(format!("media_volume_20261201.{ext}")))
            .unwrap();
    }
    let out = status(
        &root,
        &[
            "--now",
            "2026-12-03T04:00:00",
            "--read-log",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    let m = finding(&recs, "missing");
    assert_eq!(m.len(), 1);
    assert!(
        m[0]["message"]
            .as_str()
            .unwrap()
            .contains("media_volume_20261201.tar.gz")
    );
}

#[test]
fn a_container_running_again_is_no_longer_critical() {
    if !tb_testkit::docker::docker_or_skip("a_container_running_again_is_no_longer_critical") {
        return;
    }
    let sb = Sandbox::new();
    let root = healthy(&sb);
    let c = tb_testkit::docker::Container::run("status", &[], &["/usr/bin/sleep", "600"]);
    std::fs::write(
        root.join("volumes/.tb-stopped-containers.json"),
        format!(r#"{{"containers":["{}"],"by":"tb-voltar pid 999999999","time":"2026-12-01T03:31:00+00:00"}}"#, c.name),
    )
    .unwrap();
    let out = status(&root, &["--now", "2026-12-03T04:00:00"]);
    let recs = records(&out.stdout);
    let f = finding(&recs, "containers");
    assert_eq!(f[0]["status"], "ok", "{f:?}");
    assert!(f[0]["message"].as_str().unwrap().contains("running again"));
}
