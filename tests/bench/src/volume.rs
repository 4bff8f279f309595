//! The `volume` benchmark: on a generated media-like tree, `tb-voltar`
//! against `tar czf`, `tb-restore` against `tar -xzpf`, and `tb-check
//! verify` against `gzip -t`.
//!
//! Steps: build the tools (release), generate the tree unless a kept one of
//! the same size is complete (see [`crate::media`]), read every file of it
//! once (the warm-up; the page cache is not dropped, that needs root and
//! would leave the other side's runs cold too), then measure every command
//! `--repeat` times (median): the two archivers, then the two restores of
//! the last archives (each into a new directory, compared entry by entry
//! with the tree and deleted), then the two checks. Every measured command
//! starts after a `sync`, so that none pays for writing back what the one
//! before it wrote. The outputs are deleted between runs and at the end;
//! the table and the targets are printed last.
//!
//! The warm-up reads the files itself: `tar cf /dev/null` would not do,
//! GNU tar notices the null device and does not read file contents.
//!
//! When tb-restore cannot be built, the restore rows say "not measured"
//! and the run fails like a missed target.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::common::{self, BUSY_WARNING, Scratch, busy_share, free_bytes, free_space, remove_dir};
use crate::measure::{self, Usage, median, median_usage};
use crate::media::{self, Listing, TreeStats};
use crate::report::{Table, bytes, mib, ratio, secs};
use crate::{VolumeOptions, bench_dir, workspace_root};

/// The tree must hold at least this many bytes (the default makes 1.65 GB).
const MIN_TREE_BYTES: u64 = 1_500_000_000;
/// Target: tb-voltar wall time at most this times `tar czf`'s.
const ARCHIVE_WALL_FACTOR_MAX: f64 = 0.20;
/// Target: tb-voltar's archive at most this times `tar czf`'s.
const ARCHIVE_SIZE_FACTOR_MAX: f64 = 1.03;
/// Target: tb-voltar's own peak RSS below this.
const ARCHIVE_RSS_MAX_BYTES: u64 = 64 << 20;
/// Target: tb-restore wall time at most this times `tar -xzpf`'s.
const RESTORE_WALL_FACTOR_MAX: f64 = 1.0;
/// Target: tb-restore's peak RSS below this.
const RESTORE_RSS_MAX_BYTES: u64 = 64 << 20;
/// The label tb-voltar gets (`--name`).
const LABEL: &str = "media_volume";
/// The outputs need about this many times the tree's size: two archives
/// (about 0.8 each) and one restored tree at a time.
const OUTPUT_SPACE_FACTOR: f64 = 2.7;

/// The binaries under test; tb-restore is optional (see the module doc).
struct Tools {
    tb_voltar: PathBuf,
    tb_check: PathBuf,
    /// tb-restore, or why it cannot be measured.
    tb_restore: std::result::Result<PathBuf, String>,
}

/// The restore measurements (medians over the repetitions).
#[derive(Debug, Default)]
struct RestoreResult {
    /// `tb-restore ARCHIVE --target DIR`.
    tb: Usage,
    /// tb-restore's peak RSS: its own (`max_rss_bytes` of its summary
    /// record) when it reports it, else the largest process of its tree.
    tb_rss: u64,
    /// Where `tb_rss` comes from, for the report.
    tb_rss_source: &'static str,
    /// `mkdir DIR && tar -xzpf ARCHIVE --numeric-owner -C DIR`.
    std: Usage,
    /// The first difference between the tree restored by tb-restore and
    /// the source, if any.
    tb_difference: Option<String>,
}

