//! tb-dump against a real PostgreSQL server (a throwaway cluster per test
//! binary, see tb-testkit). Every failure test asserts: exit 2, an error
//! record with the right cause, one plain stderr line naming it, no file
//! with a final name, no temporary left, and the earlier backups in the
//! directory byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use nix::sys::signal::Signal;
use serde_json::Value;
use tb_testkit::{
    Pg, Sandbox, Tmpfs, children_of, events, fingerprint, gunzip, is_root, list_dir, mode,
    pg16_or_skip, records, restore_with_psql, sha256sum, signal, snapshot_files, summary, wait_for,
};

fn tb_dump(pg: &Pg) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-dump"));
    pg.env(&mut c);
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// The source database of most tests: the TOYBOX fixture.
fn toybox() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| Pg::shared().toybox("toybox"));
    "toybox"
}

/// A database with one 70 MB table, so a dump takes long enough to be
/// interrupted and is too big for a 2 MB filesystem.
fn bulk() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let pg = Pg::shared();
        pg.createdb("bulk");
        pg.psql(
            "bulk",
            "CREATE TABLE bulk AS SELECT g, md5(g::text) || md5((g*7)::text) || repeat('x', 40) AS t FROM generate_series(1, 700000) g",
        );
    });
    "bulk"
}

/// An earlier, real backup set copied into `dir`: the files a failed run
/// must leave untouched.
fn seed_earlier_backup(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    static SEED: OnceLock<Sandbox> = OnceLock::new();
    let seed = SEED.get_or_init(|| {
        let sb = Sandbox::new();
        let pg = Pg::shared();
        let out = run(tb_dump(pg)
            .args(["--dbname", toybox(), "--name", "earlier", "--dir"])
            .arg(sb.path()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        sb
    });
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in snapshot_files(seed.path()) {
        if !name.starts_with('.') {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    backups(dir)
}

/// The files of `dir` except the lock file (which holds the last pid).
fn backups(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot_files(dir)
        .into_iter()
        .filter(|(n, _)| n != ".tb.lock")
        .collect()
}

/// Exit 2, error record with `cause`, stderr names it, nothing new in `dir`.
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
    assert!(
        events(&recs, "written").is_empty(),
        "nothing may be written: {recs:#?}"
    );
    assert_eq!(summary(&recs)["status"], "failed");
    let human: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tb-dump: error: "))
        .collect();
    assert_eq!(human.len(), 1, "one human error line: {stderr}");
    assert!(
        human[0].contains(says),
        "stderr should say {says:?}: {stderr}"
    );
    assert_eq!(
        &backups(dir),
        before,
        "earlier backups must be byte-identical and nothing added"
    );
}

fn written<'a>(recs: &'a [Value], kind: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["event"] == "written" && r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} record: {recs:#?}"))
}

#[test]
fn dump_restores_identically_with_gunzip_and_psql() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "--dir"])
        .arg(sb.join("db")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let dump = PathBuf::from(written(&recs, "dump")["path"].as_str().unwrap());
    let name = dump.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("toybox_")
            && name.ends_with(".sql.gz")
            && name.len() == "toybox_20260101_030000.sql.gz".len(),
        "{name}"
    );
    restore_with_psql(pg, &dump, "toybox_restored_plain");
    assert_eq!(
        fingerprint(pg, "toybox"),
        fingerprint(pg, "toybox_restored_plain")
    );
    assert_eq!(summary(&recs)["exit_code"], 0);
}

