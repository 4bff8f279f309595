//! `tb-check drill` on real backup roots: healthy backups pass with their
//! restore times; a dump whose row count does not match, a volume archive
//! with one file changed and a failing SQL check are CRITICAL; scratch
//! copies never stay behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use serde_json::Value;
use tb_shared::record::Reporter;
use tb_testkit::{Pg, Sandbox, events, noise, records, summary};

fn written(rep: &Reporter, kind: &str) -> PathBuf {
    PathBuf::from(
        rep.records()
            .iter()
            .find(|r| r["event"] == "written" && r["kind"] == kind)
            .unwrap()["path"]
            .as_str()
            .unwrap(),
    )
}

/// A root with a dump of the TOYBOX fixture, a full volume archive and a
/// two-point chain of a small tree.
fn root(sb: &Sandbox, db: &str) -> (PathBuf, PathBuf, PathBuf) {
    let pg = Pg::shared();
    {
        // The fixture creates cluster-wide roles: one load at a time.
        static LOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = LOAD.lock().unwrap_or_else(|e| e.into_inner());
        pg.toybox(db);
    }
    let root = sb.join("backup");
    let mut args = vec![
        "tb-dump".to_string(),
        "--dbname".into(),
        db.into(),
        "--dir".into(),
        root.join("database").display().to_string(),
        "--wait".into(),
        "10".into(),
    ];
    args.extend(pg.conn_args());
    let mut rep = Reporter::quiet("tb-dump");
    assert_eq!(
        tb_dump::run(tb_dump::Args::parse_from(args), &mut rep)
            .unwrap()
            .code,
        0
    );
    let dump = written(&rep, "dump");
    let src = sb.join("media");
    std::fs::create_dir_all(src.join("img")).unwrap();
    std::fs::write(src.join("img/a.jpg"), noise(50_000, 9)).unwrap();
    std::fs::write(src.join("page.html"), "<p>x</p>\n".repeat(300)).unwrap();
    let mut rep = Reporter::quiet("tb-voltar");
    let a = tb_voltar::Args::parse_from([
        "tb-voltar".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
        "--name".as_ref(),
        "media_volume".as_ref(),
        "--dir".as_ref(),
        root.join("volumes").as_os_str(),
        "--wait".as_ref(),
        "10".as_ref(),
    ]);
    tb_voltar::run(a, &mut rep).unwrap();
    let archive = written(&rep, "volume");
    for _ in 0..2 {
        let mut rep = Reporter::quiet("tb-incr");
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
        tb_incr::run(a, &mut rep).unwrap();
        std::fs::write(src.join("new.txt"), "changed\n").unwrap();
    }
    (root, dump, archive)
}

fn drill(root: &Path, scratch: &Path, extra: &[&str]) -> Output {
    let pg = Pg::shared();
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-check"));
    pg.env(&mut c);
    c.arg("drill")
        .arg(root)
        .arg("--scratch")
        .arg(scratch)
        .args(extra)
        .stdin(Stdio::null());
    c.output().unwrap()
}

fn by_check<'a>(recs: &'a [Value], check: &str) -> Vec<&'a Value> {
    events(recs, "drill")
        .into_iter()
        .filter(|r| r["check"] == check)
        .collect()
}

/// No scratch copy of this test's drill (label `db`) is left; other tests
/// may be drilling at the same time.
fn no_leftovers(scratch: &Path, db: &str) {
    let left: Vec<String> = std::fs::read_dir(scratch)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "scratch copies left: {left:?}");
    let dbs = Pg::shared().psql(
        "postgres",
        &format!("SELECT datname FROM pg_database WHERE datname LIKE 'tb\\_%drill\\_{db}\\_%'"),
    );
    assert_eq!(dbs.trim(), "", "scratch databases left");
}