/// Everything measured (medians over the repetitions).
#[derive(Debug)]
struct VolumeResult {
    /// The tree, as listed by the warm-up.
    tree: TreeStats,
    /// Share of the CPUs busy with other work just before measuring.
    busy_before: Option<f64>,
    /// How long the warm-up read took.
    warmup: Duration,
    /// tb-voltar.
    tb: Usage,
    /// tb-voltar's own peak RSS (`max_rss_bytes` of its summary record).
    tb_own_rss: u64,
    /// Size of tb-voltar's .tar.gz (its index and manifest not counted).
    tb_bytes: u64,
    /// Size of tb-voltar's index beside the archive.
    tb_index_bytes: u64,
    /// `tar czf`.
    std: Usage,
    /// Size of tar's .tar.gz.
    std_bytes: u64,
    /// The restores, or why they were not measured.
    restore: std::result::Result<RestoreResult, String>,
    /// `tb-check verify` on tb-voltar's archive.
    verify_tb: Usage,
    /// `gzip -t` on tar's archive.
    verify_std: Usage,
}

/// The machine and the software versions, for the report header.
struct Machine {
    nproc: usize,
    cpu: String,
    tar: String,
    gzip: String,
}

/// Run the `volume` benchmark; true when every measured target is met.
pub fn run(opts: &VolumeOptions) -> Result<bool> {
    let run_start = Instant::now();
    let tools = build_tools()?;
    let work = bench_dir().join("volume");
    fs::create_dir_all(&work)
        .with_context(|| format!("cannot create the bench directory '{}'", work.display()))?;
    progress!(
        "work directory {} ({} free)",
        work.display(),
        free_space(&work)
    );

    let (tree, _) = media::tree_paths(&work, opts.size_mb);
    let kept = if opts.fresh {
        None
    } else {
        media::kept(&work, opts.size_mb)
    };
    let (stamp, generation) = match kept {
        Some(stats) => {
            progress!(
                "reusing the generated tree {} ({} files, {})",
                tree.display(),
                stats.files,
                bytes(stats.bytes)
            );
            (stats, None)
        }
        None => {
            progress!(
                "generating the media tree ({} MB) in {}...",
                opts.size_mb,
                tree.display()
            );
            let (stats, took) = media::generate(&work, opts.size_mb)?;
            progress!(
                "generated {} files in {} directories, {}, in {}",
                stats.files,
                stats.dirs,
                bytes(stats.bytes),
                secs(took)
            );
            (stats, Some(took))
        }
    };
    let needed = (stamp.bytes as f64 * OUTPUT_SPACE_FACTOR) as u64;
    match free_bytes(&work) {
        Ok(free) if free < needed => progress!(
            "warning: {} free, the outputs need about {}: the run may fail for lack of space",
            bytes(free),
            bytes(needed)
        ),
        Ok(_) => {}
        Err(e) => progress!("warning: {e:#}"),
    }

    let scratch = Scratch::create(work.join("out"))?;
    let machine = Machine::probe()?;
    let result = bench_tree(&tree, &stamp, &tools, &scratch.0, opts.repeat)?;
    drop(scratch);
    Ok(print_report(
        &machine,
        &tree,
        &result,
        generation,
        opts.repeat,
        run_start.elapsed(),
    ))
}

/// `cargo build --release -p tb-voltar -p tb-check`, and tb-restore when
/// the workspace has it; the paths of the binaries.
fn build_tools() -> Result<Tools> {
    progress!("building tb-voltar and tb-check (release)...");
    common::cargo_build_release(&["tb-voltar", "tb-check"])?;
    let tb_restore = if workspace_root()
        .join("tools/tb-restore/Cargo.toml")
        .is_file()
    {
        progress!("building tb-restore (release)...");
        match common::cargo_build_release(&["tb-restore"])
            .and_then(|()| common::release_binary("tb-restore"))
        {
            Ok(p) => Ok(p),
            Err(e) => {
                progress!("warning: the restore is not measured: {e:#}");
                Err(format!("tb-restore does not build ({e:#})"))
            }
        }
    } else {
        progress!("warning: the workspace has no tools/tb-restore: the restore is not measured");
        Err("tb-restore missing".to_string())
    };
    Ok(Tools {
        tb_voltar: common::release_binary("tb-voltar")?,
        tb_check: common::release_binary("tb-check")?,
        tb_restore,
    })
}

impl Machine {
    /// Read nproc, the CPU model and the versions of tar and gzip.
    fn probe() -> Result<Machine> {
        let mut tar = Command::new("tar");
        tar.arg("--version");
        let mut gzip = Command::new("gzip");
        gzip.arg("--version");
        Ok(Machine {
            nproc: common::nproc(),
            cpu: common::cpu_model(),
            tar: common::first_line(tar)?,
            gzip: common::first_line(gzip)?,
        })
    }
}

