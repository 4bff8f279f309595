//! Generating the TOYBOX-like databases, deterministically.
//!
//! The SQL lives in `sql/`: `setup.sql` (tables and text generators),
//! `gen_a.sql` and `gen_b.sql` (two sessions run side by side, one per
//! core, each table from its own `setseed`), `finalize.sql` (keys, indexes,
//! sequences, and last a `bench_meta` row that marks the database complete).
//! The marker holds a fingerprint of the SQL and the row counts, so a
//! database made by another version of the generator, or cut short, is
//! made again.

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::Cluster;

const SETUP_SQL: &str = include_str!("sql/setup.sql");
const GEN_A_SQL: &str = include_str!("sql/gen_a.sql");
const GEN_B_SQL: &str = include_str!("sql/gen_b.sql");
const FINALIZE_SQL: &str = include_str!("sql/finalize.sql");

/// Rows of each table at scale 1.0, which makes about 270 MB of plain SQL.
const ROWS_AT_SCALE_1: [(&str, f64); 7] = [
    ("users", 60_000.0),
    ("posts", 250_000.0),
    ("comments", 600_000.0),
    ("likes", 1_200_000.0),
    ("cards", 20_000.0),
    ("titles", 30_000.0),
    ("sessions", 75_000.0),
];

/// One database to generate.
#[derive(Debug, Clone, Copy)]
pub struct DbSpec {
    /// Database name.
    pub name: &'static str,
    /// Size factor applied to [`ROWS_AT_SCALE_1`].
    pub scale: f64,
}

impl DbSpec {
    /// Row count of every table, as psql variables (`users` → 57000, ...).
    pub fn rows(&self) -> Vec<(&'static str, u64)> {
        ROWS_AT_SCALE_1
            .iter()
            .map(|(t, n)| (*t, (n * self.scale).round() as u64))
            .collect()
    }

    /// The marker a complete database holds in `bench_meta`: a fingerprint
    /// of the generator's SQL, and the row counts.
    pub fn marker(&self) -> String {
        let sql = [SETUP_SQL, GEN_A_SQL, GEN_B_SQL, FINALIZE_SQL].concat();
        let rows: Vec<String> = self
            .rows()
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect();
        format!(
            "toybox-bench sql:{:016x} {}",
            fnv1a64(sql.as_bytes()),
            rows.join(" ")
        )
    }
}

/// True when `db` exists and holds the marker of `spec`.
pub fn is_ready(cluster: &Cluster, spec: &DbSpec) -> bool {
    let exists = cluster
        .query(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{}'",
                spec.name
            ),
        )
        .map(|n| n == "1")
        .unwrap_or(false);
    exists
        && cluster
            .query(spec.name, "SELECT value FROM bench_meta WHERE key = 'spec'")
            .is_ok_and(|v| v == spec.marker())
}

/// (Re)create `spec.name` and fill it; returns how long it took.
pub fn generate(cluster: &Cluster, spec: &DbSpec) -> Result<Duration> {
    let start = Instant::now();
    let db = spec.name;
    cluster.query("postgres", &format!("DROP DATABASE IF EXISTS {db}"))?;
    cluster.query(
        "postgres",
        &format!("CREATE DATABASE {db} TEMPLATE template0 ENCODING 'UTF8'"),
    )?;
    let rows = spec.rows();
    run_script(cluster, db, "setup.sql", SETUP_SQL, &[])?;
    // Two sessions at once: PostgreSQL runs each on its own core.
    let a = spawn_script(cluster, db, "gen_a.sql", GEN_A_SQL, &rows)?;
    let b = spawn_script(cluster, db, "gen_b.sql", GEN_B_SQL, &rows)?;
    let result_a = finish_script(a, db, "gen_a.sql");
    let result_b = finish_script(b, db, "gen_b.sql");
    result_a?;
    result_b?;
    let marker = spec.marker();
    let mut finalize = cluster.psql(db);
    finalize.arg("-v").arg(format!("spec={marker}"));
    let child = feed(finalize, db, "finalize.sql", FINALIZE_SQL)?;
    finish_script(child, db, "finalize.sql")?;
    Ok(start.elapsed())
}

/// Run one SQL script on `db` to the end.
fn run_script(
    cluster: &Cluster,
    db: &str,
    name: &str,
    sql: &str,
    vars: &[(&str, u64)],
) -> Result<()> {
    let child = spawn_script(cluster, db, name, sql, vars)?;
    finish_script(child, db, name)
}

/// Start psql on `db` with `vars` as psql variables, feeding it `sql`.
fn spawn_script(
    cluster: &Cluster,
    db: &str,
    name: &str,
    sql: &str,
    vars: &[(&str, u64)],
) -> Result<Child> {
    let mut cmd = cluster.psql(db);
    for (k, v) in vars {
        cmd.arg("-v").arg(format!("{k}={v}"));
    }
    feed(cmd, db, name, sql)
}

/// Spawn the psql `cmd` reading the script from stdin, write `sql` to it.
fn feed(mut cmd: std::process::Command, db: &str, name: &str, sql: &str) -> Result<Child> {
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run psql for {name} on {db}"))?;
    let mut stdin = child.stdin.take().context("psql has no stdin")?;
    stdin
        .write_all(sql.as_bytes())
        .with_context(|| format!("cannot send {name} to psql"))?;
    drop(stdin);
    Ok(child)
}

/// Wait for a script's psql; its stderr in the error when it failed.
fn finish_script(child: Child, db: &str, name: &str) -> Result<()> {
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for psql running {name}"))?;
    if !out.status.success() {
        bail!(
            "{name} failed on {db}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// FNV-1a, 64 bits: a stable fingerprint (std's hashers may change).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn marker_names_the_row_counts() {
        let m = DbSpec {
            name: "x",
            scale: 2.0,
        }
        .marker();
        assert!(m.contains("posts=500000"), "{m}");
        assert!(m.starts_with("toybox-bench sql:"), "{m}");
    }
}