#[test]
fn healthy_backups_pass_with_their_restore_times_and_nothing_stays_behind() {
    let sb = Sandbox::new();
    let (root, _, _) = root(&sb, "drill_ok");
    let scratch = sb.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(sb.join("checks.sql"), "-- the app's own invariants\nSELECT count(*) = 8 FROM public.users\n\nSELECT bool_and(like_count >= 0) FROM public.posts;\n").unwrap();
    let out = drill(
        &root,
        &scratch,
        &["--sql", sb.join("checks.sql").to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let d = by_check(&recs, "dump");
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0]["ok"].as_bool(),
            d[0]["tables"].as_u64(),
            d[0]["rows"].as_u64()
        ),
        (Some(true), Some(10), Some(2459))
    );
    assert!(d[0]["restore_ms"].as_u64().is_some());
    let s = by_check(&recs, "sql");
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|c| c["ok"] == true && c["result"] == "t"));
    assert!(
        s.iter().all(|c| c["label"] == "drill_ok"
            && c["dbname"]
                .as_str()
                .is_some_and(|n| n.starts_with("tb_drill_drill_ok_"))),
        "{s:?}"
    );
    let v = by_check(&recs, "volume");
    assert_eq!(
        (v[0]["ok"].as_bool(), v[0]["checked"].as_str()),
        (Some(true), Some("index"))
    );
    let c = by_check(&recs, "chain");
    assert_eq!(
        (
            c[0]["ok"].as_bool(),
            c[0]["checked"].as_str(),
            c[0]["kind"].as_str()
        ),
        (Some(true), Some("listing"), Some("chain_incr"))
    );
    assert_eq!(summary(&recs)["status"], "ok");
    no_leftovers(&scratch, "drill_ok");
}

#[test]
fn sabotaged_backups_and_a_failing_check_are_critical() {
    let sb = Sandbox::new();
    let (root, dump, archive) = root(&sb, "drill_bad");
    let scratch = sb.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // The dump's manifest claims a row that is not there.
    let mpath = dump.with_file_name(
        dump.file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".sql.gz", ".manifest.json"),
    );
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let n = m["database"]["tables"]["public.users"].as_u64().unwrap();
    m["database"]["tables"]["public.users"] = (n + 1).into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    // One file of the volume archive changed (a byte flipped in its data).
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&archive, &bytes).unwrap();
    std::fs::write(sb.join("checks.sql"), "SELECT false\n").unwrap();
    let out = drill(
        &root,
        &scratch,
        &["--sql", sb.join("checks.sql").to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let d = by_check(&recs, "dump");
    assert_eq!(d[0]["ok"], false);
    assert!(
        d[0]["reason"].as_str().unwrap().contains("public.users"),
        "{:?}",
        d[0]
    );
    let v = by_check(&recs, "volume");
    assert_eq!(v[0]["ok"], false);
    // The chain was not touched: it still passes.
    assert_eq!(by_check(&recs, "chain")[0]["ok"], true);
    assert_eq!(summary(&recs)["status"], "critical");
    no_leftovers(&scratch, "drill_bad");
}

/// A check that fails says where and why on stderr, not only the query
/// (the reason was only in the record).
#[test]
fn a_failing_check_names_the_database_and_why() {
    let sb = Sandbox::new();
    let (root, _, _) = root(&sb, "drill_why");
    let scratch = sb.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(
        sb.join("checks.sql"),
        "SELECT count(*) FROM public.users\nSELECT count(*) = 0 FROM public.users\n",
    )
    .unwrap();
    let out = drill(
        &root,
        &scratch,
        &[
            "--dump-only",
            "--sql",
            sb.join("checks.sql").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("on the restored dump of 'drill_why': SELECT count(*) FROM public.users: ")
            && err.contains("cannot cast type bigint to boolean"),
        "{err}"
    );
    assert!(
        err.contains("SELECT count(*) = 0 FROM public.users: it returned \"f\", not true"),
        "{err}"
    );
    let recs = records(&out.stdout);
    let s = by_check(&recs, "sql");
    assert_eq!(
        s.iter().map(|c| c["ok"].as_bool()).collect::<Vec<_>>(),
        [Some(false), Some(false)]
    );
    assert_eq!(s[1]["result"], "f");
    assert_eq!(summary(&recs)["status"], "critical");
    no_leftovers(&scratch, "drill_why");
}

#[test]
fn a_scratch_cluster_is_started_restored_into_and_removed() {
    let sb = Sandbox::new();
    let (root, _, _) = root(&sb, "drill_cluster");
    let scratch = sb.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // Traversable by the postgres user that runs the scratch server as root.
    let _ = Command::new("chmod")
        .args(["755"])
        .arg(sb.path())
        .arg(&scratch)
        .status();
    let out = Command::new(env!("CARGO_BIN_EXE_tb-check"))
        .args(["drill", "--scratch-cluster", "--dump-only", "--scratch"])
        .arg(&scratch)
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    assert_eq!(by_check(&recs, "cluster")[0]["ok"], true);
    let d = by_check(&recs, "dump");
    assert_eq!(
        (d[0]["ok"].as_bool(), d[0]["rows"].as_u64()),
        (Some(true), Some(2459))
    );
    assert!(by_check(&recs, "volume").is_empty(), "--dump-only");
    no_leftovers(&scratch, "drill_cluster");
}