/// What a tb tool reported on stdout (JSON records, one a line).
#[derive(Debug, Default, PartialEq)]
struct Records {
    /// `bytes` of each `written` record, by kind.
    written: Vec<(String, u64)>,
    /// `max_rss_bytes` of the summary record.
    max_rss_bytes: Option<u64>,
    /// Messages of `warning` records.
    warnings: Vec<String>,
}

impl Records {
    /// The size in the `written` record of `kind`.
    fn written_bytes(&self, kind: &str) -> Option<u64> {
        self.written
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, n)| *n)
    }
}

/// Read the records `tool` printed.
fn parse_records(tool: &str, stdout: &str) -> Result<Records> {
    let mut r = Records::default();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{tool} printed a line that is not JSON: {line}"))?;
        match v["event"].as_str() {
            Some("written") => r.written.push((
                v["kind"].as_str().unwrap_or("").to_string(),
                v["bytes"].as_u64().unwrap_or(0),
            )),
            Some("summary") => r.max_rss_bytes = v["max_rss_bytes"].as_u64(),
            Some("warning") => r
                .warnings
                .push(v["message"].as_str().unwrap_or(line).to_string()),
            _ => {}
        }
    }
    Ok(r)
}

/// The size of `path`.
fn file_size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("cannot stat '{}'", path.display()))?
        .len())
}

/// Remove `path` (a file).
fn remove_file(path: &Path) -> Result<()> {
    fs::remove_file(path).with_context(|| format!("cannot remove '{}'", path.display()))
}

/// tb-voltar's three files for the archive `path`: the archive, its index
/// and its manifest.
fn tb_outputs(path: &Path) -> [PathBuf; 3] {
    let s = path.to_string_lossy();
    let stem = s.strip_suffix(".tar.gz").unwrap_or(&s);
    [
        path.to_path_buf(),
        PathBuf::from(format!("{stem}.index.jsonl.gz")),
        PathBuf::from(format!("{stem}.manifest.json")),
    ]
}

/// " (run i of n)" when there are several runs.
fn round_label(i: usize, repeat: usize) -> String {
    if repeat > 1 {
        format!(" (run {} of {repeat})", i + 1)
    } else {
        String::new()
    }
}

/// Measure `cmd` after `sync`: what the previous command left to write
/// back is then not charged to this one (the commands' own syncs are).
fn measure_synced(cmd: &Command) -> Result<measure::Run> {
    nix::unistd::sync();
    measure::measure(cmd)
}

