//! The `restore` benchmark: `tb-restore` of a tb-dump `.sql.gz` against
//! the README's recipe (`createdb` + `gunzip -c | psql`), and the restore
//! of one small table out of the same dump.
//!
//! Steps: build the tools (release), start the `dump` benchmark's cluster,
//! generate its big database when it is missing or stale (as `dump` does),
//! make one tb-dump of it (default settings) into `$TB_BENCH_DIR/restore`,
//! kept for later runs while the database is the same one (same generator
//! marker, same database OID; `--fresh` makes it again), then, each command
//! `--repeat` times (median), each into a freshly dropped database, on a
//! quiet server: the database restored before is counted and dropped
//! first (else autovacuum works on its new tables during the next
//! restore: it doubled the second restore's time), then a `CHECKPOINT`
//! and a `sync` (the write-back of the previous restore is not charged to
//! the next), and no autovacuum worker may be running:
//!
//! 1. `tb-restore DUMP --dbname r_tb` (two psql sessions load the data,
//!    the default), the standard recipe into `r_std`, and `tb-restore
//!    --jobs 1` (one session, for comparison, no target), in an order that
//!    rotates from round to round; the row count of every table of the
//!    databases (counted right after each restore) is compared with the
//!    others' and with the manifest's;
//! 2. `tb-restore DUMP --table public.cards --dbname r_one` (the smallest
//!    table but the marker: 86,000 of 9.6 million rows); its row count is
//!    checked.
//!
//! tb-restore's records say where its time goes: the `check` records are
//! stamped as each preflight check ends (the first, `verify`, after the
//! full pass over the file), the `step` record gives the psql duration.
//! The restore databases are dropped at the end, on error too. The
//! page cache is not dropped (that needs root): both sides read the same
//! warm file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::common::{self, BUSY_WARNING, busy_share, free_space, remove_dir};
use crate::generate::{self, DbSpec};
use crate::measure::{self, Run, Usage, median, median_usage};
use crate::report::{Table, bytes, mib, ratio, secs};
use crate::{RestoreOptions, bench_dir};

/// The database dumped and restored: the `dump` benchmark's big one (the
/// same name and scale as there, so that both benchmarks reuse it).
const BIG: DbSpec = DbSpec {
    name: "toybox_big",
    scale: 4.3,
};
/// The table restored alone: small (86,000 rows, about 19 MB in the
/// database), with a foreign key to `users` that is left out.
const SINGLE_TABLE: &str = "public.cards";
/// The databases restored into (dropped before each run and at the end).
const TB_DB: &str = "r_tb";
const STD_DB: &str = "r_std";
const ONE_DB: &str = "r_one";
/// The standard recipe (README, "Restoring by hand"): `$1` the dump, `$2`
/// the new database.
const STD_SCRIPT: &str = "set -o pipefail; createdb -T template0 -E UTF8 \"$2\" && gunzip -c \"$1\" | psql -X -q -v ON_ERROR_STOP=1 -d \"$2\" >/dev/null";
/// Target: tb-restore wall time at most this times the recipe's.
const FULL_WALL_FACTOR_MAX: f64 = 1.10;
/// Target: the single-table restore at most this times the full one.
const SINGLE_WALL_FACTOR_MAX: f64 = 0.20;

/// The binaries under test.
struct Tools {
    tb_dump: PathBuf,
    tb_restore: PathBuf,
}

/// The dump that is restored.
#[derive(Debug)]
struct Dump {
    /// The `.sql.gz`.
    path: PathBuf,
    /// Its size.
    gz_bytes: u64,
    /// The plain SQL it holds.
    raw_bytes: u64,
    /// Row count of every table, from its manifest.
    tables: BTreeMap<String, u64>,
    /// How long tb-dump took, when it was made in this run.
    made_in: Option<Duration>,
}

impl Dump {
    /// All rows of the dump.
    fn rows(&self) -> u64 {
        self.tables.values().sum()
    }
}

/// Where one tb-restore run spent its time, from its records.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Phases {
    /// From the start to the `verify` check: the full pass over the file
    /// (with `--table`: the extraction, in the same pass).
    verify: Duration,
    /// The other preflight checks: version, target, roles, extensions.
    checks: Duration,
    /// psql, from the `step` record.
    psql: Duration,
    /// Between the checks and the `step` record, less psql: creating the
    /// temporary database (and dropping stale ones), counting the rows.
    create_and_count: Duration,
    /// From the `step` record to the summary: the rename, the records.
    finish: Duration,
    /// tb-restore's own `duration_ms`.
    total: Duration,
}

/// What tb-restore reported on stdout.
#[derive(Debug, Default, PartialEq)]
struct RestoreRecords {
    /// `max_rss_bytes` of the summary.
    max_rss_bytes: Option<u64>,
    /// `rows` of the `restored` record.
    rows: Option<u64>,
    /// The split of its time, when every record needed was there.
    phases: Option<Phases>,
    /// Messages of `warning` records.
    warnings: Vec<String>,
}

/// One measured tb-restore run.
#[derive(Debug, Clone, Copy, Default)]
struct TbRun {
    usage: Usage,
    own_rss: u64,
    phases: Option<Phases>,
    load: Load,
}

/// What else the CPUs did while a command was measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Load {
    /// CPU time of the PostgreSQL server's processes.
    server_cpu: Option<Duration>,
    /// Share of all CPUs' time busy with neither the measured process tree
    /// nor the server: other work, which skews the times.
    other: Option<f64>,
}