#[test]
fn records_and_manifest_describe_the_file_exactly() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "--dir"])
        .arg(sb.path()));
    assert!(out.status.success());
    let recs = records(&out.stdout);
    let d = written(&recs, "dump");
    let dump = PathBuf::from(d["path"].as_str().unwrap());
    assert_eq!(d["bytes"], std::fs::metadata(&dump).unwrap().len());
    assert_eq!(d["sha256"], sha256sum(&dump));
    let sql = gunzip(&dump);
    assert_eq!(d["raw_bytes"], sql.len() as u64);
    assert_eq!(d["large_objects"], 2);

    let manifest_path = PathBuf::from(written(&recs, "manifest")["path"].as_str().unwrap());
    assert_eq!(
        manifest_path,
        dump.with_file_name(
            dump.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .replace(".sql.gz", ".manifest.json")
        )
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(m["format"], "tb-manifest");
    assert_eq!(m["files"][0]["sha256"], sha256sum(&dump));
    assert_eq!(m["files"][1]["role"], "roles");
    assert_eq!(
        m["files"][1]["sha256"],
        sha256sum(&PathBuf::from(
            written(&recs, "roles")["path"].as_str().unwrap()
        ))
    );
    assert_eq!(m["database"]["encoding"], "UTF8");
    assert_eq!(m["verified"]["verdict"], "good");
    assert!(
        m["database"]["pg_dump_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );
    // Row counts counted from the stream equal the server's own counts.
    let tables = m["database"]["tables"].as_object().unwrap();
    for (t, n) in [
        ("public.users", "users"),
        ("public.posts", "posts"),
        ("public.comments", "comments"),
        ("public.likes", "likes"),
        ("game.scores", "game.scores"),
        ("public.\"Odd Table\"", "\"Odd Table\""),
    ] {
        let real: u64 = pg
            .psql("toybox", &format!("SELECT count(*) FROM {n}"))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(tables[t].as_u64(), Some(real), "rows of {t}");
    }
    assert_eq!(tables.len(), 10, "{tables:?}");
    assert_eq!(
        m["database"]["rows"],
        tables.values().map(|v| v.as_u64().unwrap()).sum::<u64>()
    );
    assert_eq!(d["tables"], 10);
}

#[test]
fn files_are_private_and_new_directories_0700() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let dir = sb.join("backup/toybox/database");
    let out = run(tb_dump(pg).args(["--dbname", toybox(), "--dir"]).arg(&dir));
    assert!(out.status.success());
    assert_eq!(mode(&sb.join("backup")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    let names = list_dir(&dir);
    assert_eq!(names.len(), 4, "{names:?}"); // lock, dump, roles, manifest
    for n in names {
        assert_eq!(mode(&dir.join(&n)), 0o600, "{n}");
    }
}

#[test]
fn roles_file_restores_onto_a_fresh_cluster() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "--dir"])
        .arg(sb.path()));
    assert!(out.status.success());
    let recs = records(&out.stdout);
    let roles = PathBuf::from(written(&recs, "roles")["path"].as_str().unwrap());
    let dump = PathBuf::from(written(&recs, "dump")["path"].as_str().unwrap());
    let roles_sql = String::from_utf8(gunzip(&roles)).unwrap();
    assert!(
        roles_sql.contains("CREATE ROLE toybox_owner;"),
        "{roles_sql}"
    );
    assert!(
        roles_sql.contains("SCRAM-SHA-256$"),
        "role passwords are kept (hashed)"
    );

    let fresh = Pg::start();
    // As the README says: roles first (the bootstrap superuser's CREATE ROLE
    // fails harmlessly: it exists), then the dump with ON_ERROR_STOP.
    let st = fresh
        .env(&mut Command::new("bash"))
        .arg("-c")
        .arg(format!(
            "gunzip -c '{}' | psql -X -q -d postgres >/dev/null 2>&1",
            roles.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        fresh.psql(
            "postgres",
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'toybox%' ORDER BY 1"
        ),
        "toybox_owner\ntoybox_reader\n"
    );
    restore_with_psql(&fresh, &dump, "toybox");
    assert_eq!(fingerprint(pg, "toybox"), fingerprint(&fresh, "toybox"));
    assert_eq!(
        fresh.psql(
            "toybox",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'titles'"
        ),
        "toybox_owner\n"
    );
}

#[test]
fn wrong_password_publishes_nothing() {
    let pg = Pg::shared();
    pg.psql("postgres", "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='pw_user') THEN CREATE ROLE pw_user LOGIN SUPERUSER PASSWORD 'right-pw'; END IF; END $$");
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let out = run(tb_dump(pg)
        .env("PGPASSWORD", "wrong-pw")
        .args([
            "--dbname",
            toybox(),
            "--host",
            "127.0.0.1",
            "--port",
            &pg.port.to_string(),
            "--username",
            "pw_user",
            "--dir",
        ])
        .arg(sb.path()));
    assert_failed_cleanly(
        &out,
        sb.path(),
        &before,
        "wrong_password",
        "wrong password for user \"pw_user\"",
    );
    // The password itself appears nowhere.
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("wrong-pw")
            && !String::from_utf8_lossy(&out.stderr).contains("wrong-pw")
    );

    // And with the right one it works over TCP.
    let ok = run(tb_dump(pg)
        .env("PGPASSWORD", "right-pw")
        .args([
            "--dbname",
            toybox(),
            "--host",
            "127.0.0.1",
            "--port",
            &pg.port.to_string(),
            "--username",
            "pw_user",
            "--dir",
        ])
        .arg(sb.path()));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn missing_password_publishes_nothing() {
    let pg = Pg::shared();
    pg.psql("postgres", "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='pw_user2') THEN CREATE ROLE pw_user2 LOGIN PASSWORD 'pw'; END IF; END $$");
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let out = run(tb_dump(pg)
        .env("PGPASSFILE", "/nonexistent")
        .args([
            "--dbname",
            toybox(),
            "--host",
            "127.0.0.1",
            "--port",
            &pg.port.to_string(),
            "--username",
            "pw_user2",
            "--dir",
        ])
        .arg(sb.path()));
    assert_failed_cleanly(&out, sb.path(), &before, "no_password", "none was given");
}