/// Measure everything on the tree.
fn bench_tree(
    tree: &Path,
    stamp: &TreeStats,
    tools: &Tools,
    out_dir: &Path,
    repeat: usize,
) -> Result<VolumeResult> {
    progress!("warm-up: reading every file of the tree once...");
    let warm_start = Instant::now();
    let (listing, stats) = media::list(tree, true)?;
    let warmup = warm_start.elapsed();
    media::check_kept(stamp, &stats)?;
    progress!("warm-up: {} read in {}", bytes(stats.bytes), secs(warmup));
    let busy_before = busy_share(Duration::from_secs(2));
    if let Some(b) = busy_before.filter(|b| *b > BUSY_WARNING) {
        progress!(
            "warning: {:.0} % of the CPUs are busy with other work; times will be skewed",
            b * 100.0
        );
    }

    let mut tb = Vec::new();
    let mut tb_rss = Vec::new();
    let mut tb_sizes = Vec::new();
    let mut tb_index = Vec::new();
    let mut std = Vec::new();
    let mut std_sizes = Vec::new();
    let mut last_tb: Option<PathBuf> = None;
    let mut last_std: Option<PathBuf> = None;

    for i in 0..repeat {
        let round = round_label(i, repeat);

        if let Some(prev) = last_tb.take() {
            for p in tb_outputs(&prev) {
                remove_file(&p)?;
            }
        }
        let file = out_dir.join(format!("tb-{i}.tar.gz"));
        let mut cmd = Command::new(&tools.tb_voltar);
        cmd.arg("--source")
            .arg(tree)
            .args(["--name", LABEL, "-o"])
            .arg(&file);
        for var in ["TB_LOG", "TB_DOCKER"] {
            cmd.env_remove(var);
        }
        let run = measure_synced(&cmd)?;
        run.expect_codes("tb-voltar", &[0, 1])?;
        let rec = parse_records("tb-voltar", &run.stdout)?;
        for w in &rec.warnings {
            progress!("tb-voltar warning: {w}");
        }
        let size = file_size(&file)?;
        if rec.written_bytes("volume") != Some(size) {
            bail!(
                "tb-voltar's `written` record of kind volume says {:?} bytes, '{}' has {size}",
                rec.written_bytes("volume"),
                file.display()
            );
        }
        let own_rss = rec
            .max_rss_bytes
            .context("tb-voltar's summary has no max_rss_bytes")?;
        progress!(
            "tb-voltar{round}: {} wall, {} CPU, {} own peak RSS, {}",
            secs(run.usage.wall),
            secs(run.usage.cpu()),
            mib(own_rss),
            bytes(size)
        );
        tb.push(run.usage);
        tb_rss.push(own_rss);
        tb_sizes.push(size);
        tb_index.push(rec.written_bytes("index").unwrap_or(0));
        last_tb = Some(file);

        if let Some(prev) = last_std.take() {
            remove_file(&prev)?;
        }
        let file = out_dir.join(format!("std-{i}.tar.gz"));
        let mut cmd = Command::new("tar");
        cmd.arg("czf").arg(&file).arg("-C").arg(tree).arg(".");
        let run = measure_synced(&cmd)?;
        run.expect_codes("tar czf", &[0])?;
        let size = file_size(&file)?;
        progress!(
            "tar czf{round}: {} wall, {} CPU, {}",
            secs(run.usage.wall),
            secs(run.usage.cpu()),
            bytes(size)
        );
        std.push(run.usage);
        std_sizes.push(size);
        last_std = Some(file);
    }
    let tb_archive = last_tb.context("no tb-voltar archive")?;
    let std_archive = last_std.context("no tar archive")?;

    let restore = match &tools.tb_restore {
        Ok(tb_restore) => Ok(bench_restore(
            tb_restore,
            &tb_archive,
            &std_archive,
            &listing,
            out_dir,
            repeat,
        )?),
        Err(why) => {
            progress!("restore: not measured: {why}");
            Err(why.clone())
        }
    };

    let mut verify_tb = Vec::new();
    let mut verify_std = Vec::new();
    for _ in 0..repeat {
        let mut cmd = Command::new(&tools.tb_check);
        cmd.arg("verify").arg(&tb_archive).env_remove("TB_LOG");
        let run = measure_synced(&cmd)?;
        run.expect_codes("tb-check verify", &[0])?;
        verify_tb.push(run.usage);

        let mut cmd = Command::new("gzip");
        cmd.arg("-t").arg(&std_archive);
        let run = measure_synced(&cmd)?;
        run.expect_codes("gzip -t", &[0])?;
        verify_std.push(run.usage);
    }
    let (vt, vs) = (median_usage(&verify_tb), median_usage(&verify_std));
    progress!(
        "tb-check verify {} wall, gzip -t {} wall",
        secs(vt.wall),
        secs(vs.wall)
    );
    for p in tb_outputs(&tb_archive) {
        remove_file(&p)?;
    }
    remove_file(&std_archive)?;

    Ok(VolumeResult {
        tree: stats,
        busy_before,
        warmup,
        tb: median_usage(&tb),
        tb_own_rss: median(&tb_rss).unwrap_or(0),
        tb_bytes: median(&tb_sizes).unwrap_or(0),
        tb_index_bytes: median(&tb_index).unwrap_or(0),
        std: median_usage(&std),
        std_bytes: median(&std_sizes).unwrap_or(0),
        restore,
        verify_tb: vt,
        verify_std: vs,
    })
}

