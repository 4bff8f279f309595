//! tb-dump --container against a real PostgreSQL server running in a real
//! Docker container (the image is built locally, see tb-testkit::docker).
//! SKIPs without an engine, except under TB_REQUIRE_DOCKER=1 (CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tb_testkit::docker::{Container, Volume, docker_or_skip};
use tb_testkit::{Pg, Sandbox, events, fingerprint, list_dir, records, restore_with_psql, summary};

const PASSWORD: &str = "s3cret-in-env-only";

fn tb_dump() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-dump"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("PG") || k.starts_with("TB_") {
            c.env_remove(&k);
        }
    }
    c
}

/// Every process's command line that mentions `needle`.
fn argv_containing(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                hits.push(cmd);
            }
        }
    }
    hits
}

#[test]
fn container_dump_uses_the_containers_pg_dump_and_restores_identically() {
    if !docker_or_skip("container_dump_uses_the_containers_pg_dump_and_restores_identically") {
        return;
    }
    let vol = Volume::create("pgdata");
    let db = Container::postgres(&vol.name, PASSWORD);
    let env = [format!("PGPASSWORD={PASSWORD}")];
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    db.exec_ok(&env, &["createdb", "toybox"]);
    let out = db.exec_with_input(
        &env,
        &["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "toybox"],
        &tb_testkit::fixture("toybox.sql"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Enough rows that the docker exec process lives a while.
    db.exec_ok(&env, &["psql", "-X", "-q", "-d", "toybox", "-c", "INSERT INTO sessions SELECT md5(g::text)||g, 1, '{}', now() FROM generate_series(1, 300000) g"]);

    let sb = Sandbox::new();
    let child = tb_dump()
        .env("PGPASSWORD", PASSWORD)
        .args(["--container", &db.name, "--dbname", "toybox", "--dir"])
        .arg(sb.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs: the docker CLI is called with `exec -i -e PGPASSWORD`,
    // never with the value and never with -t.
    let mut saw_exec = Vec::new();
    let tb_pid = child.id();
    loop {
        for a in argv_containing(&format!("exec -i -e PGPASSWORD {}", db.name)) {
            saw_exec.push(a);
        }
        assert!(
            argv_containing(PASSWORD).is_empty(),
            "the password is in a process list"
        );
        if !std::path::Path::new(&format!("/proc/{tb_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{tb_pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !saw_exec.is_empty(),
        "docker exec -i -e PGPASSWORD was never seen"
    );
    assert!(
        saw_exec
            .iter()
            .all(|a| !a.contains(" -t ") && !a.contains(" -it ")),
        "{saw_exec:?}"
    );

    let recs = records(&out.stdout);
    let written: Vec<_> = events(&recs, "written");
    let dump = PathBuf::from(
        written.iter().find(|r| r["kind"] == "dump").unwrap()["path"]
            .as_str()
            .unwrap(),
    );
    assert!(written.iter().any(|r| r["kind"] == "roles"));
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dump.with_file_name(
                dump.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .replace(".sql.gz", ".manifest.json"),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(m["database"]["container"], db.name.as_str());
    assert_eq!(m["database"]["tables"]["public.sessions"], 300300);

    // Restore with plain gunzip | psql on a host cluster: same contents as
    // the container's database (compared with the same queries there).
    // Roles first, as the README says (existing roles fail harmlessly).
    let pg = Pg::shared();
    let roles = PathBuf::from(
        written.iter().find(|r| r["kind"] == "roles").unwrap()["path"]
            .as_str()
            .unwrap(),
    );
    let st = pg
        .env(&mut Command::new("bash"))
        .arg("-c")
        .arg(format!(
            "gunzip -c '{}' | psql -X -q -d postgres >/dev/null 2>&1",
            roles.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    restore_with_psql(pg, &dump, "from_container");
    let restored = fingerprint(pg, "from_container");
    assert!(
        restored.contains("== table public.sessions (300300 rows)"),
        "{}",
        &restored[..200]
    );
    let users_in_container = db.exec_ok(
        &env,
        &[
            "psql",
            "-X",
            "-At",
            "-d",
            "toybox",
            "-c",
            "COPY (SELECT * FROM users x ORDER BY x::text) TO STDOUT",
        ],
    );
    assert!(
        restored.contains(&users_in_container),
        "users rows equal the container's"
    );
}

#[test]
fn container_wrong_password_and_missing_container_publish_nothing() {
    if !docker_or_skip("container_wrong_password_and_missing_container_publish_nothing") {
        return;
    }
    let vol = Volume::create("pgdata");
    let db = Container::postgres(&vol.name, PASSWORD);
    let sb = Sandbox::new();
    let out = tb_dump()
        .env("PGPASSWORD", "not-the-password")
        .args(["--container", &db.name, "--dbname", "postgres", "--dir"])
        .arg(sb.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    assert_eq!(events(&recs, "error")[0]["cause"], "wrong_password");
    assert_eq!(summary(&recs)["status"], "failed");
    assert_eq!(list_dir(sb.path()), [".tb.lock"], "nothing published");

    let out = tb_dump()
        .args([
            "--container",
            "tbtest-no-such-container",
            "--dbname",
            "postgres",
            "--dir",
        ])
        .arg(sb.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let recs = records(&out.stdout);
    assert_eq!(events(&recs, "error")[0]["cause"], "not_found");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no container named 'tbtest-no-such-container'")
    );
    assert_eq!(list_dir(sb.path()), [".tb.lock"]);
}