#[test]
fn missing_database_publishes_nothing() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let out = run(tb_dump(pg)
        .args(["--dbname", "no_such_db", "--dir"])
        .arg(sb.path()));
    assert_failed_cleanly(
        &out,
        sb.path(),
        &before,
        "no_database",
        "database \"no_such_db\" does not exist",
    );
}

#[test]
fn stopped_server_publishes_nothing() {
    let pg = Pg::start();
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    pg.stop();
    let out = run(tb_dump(&pg)
        .args(["--dbname", "postgres", "--dir"])
        .arg(sb.path()));
    assert_failed_cleanly(&out, sb.path(), &before, "server_down", "not running");
}

#[test]
fn missing_pg_dump_program_publishes_nothing() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let out = run(tb_dump(pg)
        .args([
            "--dbname",
            toybox(),
            "--pg-dump",
            "/nonexistent/pg_dump",
            "--dir",
        ])
        .arg(sb.path()));
    assert_failed_cleanly(&out, sb.path(), &before, "not_found", "not found");
}

/// Start a dump of the bulk database and freeze pg_dump once the temporary
/// file holds compressed data. Returns (tb-dump child, pg_dump pid, temp path).
fn start_and_freeze(pg: &Pg, dir: &Path) -> (std::process::Child, u32, PathBuf) {
    let child = tb_dump(pg)
        .args(["--dbname", bulk(), "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tb_pid = child.id();
    let (pg_dump, temp) = wait_for(60, "pg_dump to write data", || {
        let pd = children_of(tb_pid)
            .into_iter()
            .find(|(_, c)| c == "pg_dump")?
            .0;
        let temp = list_dir(dir)
            .into_iter()
            .find(|n| n.starts_with(".tb-tmp.") && n.ends_with(&format!(".{tb_pid}")))?;
        let size = std::fs::metadata(dir.join(&temp)).ok()?.len();
        (size > 100).then(|| {
            signal(pd, Signal::SIGSTOP);
            (pd, dir.join(temp))
        })
    });
    wait_for(10, "pg_dump to be frozen mid-stream", || {
        std::fs::read_to_string(format!("/proc/{pg_dump}/stat"))
            .ok()?
            .contains(") T ")
            .then_some(())
    });
    (child, pg_dump, temp)
}

#[test]
fn pg_dump_killed_in_the_middle_publishes_nothing() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let (child, pg_dump, temp) = start_and_freeze(pg, sb.path());
    assert!(temp.exists());
    signal(pg_dump, Signal::SIGKILL);
    let out = child.wait_with_output().unwrap();
    assert_failed_cleanly(
        &out,
        sb.path(),
        &before,
        "killed",
        "pg_dump was killed by SIGKILL",
    );
}

#[test]
fn sigterm_stops_the_run_and_publishes_nothing() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let (child, pg_dump, _) = start_and_freeze(pg, sb.path());
    signal(child.id(), Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_failed_cleanly(
        &out,
        sb.path(),
        &before,
        "interrupted",
        "interrupted by SIGTERM",
    );
    assert!(
        !Path::new(&format!("/proc/{pg_dump}")).exists()
            || std::fs::read_to_string(format!("/proc/{pg_dump}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    );
}

#[test]
fn killed_run_leaves_only_a_temp_that_the_next_run_removes() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let (mut child, pg_dump, temp) = start_and_freeze(pg, sb.path());
    signal(child.id(), Signal::SIGKILL);
    let _ = child.wait();
    signal(pg_dump, Signal::SIGKILL);
    // Only the temp is new, and it is hidden and not a backup name.
    let mut after = backups(sb.path());
    let left = after.remove(temp.file_name().unwrap().to_str().unwrap());
    assert!(
        left.is_some(),
        "the killed run's temp is there: {:?}",
        list_dir(sb.path())
    );
    assert_eq!(after, before);
    // The next run removes it and says so.
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "--dir"])
        .arg(sb.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let removed = events(&recs, "removed");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["path"], temp.to_str().unwrap());
    assert!(!temp.exists());
    assert!(
        list_dir(sb.path())
            .iter()
            .all(|n| !n.starts_with(".tb-tmp."))
    );
}

fn plain_dump(pg: &Pg, db: &str) -> Vec<u8> {
    let out = pg
        .env(&mut Command::new("pg_dump"))
        .args(["-d", db])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn run_stdin(pg: &Pg, args: &[&str], dir: &Path, input: &[u8]) -> Output {
    let mut child = tb_dump(pg)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let t = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    t.join().unwrap();
    out
}

#[test]
fn truncated_stdin_stream_publishes_nothing() {
    let pg = Pg::shared();
    let sql = plain_dump(pg, toybox());
    let text = String::from_utf8_lossy(&sql);
    let before_unrestrict = text.rfind("\\unrestrict").unwrap();
    let inside_trailer = text.rfind("dump complete").unwrap();
    // A third in; inside the \unrestrict key; just before it; inside the trailer.
    for cut in [
        sql.len() / 3,
        sql.len() - 30,
        before_unrestrict,
        inside_trailer,
    ] {
        let sb = Sandbox::new();
        let before = seed_earlier_backup(sb.path());
        let out = run_stdin(pg, &["--stdin", "--name", "toybox"], sb.path(), &sql[..cut]);
        assert_failed_cleanly(
            &out,
            sb.path(),
            &before,
            "incomplete",
            "not a complete pg_dump",
        );
    }
}

#[test]
fn a_stdin_dump_with_psql_meta_commands_publishes_nothing() {
    let pg = Pg::shared();
    let sql = String::from_utf8(plain_dump(pg, toybox())).unwrap();
    let at = sql.find("CREATE TABLE").unwrap();
    let hostile = format!(
        "{}SELECT 1; \\! touch /tmp/never\n{}",
        &sql[..at],
        &sql[at..]
    );
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let out = run_stdin(
        pg,
        &["--stdin", "--name", "toybox"],
        sb.path(),
        hostile.as_bytes(),
    );
    assert_failed_cleanly(&out, sb.path(), &before, "unsafe_archive", "meta-commands");
}

#[test]
fn empty_stdin_stream_publishes_nothing() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let out = run_stdin(pg, &["--stdin", "--name", "toybox"], sb.path(), b"");
    assert_failed_cleanly(&out, sb.path(), &before, "incomplete", "the dump is empty");
}

#[test]
fn pipeline_form_publishes_a_complete_dump() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let script = format!(
        "set -o pipefail; pg_dump -d {} | '{}' --stdin --name toybox --dir '{}'",
        toybox(),
        env!("CARGO_BIN_EXE_tb-dump"),
        sb.path().display()
    );
    let out = pg
        .env(&mut Command::new("bash"))
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let dump = PathBuf::from(written(&recs, "dump")["path"].as_str().unwrap());
    assert!(
        events(&recs, "written")
            .iter()
            .all(|r| r["kind"] != "roles"),
        "no roles from a stream"
    );
    restore_with_psql(pg, &dump, "toybox_from_pipeline");
    assert_eq!(
        fingerprint(pg, "toybox"),
        fingerprint(pg, "toybox_from_pipeline")
    );
}

