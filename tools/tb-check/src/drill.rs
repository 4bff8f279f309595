//! `tb-check drill`: the monthly restore test. Backups that are never
//! restored are hopes, not backups.
//!
//! The newest dump under the root is restored into a scratch database
//! (created and dropped by the drill), its row counts checked against the
//! manifest and the user's own checks run (`--sql FILE`: queries that must
//! return true); the newest full volume archive and the newest chain point
//! of each label are restored into scratch directories, every entry
//! compared with the archive's index or the point's listing on the way (as
//! `tb-restore` does). One record per check, with the measured restore time
//! (the real RTO); the scratch copies are removed, also on failure or
//! interruption.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use tb_shared::catalog::{self, Backup};
use tb_shared::exit::{Health, Outcome};
use tb_shared::naming::Kind;
use tb_shared::record::{Record, Reporter};
use tb_shared::signals;

/// Options of `tb-check drill`.
#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// The backup root
    #[arg(default_value = "/backup/toybox")]
    pub root: PathBuf,

    /// A file of SQL checks run in the restored database: one query per
    /// line (`--` comments and blank lines skipped), each must return true
    #[arg(long, value_name = "FILE")]
    pub sql: Vec<PathBuf>,

    /// Where the scratch directories go [default: the temporary directory]
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,

    /// Skip the volume archives and chains (restore the dump only)
    #[arg(long)]
    pub dump_only: bool,

    /// Restore the dump into a throwaway PostgreSQL cluster the drill starts
    /// itself (initdb in the scratch directory; the newest server installed)
    /// and removes after, instead of a scratch database on a running server
    #[arg(long, conflicts_with_all = ["host", "port", "username", "container"])]
    pub scratch_cluster: bool,

    /// The server for the scratch database: host or socket directory (else PGHOST)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,

    /// … its port (else PGPORT)
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<String>,

    /// … the user (else PGUSER; the password from PGPASSWORD or ~/.pgpass)
    #[arg(short = 'U', long, value_name = "USER")]
    pub username: Option<String>,

    /// … or psql inside this container (docker exec -i)
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
}

/// The outcome of one restore, from its records.
struct Ran {
    ok: bool,
    reason: Option<String>,
    records: Vec<serde_json::Value>,
}

fn run_restore(argv: Vec<String>) -> Ran {
    let mut rep = Reporter::quiet("tb-restore");
    let parsed = tb_restore::Args::try_parse_from(&argv);
    let result = match parsed {
        Ok(a) => tb_restore::run(a, &mut rep),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    match result {
        Ok(o) => Ran {
            ok: o.code <= 1,
            reason: None,
            records: rep.records().to_vec(),
        },
        Err(e) => Ran {
            ok: false,
            reason: Some(format!("{e:#}")),
            records: rep.records().to_vec(),
        },
    }
}

fn newest(backups: &[Backup], pick: impl Fn(&Backup) -> bool) -> BTreeMap<String, &Backup> {
    let mut out: BTreeMap<String, &Backup> = BTreeMap::new();
    for b in backups.iter().filter(|b| pick(b)) {
        let e = out.entry(b.label.clone()).or_insert(b);
        if b.time > e.time {
            *e = b;
        }
    }
    out
}

fn conn_args(a: &DrillArgs) -> Vec<String> {
    let mut v = Vec::new();
    for (flag, val) in [
        ("--host", &a.host),
        ("--port", &a.port),
        ("--username", &a.username),
        ("--container", &a.container),
    ] {
        if let Some(x) = val {
            v.push(flag.to_string());
            v.push(x.clone());
        }
    }
    v
}

fn drill_record(check: &str, b: &Backup, ok: bool, ms: u64) -> Record {
    b.record("drill")
        .with("check", check)
        .with("ok", ok)
        .with("restore_ms", ms)
}

/// The user's checks: one query per line.
fn sql_checks(files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --sql '{}'", f.display()))?;
        for l in text.lines() {
            let q = l.trim();
            if q.is_empty() || q.starts_with("--") {
                continue;
            }
            out.push((f.display().to_string(), q.trim_end_matches(';').to_string()));
        }
    }
    Ok(out)
}

