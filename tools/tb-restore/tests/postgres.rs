//! A cold PostgreSQL data directory, archived by tb-voltar and restored by
//! tb-restore, starts again and holds the same rows: a real cluster, a real
//! server started on the restored copy, read back with psql.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use clap::Parser;
use serde_json::Value;
use tb_shared::record::Reporter;
use tb_testkit::{Pg, Sandbox, events, records, summary, tree_listing};

/// `tb-voltar ARGS`, in-process; returns (exit code, records).
fn voltar(args: &[&str]) -> (u8, Vec<Value>) {
    let mut argv = vec!["tb-voltar"];
    argv.extend_from_slice(args);
    let mut rep = Reporter::quiet("tb-voltar");
    let outcome = tb_voltar::run(tb_voltar::Args::parse_from(argv), &mut rep)
        .unwrap_or_else(|e| panic!("tb-voltar {args:?} failed: {e:#}"));
    (outcome.code, rep.records().to_vec())
}

fn tb_restore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-restore"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("TB_") {
            c.env_remove(&k);
        }
    }
    c.stdin(Stdio::null());
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Tables with rows: non-ASCII text (Latin, Cyrillic, CJK, an emoji), a
/// NULL, numerics, bytea with zero and 0xff bytes, a serial sequence, an
/// index, and one TOASTed 100 000-character value.
const SCHEMA_AND_ROWS: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text);
INSERT INTO customers VALUES
  (1, 'Zoë Ångström', 'Malmö'),
  (2, 'Јован Петровић', 'Београд'),
  (3, '田中 太郎', '東京'),
  (4, 'Ada 🐘', NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
                     total numeric(10,2) NOT NULL, note text, payload bytea);
CREATE INDEX orders_customer ON orders (customer_id);
INSERT INTO orders (customer_id, total, note, payload) VALUES
  (1, 12.50, 'crème brûlée ×2', '\\x00ff10'),
  (3, 3000.00, '寿司', NULL),
  (1, 0.99, NULL, '\\x');
CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO notes VALUES (1, repeat('ü', 100000));
";

const CUSTOMERS: &str = "SELECT id, name, coalesce(city, '<null>') FROM customers ORDER BY id";
const CUSTOMER_ROWS: &str = "1|Zoë Ångström|Malmö\n\
                             2|Јован Петровић|Београд\n\
                             3|田中 太郎|東京\n\
                             4|Ada 🐘|<null>\n";
const ORDERS: &str = "SELECT id, customer_id, total, coalesce(note, '<null>'), \
                      coalesce(encode(payload, 'hex'), '<null>') FROM orders ORDER BY id";
const ORDER_ROWS: &str = "1|1|12.50|crème brûlée ×2|00ff10\n\
                          2|3|3000.00|寿司|<null>\n\
                          3|1|0.99|<null>|\n";
const NOTES: &str = "SELECT id, length(body), octet_length(body), md5(body), \
                     body = repeat('ü', 100000) FROM notes ORDER BY id";

#[test]
fn a_cold_postgres_data_directory_restores_and_starts() {
    let pg = Pg::start();
    pg.createdb("shop");
    pg.psql("shop", SCHEMA_AND_ROWS);
    assert_eq!(pg.psql("shop", CUSTOMERS), CUSTOMER_ROWS);
    assert_eq!(pg.psql("shop", ORDERS), ORDER_ROWS);
    let notes = pg.psql("shop", NOTES);
    assert!(notes.starts_with("1|100000|200000|"), "{notes}");
    assert!(notes.ends_with("|t\n"), "{notes}");
    let original = pg.data_dir();
    pg.stop_clean();
    assert!(
        !original.join("postmaster.pid").exists(),
        "the cluster is stopped"
    );
    let orig_meta = std::fs::metadata(&original).unwrap();
    assert_eq!(orig_meta.mode() & 0o7777, 0o700, "initdb makes PGDATA 0700");
    let original_tree = tree_listing(&original);

    // Archive the cold data directory.
    let sb = Sandbox::new();
    // The server on the restored copy runs as the data directory's owner
    // (postgres when root): it must reach the sandbox.
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let backups = sb.join("backups");
    let (code, recs) = voltar(&[
        "--source",
        original.to_str().unwrap(),
        "--name",
        "postgres_data",
        "--dir",
        backups.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{recs:#?}");
    assert!(events(&recs, "warning").is_empty(), "{recs:#?}");
    let vol = events(&recs, "written")
        .into_iter()
        .find(|r| r["kind"] == "volume")
        .unwrap()
        .clone();
    assert_eq!(vol["consistent"], true, "a cold cluster is consistent");
    let archive = PathBuf::from(vol["path"].as_str().unwrap());
    let name = archive.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("postgres_data_") && name.ends_with(".tar.gz"),
        "{name}"
    );

    // Restore it into a fresh directory.
    let base = sb.join("restored");
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = base.join("data");
    let out = tb_restore()
        .arg(&archive)
        .arg("--target")
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recs = records(&out.stdout);
    let restored = events(&recs, "restored");
    assert_eq!(restored.len(), 1, "{recs:#?}");
    let r = restored[0];
    assert_eq!(r["kind"], "volume");
    assert_eq!(r["path"], archive.to_str().unwrap());
    assert_eq!(r["target"], target.to_str().unwrap());
    assert_eq!(r["entries"], vol["entries"]);
    assert_eq!(r["files"], vol["files"]);
    assert_eq!(r["file_bytes"], vol["file_bytes"]);
    assert_eq!(r["sha256"], vol["sha256"]);
    assert_eq!(r["checked"], "index");
    assert!(events(&recs, "warning").is_empty(), "{recs:#?}");
    assert_eq!(summary(&recs)["status"], "ok");

    // PostgreSQL refuses a data directory that is not 0700 (or 0750) or not
    // owned by the user it runs as.
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700, "restored PGDATA mode");
    assert_eq!(meta.uid(), orig_meta.uid(), "restored PGDATA owner");
    assert_eq!(meta.gid(), orig_meta.gid(), "restored PGDATA group");
    // Every file, mode, owner and mtime as it was.
    assert_eq!(tree_listing(&target), original_tree);
    assert_eq!(
        tb_testkit::list_dir(&base),
        ["data"],
        "no temporary directory left beside the target"
    );

    // Start a server on the restored copy and read the rows back.
    let copy = Pg::start_existing(&base, &pg.bindir, &pg.user);
    assert_eq!(copy.psql("shop", CUSTOMERS), CUSTOMER_ROWS);
    assert_eq!(copy.psql("shop", ORDERS), ORDER_ROWS);
    assert_eq!(copy.psql("shop", NOTES), notes);
    // The sequence kept its state and the cluster takes writes.
    assert_eq!(
        copy.psql(
            "shop",
            "INSERT INTO orders (customer_id, total, note) VALUES (2, 7.00, 'ćevapi') RETURNING id"
        ),
        "4\n"
    );
    assert_eq!(
        copy.psql("shop", "SELECT note FROM orders WHERE id = 4"),
        "ćevapi\n"
    );
    // A cold copy: no crash recovery was needed.
    let log = std::fs::read_to_string(base.join("server.log")).unwrap();
    assert!(log.contains("database system was shut down at"), "{log}");
    assert!(!log.contains("not properly shut down"), "{log}");
    assert!(!log.contains("automatic recovery"), "{log}");
}
