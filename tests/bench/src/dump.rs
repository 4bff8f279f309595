//! The `dump` benchmark: `tb-dump` against `pg_dump | gzip`, and
//! `tb-check verify` against `gzip -t`, on a small and a big TOYBOX-like
//! database.
//!
//! Steps: build the tools (release), start the cluster, generate the
//! databases unless kept ones are complete, then for each database run
//! pg_dump once to warm the cache and count the plain SQL, measure every
//! command `--repeat` times (median), verify the last tb-dump output both
//! ways, delete the outputs, stop the server, print the table and the
//! targets. Nothing is dropped from the page cache (that needs root): both
//! sides read the same warm database.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::common::{self, BUSY_WARNING, Scratch, busy_share, free_space, remove_dir};
use crate::generate::{self, DbSpec};
use crate::measure::{self, Usage, median, median_usage};
use crate::report::{Table, bytes, mib, ratio, secs};
use crate::{DumpOptions, bench_dir};

/// The two databases: about 255 MB and 1.17 GB of plain SQL.
const DATABASES: [DbSpec; 2] = [
    DbSpec {
        name: "toybox_small",
        scale: 0.95,
    },
    DbSpec {
        name: "toybox_big",
        scale: 4.3,
    },
];

/// The big database must make at least this much plain SQL.
const BIG_MIN_PLAIN_BYTES: u64 = 1_050_000_000;
/// Target: tb-dump wall time at most this times the pipeline's (big db).
const WALL_FACTOR_MAX: f64 = 0.40;
/// Target: tb-dump output at most this times the pipeline's.
const SIZE_FACTOR_MAX: f64 = 1.10;
/// Target: tb-dump's own peak RSS below this, at both sizes.
const RSS_MAX_BYTES: u64 = 32 << 20;
/// Target: "roughly flat": big-db peak RSS at most this times the small's...
const RSS_GROWTH_MAX: f64 = 1.25;
/// ... or at most this much above it (a few MiB is allocator noise, which
/// a ratio of two small numbers would magnify).
const RSS_GROWTH_SLACK_BYTES: u64 = 4 << 20;
/// Target: tb-check verify wall time at most this times gzip -t's (big db).
const VERIFY_FACTOR_MAX: f64 = 0.50;

/// The binaries under test.
struct Tools {
    tb_dump: PathBuf,
    tb_check: PathBuf,
}

/// Everything measured on one database (medians over the repetitions).
#[derive(Debug, Default)]
struct DbResult {
    name: &'static str,
    /// Share of the CPUs busy with other work just before measuring.
    busy_before: Option<f64>,
    /// Size of the plain SQL dump (pg_dump's output, uncompressed).
    plain_bytes: u64,
    /// `pg_dump -f /dev/null`: what both sides pay at least.
    pg_dump_alone: Usage,
    /// tb-dump with default settings.
    tb: Usage,
    /// tb-dump's own peak RSS (`max_rss_bytes` of its summary record).
    tb_own_rss: u64,
    /// Size of tb-dump's .sql.gz.
    tb_bytes: u64,
    /// `pg_dump | gzip`.
    std: Usage,
    /// Size of the pipeline's .sql.gz.
    std_bytes: u64,
    /// `tb-check verify` on tb-dump's output.
    verify_tb: Usage,
    /// `gzip -t` on the same file.
    verify_std: Usage,
}

/// The machine and the software versions, for the report header.
struct Machine {
    nproc: usize,
    cpu: String,
    server: String,
    pg_dump: String,
    gzip: String,
}