/// Run `tb-check drill`.
pub fn drill(a: &DrillArgs, rep: &mut Reporter) -> Result<Outcome> {
    let clock = Instant::now();
    let checks = sql_checks(&a.sql)?;
    let cat = catalog::scan(&a.root, false)
        .with_context(|| format!("cannot read the backup root '{}'", a.root.display()))?;
    let mut health = Health::Ok;
    let worst = |h: Health, health: &mut Health| *health = health.worst(h);
    let scratch_root = a.scratch.clone().unwrap_or_else(std::env::temp_dir);

    // The newest dump of each database label.
    let dumps = newest(&cat.backups, |b| b.kind == Kind::Dump);
    let cluster = if a.scratch_cluster && !dumps.is_empty() {
        let c = ScratchCluster::start(&scratch_root)
            .context("cannot start the scratch PostgreSQL cluster (--scratch-cluster)")?;
        rep.emit(
            Record::new("drill")
                .with("check", "cluster")
                .with("ok", true)
                .with("server", c.bindir.display().to_string())
                .with("start_ms", c.start_ms),
        );
        Some(c)
    } else {
        None
    };
    let a = &match &cluster {
        Some(c) => DrillArgs {
            host: Some(c.sock.display().to_string()),
            port: Some("5432".into()),
            username: Some("tbdrill".into()),
            ..a.clone()
        },
        None => a.clone(),
    };
    if dumps.is_empty() {
        rep.warn(
            &format!(
                "no dump under '{}': nothing to drill for the database",
                a.root.display()
            ),
            Record::new("warning").with("check", "dump"),
        );
        worst(Health::Warning, &mut health);
    }
    for (label, b) in &dumps {
        signals::check()?;
        let db = format!(
            "tb_drill_{}_{}",
            label
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(30)
                .collect::<String>(),
            std::process::id()
        );
        let mut argv = vec![
            "tb-restore".to_string(),
            b.path.display().to_string(),
            "--dbname".into(),
            db.clone(),
        ];
        argv.extend(conn_args(a));
        if a.scratch_cluster {
            // A fresh cluster has none of the dump's roles.
            argv.push("--with-roles".into());
        }
        let started = Instant::now();
        let ran = run_restore(argv);
        let ms = started.elapsed().as_millis() as u64;
        let mut r = drill_record("dump", b, ran.ok, ms).with("dbname", &db);
        let tables = ran.records.iter().filter(|x| x["event"] == "table").count();
        r.set("tables", tables);
        if let Some(x) = ran
            .records
            .iter()
            .find(|x| x["event"] == "restored" && x["kind"] == "dump")
        {
            r.set("rows", x["rows"].clone());
        }
        if let Some(why) = &ran.reason {
            r.set("reason", why);
        }
        rep.emit(r);
        if !ran.ok {
            eprintln!(
                "tb-check: drill: the dump '{}' did not restore: {}",
                b.path.display(),
                ran.reason.clone().unwrap_or_default()
            );
            worst(Health::Critical, &mut health);
            continue;
        }
        // The user's checks, then the scratch database goes.
        let conn = tb_shared::pg::Conn {
            host: a.host.clone(),
            port: a.port.clone(),
            username: a.username.clone(),
            container: a.container.clone(),
            docker: "docker".into(),
        };
        for (file, q) in &checks {
            let got = psql(&conn, &db, &format!("SELECT ({q})::boolean;"));
            let ok = matches!(got.as_deref(), Ok("t"));
            let mut r = Record::new("drill")
                .with("check", "sql")
                .with("label", &b.label)
                .with("dbname", &db)
                .with("file", file)
                .with("query", q)
                .with("ok", ok);
            let why = match &got {
                Ok(v) => {
                    r.set("result", v);
                    format!("it returned {v:?}, not true")
                }
                Err(e) => {
                    r.set("reason", format!("{e:#}"));
                    format!("{e:#}")
                }
            };
            rep.emit(r);
            if !ok {
                eprintln!(
                    "tb-check: drill: check failed in {file} on the restored dump of '{}': {q}: {why}",
                    b.label
                );
                worst(Health::Critical, &mut health);
            }
        }
        if let Err(e) = psql(
            &conn,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {};", tb_restore::quote_ident(&db)),
        ) {
            rep.warn(
                &format!(
                    "the scratch database '{db}' could not be dropped ({e:#}): drop it by hand"
                ),
                Record::new("warning").with("dbname", &db),
            );
        }
    }

    if !a.dump_only {
        let mut targets: Vec<(&str, &Backup)> = Vec::new();
        for b in newest(&cat.backups, |b| b.kind == Kind::Volume).into_values() {
            targets.push(("volume", b));
        }
        for b in newest(&cat.backups, |b| {
            matches!(b.kind, Kind::ChainBase | Kind::ChainIncr)
        })
        .into_values()
        {
            targets.push(("chain", b));
        }
        for (check, b) in targets {
            signals::check()?;
            let dir = scratch_root.join(format!(
                "{}drill.{}.{}.{}",
                tb_shared::naming::TEMP_PREFIX,
                check,
                b.label,
                std::process::id()
            ));
            signals::track_temp(&dir);
            let argv = vec![
                "tb-restore".to_string(),
                b.path.display().to_string(),
                "--target".into(),
                dir.display().to_string(),
            ];
            let started = Instant::now();
            let ran = run_restore(argv);
            let ms = started.elapsed().as_millis() as u64;
            let mut r = drill_record(check, b, ran.ok, ms);
            if let Some(x) = ran.records.iter().find(|x| x["event"] == "restored") {
                for k in ["entries", "file_bytes", "checked"] {
                    r.set(k, x[k].clone());
                }
            }
            if let Some(why) = &ran.reason {
                r.set("reason", why);
            }
            rep.emit(r);
            if !ran.ok {
                eprintln!(
                    "tb-check: drill: '{}' did not restore: {}",
                    b.path.display(),
                    ran.reason.clone().unwrap_or_default()
                );
                worst(Health::Critical, &mut health);
            }
            remove_scratch(&dir);
            signals::untrack_temp(&dir);
        }
    }
    rep.summary_field("root", tb_shared::record::path_value(&a.root));
    rep.summary_field("duration_ms_total", clock.elapsed().as_millis() as u64);
    if rep.warnings() > 0 {
        health = health.worst(Health::Warning);
    }
    Ok(Outcome::health(health))
}