/// Everything measured.
#[derive(Debug, Default)]
struct Results {
    /// Share of the CPUs busy with other work just before measuring.
    busy_before: Option<f64>,
    /// tb-restore, the whole dump (median run).
    tb: TbRun,
    /// The standard recipe.
    std: Usage,
    /// What else the CPUs did during it (median server CPU, largest other
    /// share over the runs).
    std_load: Load,
    /// tb-restore --jobs 1: the dump in one psql session (median run).
    serial: TbRun,
    /// tb-restore --table (median run).
    one: TbRun,
    /// tb-restore's wall time over the recipe's, round by round.
    pair_ratios: Vec<f64>,
    /// Row counts of the last runs' databases.
    tb_counts: BTreeMap<String, u64>,
    serial_counts: BTreeMap<String, u64>,
    std_counts: BTreeMap<String, u64>,
    one_counts: BTreeMap<String, u64>,
}

/// The machine and the software versions, for the report header.
struct Machine {
    nproc: usize,
    cpu: String,
    server: String,
    psql: String,
    gzip: String,
}

/// Run the `restore` benchmark; true when every target is met.
pub fn run(opts: &RestoreOptions) -> Result<bool> {
    let run_start = Instant::now();
    let tools = build_tools()?;
    let bench = bench_dir();
    fs::create_dir_all(&bench)
        .with_context(|| format!("cannot create the bench directory '{}'", bench.display()))?;
    progress!(
        "work directory {} ({} free)",
        bench.display(),
        free_space(&bench)
    );

    // Never `fresh` here: that would empty the whole cluster, the `dump`
    // benchmark's small database too.
    let mut cluster = Cluster::start(&bench.join("pg"), false)?;
    let generation = if generate::is_ready(&cluster, &BIG) {
        progress!("{}: reusing the generated database", BIG.name);
        None
    } else {
        progress!("{}: generating (scale {})...", BIG.name, BIG.scale);
        let took = generate::generate(&cluster, &BIG)?;
        progress!("{}: generated in {}", BIG.name, secs(took));
        Some(took)
    };
    let dump = kept_dump(&cluster, &tools, &bench.join("restore"), opts.fresh)?;
    let machine = Machine::probe(&cluster)?;

    let dbs = RestoreDbs(&cluster);
    dbs.drop_all()?;
    let postmaster = postmaster_pid(&bench.join("pg"));
    if postmaster.is_none() {
        progress!("warning: no server pid (postmaster.pid): the server's CPU time is not measured");
    }
    let results = bench_restores(&cluster, &tools, &dump, opts.repeat, postmaster)?;
    dbs.drop_all()?;
    drop(dbs);
    cluster.stop();
    Ok(print_report(
        &machine,
        &dump,
        &results,
        generation,
        opts.repeat,
        run_start.elapsed(),
    ))
}

/// `cargo build --release -p tb-dump -p tb-restore`; the two binaries.
fn build_tools() -> Result<Tools> {
    progress!("building tb-dump and tb-restore (release)...");
    common::cargo_build_release(&["tb-dump", "tb-restore"])?;
    Ok(Tools {
        tb_dump: common::release_binary("tb-dump")?,
        tb_restore: common::release_binary("tb-restore")?,
    })
}

impl Machine {
    /// Read nproc, the CPU model and the versions of the server, psql and
    /// gzip.
    fn probe(cluster: &Cluster) -> Result<Machine> {
        let mut psql = cluster.command("psql");
        psql.arg("--version");
        let mut gzip = Command::new("gzip");
        gzip.arg("--version");
        Ok(Machine {
            nproc: common::nproc(),
            cpu: common::cpu_model(),
            server: cluster.query("postgres", "SHOW server_version")?,
            psql: common::first_line(psql)?,
            gzip: common::first_line(gzip)?,
        })
    }
}

/// Drops the restore databases when it goes out of scope (on error too);
/// the cluster is stopped only after.
struct RestoreDbs<'a>(&'a Cluster);

impl RestoreDbs<'_> {
    /// Drop every restore database.
    fn drop_all(&self) -> Result<()> {
        for db in [TB_DB, STD_DB, ONE_DB] {
            drop_db(self.0, db)?;
        }
        Ok(())
    }
}

impl Drop for RestoreDbs<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.drop_all() {
            eprintln!("tb-bench: warning: cannot drop the restore databases: {e:#}");
        }
    }
}

/// `DROP DATABASE IF EXISTS db`.
fn drop_db(cluster: &Cluster, db: &str) -> Result<()> {
    cluster.query("postgres", &format!("DROP DATABASE IF EXISTS {db}"))?;
    Ok(())
}

/// What marks the kept dump as made from the database as it is now: the
/// generator's marker and the database's OID (a regenerated database gets
/// a new one).
fn dump_stamp(cluster: &Cluster) -> Result<String> {
    let oid = cluster.query(
        "postgres",
        &format!("SELECT oid FROM pg_database WHERE datname = '{}'", BIG.name),
    )?;
    Ok(format!("{} oid={oid}", BIG.marker()))
}