/// Measure the two restores, each into a new directory that is compared
/// with the source (`listing`) and deleted.
fn bench_restore(
    tb_restore: &Path,
    tb_archive: &Path,
    std_archive: &Path,
    listing: &Listing,
    out_dir: &Path,
    repeat: usize,
) -> Result<RestoreResult> {
    let mut tb = Vec::new();
    let mut tb_rss = Vec::new();
    let mut own_rss_reported = true;
    let mut std = Vec::new();
    let mut tb_difference = None;
    for i in 0..repeat {
        let round = round_label(i, repeat);

        // tb-restore creates the target itself: it must not exist.
        let target = out_dir.join(format!("restore-tb-{i}"));
        let mut cmd = Command::new(tb_restore);
        cmd.arg(tb_archive).arg("--target").arg(&target);
        for var in ["TB_LOG", "TB_DOCKER"] {
            cmd.env_remove(var);
        }
        let run = measure_synced(&cmd)?;
        run.expect_codes("tb-restore", &[0, 1])?;
        let rec = parse_records("tb-restore", &run.stdout)?;
        for w in &rec.warnings {
            progress!("tb-restore warning: {w}");
        }
        let rss = match rec.max_rss_bytes {
            Some(n) => n,
            None => {
                own_rss_reported = false;
                run.usage.max_rss_bytes
            }
        };
        let (restored, _) = media::list(&target, false)?;
        let difference = media::first_difference(listing, &restored);
        progress!(
            "tb-restore{round}: {} wall, {} CPU, {} peak RSS; {}",
            secs(run.usage.wall),
            secs(run.usage.cpu()),
            mib(rss),
            difference.as_deref().unwrap_or("same entries as the tree")
        );
        remove_dir(&target)?;
        tb.push(run.usage);
        tb_rss.push(rss);
        if tb_difference.is_none() {
            tb_difference = difference;
        }

        let target = out_dir.join(format!("restore-std-{i}"));
        let mut cmd = Command::new("bash");
        cmd.args([
            "-c",
            "mkdir \"$2\" && exec tar -xzpf \"$1\" --numeric-owner -C \"$2\"",
            "bash",
        ])
        .arg(std_archive)
        .arg(&target);
        let run = measure_synced(&cmd)?;
        run.expect_codes("mkdir && tar -xzpf", &[0])?;
        let (restored, _) = media::list(&target, false)?;
        if let Some(d) = media::first_difference(listing, &restored) {
            bail!("tar -xzpf restored a tree that differs from the source: {d}");
        }
        progress!(
            "mkdir && tar -xzpf{round}: {} wall, {} CPU",
            secs(run.usage.wall),
            secs(run.usage.cpu())
        );
        remove_dir(&target)?;
        std.push(run.usage);
    }
    Ok(RestoreResult {
        tb: median_usage(&tb),
        tb_rss: median(&tb_rss).unwrap_or(0),
        tb_rss_source: if own_rss_reported {
            "its summary"
        } else {
            "largest process of its tree"
        },
        std: median_usage(&std),
        tb_difference,
    })
}

/// One target: its verdict (`None`: not measured) and the line that
/// explains it.
struct Target {
    met: Option<bool>,
    text: String,
}

/// Wall time ratio `a / b`.
fn wall_ratio(a: &Usage, b: &Usage) -> f64 {
    a.wall.as_secs_f64() / b.wall.as_secs_f64().max(1e-9)
}