/// A throwaway cluster: initdb in a private directory, a unix socket only,
/// stopped and removed on drop (also when the drill fails).
struct ScratchCluster {
    dir: PathBuf,
    sock: PathBuf,
    bindir: PathBuf,
    owner: Option<String>,
    start_ms: u64,
}

/// The newest server installed: `/usr/lib/postgresql/N/bin`, else the
/// directory of `initdb` on PATH.
fn server_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let v: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    if let Some((_, d)) = dirs.pop() {
        return Some(d);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
    })
}

impl ScratchCluster {
    fn start(scratch: &Path) -> Result<ScratchCluster> {
        let started = Instant::now();
        let bindir = server_bindir().context(
            "no PostgreSQL server is installed (initdb, pg_ctl): apt-get install -y postgresql",
        )?;
        let dir = scratch.join(format!(
            "{}drill-cluster.{}",
            tb_shared::naming::TEMP_PREFIX,
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("sock"))
            .with_context(|| format!("cannot create '{}'", dir.display()))?;
        signals::track_temp(&dir);
        // PostgreSQL refuses to run as root: as root, the postgres user runs it.
        let owner = nix::unistd::geteuid().is_root().then(|| {
            if nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .is_some()
            {
                "postgres".to_string()
            } else {
                "nobody".to_string()
            }
        });
        let mut c = ScratchCluster {
            sock: dir.join("sock"),
            dir,
            bindir,
            owner,
            start_ms: 0,
        };
        if let Some(o) = &c.owner {
            let ok = std::process::Command::new("chown")
                .args(["-R", o])
                .arg(&c.dir)
                .status()
                .is_ok_and(|s| s.success());
            anyhow::ensure!(ok, "cannot give '{}' to the user {o}", c.dir.display());
        }
        let data = c.dir.join("data");
        c.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "tbdrill".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--auth=trust".as_ref(),
            ],
        )?;
        let opts = format!(
            "-k {} -p 5432 -c listen_addresses='' -c fsync=off",
            c.sock.display()
        );
        let log = c.dir.join("server.log");
        c.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        )?;
        c.start_ms = started.elapsed().as_millis() as u64;
        Ok(c)
    }

    fn run(&self, prog: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
        let bin = self.bindir.join(prog);
        let mut cmd = match &self.owner {
            Some(o) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", o, "--"]).arg(&bin);
                c
            }
            None => std::process::Command::new(&bin),
        };
        let out = cmd
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "{prog} failed: {}",
            tb_shared::record::one_line(&String::from_utf8_lossy(&out.stderr))
        );
        Ok(())
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        remove_scratch(&self.dir);
        signals::untrack_temp(&self.dir);
    }
}

fn remove_scratch(dir: &Path) {
    tb_shared::extract::make_writable(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// Run SQL in `db` (tb-restore's psql runner); the trimmed output.
fn psql(conn: &tb_shared::pg::Conn, db: &str, sql: &str) -> Result<String> {
    tb_restore::psql(conn, db, sql).map(|s| s.trim().to_string())
}