/// The kept dump of the big database in `dir` (`dump/` and the stamp
/// `dump.done`), or a new one when there is none, it is stale, or `fresh`.
fn kept_dump(cluster: &Cluster, tools: &Tools, dir: &Path, fresh: bool) -> Result<Dump> {
    let stamp = dump_stamp(cluster)?;
    let stamp_path = dir.join("dump.done");
    let out_dir = dir.join("dump");
    if !fresh && let Some(path) = read_stamp(&stamp_path, &stamp) {
        match read_manifest(&path, None) {
            Ok(d) => {
                progress!(
                    "{}: reusing the kept dump {} ({})",
                    BIG.name,
                    path.display(),
                    bytes(d.gz_bytes)
                );
                return Ok(d);
            }
            Err(e) => progress!(
                "{}: the kept dump is unusable ({e:#}): dumping again",
                BIG.name
            ),
        }
    }
    if dir.exists() {
        remove_dir(dir)?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create '{}'", dir.display()))?;
    progress!("{}: tb-dump (default settings)...", BIG.name);
    let mut cmd = cluster.command(&tools.tb_dump);
    cmd.arg("--dbname").arg(BIG.name).arg("--dir").arg(&out_dir);
    for var in ["TB_LOG", "TB_PG_DUMP", "TB_PG_DUMPALL", "TB_DOCKER"] {
        cmd.env_remove(var);
    }
    let run = measure::measure(&cmd)?;
    run.expect_codes("tb-dump", &[0, 1])?;
    let path = dumped_path(&run.stdout)?;
    progress!("{}: tb-dump took {}", BIG.name, secs(run.usage.wall));
    let dump = read_manifest(&path, Some(run.usage.wall))?;
    let record = json!({ "stamp": stamp, "path": path.to_string_lossy() });
    fs::write(&stamp_path, format!("{record}\n"))
        .with_context(|| format!("cannot write '{}'", stamp_path.display()))?;
    Ok(dump)
}

/// The dump named by the stamp file, when the stamp is `want` and the file
/// is still there.
fn read_stamp(stamp_path: &Path, want: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(stamp_path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    if v["stamp"].as_str()? != want {
        return None;
    }
    let path = PathBuf::from(v["path"].as_str()?);
    path.is_file().then_some(path)
}

/// The path of the `written` record of kind `dump` in tb-dump's output.
fn dumped_path(stdout: &str) -> Result<PathBuf> {
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("tb-dump printed a line that is not JSON: {line}"))?;
        if v["event"] == "written"
            && v["kind"] == "dump"
            && let Some(p) = v["path"].as_str()
        {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("tb-dump printed no `written` record of kind dump")
}

/// The manifest beside the dump `path` (`X.sql.gz` -> `X.manifest.json`).
fn manifest_of(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    let stem = s.strip_suffix(".sql.gz").unwrap_or(&s);
    PathBuf::from(format!("{stem}.manifest.json"))
}

/// Read the dump's sizes and row counts from its manifest.
fn read_manifest(path: &Path, made_in: Option<Duration>) -> Result<Dump> {
    let mpath = manifest_of(path);
    let text = fs::read_to_string(&mpath)
        .with_context(|| format!("cannot read the manifest '{}'", mpath.display()))?;
    parse_manifest(&text, path, made_in)
        .with_context(|| format!("unexpected manifest '{}'", mpath.display()))
}

/// The manifest's `files` entry of role `dump` and `database.tables`.
fn parse_manifest(text: &str, path: &Path, made_in: Option<Duration>) -> Result<Dump> {
    let v: Value = serde_json::from_str(text).context("not JSON")?;
    let file = v["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["role"] == "dump"))
        .context("no file of role dump")?;
    let tables: BTreeMap<String, u64> = v["database"]["tables"]
        .as_object()
        .context("no database.tables")?
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
        .collect();
    if !tables.contains_key(SINGLE_TABLE) {
        bail!("the dump has no table {SINGLE_TABLE}");
    }
    Ok(Dump {
        path: path.to_path_buf(),
        gz_bytes: file["bytes"].as_u64().context("no bytes")?,
        raw_bytes: file["raw_bytes"].as_u64().unwrap_or(0),
        tables,
        made_in,
    })
}

/// Milliseconds since midnight of a record's `time`
/// (`2026-12-04T00:34:50.289+00:00`).
fn time_of_day_ms(time: &str) -> Option<i64> {
    let (_, t) = time.split_once('T')?;
    let hms = t.get(..8)?;
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    let frac = t.get(8..).unwrap_or("");
    let ms = match frac.strip_prefix('.') {
        Some(f) => {
            let digits: String = f.chars().take_while(char::is_ascii_digit).collect();
            let d3: String = digits.chars().chain("000".chars()).take(3).collect();
            d3.parse::<i64>().ok()?
        }
        None => 0,
    };
    Some(((h * 60 + m) * 60 + s) * 1000 + ms)
}

/// `b - a` for two times of day (across midnight too).
fn elapsed_ms(a: i64, b: i64) -> u64 {
    (b - a).rem_euclid(86_400_000) as u64
}

/// Read tb-restore's records.
fn parse_restore(stdout: &str) -> Result<RestoreRecords> {
    let mut r = RestoreRecords::default();
    let (mut verify_t, mut last_check_t, mut step_t, mut end_t) = (None, None, None, None);
    let (mut psql_ms, mut total_ms) = (None, None);
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("tb-restore printed a line that is not JSON: {line}"))?;
        let t = v["time"].as_str().and_then(time_of_day_ms);
        match v["event"].as_str() {
            Some("check") => {
                if v["check"] == "verify" {
                    verify_t = t;
                }
                last_check_t = t;
            }
            Some("step") if v["step"] == "psql" => {
                step_t = t;
                psql_ms = v["duration_ms"].as_u64();
            }
            Some("restored") if v["kind"] != "roles" => r.rows = v["rows"].as_u64(),
            Some("summary") => {
                r.max_rss_bytes = v["max_rss_bytes"].as_u64();
                total_ms = v["duration_ms"].as_u64();
                end_t = t;
            }
            Some("warning") => r
                .warnings
                .push(v["message"].as_str().unwrap_or(line).to_string()),
            _ => {}
        }
    }
    if let (Some(verify), Some(checked), Some(step), Some(end), Some(psql), Some(total)) =
        (verify_t, last_check_t, step_t, end_t, psql_ms, total_ms)
    {
        let start = end - total as i64;
        let ms = Duration::from_millis;
        r.phases = Some(Phases {
            verify: ms(elapsed_ms(start, verify)),
            checks: ms(elapsed_ms(verify, checked)),
            psql: ms(psql),
            create_and_count: ms(elapsed_ms(checked, step).saturating_sub(psql)),
            finish: ms(elapsed_ms(step, end)),
            total: ms(total),
        });
    }
    Ok(r)
}

/// How long [`settle`] waits for autovacuum workers to finish.
const AUTOVACUUM_WAIT: Duration = Duration::from_secs(60);

/// A `CHECKPOINT`, a `sync` (the previous restore's writes are not charged
/// to the next command), and no autovacuum worker running (waited for up
/// to [`AUTOVACUUM_WAIT`]).
fn settle(cluster: &Cluster) -> Result<()> {
    cluster.query("postgres", "CHECKPOINT")?;
    nix::unistd::sync();
    let start = Instant::now();
    loop {
        let n = cluster.query(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
        )?;
        if n == "0" {
            break;
        }
        if start.elapsed() >= AUTOVACUUM_WAIT {
            progress!(
                "warning: {n} autovacuum worker(s) still running after {}: times may be skewed",
                secs(AUTOVACUUM_WAIT)
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// The row count of every table of `db` (`schema.name` -> rows).
fn count_rows(cluster: &Cluster, db: &str) -> Result<BTreeMap<String, u64>> {
    let out = cluster.query(
        db,
        "SELECT format('%I.%I', n.nspname, c.relname), \
           (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', \
             n.nspname, c.relname), false, true, '')))[1]::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1",
    )?;
    let mut counts = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let (name, n) = line
            .rsplit_once('|')
            .with_context(|| format!("unexpected row count line from {db}: {line}"))?;
        let n = n
            .trim()
            .parse()
            .with_context(|| format!("unexpected row count from {db}: {line}"))?;
        counts.insert(name.to_string(), n);
    }
    Ok(counts)
}

/// Clock ticks per second of `/proc/stat` and `/proc/PID/stat` (USER_HZ,
/// 100 on Linux whatever the kernel's HZ).
const USER_HZ: f64 = 100.0;

/// CPU counters, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    /// All CPUs: busy (not idle, not iowait) and total.
    busy: u64,
    total: u64,
    /// The server: the postmaster with its reaped children, and the live
    /// children. A backend that exits between two samples moves from the
    /// second sum into the first, so the difference counts it once.
    server: Option<u64>,
}

/// utime + stime + cutime + cstime and the parent of `/proc/PID/stat`.
fn proc_times(pid: &str) -> Option<(u64, i64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&stat)
}

/// The CPU ticks (utime + stime + cutime + cstime) and the parent of a
/// `/proc/PID/stat` line.
fn parse_proc_stat(stat: &str) -> Option<(u64, i64)> {
    // After "PID (comm) ": state ppid ... utime(14) stime cutime cstime.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11..15)?.iter().map(|t| t.parse::<u64>().unwrap_or(0));
    Some((ticks.sum(), ppid))
}

/// The server's CPU ticks so far: see [`CpuSample::server`].
fn server_ticks(postmaster: i32) -> Option<u64> {
    let (mut sum, _) = proc_times(&postmaster.to_string())?;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some((t, ppid)) = proc_times(pid)
            && ppid == i64::from(postmaster)
        {
            sum += t;
        }
    }
    Some(sum)
}

/// Sample the CPU counters.
fn cpu_sample(postmaster: Option<i32>) -> Option<CpuSample> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some(CpuSample {
        busy: total.saturating_sub(idle),
        total,
        server: postmaster.and_then(server_ticks),
    })
}