#[test]
fn unwritable_destination_publishes_nothing() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let dir = sb.join("ro");
    let _mount;
    let before = if is_root() {
        _mount = Tmpfs::mount(&dir, "4m");
        let b = seed_earlier_backup(&dir);
        _mount.make_read_only();
        b
    } else {
        let b = seed_earlier_backup(&dir);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o500))
            .unwrap();
        b
    };
    let out = run(tb_dump(pg).args(["--dbname", toybox(), "--dir"]).arg(&dir));
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    assert_eq!(
        events(&recs, "error")[0]["cause"],
        "not_writable",
        "{recs:#?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not writable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(backups(&dir), before);
}

#[test]
fn full_disk_publishes_nothing() {
    if !is_root() {
        eprintln!("SKIP full_disk_publishes_nothing: needs root to mount a small tmpfs");
        return;
    }
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let dir = sb.join("small");
    let _mount = Tmpfs::mount(&dir, "2m");
    let before = seed_earlier_backup(&dir);
    let out = run(tb_dump(pg).args(["--dbname", bulk(), "--dir"]).arg(&dir));
    assert_failed_cleanly(&out, &dir, &before, "disk_full", "disk full");
    assert!(
        list_dir(&dir).iter().all(|n| !n.starts_with(".tb-tmp.")),
        "the temp is removed: {:?}",
        list_dir(&dir)
    );
}