/// Check the targets against the results.
fn targets(r: &VolumeResult) -> Vec<Target> {
    let wall = wall_ratio(&r.tb, &r.std);
    let size = r.tb_bytes as f64 / r.std_bytes.max(1) as f64;
    let mut t = vec![
        Target {
            met: Some(wall <= ARCHIVE_WALL_FACTOR_MAX),
            text: format!(
                "tb-voltar wall <= {ARCHIVE_WALL_FACTOR_MAX:.2} x tar czf: {wall:.3} ({} vs {})",
                secs(r.tb.wall),
                secs(r.std.wall)
            ),
        },
        Target {
            met: Some(size <= ARCHIVE_SIZE_FACTOR_MAX),
            text: format!(
                "archive size <= {ARCHIVE_SIZE_FACTOR_MAX:.2} x tar czf's: {size:.3} ({} vs {})",
                bytes(r.tb_bytes),
                bytes(r.std_bytes)
            ),
        },
        Target {
            met: Some(r.tb_own_rss < ARCHIVE_RSS_MAX_BYTES),
            text: format!(
                "tb-voltar peak memory < {}: {}",
                mib(ARCHIVE_RSS_MAX_BYTES),
                mib(r.tb_own_rss)
            ),
        },
    ];
    match &r.restore {
        Ok(rs) => {
            let wall = wall_ratio(&rs.tb, &rs.std);
            t.push(Target {
                met: Some(wall <= RESTORE_WALL_FACTOR_MAX),
                text: format!(
                    "tb-restore wall <= {RESTORE_WALL_FACTOR_MAX:.2} x mkdir && tar -xzpf: {wall:.3} ({} vs {})",
                    secs(rs.tb.wall),
                    secs(rs.std.wall)
                ),
            });
            t.push(Target {
                met: Some(rs.tb_rss < RESTORE_RSS_MAX_BYTES),
                text: format!(
                    "tb-restore peak memory < {}: {} ({})",
                    mib(RESTORE_RSS_MAX_BYTES),
                    mib(rs.tb_rss),
                    rs.tb_rss_source
                ),
            });
            t.push(Target {
                met: Some(rs.tb_difference.is_none()),
                text: format!(
                    "tb-restore restores the tree (paths, types, modes, sizes): {}",
                    rs.tb_difference.as_deref().unwrap_or("same entries")
                ),
            });
        }
        Err(why) => {
            for what in [
                format!("tb-restore wall <= {RESTORE_WALL_FACTOR_MAX:.2} x mkdir && tar -xzpf"),
                format!("tb-restore peak memory < {}", mib(RESTORE_RSS_MAX_BYTES)),
                "tb-restore restores the tree".to_string(),
            ] {
                t.push(Target {
                    met: None,
                    text: format!("{what}: not measured: {why}"),
                });
            }
        }
    }
    t.push(Target {
        met: Some(r.tree.bytes >= MIN_TREE_BYTES),
        text: format!(
            "setup: tree >= {}: {}",
            bytes(MIN_TREE_BYTES),
            bytes(r.tree.bytes)
        ),
    });
    t
}