/// The server's process id, from its `postmaster.pid`.
fn postmaster_pid(cluster_dir: &Path) -> Option<i32> {
    fs::read_to_string(cluster_dir.join("data/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The load between two samples, `tree` being the measured tree's CPU.
fn load_between(a: Option<CpuSample>, b: Option<CpuSample>, tree: Duration) -> Load {
    let (Some(a), Some(b)) = (a, b) else {
        return Load::default();
    };
    let server = match (a.server, b.server) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x)),
        _ => None,
    };
    let total = b.total.saturating_sub(a.total);
    let busy = b.busy.saturating_sub(a.busy) as f64;
    let mine = tree.as_secs_f64() * USER_HZ + server.unwrap_or(0) as f64;
    Load {
        server_cpu: server.map(|t| Duration::from_secs_f64(t as f64 / USER_HZ)),
        other: (total > 0 && server.is_some())
            .then(|| ((busy - mine) / total as f64).clamp(0.0, 1.0)),
    }
}

/// Measure `cmd` under the helper, and what else the CPUs did meanwhile.
fn observe(cmd: &Command, postmaster: Option<i32>) -> Result<(Run, Load)> {
    let before = cpu_sample(postmaster);
    let run = measure::measure(cmd)?;
    let after = cpu_sample(postmaster);
    let load = load_between(before, after, run.usage.cpu());
    Ok((run, load))
}

/// The median server CPU and the largest other share of several runs.
fn combine_loads(loads: &[Load]) -> Load {
    let server: Vec<Duration> = loads.iter().filter_map(|l| l.server_cpu).collect();
    Load {
        server_cpu: median(&server),
        other: loads
            .iter()
            .filter_map(|l| l.other)
            .fold(None, |m: Option<f64>, o| Some(m.map_or(o, |m| m.max(o)))),
    }
}

/// Run tb-restore (`args` after the dump) under the helper.
fn measure_tb(
    cluster: &Cluster,
    tools: &Tools,
    dump: &Path,
    args: &[&str],
    postmaster: Option<i32>,
) -> Result<(Run, Load)> {
    let mut cmd = cluster.command(&tools.tb_restore);
    cmd.arg(dump).args(args);
    for var in ["TB_LOG", "TB_DOCKER"] {
        cmd.env_remove(var);
    }
    let (run, load) = observe(&cmd, postmaster)?;
    run.expect_codes(&format!("tb-restore {}", args.join(" ")), &[0, 1])?;
    Ok((run, load))
}

/// Run the standard recipe into a new `STD_DB` on a settled server.
fn measure_std(cluster: &Cluster, dump: &Path, postmaster: Option<i32>) -> Result<(Run, Load)> {
    drop_db(cluster, STD_DB)?;
    settle(cluster)?;
    let mut cmd = cluster.command("bash");
    cmd.args(["-c", STD_SCRIPT, "bash"]).arg(dump).arg(STD_DB);
    let (run, load) = observe(&cmd, postmaster)?;
    run.expect_codes("createdb && gunzip -c | psql", &[0])?;
    Ok((run, load))
}