#[test]
fn a_second_run_exits_75_and_a_waiting_run_succeeds() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    pg.createdb("locked_db");
    pg.psql(
        "locked_db",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1)",
    );
    // Hold a lock that makes the first run's pg_dump wait.
    let mut holder = pg
        .env(&mut Command::new("psql"))
        .args(["-X", "-q", "-d", "locked_db"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut hin = holder.stdin.take().unwrap();
    writeln!(hin, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;").unwrap();
    wait_for(20, "the table lock", || {
        (pg.psql("locked_db", "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 't' AND l.mode = 'AccessExclusiveLock' AND l.granted").trim() == "1").then_some(())
    });
    let first = tb_dump(pg)
        .args(["--dbname", "locked_db", "--dir"])
        .arg(sb.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = sb.join(".tb.lock");
    wait_for(20, "the first run to hold the lock", || {
        (std::fs::read_to_string(&lock).ok()? == first.id().to_string()).then_some(())
    });
    let second = run(tb_dump(pg)
        .args(["--dbname", "locked_db", "--dir"])
        .arg(sb.path()));
    assert_eq!(
        second.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let recs = records(&second.stdout);
    assert_eq!(events(&recs, "error")[0]["cause"], "busy");
    assert_eq!(summary(&recs)["status"], "busy");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains(&format!("locked by pid {}", first.id()))
    );

    std::thread::sleep(std::time::Duration::from_millis(1100)); // a different second for the third name
    let third = tb_dump(pg)
        .args(["--dbname", "locked_db", "--wait", "60", "--dir"])
        .arg(sb.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    writeln!(hin, "COMMIT;").unwrap();
    drop(hin);
    let _ = holder.wait();
    let first = first.wait_with_output().unwrap();
    let third = third.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let dumps: Vec<String> = list_dir(sb.path())
        .into_iter()
        .filter(|n| n.ends_with(".sql.gz") && !n.contains(".roles."))
        .collect();
    assert_eq!(
        dumps.len(),
        2,
        "two distinct dumps, no collision: {dumps:?}"
    );
}

#[test]
fn stdout_stream_is_gzip_and_records_go_to_stderr() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "-o", "-"])
        .current_dir(sb.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = sb.join("stream.sql.gz");
    std::fs::write(&file, &out.stdout).unwrap();
    let sql = String::from_utf8(gunzip(&file)).unwrap();
    assert!(
        sql.trim_end()
            .contains("-- PostgreSQL database dump complete")
    );
    let recs = records(&out.stderr);
    let d = written(&recs, "dump");
    assert_eq!(d["path"], "-");
    assert_eq!(d["bytes"], out.stdout.len() as u64);
    assert_eq!(d["sha256"], sha256sum(&file));
    assert_eq!(summary(&recs)["status"], "ok");
    assert!(
        list_dir(sb.path()) == ["stream.sql.gz"],
        "nothing else written: {:?}",
        list_dir(sb.path())
    );
    restore_with_psql(pg, &file, "toybox_from_stdout");
    assert_eq!(
        fingerprint(pg, "toybox"),
        fingerprint(pg, "toybox_from_stdout")
    );
}

#[test]
fn failed_stream_to_stdout_is_never_a_valid_gzip() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    // A truncated input stream: the output must not pass gzip -t.
    let sql = plain_dump(pg, toybox());
    let mut child = tb_dump(pg)
        .args(["--stdin", "--name", "x", "-o", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let part = sql[..sql.len() - 40].to_vec();
    let t = std::thread::spawn(move || stdin.write_all(&part));
    let out = child.wait_with_output().unwrap();
    t.join().unwrap().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let file = sb.join("partial.gz");
    std::fs::write(&file, &out.stdout).unwrap();
    let st = Command::new("gzip")
        .arg("-t")
        .arg(&file)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        !st.success(),
        "a failed stream must not be a complete gzip file"
    );
    let recs = records(&out.stderr);
    assert_eq!(events(&recs, "error")[0]["cause"], "incomplete");

    // A failing pg_dump: same.
    let out = run(tb_dump(pg).args(["--dbname", "no_such_db", "-o", "-"]));
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(&file, &out.stdout).unwrap();
    let st = Command::new("gzip")
        .arg("-t")
        .arg(&file)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success());
}

#[test]
fn existing_output_is_never_overwritten() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let target = sb.join("mine.sql.gz");
    std::fs::write(&target, b"precious").unwrap();
    let before = backups(sb.path());
    let out = run(tb_dump(pg).args(["--dbname", toybox(), "-o"]).arg(&target));
    assert_failed_cleanly(&out, sb.path(), &before, "exists", "already exists");
}

#[test]
fn output_file_gets_its_manifest_and_roles_beside_it() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let target = sb.join("manual-before-upgrade.sql.gz");
    let out = run(tb_dump(pg).args(["--dbname", toybox(), "-o"]).arg(&target));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        list_dir(sb.path()),
        [
            ".tb.lock",
            "manual-before-upgrade.manifest.json",
            "manual-before-upgrade.roles.sql.gz",
            "manual-before-upgrade.sql.gz"
        ]
    );
}