/// The measurement rows: label, tb, standard, ratio.
fn rows(r: &VolumeResult) -> Vec<[String; 4]> {
    let mut rows = Vec::new();
    let mut row = |label: &str, a: String, b: String, c: String| {
        rows.push([label.to_string(), a, b, c]);
    };
    let tree = r.tree.bytes as f64;
    let speed = |u: &Usage| tree / u.wall.as_secs_f64().max(1e-9);
    row(
        "archive wall time",
        secs(r.tb.wall),
        secs(r.std.wall),
        ratio(r.tb.wall.as_secs_f64(), r.std.wall.as_secs_f64()),
    );
    row(
        "archive CPU time (user+sys, process tree)",
        secs(r.tb.cpu()),
        secs(r.std.cpu()),
        ratio(r.tb.cpu().as_secs_f64(), r.std.cpu().as_secs_f64()),
    );
    row(
        "archive speed (tree bytes per wall second)",
        format!("{}/s", bytes(speed(&r.tb) as u64)),
        format!("{}/s", bytes(speed(&r.std) as u64)),
        ratio(speed(&r.tb), speed(&r.std)),
    );
    row(
        "archive peak RSS, tb-voltar itself (summary)",
        mib(r.tb_own_rss),
        "-".into(),
        "-".into(),
    );
    row(
        "archive peak RSS, largest process of tree",
        mib(r.tb.max_rss_bytes),
        mib(r.std.max_rss_bytes),
        ratio(r.tb.max_rss_bytes as f64, r.std.max_rss_bytes as f64),
    );
    row(
        "archive size",
        bytes(r.tb_bytes),
        bytes(r.std_bytes),
        ratio(r.tb_bytes as f64, r.std_bytes as f64),
    );
    row(
        "archive size / tree bytes",
        ratio(r.tb_bytes as f64, tree),
        ratio(r.std_bytes as f64, tree),
        "-".into(),
    );
    match &r.restore {
        Ok(rs) => {
            row(
                "restore wall time",
                secs(rs.tb.wall),
                secs(rs.std.wall),
                ratio(rs.tb.wall.as_secs_f64(), rs.std.wall.as_secs_f64()),
            );
            row(
                "restore CPU time (user+sys, process tree)",
                secs(rs.tb.cpu()),
                secs(rs.std.cpu()),
                ratio(rs.tb.cpu().as_secs_f64(), rs.std.cpu().as_secs_f64()),
            );
            row(
                "restore peak RSS, largest process of tree",
                mib(rs.tb.max_rss_bytes),
                mib(rs.std.max_rss_bytes),
                ratio(rs.tb.max_rss_bytes as f64, rs.std.max_rss_bytes as f64),
            );
        }
        Err(_) => {
            for label in [
                "restore wall time",
                "restore CPU time (user+sys, process tree)",
                "restore peak RSS, largest process of tree",
            ] {
                row(label, "not measured".into(), "-".into(), "-".into());
            }
        }
    }
    row(
        "verify wall time (each its own archive)",
        secs(r.verify_tb.wall),
        secs(r.verify_std.wall),
        ratio(
            r.verify_tb.wall.as_secs_f64(),
            r.verify_std.wall.as_secs_f64(),
        ),
    );
    row(
        "verify CPU time (user+sys)",
        secs(r.verify_tb.cpu()),
        secs(r.verify_std.cpu()),
        ratio(
            r.verify_tb.cpu().as_secs_f64(),
            r.verify_std.cpu().as_secs_f64(),
        ),
    );
    rows
}