/// Run the `dump` benchmark; true when every target is met.
pub fn run(opts: &DumpOptions) -> Result<bool> {
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

    let mut cluster = Cluster::start(&bench.join("pg"), opts.fresh)?;
    let scratch = Scratch::create(bench.join("out"))?;

    let gen_start = Instant::now();
    let mut generated = false;
    for spec in &DATABASES {
        if !opts.fresh && generate::is_ready(&cluster, spec) {
            progress!("{}: reusing the generated database", spec.name);
            continue;
        }
        progress!("{}: generating (scale {})...", spec.name, spec.scale);
        let took = generate::generate(&cluster, spec)?;
        progress!("{}: generated in {}", spec.name, secs(took));
        generated = true;
    }
    let generation = generated.then(|| gen_start.elapsed());

    let machine = Machine::probe(&cluster)?;
    let mut results = Vec::new();
    for spec in &DATABASES {
        results.push(bench_database(
            &cluster,
            spec.name,
            &tools,
            &scratch.0,
            opts.repeat,
        )?);
    }
    cluster.stop();
    drop(scratch);
    Ok(print_report(
        &machine,
        &results,
        generation,
        opts.repeat,
        run_start.elapsed(),
    ))
}

/// `cargo build --release -p tb-dump -p tb-check` (`cargo run -p tb-bench`
/// builds only this package); the paths of the two binaries.
fn build_tools() -> Result<Tools> {
    progress!("building tb-dump and tb-check (release)...");
    common::cargo_build_release(&["tb-dump", "tb-check"])?;
    Ok(Tools {
        tb_dump: common::release_binary("tb-dump")?,
        tb_check: common::release_binary("tb-check")?,
    })
}

impl Machine {
    /// Read nproc, the CPU model and the versions of the server, pg_dump
    /// and gzip.
    fn probe(cluster: &Cluster) -> Result<Machine> {
        let mut pg_dump = cluster.command("pg_dump");
        pg_dump.arg("--version");
        let mut gzip = Command::new("gzip");
        gzip.arg("--version");
        Ok(Machine {
            nproc: common::nproc(),
            cpu: common::cpu_model(),
            server: cluster.query("postgres", "SHOW server_version")?,
            pg_dump: common::first_line(pg_dump)?,
            gzip: common::first_line(gzip)?,
        })
    }
}

/// Run `pg_dump DB` once, counting its output: warms the cache (and sets
/// the hint bits of freshly generated rows) and gives the plain SQL size.
fn plain_dump_size(cluster: &Cluster, db: &str) -> Result<u64> {
    let mut child = cluster
        .command("pg_dump")
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run pg_dump")?;
    let mut stdout = child.stdout.take().context("pg_dump has no stdout")?;
    let n =
        std::io::copy(&mut stdout, &mut std::io::sink()).context("cannot read pg_dump's output")?;
    drop(stdout);
    let out = child
        .wait_with_output()
        .context("cannot wait for pg_dump")?;
    if !out.status.success() {
        bail!(
            "pg_dump {db} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(n)
}

/// What tb-dump reported on stdout.
#[derive(Debug, PartialEq)]
struct TbDumpOutput {
    /// The published .sql.gz.
    path: PathBuf,
    /// Its size.
    bytes: u64,
    /// The plain SQL it holds.
    raw_bytes: u64,
    /// tb-dump's own peak RSS.
    max_rss_bytes: u64,
    /// Messages of `warning` records.
    warnings: Vec<String>,
}

/// Read tb-dump's records: the `written` record of kind `dump`, the
/// `summary`, and any warnings.
fn parse_tb_dump(stdout: &str) -> Result<TbDumpOutput> {
    let mut dump: Option<(PathBuf, u64, u64)> = None;
    let mut max_rss = None;
    let mut warnings = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("tb-dump printed a line that is not JSON: {line}"))?;
        match v["event"].as_str() {
            Some("written") if v["kind"] == "dump" => {
                let path = v["path"].as_str().context("written record without path")?;
                let n = v["bytes"]
                    .as_u64()
                    .context("written record without bytes")?;
                let raw = v["raw_bytes"].as_u64().unwrap_or(0);
                dump = Some((PathBuf::from(path), n, raw));
            }
            Some("summary") => max_rss = v["max_rss_bytes"].as_u64(),
            Some("warning") => warnings.push(v["message"].as_str().unwrap_or(line).to_string()),
            _ => {}
        }
    }
    let (path, bytes, raw_bytes) =
        dump.context("tb-dump printed no `written` record of kind dump")?;
    Ok(TbDumpOutput {
        path,
        bytes,
        raw_bytes,
        max_rss_bytes: max_rss.context("tb-dump's summary has no max_rss_bytes")?,
        warnings,
    })
}