#[test]
fn log_file_receives_the_same_records() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let log = sb.join("toybox_backup.log");
    let ok = run(tb_dump(pg)
        .args(["--dbname", toybox(), "--log"])
        .arg(&log)
        .arg("--dir")
        .arg(sb.join("d")));
    let bad = run(tb_dump(pg)
        .args(["--dbname", "no_such_db", "--log"])
        .arg(&log)
        .arg("--dir")
        .arg(sb.join("d")));
    assert_eq!((ok.status.code(), bad.status.code()), (Some(0), Some(2)));
    let logged = std::fs::read(&log).unwrap();
    let mut expected = ok.stdout.clone();
    expected.extend_from_slice(&bad.stdout);
    assert_eq!(
        String::from_utf8(logged).unwrap(),
        String::from_utf8(expected).unwrap()
    );
    assert_eq!(mode(&log), 0o600);
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let pg = Pg::shared();
    let out = run(tb_dump(pg).args(["--level", "12"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--level"));
    let out = run(tb_dump(pg).args(["--dbname", "my db"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--name"));
}

#[test]
fn help_explains_restore_and_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_tb-dump"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "gunzip -c",
        "75 busy",
        "--container",
        "--stdin",
        "PGPASSWORD",
    ] {
        assert!(help.contains(needle), "--help should mention {needle}");
    }
}

#[test]
fn pg_dump_older_than_the_server_publishes_nothing() {
    let Some(pg16) = pg16_or_skip("pg_dump_older_than_the_server_publishes_nothing") else {
        return;
    };
    let newer = Pg::start_with(Some(&pg16));
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    // The system pg_dump (15) against a 16 server.
    let out = run(tb_dump(&newer)
        .args(["--dbname", "postgres", "--pg-dump", "pg_dump", "--dir"])
        .arg(sb.path()));
    assert_failed_cleanly(
        &out,
        sb.path(),
        &before,
        "version_mismatch",
        "is older than the server 16.2",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pg_dump 15."),
        "both versions are named: {stderr}"
    );
}

#[test]
fn dumps_from_a_pg_dump_without_restrict_lines_are_complete_too() {
    let Some(pg16) = pg16_or_skip("dumps_from_a_pg_dump_without_restrict_lines_are_complete_too")
    else {
        return;
    };
    let pg = Pg::shared();
    let sb = Sandbox::new();
    // pg_dump 16.2 predates the `\restrict` releases: the old trailer.
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "--no-roles", "--pg-dump"])
        .arg(pg16.join("pg_dump"))
        .arg("--dir")
        .arg(sb.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let dump = PathBuf::from(written(&recs, "dump")["path"].as_str().unwrap());
    let sql = String::from_utf8(gunzip(&dump)).unwrap();
    assert!(!sql.contains("\\restrict"), "an old-style dump");
    assert!(sql.contains("-- Dumped by pg_dump version 16.2"));
    restore_with_psql(pg, &dump, "toybox_from_pg_dump16");
    assert_eq!(
        fingerprint(pg, "toybox"),
        fingerprint(pg, "toybox_from_pg_dump16")
    );
    // Cut anywhere in its trailer, such a stream is refused.
    let cut = sql.rfind("complete").unwrap();
    let sb2 = Sandbox::new();
    let before = seed_earlier_backup(sb2.path());
    let out = run_stdin(
        pg,
        &["--stdin", "--name", "old"],
        sb2.path(),
        &sql.as_bytes()[..cut],
    );
    assert_failed_cleanly(
        &out,
        sb2.path(),
        &before,
        "incomplete",
        "no \"dump complete\" trailer",
    );
}

#[test]
fn readme_restore_recipe_works_with_plain_tools() {
    // The README's "Restoring a dump without tb", step by step, onto a
    // fresh cluster (its superuser comes from PGUSER instead of -U postgres).
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "--dir"])
        .arg(sb.path()));
    assert!(out.status.success());
    let fresh = Pg::start();
    let script = r#"
set -euo pipefail
f=$(ls toybox_*.sql.gz | grep -v '\.roles\.' | sort | tail -n 1)
stem=${f%.sql.gz}
jq -r '.files[] | "\(.sha256)  \(.name)"' "$stem.manifest.json" | sha256sum -c
gunzip -c "$stem.roles.sql.gz" | psql -d postgres >/dev/null 2>&1 || true
createdb -T template0 -E UTF8 toybox
gunzip -c "$f" | psql -v ON_ERROR_STOP=1 -d toybox >/dev/null
jq -r '.database.tables["public.posts"]' "$stem.manifest.json"
"#;
    let out = fresh
        .env(&mut Command::new("bash"))
        .arg("-c")
        .arg(script)
        .current_dir(sb.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(".sql.gz: OK") && text.contains(".roles.sql.gz: OK"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("500"), "{text}");
    assert_eq!(fingerprint(pg, "toybox"), fingerprint(&fresh, "toybox"));
}