/// Print the whole report on stdout; true when every measured target is
/// met.
fn print_report(
    machine: &Machine,
    tree: &Path,
    r: &VolumeResult,
    generation: Option<Duration>,
    repeat: usize,
    total: Duration,
) -> bool {
    println!();
    println!("tb-bench volume");
    println!("machine:   {} CPUs ({})", machine.nproc, machine.cpu);
    println!(
        "busy:      {} of the CPUs busy with other work just before measuring",
        r.busy_before
            .map_or("?".to_string(), |b| format!("{:.0} %", b * 100.0))
    );
    if r.busy_before.is_some_and(|b| b > BUSY_WARNING) {
        println!(
            "WARNING:   the machine was busy with other work (over {:.0} %): wall times and their ratios are unreliable",
            BUSY_WARNING * 100.0
        );
    }
    println!("software:  {}; {}", machine.tar, machine.gzip);
    println!(
        "tree:      {} ({} files, {} directories, {})",
        tree.display(),
        r.tree.files,
        r.tree.dirs,
        bytes(r.tree.bytes)
    );
    println!(
        "           {:.0} % of the bytes in already-compressed files (JPEG, PNG, MP4, ZIP), the rest JSON, HTML, text",
        media::COMPRESSED_SHARE * 100.0
    );
    println!(
        "compared:  archive: tb-voltar --source TREE --name {LABEL} -o FILE.tar.gz (defaults)"
    );
    println!("                    vs tar czf FILE.tar.gz -C TREE .");
    println!("           restore: tb-restore FILE.tar.gz --target DIR (DIR new)");
    println!(
        "                    vs bash -c 'mkdir DIR && tar -xzpf FILE.tar.gz --numeric-owner -C DIR'"
    );
    println!(
        "           verify:  tb-check verify (tb-voltar's archive) vs gzip -t (tar's archive)"
    );
    println!(
        "runs:      {repeat} per command{}, outputs deleted between runs, `sync` before each",
        if repeat > 1 { " (median)" } else { "" }
    );
    println!(
        "cache:     warm: every file of the tree was read once before measuring ({}); the page",
        secs(r.warmup)
    );
    println!("           cache is not dropped, both sides read the same cached tree");
    println!();

    let mut t = Table::default();
    t.row(["measurement", "tb", "standard", "ratio"]);
    for row in rows(r) {
        t.row(row);
    }
    print!("{}", t.render(1));
    println!();
    println!(
        "tb-voltar also writes an index beside the archive ({}, not counted above) and reads the",
        bytes(r.tb_index_bytes)
    );
    println!("archive back against it before publishing, which its times include.");
    if let Err(why) = &r.restore {
        println!("restore: not measured: {why}");
    }
    println!();

    let targets = targets(r);
    println!("targets:");
    for t in &targets {
        let verdict = match t.met {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "SKIP",
        };
        println!("  {verdict}  {}", t.text);
    }
    let missed = targets.iter().filter(|t| t.met == Some(false)).count();
    let skipped = targets.iter().filter(|t| t.met.is_none()).count();
    let measured = targets.len() - skipped;
    println!();
    match generation {
        Some(g) => println!("generation: {}", secs(g)),
        None => println!("generation: none (kept tree reused; --fresh regenerates)"),
    }
    println!("whole run:  {}", secs(total));
    let not_measured = if skipped > 0 {
        format!(" ({skipped} not measured)")
    } else {
        String::new()
    };
    if missed == 0 {
        println!("all {measured} measured targets met{not_measured}");
    } else {
        println!("{missed} of {measured} measured targets MISSED{not_measured}");
    }
    // A target that could not be measured is not met either.
    missed == 0 && skipped == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read() {
        let out = concat!(
            r#"{"event":"written","tool":"tb-voltar","kind":"volume","path":"/o/x.tar.gz","bytes":10}"#,
            "\n",
            r#"{"event":"written","tool":"tb-voltar","kind":"index","path":"/o/x.index.jsonl.gz","bytes":3}"#,
            "\n",
            r#"{"event":"warning","tool":"tb-voltar","message":"hm"}"#,
            "\n",
            r#"{"event":"summary","tool":"tb-voltar","status":"ok","max_rss_bytes":1048576}"#,
            "\n"
        );
        let r = parse_records("tb-voltar", out).unwrap();
        assert_eq!(r.written_bytes("volume"), Some(10));
        assert_eq!(r.written_bytes("index"), Some(3));
        assert_eq!(r.written_bytes("manifest"), None);
        assert_eq!(r.max_rss_bytes, Some(1 << 20));
        assert_eq!(r.warnings, vec!["hm".to_string()]);
        assert!(parse_records("tb-voltar", "not json").is_err());
    }

    #[test]
    fn tb_voltar_outputs_sit_beside_the_archive() {
        assert_eq!(
            tb_outputs(Path::new("/o/tb-0.tar.gz")),
            [
                PathBuf::from("/o/tb-0.tar.gz"),
                PathBuf::from("/o/tb-0.index.jsonl.gz"),
                PathBuf::from("/o/tb-0.manifest.json"),
            ]
        );
    }

    #[test]
    fn unmeasured_restore_targets_are_skipped_not_missed() {
        let u = |s: u64| Usage {
            wall: Duration::from_secs(s),
            ..Default::default()
        };
        let r = VolumeResult {
            tree: TreeStats {
                bytes: MIN_TREE_BYTES,
                ..Default::default()
            },
            tb: u(1),
            std: u(10),
            tb_bytes: 100,
            std_bytes: 100,
            tb_own_rss: 10 << 20,
            tb_index_bytes: 0,
            busy_before: None,
            warmup: Duration::ZERO,
            restore: Err("tb-restore missing".into()),
            verify_tb: u(1),
            verify_std: u(1),
        };
        let t = targets(&r);
        assert_eq!(t.iter().filter(|t| t.met.is_none()).count(), 3);
        assert!(t.iter().all(|t| t.met != Some(false)));

        let r = VolumeResult {
            restore: Ok(RestoreResult {
                tb: u(3),
                std: u(2),
                tb_rss: 1 << 20,
                ..Default::default()
            }),
            ..r
        };
        let t = targets(&r);
        assert!(t.iter().all(|t| t.met.is_some()));
        assert_eq!(t.iter().filter(|t| t.met == Some(false)).count(), 1);
    }
}