/// The tb-restore run of median wall time, with the median own peak RSS.
fn median_tb(runs: &[TbRun]) -> TbRun {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|r| r.usage.wall);
    let mut mid = sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default();
    mid.usage = median_usage(&runs.iter().map(|r| r.usage).collect::<Vec<_>>());
    mid.own_rss = median(&runs.iter().map(|r| r.own_rss).collect::<Vec<_>>()).unwrap_or(0);
    mid.load = combine_loads(&runs.iter().map(|r| r.load).collect::<Vec<_>>());
    mid
}

/// " (run i of n)" when there are several runs.
fn round_label(i: usize, repeat: usize) -> String {
    if repeat > 1 {
        format!(" (run {} of {repeat})", i + 1)
    } else {
        String::new()
    }
}

/// Measure the full restores, then the single-table one.
fn bench_restores(
    cluster: &Cluster,
    tools: &Tools,
    dump: &Dump,
    repeat: usize,
    postmaster: Option<i32>,
) -> Result<Results> {
    let busy_before = busy_share(Duration::from_secs(2));
    if let Some(b) = busy_before.filter(|b| *b > BUSY_WARNING) {
        progress!(
            "warning: {:.0} % of the CPUs are busy with other work; times will be skewed",
            b * 100.0
        );
    }
    let mut res = Results {
        busy_before,
        ..Default::default()
    };
    // One restore that is not measured: the first restore after the dump
    // was made (or the server started) was up to a third slower, and it
    // would always have been the same command's.
    progress!("warm-up: the standard recipe once, not measured");
    measure_std(cluster, &dump.path, postmaster)?;
    drop_db(cluster, STD_DB)?;

    let mut tb = Vec::new();
    let mut serial = Vec::new();
    let mut std = Vec::new();
    let mut std_loads = Vec::new();
    for i in 0..repeat {
        let round = round_label(i, repeat);
        // The order rotates, so that no command is always the one that
        // runs after another's write-back: tb-restore, the standard
        // recipe, tb-restore --jobs 1 (one psql session).
        for turn in 0..3 {
            match (turn + i) % 3 {
                t @ (0 | 2) => {
                    let jobs = if t == 0 { "2" } else { "1" };
                    let name = if t == 0 {
                        "tb-restore"
                    } else {
                        "tb-restore --jobs 1"
                    };
                    drop_db(cluster, TB_DB)?;
                    settle(cluster)?;
                    let (run, load) = measure_tb(
                        cluster,
                        tools,
                        &dump.path,
                        &["--dbname", TB_DB, "--jobs", jobs],
                        postmaster,
                    )?;
                    let rec = parse_restore(&run.stdout)?;
                    for w in &rec.warnings {
                        progress!("{name} warning: {w}");
                    }
                    progress!(
                        "{name}{round}: {} wall, {} CPU, {} own peak RSS{}{}",
                        secs(run.usage.wall),
                        secs(run.usage.cpu()),
                        mib(rec.max_rss_bytes.unwrap_or(0)),
                        rec.phases
                            .map(|p| format!(", psql {}", secs(p.psql)))
                            .unwrap_or_default(),
                        other_note(&load)
                    );
                    let r = TbRun {
                        usage: run.usage,
                        own_rss: rec.max_rss_bytes.unwrap_or(run.usage.max_rss_bytes),
                        phases: rec.phases,
                        load,
                    };
                    let counts = count_rows(cluster, TB_DB)?;
                    if t == 0 {
                        tb.push(r);
                        res.tb_counts = counts;
                    } else {
                        serial.push(r);
                        res.serial_counts = counts;
                    }
                    drop_db(cluster, TB_DB)?;
                }
                _ => {
                    let (run, load) = measure_std(cluster, &dump.path, postmaster)?;
                    progress!(
                        "createdb && gunzip -c | psql{round}: {} wall, {} CPU{}",
                        secs(run.usage.wall),
                        secs(run.usage.cpu()),
                        other_note(&load)
                    );
                    std.push(run.usage);
                    std_loads.push(load);
                    res.std_counts = count_rows(cluster, STD_DB)?;
                    drop_db(cluster, STD_DB)?;
                }
            }
        }
    }
    res.serial = median_tb(&serial);
    res.pair_ratios = tb
        .iter()
        .zip(&std)
        .map(|(t, s)| t.usage.wall.as_secs_f64() / s.wall.as_secs_f64().max(1e-9))
        .collect();
    res.tb = median_tb(&tb);
    res.std = median_usage(&std);
    res.std_load = combine_loads(&std_loads);

    let mut one = Vec::new();
    for i in 0..repeat {
        let round = round_label(i, repeat);
        drop_db(cluster, ONE_DB)?;
        settle(cluster)?;
        let (run, load) = measure_tb(
            cluster,
            tools,
            &dump.path,
            &["--table", SINGLE_TABLE, "--dbname", ONE_DB],
            postmaster,
        )?;
        let rec = parse_restore(&run.stdout)?;
        progress!(
            "tb-restore --table {SINGLE_TABLE}{round}: {} wall, {} CPU, {} rows{}{}",
            secs(run.usage.wall),
            secs(run.usage.cpu()),
            rec.rows.unwrap_or(0),
            other_note(&load),
            if rec.warnings.is_empty() {
                String::new()
            } else {
                format!(" (warnings: {})", rec.warnings.join("; "))
            }
        );
        one.push(TbRun {
            usage: run.usage,
            own_rss: rec.max_rss_bytes.unwrap_or(run.usage.max_rss_bytes),
            phases: rec.phases,
            load,
        });
        res.one_counts = count_rows(cluster, ONE_DB)?;
    }
    res.one = median_tb(&one);
    Ok(res)
}