#[test]
fn sigterm_while_stdin_is_silent_ends_cleanly_with_records() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let mut child = tb_dump(pg)
        .args(["--stdin", "--name", "toybox", "--dir"])
        .arg(sb.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"--\n-- PostgreSQL database dump\n--\n")
        .unwrap();
    let tb_pid = child.id();
    wait_for(10, "the temporary file", || {
        list_dir(sb.path())
            .iter()
            .any(|n| n.ends_with(&format!(".{tb_pid}")))
            .then_some(())
    });
    let started = std::time::Instant::now();
    signal(tb_pid, Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "a silent producer must not delay the exit"
    );
    assert_failed_cleanly(
        &out,
        sb.path(),
        &before,
        "interrupted",
        "interrupted by SIGTERM",
    );
}

#[test]
fn dir_and_output_together_is_a_usage_error() {
    let pg = Pg::shared();
    let out = run(tb_dump(pg).args(["--dir", "/tmp/x", "-o", "/tmp/y.sql.gz"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_file_where_the_directory_should_be_publishes_nothing() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    std::fs::write(sb.join("not-a-dir"), b"x").unwrap();
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "--dir"])
        .arg(sb.join("not-a-dir/db")));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        events(&records(&out.stdout), "error")[0]["cause"],
        "not_writable"
    );
    assert_eq!(std::fs::read(sb.join("not-a-dir")).unwrap(), b"x");
}

// Regression tests for what a hostile review found (see the issue notes).

#[test]
fn a_dangling_symlink_at_a_sibling_name_publishes_nothing() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    std::os::unix::fs::symlink("/nonexistent", sb.join("y.manifest.json")).unwrap();
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "-o"])
        .arg(sb.join("y.sql.gz")));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(events(&records(&out.stdout), "error")[0]["cause"], "exists");
    assert_eq!(
        list_dir(sb.path()),
        [".tb.lock", "y.manifest.json"],
        "no final name appeared"
    );
}

#[test]
fn sql_that_mentions_copy_or_the_trailer_still_backs_up_with_right_counts() {
    let pg = Pg::shared();
    pg.createdb("mentions_copy");
    pg.psql(
        "mentions_copy",
        r#"CREATE TABLE notes (id int PRIMARY KEY, body text);
           CREATE INDEX notes_body ON notes (body);
           COMMENT ON INDEX notes_body IS E'Load data with:\nCOPY notes FROM stdin;\nthen check.';
           CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $fn$ SELECT 'x' $fn$;
           CREATE FUNCTION g() RETURNS text LANGUAGE plpgsql AS $$
           BEGIN
           RETURN '
COPY zzz (a) FROM stdin;
--
-- PostgreSQL database dump complete
--
';
           END $$;
           INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 5) g;"#,
    );
    let sb = Sandbox::new();
    let out = run(tb_dump(pg)
        .args(["--dbname", "mentions_copy", "--dir"])
        .arg(sb.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(&out.stdout);
    let dump = PathBuf::from(written(&recs, "dump")["path"].as_str().unwrap());
    let m: Value =
        serde_json::from_slice(&std::fs::read(tb_shared::naming::manifest_path(&dump)).unwrap())
            .unwrap();
    assert_eq!(
        m["database"]["tables"],
        serde_json::json!({"public.notes": 5})
    );
    restore_with_psql(pg, &dump, "mentions_copy_restored");
    assert_eq!(
        fingerprint(pg, "mentions_copy"),
        fingerprint(pg, "mentions_copy_restored")
    );
}

#[test]
fn a_cut_stream_followed_by_a_whole_one_is_refused() {
    let pg = Pg::shared();
    let sql = plain_dump(pg, toybox());
    let text = String::from_utf8_lossy(&sql).into_owned();
    // Cut inside data, and cut in the schema: both glued to a whole dump.
    for cut in [
        text.find("\n1\t").unwrap() + 40,
        text.find("CREATE TABLE").unwrap(),
    ] {
        let mut glued = sql[..cut].to_vec();
        glued.extend_from_slice(&sql);
        let sb = Sandbox::new();
        let before = seed_earlier_backup(sb.path());
        let out = run_stdin(pg, &["--stdin", "--name", "glued"], sb.path(), &glued);
        assert_failed_cleanly(
            &out,
            sb.path(),
            &before,
            "incomplete",
            "not a complete pg_dump",
        );
    }
}

#[test]
fn passwords_in_uris_are_refused_before_anything_runs() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    for db in [
        "postgresql://tbsuper:TOPSECRET@127.0.0.1/toybox",
        "postgres://u:LEAK%ZZME@h/db",
        "host=h dbname=d password=TOPSECRET",
        "postgresql://h/db?password=TOPSECRET",
    ] {
        let out = run(tb_dump(pg)
            .args(["--dbname", db, "--name", "x", "--dir"])
            .arg(sb.path()));
        assert_eq!(out.status.code(), Some(2), "{db}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("PGPASSWORD"), "{all}");
        assert!(
            !all.contains("TOPSECRET") && !all.contains("LEAK"),
            "the password is echoed: {all}"
        );
        assert!(list_dir(sb.path()).is_empty(), "nothing ran");
    }
}

#[test]
fn roles_come_from_the_same_server_as_the_dump() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let conninfo = format!(
        "host={} port={} dbname={} user={}",
        pg.host,
        pg.port,
        toybox(),
        pg.user
    );
    let out = run(tb_dump(pg)
        .env("PGHOST", "/nonexistent")
        .args(["--dbname", &conninfo, "--name", "ci", "--dir"])
        .arg(sb.path()));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let roles = PathBuf::from(
        written(&records(&out.stdout), "roles")["path"]
            .as_str()
            .unwrap(),
    );
    assert!(
        String::from_utf8(gunzip(&roles))
            .unwrap()
            .contains("CREATE ROLE toybox_owner;")
    );
}