/// Measure everything on database `db`.
fn bench_database(
    cluster: &Cluster,
    db: &'static str,
    tools: &Tools,
    out_dir: &Path,
    repeat: usize,
) -> Result<DbResult> {
    progress!("{db}: warming the cache (pg_dump, counting the plain SQL)...");
    let plain_bytes = plain_dump_size(cluster, db)?;
    progress!("{db}: plain dump {}", bytes(plain_bytes));
    let busy_before = busy_share(Duration::from_secs(2));
    if let Some(b) = busy_before.filter(|b| *b > BUSY_WARNING) {
        progress!(
            "{db}: warning: {:.0} % of the CPUs are busy with other work; times will be skewed",
            b * 100.0
        );
    }

    let mut alone = Vec::new();
    let mut tb = Vec::new();
    let mut tb_rss = Vec::new();
    let mut tb_sizes = Vec::new();
    let mut std = Vec::new();
    let mut std_sizes = Vec::new();
    let mut last_tb: Option<(PathBuf, PathBuf)> = None; // (its directory, the .sql.gz)

    for i in 0..repeat {
        let round = if repeat > 1 {
            format!(" (run {} of {repeat})", i + 1)
        } else {
            String::new()
        };

        let mut cmd = cluster.command("pg_dump");
        cmd.args(["-f", "/dev/null", db]);
        let run = measure::measure(&cmd)?;
        run.expect_codes("pg_dump -f /dev/null", &[0])?;
        progress!(
            "{db}: pg_dump alone{round}: {} wall, {} CPU",
            secs(run.usage.wall),
            secs(run.usage.cpu())
        );
        alone.push(run.usage);

        // tb-dump, default settings, into a directory of its own per run.
        if let Some((dir, _)) = last_tb.take() {
            remove_dir(&dir)?;
        }
        let dir = out_dir.join(format!("{db}-tb-{i}"));
        let mut cmd = cluster.command(&tools.tb_dump);
        cmd.arg("--dbname").arg(db).arg("--dir").arg(&dir);
        for var in ["TB_LOG", "TB_PG_DUMP", "TB_PG_DUMPALL", "TB_DOCKER"] {
            cmd.env_remove(var);
        }
        let run = measure::measure(&cmd)?;
        run.expect_codes("tb-dump", &[0, 1])?;
        let out = parse_tb_dump(&run.stdout)?;
        for w in &out.warnings {
            progress!("{db}: tb-dump warning: {w}");
        }
        if out.raw_bytes != plain_bytes {
            progress!(
                "{db}: note: tb-dump saw {} bytes of SQL, the warm-up pg_dump {}",
                out.raw_bytes,
                plain_bytes
            );
        }
        progress!(
            "{db}: tb-dump{round}: {} wall, {} CPU, {} own peak RSS, {}",
            secs(run.usage.wall),
            secs(run.usage.cpu()),
            mib(out.max_rss_bytes),
            bytes(out.bytes)
        );
        tb.push(run.usage);
        tb_rss.push(out.max_rss_bytes);
        tb_sizes.push(out.bytes);
        last_tb = Some((dir, out.path));

        // The pipeline the team runs today.
        let file = out_dir.join(format!("{db}-std-{i}.sql.gz"));
        let mut cmd = cluster.command("bash");
        cmd.args([
            "-c",
            "set -o pipefail; pg_dump \"$1\" | gzip > \"$2\"",
            "bash",
            db,
        ])
        .arg(&file);
        let run = measure::measure(&cmd)?;
        run.expect_codes("pg_dump | gzip", &[0])?;
        let size = fs::metadata(&file)
            .with_context(|| format!("cannot stat '{}'", file.display()))?
            .len();
        fs::remove_file(&file).with_context(|| format!("cannot remove '{}'", file.display()))?;
        progress!(
            "{db}: pg_dump | gzip{round}: {} wall, {} CPU, {}",
            secs(run.usage.wall),
            secs(run.usage.cpu()),
            bytes(size)
        );
        std.push(run.usage);
        std_sizes.push(size);
    }

    // Verification of tb-dump's last output, both ways.
    let (dir, path) = last_tb.context("no tb-dump output to verify")?;
    let mut verify_tb = Vec::new();
    let mut verify_std = Vec::new();
    for _ in 0..repeat {
        let mut cmd = Command::new(&tools.tb_check);
        cmd.arg("verify").arg(&path).env_remove("TB_LOG");
        let run = measure::measure(&cmd)?;
        run.expect_codes("tb-check verify", &[0])?;
        verify_tb.push(run.usage);

        let mut cmd = Command::new("gzip");
        cmd.arg("-t").arg(&path);
        let run = measure::measure(&cmd)?;
        run.expect_codes("gzip -t", &[0])?;
        verify_std.push(run.usage);
    }
    let (vt, vs) = (median_usage(&verify_tb), median_usage(&verify_std));
    progress!(
        "{db}: tb-check verify {} wall, gzip -t {} wall",
        secs(vt.wall),
        secs(vs.wall)
    );
    remove_dir(&dir)?;

    Ok(DbResult {
        name: db,
        busy_before,
        plain_bytes,
        pg_dump_alone: median_usage(&alone),
        tb: median_usage(&tb),
        tb_own_rss: median(&tb_rss).unwrap_or(0),
        tb_bytes: median(&tb_sizes).unwrap_or(0),
        std: median_usage(&std),
        std_bytes: median(&std_sizes).unwrap_or(0),
        verify_tb: vt,
        verify_std: vs,
    })
}