/// ", N % of the CPUs busy with other work" for progress lines.
fn other_note(load: &Load) -> String {
    load.other
        .map(|o| format!(", {:.0} % of the CPUs busy with other work", o * 100.0))
        .unwrap_or_default()
}

/// The tables whose counts differ between the restored databases and the
/// manifest, as `name: r_tb N, r_std N, manifest N`.
fn count_differences(
    tb: &BTreeMap<String, u64>,
    std: &BTreeMap<String, u64>,
    manifest: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut names: Vec<&String> = tb.keys().chain(std.keys()).chain(manifest.keys()).collect();
    names.sort();
    names.dedup();
    let show = |m: &BTreeMap<String, u64>, k: &String| {
        m.get(k).map_or("missing".to_string(), |n| thousands(*n))
    };
    names
        .into_iter()
        .filter(|k| {
            let a = tb.get(*k);
            a != std.get(*k) || a != manifest.get(*k)
        })
        .map(|k| {
            format!(
                "{k}: {TB_DB} {}, {STD_DB} {}, manifest {}",
                show(tb, k),
                show(std, k),
                show(manifest, k)
            )
        })
        .collect()
}

/// `n` with thousands separators (`9,610,501`).
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One target: its verdict and the line that explains it.
struct Target {
    met: bool,
    text: String,
}

/// Check the targets against the results.
fn targets(dump: &Dump, r: &Results) -> Vec<Target> {
    let full = r.tb.usage.wall.as_secs_f64() / r.std.wall.as_secs_f64().max(1e-9);
    let single = r.one.usage.wall.as_secs_f64() / r.tb.usage.wall.as_secs_f64().max(1e-9);
    let mut diffs = count_differences(&r.tb_counts, &r.std_counts, &dump.tables);
    diffs.extend(
        count_differences(&r.serial_counts, &r.std_counts, &dump.tables)
            .into_iter()
            .map(|d| format!("--jobs 1: {d}")),
    );
    let want_one: BTreeMap<String, u64> = dump
        .tables
        .get_key_value(SINGLE_TABLE)
        .map(|(k, n)| (k.clone(), *n))
        .into_iter()
        .collect();
    let show_counts = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        Target {
            met: full <= FULL_WALL_FACTOR_MAX,
            text: format!(
                "tb-restore wall <= {FULL_WALL_FACTOR_MAX:.2} x createdb && gunzip -c | psql: {full:.2} ({} vs {})",
                secs(r.tb.usage.wall),
                secs(r.std.wall)
            ),
        },
        Target {
            met: single <= SINGLE_WALL_FACTOR_MAX,
            text: format!(
                "tb-restore --table {SINGLE_TABLE} wall <= {SINGLE_WALL_FACTOR_MAX:.2} x tb-restore (whole dump): {single:.2} ({} vs {})",
                secs(r.one.usage.wall),
                secs(r.tb.usage.wall)
            ),
        },
        Target {
            met: diffs.is_empty() && !r.tb_counts.is_empty() && !r.serial_counts.is_empty(),
            text: if diffs.is_empty() {
                format!(
                    "{TB_DB} (both --jobs 2 and 1) and {STD_DB} have the same row count in every table, the manifest's: {} tables, {} rows",
                    r.tb_counts.len(),
                    thousands(r.tb_counts.values().sum())
                )
            } else {
                format!(
                    "{TB_DB} and {STD_DB} have the same row count in every table, the manifest's: {}",
                    diffs.join("; ")
                )
            },
        },
        Target {
            met: r.one_counts == want_one,
            text: format!(
                "{ONE_DB} holds {SINGLE_TABLE} alone with the manifest's rows ({}): {}",
                show_counts(&want_one),
                if r.one_counts.is_empty() {
                    "no tables".to_string()
                } else {
                    show_counts(&r.one_counts)
                }
            ),
        },
    ]
}