#[test]
fn a_table_locked_too_long_fails_with_lock_timeout() {
    let pg = Pg::shared();
    pg.createdb("held_lock");
    pg.psql("held_lock", "CREATE TABLE t (x int)");
    let mut holder = pg
        .env(&mut Command::new("psql"))
        .args(["-X", "-q", "-d", "held_lock"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut hin = holder.stdin.take().unwrap();
    writeln!(hin, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;").unwrap();
    wait_for(20, "the table lock", || {
        (pg.psql("held_lock", "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 't' AND l.granted AND l.mode = 'AccessExclusiveLock'").trim() == "1").then_some(())
    });
    let sb = Sandbox::new();
    let before = seed_earlier_backup(sb.path());
    let out = run(tb_dump(pg)
        .args(["--dbname", "held_lock", "--lock-wait-timeout", "1", "--dir"])
        .arg(sb.path()));
    drop(hin);
    let _ = holder.wait();
    assert_failed_cleanly(
        &out,
        sb.path(),
        &before,
        "lock_timeout",
        "kept a table locked",
    );
}

#[test]
fn names_kept_for_siblings_are_refused_as_output() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    for name in ["x.roles.sql.gz", "x.manifest.json"] {
        let out = run(tb_dump(pg)
            .args(["--dbname", toybox(), "-o"])
            .arg(sb.join(name)));
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("kept for the roles file or the manifest")
        );
    }
    assert!(list_dir(sb.path()).is_empty());
}

#[test]
fn output_names_that_are_not_utf8_keep_their_bytes_in_every_sibling() {
    use std::os::unix::ffi::OsStrExt;
    let pg = Pg::shared();
    let sb = Sandbox::new();
    let name = std::ffi::OsStr::from_bytes(b"a b\nc\xe9.sql.gz");
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "-o"])
        .arg(sb.join(name)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            b".tb.lock".to_vec(),
            b"a b\nc\xe9.manifest.json".to_vec(),
            b"a b\nc\xe9.roles.sql.gz".to_vec(),
            b"a b\nc\xe9.sql.gz".to_vec()
        ]
    );
}

#[test]
fn usage_errors_still_print_records() {
    let pg = Pg::shared();
    let out = run(tb_dump(pg).args(["--no-such-flag"]));
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    assert_eq!(events(&recs, "error")[0]["cause"], "bad_input");
    assert_eq!(summary(&recs)["status"], "failed");
}

#[test]
fn output_to_an_existing_device_takes_no_lock_there() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    std::os::unix::fs::symlink("/dev/null", sb.join("null.sql.gz")).unwrap();
    let out = run(tb_dump(pg)
        .args(["--dbname", toybox(), "-o"])
        .arg(sb.join("null.sql.gz")));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(list_dir(sb.path()), ["null.sql.gz"], "no lock file created");
}

#[test]
fn sigterm_while_waiting_for_the_lock_ends_cleanly_with_records() {
    let pg = Pg::shared();
    let sb = Sandbox::new();
    // Hold the directory's lock the way another run would.
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(sb.join(".tb.lock"))
        .unwrap();
    held.lock().unwrap();
    let child = tb_dump(pg)
        .args(["--dbname", toybox(), "--wait", "600", "--dir"])
        .arg(sb.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let started = std::time::Instant::now();
    signal(child.id(), Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    assert_eq!(events(&recs, "error")[0]["cause"], "interrupted");
    assert_eq!(summary(&recs)["status"], "failed");
    drop(held);
}