/// One target: its verdict and the line that explains it.
struct Target {
    met: bool,
    text: String,
}

/// Check the targets against the results (small database first).
fn targets(small: &DbResult, big: &DbResult) -> Vec<Target> {
    let wall = big.tb.wall.as_secs_f64() / big.std.wall.as_secs_f64().max(1e-9);
    let size = |r: &DbResult| r.tb_bytes as f64 / r.std_bytes.max(1) as f64;
    let growth = big.tb_own_rss as f64 / small.tb_own_rss.max(1) as f64;
    let verify = big.verify_tb.wall.as_secs_f64() / big.verify_std.wall.as_secs_f64().max(1e-9);
    vec![
        Target {
            met: wall <= WALL_FACTOR_MAX,
            text: format!(
                "tb-dump wall <= {WALL_FACTOR_MAX:.2} x pg_dump | gzip ({}): {wall:.2} ({} vs {})",
                big.name,
                secs(big.tb.wall),
                secs(big.std.wall)
            ),
        },
        Target {
            met: size(small) <= SIZE_FACTOR_MAX && size(big) <= SIZE_FACTOR_MAX,
            text: format!(
                "output size <= {SIZE_FACTOR_MAX:.2} x pg_dump | gzip's: {} {:.3}, {} {:.3}",
                small.name,
                size(small),
                big.name,
                size(big)
            ),
        },
        Target {
            met: small.tb_own_rss < RSS_MAX_BYTES && big.tb_own_rss < RSS_MAX_BYTES,
            text: format!(
                "tb-dump peak memory < {} at both sizes: {} {}, {} {}",
                mib(RSS_MAX_BYTES),
                small.name,
                mib(small.tb_own_rss),
                big.name,
                mib(big.tb_own_rss)
            ),
        },
        Target {
            met: growth <= RSS_GROWTH_MAX
                || big.tb_own_rss.saturating_sub(small.tb_own_rss) <= RSS_GROWTH_SLACK_BYTES,
            text: format!(
                "tb-dump peak memory flat for {:.1} x the data (big <= {RSS_GROWTH_MAX:.2} x small, or within {}): {growth:.2} x, {}{}",
                big.plain_bytes as f64 / small.plain_bytes.max(1) as f64,
                mib(RSS_GROWTH_SLACK_BYTES),
                if big.tb_own_rss >= small.tb_own_rss {
                    "+"
                } else {
                    "-"
                },
                mib(big.tb_own_rss.abs_diff(small.tb_own_rss))
            ),
        },
        Target {
            met: verify <= VERIFY_FACTOR_MAX,
            text: format!(
                "tb-check verify wall <= {VERIFY_FACTOR_MAX:.2} x gzip -t ({}): {verify:.2} ({} vs {})",
                big.name,
                secs(big.verify_tb.wall),
                secs(big.verify_std.wall)
            ),
        },
        Target {
            met: big.plain_bytes >= BIG_MIN_PLAIN_BYTES,
            text: format!(
                "setup: {} plain dump >= {}: {}",
                big.name,
                bytes(BIG_MIN_PLAIN_BYTES),
                bytes(big.plain_bytes)
            ),
        },
    ]
}