/// Print the whole report on stdout; true when every target is met.
fn print_report(
    machine: &Machine,
    dump: &Dump,
    r: &Results,
    generation: Option<Duration>,
    repeat: usize,
    total: Duration,
) -> bool {
    println!();
    println!("tb-bench restore");
    println!("machine:   {} CPUs ({})", machine.nproc, machine.cpu);
    let share = |b: Option<f64>| b.map_or("?".to_string(), |b| format!("{:.0} %", b * 100.0));
    println!(
        "busy:      CPUs busy with other work: {} just before measuring; during tb-restore {}, the standard recipe {}, tb-restore --table {}",
        share(r.busy_before),
        share(r.tb.load.other),
        share(r.std_load.other),
        share(r.one.load.other)
    );
    println!(
        "           (neither the measured process tree nor the server; the largest share over the runs)"
    );
    if [
        r.busy_before,
        r.tb.load.other,
        r.std_load.other,
        r.one.load.other,
    ]
    .iter()
    .any(|b| b.is_some_and(|b| b > BUSY_WARNING))
    {
        println!(
            "WARNING:   the machine was busy with other work (over {:.0} %): wall times and their ratios are unreliable",
            BUSY_WARNING * 100.0
        );
    }
    println!(
        "software:  PostgreSQL server {}; {}; {}",
        machine.server, machine.psql, machine.gzip
    );
    println!(
        "dump:      {} by tb-dump (defaults): {}, {} of plain SQL, {} tables, {} rows; {}",
        BIG.name,
        bytes(dump.gz_bytes),
        bytes(dump.raw_bytes),
        dump.tables.len(),
        thousands(dump.rows()),
        match dump.made_in {
            Some(d) => format!("made in {}", secs(d)),
            None => "kept from an earlier run (--fresh makes it again)".to_string(),
        }
    );
    println!(
        "compared:  tb = tb-restore FILE --dbname {TB_DB} (two psql sessions load the tables' data; --jobs 1: one)"
    );
    println!(
        "           standard = bash -c 'set -o pipefail; createdb -T template0 -E UTF8 {STD_DB} && gunzip -c FILE | psql -X -q -v ON_ERROR_STOP=1 -d {STD_DB} >/dev/null'"
    );
    println!("           single table = tb-restore FILE --table {SINGLE_TABLE} --dbname {ONE_DB}");
    println!(
        "runs:      {repeat} per command{}, each into a new database on a settled server (the previous restore counted and dropped, CHECKPOINT, sync, no autovacuum worker), warm cache, after one unmeasured restore; the whole-dump commands rotate which goes first",
        if repeat > 1 { " (median)" } else { "" }
    );
    if r.pair_ratios.len() > 1 {
        let shown: Vec<String> = r.pair_ratios.iter().map(|x| format!("{x:.2}")).collect();
        let mut sorted = r.pair_ratios.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "rounds:    tb-restore / standard, round by round: {} (median {:.2}; the target compares the medians of the two commands)",
            shown.join(", "),
            sorted[(sorted.len() - 1) / 2]
        );
    }
    println!();

    let mut t = Table::default();
    t.row(["whole dump", "tb-restore", "standard", "ratio"]);
    let speed = |u: &Usage| dump.raw_bytes as f64 / u.wall.as_secs_f64().max(1e-9);
    let (tb, std) = (&r.tb.usage, &r.std);
    t.row([
        "restore wall time".to_string(),
        secs(tb.wall),
        secs(std.wall),
        ratio(tb.wall.as_secs_f64(), std.wall.as_secs_f64()),
    ]);
    t.row([
        "  the same in one psql session (--jobs 1)".to_string(),
        secs(r.serial.usage.wall),
        secs(std.wall),
        ratio(r.serial.usage.wall.as_secs_f64(), std.wall.as_secs_f64()),
    ]);
    t.row([
        "restore CPU time (user+sys, client process tree)".to_string(),
        secs(tb.cpu()),
        secs(std.cpu()),
        ratio(tb.cpu().as_secs_f64(), std.cpu().as_secs_f64()),
    ]);
    let server = |l: &Load| l.server_cpu.map_or("?".to_string(), secs);
    t.row([
        "server CPU time (PostgreSQL processes)".to_string(),
        server(&r.tb.load),
        server(&r.std_load),
        match (r.tb.load.server_cpu, r.std_load.server_cpu) {
            (Some(a), Some(b)) => ratio(a.as_secs_f64(), b.as_secs_f64()),
            _ => "-".into(),
        },
    ]);
    t.row([
        "restore speed (plain SQL per wall second)".to_string(),
        format!("{}/s", bytes(speed(tb) as u64)),
        format!("{}/s", bytes(speed(std) as u64)),
        ratio(speed(tb), speed(std)),
    ]);
    t.row([
        "peak RSS, tb-restore itself (summary)".to_string(),
        mib(r.tb.own_rss),
        "-".into(),
        "-".into(),
    ]);
    t.row([
        "peak RSS, largest process of tree".to_string(),
        mib(tb.max_rss_bytes),
        mib(std.max_rss_bytes),
        ratio(tb.max_rss_bytes as f64, std.max_rss_bytes as f64),
    ]);
    print!("{}", t.render(1));
    println!();

    let one_rows = dump.tables.get(SINGLE_TABLE).copied().unwrap_or(0);
    let mut t = Table::default();
    t.row([
        format!(
            "one table: {SINGLE_TABLE} ({} of {} rows)",
            thousands(one_rows),
            thousands(dump.rows())
        ),
        "--table".into(),
        "whole dump".into(),
        "ratio".into(),
    ]);
    let one = &r.one.usage;
    t.row([
        "tb-restore wall time".to_string(),
        secs(one.wall),
        secs(tb.wall),
        ratio(one.wall.as_secs_f64(), tb.wall.as_secs_f64()),
    ]);
    t.row([
        "tb-restore CPU time (user+sys, process tree)".to_string(),
        secs(one.cpu()),
        secs(tb.cpu()),
        ratio(one.cpu().as_secs_f64(), tb.cpu().as_secs_f64()),
    ]);
    t.row([
        "peak RSS, tb-restore itself (summary)".to_string(),
        mib(r.one.own_rss),
        mib(r.tb.own_rss),
        ratio(r.one.own_rss as f64, r.tb.own_rss as f64),
    ]);
    print!("{}", t.render(1));
    println!();

    let mut t = Table::default();
    t.row([
        "where tb-restore's time goes (records)",
        "--table",
        "whole dump",
    ]);
    type Cell = fn(&Phases) -> Duration;
    let phases: [(&str, Cell); 6] = [
        (
            "preflight: full pass over the file (verify; --table: extract)",
            |p| p.verify,
        ),
        ("preflight: version, target, roles, extensions", |p| {
            p.checks
        }),
        ("psql (step record)", |p| p.psql),
        ("create the database, count the rows", |p| {
            p.create_and_count
        }),
        ("rename into place, records", |p| p.finish),
        ("total (tb-restore's duration_ms)", |p| p.total),
    ];
    let cell = |p: Option<Phases>, f: Cell| p.map_or("?".to_string(), |p| secs(f(&p)));
    for (label, f) in phases {
        t.row([
            label.to_string(),
            cell(r.one.phases, f),
            cell(r.tb.phases, f),
        ]);
    }
    print!("{}", t.render(1));
    println!();
    println!(
        "CPU times count the client process trees (tb-restore + psql; bash + createdb + gunzip + psql);"
    );
    println!("the server's CPU time is its processes' (backends, checkpointer, autovacuum, ...).");
    println!();

    let targets = targets(dump, r);
    println!("targets:");
    for t in &targets {
        println!("  {}  {}", if t.met { "PASS" } else { "FAIL" }, t.text);
    }
    let missed = targets.iter().filter(|t| !t.met).count();
    println!();
    match generation {
        Some(g) => println!("generation: {}", secs(g)),
        None => println!("generation: none (kept database reused; `dump --fresh` regenerates)"),
    }
    println!("whole run:  {}", secs(total));
    if missed == 0 {
        println!("all {} targets met", targets.len());
    } else {
        println!("{missed} of {} targets MISSED", targets.len());
    }
    missed == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDS: &str = concat!(
        r#"{"event":"check","tool":"tb-restore","time":"2026-12-04T00:34:50.289+00:00","check":"verify","ok":true}"#,
        "\n",
        r#"{"event":"check","tool":"tb-restore","time":"2026-12-04T00:34:50.402+00:00","check":"extensions","ok":true,"missing":[]}"#,
        "\n",
        r#"{"event":"warning","tool":"tb-restore","message":"hm"}"#,
        "\n",
        r#"{"event":"step","tool":"tb-restore","time":"2026-12-04T00:35:18.175+00:00","step":"psql","duration_ms":26828}"#,
        "\n",
        r#"{"event":"restored","tool":"tb-restore","time":"2026-12-04T00:35:18.211+00:00","kind":"dump","rows":9610501}"#,
        "\n",
        r#"{"event":"summary","tool":"tb-restore","time":"2026-12-04T00:35:18.211+00:00","status":"ok","duration_ms":29795,"max_rss_bytes":27148288}"#,
        "\n"
    );

    #[test]
    fn tb_restore_records_give_the_phases() {
        let r = parse_restore(RECORDS).unwrap();
        assert_eq!(r.max_rss_bytes, Some(27_148_288));
        assert_eq!(r.rows, Some(9_610_501));
        assert_eq!(r.warnings, vec!["hm".to_string()]);
        let p = r.phases.unwrap();
        let ms = Duration::from_millis;
        assert_eq!(p.verify, ms(1_873));
        assert_eq!(p.checks, ms(113));
        assert_eq!(p.psql, ms(26_828));
        assert_eq!(p.create_and_count, ms(945));
        assert_eq!(p.finish, ms(36));
        assert_eq!(p.total, ms(29_795));
        assert!(parse_restore("not json").is_err());
        assert_eq!(
            parse_restore(r#"{"event":"summary","max_rss_bytes":1}"#)
                .unwrap()
                .phases,
            None
        );
    }

    #[test]
    fn proc_stat_and_loads() {
        let line = "42 (post gres: x) S 7 42 42 0 -1 4194560 100 0 0 0 150 30 5 2 20 0 1 0";
        assert_eq!(parse_proc_stat(line), Some((187, 7)));
        assert_eq!(parse_proc_stat("garbage"), None);
        let s = |busy, total, server| {
            Some(CpuSample {
                busy,
                total,
                server,
            })
        };
        // 10 s on 2 CPUs: 2000 ticks; 1200 busy, 300 the tree, 500 the server.
        let l = load_between(
            s(100, 1000, Some(50)),
            s(1300, 3000, Some(550)),
            Duration::from_secs(3),
        );
        assert_eq!(l.server_cpu, Some(Duration::from_secs(5)));
        assert!((l.other.unwrap() - 0.2).abs() < 1e-9, "{l:?}");
        assert_eq!(
            load_between(s(0, 0, None), s(10, 10, None), Duration::ZERO).other,
            None
        );
        let c = combine_loads(&[l, Load::default()]);
        assert_eq!(c.server_cpu, Some(Duration::from_secs(5)));
    }

    #[test]
    fn times_of_day_parse_and_wrap() {
        assert_eq!(
            time_of_day_ms("2026-12-04T00:34:50.289+00:00"),
            Some(2_090_289)
        );
        assert_eq!(time_of_day_ms("2026-12-04T23:59:59Z"), Some(86_399_000));
        assert_eq!(
            time_of_day_ms("2026-12-04T01:00:00.5+02:00"),
            Some(3_600_500)
        );
        assert_eq!(time_of_day_ms("nonsense"), None);
        assert_eq!(elapsed_ms(86_399_000, 1_000), 2_000);
    }

    #[test]
    fn manifest_gives_sizes_and_tables() {
        let text = r#"{"files":[{"role":"roles","bytes":3},{"role":"dump","bytes":10,"raw_bytes":40}],
            "database":{"tables":{"public.cards":5,"public.users":7}}}"#;
        let d = parse_manifest(text, Path::new("/o/x.sql.gz"), None).unwrap();
        assert_eq!((d.gz_bytes, d.raw_bytes, d.rows()), (10, 40, 12));
        assert!(
            parse_manifest(
                r#"{"files":[],"database":{"tables":{}}}"#,
                Path::new("x"),
                None
            )
            .is_err()
        );
        assert_eq!(
            manifest_of(Path::new("/o/x_1.sql.gz")),
            PathBuf::from("/o/x_1.manifest.json")
        );
    }

    #[test]
    fn counts_are_compared_table_by_table() {
        let m = |v: &[(&str, u64)]| -> BTreeMap<String, u64> {
            v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        let a = m(&[("public.a", 1), ("public.b", 2)]);
        assert!(count_differences(&a, &a, &a).is_empty());
        let b = m(&[("public.a", 1)]);
        assert_eq!(
            count_differences(&a, &b, &a),
            vec!["public.b: r_tb 2, r_std missing, manifest 2".to_string()]
        );
        assert_eq!(thousands(9_610_501), "9,610,501");
        assert_eq!(thousands(86_000), "86,000");
        assert_eq!(thousands(7), "7");
    }

    #[test]
    fn the_dump_path_comes_from_the_written_record() {
        let out = concat!(
            r#"{"event":"written","kind":"roles","path":"/o/x.roles.sql.gz"}"#,
            "\n",
            r#"{"event":"written","kind":"dump","path":"/o/x.sql.gz"}"#,
            "\n"
        );
        assert_eq!(dumped_path(out).unwrap(), PathBuf::from("/o/x.sql.gz"));
        assert!(dumped_path("").is_err());
    }
}