/// Print the whole report on stdout; true when every target is met.
fn print_report(
    machine: &Machine,
    results: &[DbResult],
    generation: Option<Duration>,
    repeat: usize,
    total: Duration,
) -> bool {
    let [small, big] = results else {
        println!("tb-bench: expected two databases, got {}", results.len());
        return false;
    };
    println!();
    println!("tb-bench dump");
    println!("machine:   {} CPUs ({})", machine.nproc, machine.cpu);
    let share = |r: &DbResult| {
        r.busy_before
            .map_or("?".to_string(), |b| format!("{:.0} %", b * 100.0))
    };
    println!(
        "busy:      {} of the CPUs busy with other work just before measuring {}, {} before {}",
        share(small),
        small.name,
        share(big),
        big.name
    );
    if [small, big]
        .iter()
        .any(|r| r.busy_before.is_some_and(|b| b > BUSY_WARNING))
    {
        println!(
            "WARNING:   the machine was busy with other work (over {:.0} %): wall times and their ratios are unreliable",
            BUSY_WARNING * 100.0
        );
    }
    println!(
        "software:  PostgreSQL server {}; {}; {}",
        machine.server, machine.pg_dump, machine.gzip
    );
    println!(
        "databases: small = {} ({} of plain SQL), big = {} ({})",
        small.name,
        bytes(small.plain_bytes),
        big.name,
        bytes(big.plain_bytes)
    );
    println!("compared:  tb = tb-dump --dbname DB --dir DIR (defaults) and tb-check verify FILE;");
    println!(
        "           standard = bash -c 'set -o pipefail; pg_dump DB | gzip > FILE' and gzip -t FILE"
    );
    println!(
        "runs:      {repeat} per command{}, warm cache",
        if repeat > 1 { " (median)" } else { "" }
    );
    println!();

    let mut t = Table::default();
    t.row([
        "measurement",
        "small tb",
        "standard",
        "ratio",
        "big tb",
        "standard",
        "ratio",
    ]);
    type Cell = fn(&DbResult) -> (String, String, String);
    let rows: [(&str, Cell); 9] = [
        ("dump wall time", |r| {
            (
                secs(r.tb.wall),
                secs(r.std.wall),
                ratio(r.tb.wall.as_secs_f64(), r.std.wall.as_secs_f64()),
            )
        }),
        ("dump CPU time (user+sys, process tree)", |r| {
            (
                secs(r.tb.cpu()),
                secs(r.std.cpu()),
                ratio(r.tb.cpu().as_secs_f64(), r.std.cpu().as_secs_f64()),
            )
        }),
        ("dump speed (plain SQL per wall second)", |r| {
            let speed = |u: &Usage| r.plain_bytes as f64 / u.wall.as_secs_f64().max(1e-9);
            (
                format!("{}/s", bytes(speed(&r.tb) as u64)),
                format!("{}/s", bytes(speed(&r.std) as u64)),
                ratio(speed(&r.tb), speed(&r.std)),
            )
        }),
        ("dump peak RSS, tb-dump itself (summary)", |r| {
            (mib(r.tb_own_rss), "-".into(), "-".into())
        }),
        ("dump peak RSS, largest process of tree", |r| {
            (
                mib(r.tb.max_rss_bytes),
                mib(r.std.max_rss_bytes),
                ratio(r.tb.max_rss_bytes as f64, r.std.max_rss_bytes as f64),
            )
        }),
        ("dump output size", |r| {
            (
                bytes(r.tb_bytes),
                bytes(r.std_bytes),
                ratio(r.tb_bytes as f64, r.std_bytes as f64),
            )
        }),
        ("dump output / plain SQL", |r| {
            let p = r.plain_bytes as f64;
            (
                ratio(r.tb_bytes as f64, p),
                ratio(r.std_bytes as f64, p),
                "-".into(),
            )
        }),
        ("verify wall time (tb's .sql.gz)", |r| {
            (
                secs(r.verify_tb.wall),
                secs(r.verify_std.wall),
                ratio(
                    r.verify_tb.wall.as_secs_f64(),
                    r.verify_std.wall.as_secs_f64(),
                ),
            )
        }),
        ("verify CPU time (user+sys)", |r| {
            (
                secs(r.verify_tb.cpu()),
                secs(r.verify_std.cpu()),
                ratio(
                    r.verify_tb.cpu().as_secs_f64(),
                    r.verify_std.cpu().as_secs_f64(),
                ),
            )
        }),
    ];
    for (label, cell) in rows {
        let (a, b, c) = cell(small);
        let (d, e, f) = cell(big);
        t.row([label.to_string(), a, b, c, d, e, f]);
    }
    print!("{}", t.render(1));
    println!();
    for r in [small, big] {
        println!(
            "pg_dump alone (-f /dev/null), {}: {} wall, {} CPU, {} peak RSS",
            r.name,
            secs(r.pg_dump_alone.wall),
            secs(r.pg_dump_alone.cpu()),
            mib(r.pg_dump_alone.max_rss_bytes)
        );
    }
    println!(
        "CPU times count the client process trees (tb-dump + pg_dump + pg_dumpall; bash + pg_dump + gzip),"
    );
    println!("not the PostgreSQL server, whose work is the same for both.");
    println!();

    let targets = targets(small, big);
    println!("targets:");
    for t in &targets {
        println!("  {}  {}", if t.met { "PASS" } else { "FAIL" }, t.text);
    }
    let missed = targets.iter().filter(|t| !t.met).count();
    println!();
    match generation {
        Some(g) => println!("generation: {}", secs(g)),
        None => println!("generation: none (kept databases reused; --fresh regenerates)"),
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

    #[test]
    fn memory_is_flat_within_a_ratio_or_a_few_mib() {
        let r = |rss: u64| DbResult {
            tb_own_rss: rss,
            plain_bytes: 1,
            ..Default::default()
        };
        let flat = |small: u64, big: u64| {
            targets(&r(small), &r(big))
                .iter()
                .find(|t| t.text.contains("flat"))
                .map(|t| t.met)
        };
        assert_eq!(flat(13 << 20, 15 << 20), Some(true));
        assert_eq!(flat(2 << 20, 5 << 20), Some(true));
        assert_eq!(flat(20 << 20, 30 << 20), Some(false));
    }

    #[test]
    fn tb_dump_records_are_read() {
        let out = concat!(
            r#"{"event":"written","tool":"tb-dump","kind":"dump","path":"/o/x.sql.gz","bytes":10,"raw_bytes":40}"#,
            "\n",
            r#"{"event":"written","tool":"tb-dump","kind":"roles","path":"/o/x.roles.sql.gz","bytes":3}"#,
            "\n",
            r#"{"event":"warning","tool":"tb-dump","message":"hm"}"#,
            "\n",
            r#"{"event":"summary","tool":"tb-dump","status":"ok","max_rss_bytes":1048576}"#,
            "\n"
        );
        let got = parse_tb_dump(out).unwrap();
        assert_eq!(
            got,
            TbDumpOutput {
                path: PathBuf::from("/o/x.sql.gz"),
                bytes: 10,
                raw_bytes: 40,
                max_rss_bytes: 1 << 20,
                warnings: vec!["hm".into()],
            }
        );
        assert!(parse_tb_dump(r#"{"event":"summary","max_rss_bytes":1}"#).is_err());
    }
}
