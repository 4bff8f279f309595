//! `tb-bench`: the tb tools side by side with the commands the team runs
//! today, on data of realistic size (`make bench`).
//!
//! ```text
//! tb-bench dump [--fresh] [--repeat N]
//! tb-bench volume [--fresh] [--repeat N] [--size-mb N]
//! tb-bench incr [--fresh] [--repeat N]
//! tb-bench restore [--fresh] [--repeat N]
//! ```
//!
//! `dump` starts a throwaway PostgreSQL cluster (`tests/pg-throwaway`) in
//! the bench directory (`$TB_BENCH_DIR`, default `<workspace>/target/bench`),
//! generates two TOYBOX-like databases once (kept for later runs), then
//! measures `tb-dump` against `pg_dump | gzip` and `tb-check verify` against
//! `gzip -t`.
//!
//! `volume` generates a media-like tree once in the bench directory (about
//! 1.65 GB, 70 % of it in already-compressed files; kept for later runs),
//! then measures `tb-voltar` against `tar czf`, `tb-restore` against
//! `tar -xzpf`, and `tb-check verify` against `gzip -t`.
//!
//! `incr` generates a tree of 100,000 small files once and copies the
//! media-like tree once (both kept), then measures `tb-incr` against GNU
//! tar's `--listed-incremental` (gzip): the increments after no change on
//! the small files and after 1 % of the media tree's files were rewritten,
//! and the restores of that chain (`tb-restore --name` against two
//! `tar -xzpg /dev/null`).
//!
//! `restore` uses `dump`'s cluster and big database (generated when
//! missing), makes one tb-dump of it (kept for later runs while the
//! database is the same), then measures `tb-restore` of that dump against
//! `createdb && gunzip -c | psql`, and the restore of one small table out
//! of it (`tb-restore --table`) against the whole restore.
//!
//! All four print a table and the targets, and exit 1 when a target is
//! missed, 2 when the benchmark itself failed.
//!
//! Every measured command runs under a small helper (`tb-bench rusage-exec`,
//! this same binary) whose only children are that command's process tree,
//! so that its `RUSAGE_CHILDREN` is exactly the tree's CPU time and peak
//! RSS, whatever else the harness ran before.

/// Print a progress line on stderr (the report goes to stdout).
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("tb-bench: {}", format!($($arg)*)) };
}

mod cluster;
mod common;
mod dump;
mod generate;
mod incr;
mod measure;
mod media;
mod report;
mod restore;
mod volume;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: tb-bench dump [--fresh] [--repeat N]
       tb-bench volume [--fresh] [--repeat N] [--size-mb N]
       tb-bench incr [--fresh] [--repeat N]
       tb-bench restore [--fresh] [--repeat N]

Benchmarks for `make bench` (which runs all four).

  dump      tb-dump vs `pg_dump | gzip`, tb-check verify vs `gzip -t`,
            on two generated databases (about 255 MB and 1.17 GB of SQL)
  volume    tb-voltar vs `tar czf`, tb-restore vs `tar -xzpf`, tb-check
            verify vs `gzip -t`, on a generated media-like tree (about
            1.65 GB in 33,000 files, 70 % of the bytes already compressed)
  incr      tb-incr vs GNU tar --listed-incremental (tar -czg): the
            increment after no change on 100,000 small files, the
            increment after 1 % of the media tree's files changed, and
            tb-restore of that chain vs two `tar -xzpg /dev/null`
  restore   tb-restore of a tb-dump of dump's big database vs `createdb
            && gunzip -c | psql`, and tb-restore --table of one small
            table of it vs the whole restore

options:
  --fresh       regenerate the databases (dump) or the tree (volume), or
                the small tree and the media work copy (incr), or make
                the dump again (restore), else the kept ones are reused
  --repeat N    run every measured command N times and report the median
                (default 1, restore 5; incr: the bases run once)
  --size-mb N   volume only: size of the tree in MB (10^6 bytes; default
                1650); below 1500 the setup target fails (for trying out)

environment:
  TB_BENCH_DIR  work directory: the PostgreSQL cluster (kept between runs,
                about 3 GB), the media tree (kept, about 1.65 GB), incr's
                trees (kept: 100,000 small files, about 0.2 GB, and a copy
                of the media tree that it rewrites 1 % of on every run),
                restore's tb-dump of the big database (kept, about 0.4 GB)
                and the outputs being measured (deleted at the end; for
                volume and incr about 2.7 times the media tree's size;
                for restore one restored database at a time in the
                cluster, about 1.6 GB)
                [default: <workspace>/target/bench]

Exit codes: 0 all targets met, 1 a target missed, 2 the benchmark failed.";

/// Options of the `dump` benchmark.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Regenerate the databases even when they are present.
    pub fresh: bool,
    /// How many times each measured command runs (median reported).
    pub repeat: usize,
}

/// Options of the `volume` benchmark.
#[derive(Debug, Clone)]
pub struct VolumeOptions {
    /// Regenerate the tree even when it is present.
    pub fresh: bool,
    /// How many times each measured command runs (median reported).
    pub repeat: usize,
    /// Size of the generated tree, in MB (10^6 bytes).
    pub size_mb: u64,
}

/// Options of the `incr` benchmark.
#[derive(Debug, Clone)]
pub struct IncrOptions {
    /// Regenerate the small tree and copy the media tree again.
    pub fresh: bool,
    /// How many times each measured increment and restore runs (median).
    pub repeat: usize,
}

/// Options of the `restore` benchmark.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Make the dump again even when the kept one is current.
    pub fresh: bool,
    /// How many times each measured restore runs (median reported).
    pub repeat: usize,
}

/// Default number of runs of each restore: single restores of the big
/// dump vary by ±10 % and more on a 2-core machine, for either command.
pub const DEFAULT_RESTORE_REPEAT: usize = 5;

/// Default size of the volume benchmark's tree, in MB.
pub const DEFAULT_VOLUME_MB: u64 = 1650;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tb-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Dispatch on the subcommand.
fn run(args: Vec<OsString>) -> Result<ExitCode> {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match cmd.to_str() {
        Some("dump") => {
            let opts = parse_dump_options(rest)?;
            Ok(verdict(dump::run(&opts)?))
        }
        Some("volume") => {
            let opts = parse_volume_options(rest)?;
            Ok(verdict(volume::run(&opts)?))
        }
        Some("incr") => {
            let opts = parse_incr_options(rest)?;
            Ok(verdict(incr::run(&opts)?))
        }
        Some("restore") => {
            let opts = parse_restore_options(rest)?;
            Ok(verdict(restore::run(&opts)?))
        }
        Some(measure::HELPER_SUBCOMMAND) => measure::helper_main(rest),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!(
            "unknown subcommand '{}' (try: tb-bench dump, tb-bench volume, tb-bench incr, tb-bench restore)",
            cmd.to_string_lossy()
        ),
    }
}

/// The exit code for a finished benchmark: 0 when every target is met.
fn verdict(all_met: bool) -> ExitCode {
    if all_met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Parse the options that follow `dump`.
fn parse_dump_options(args: &[OsString]) -> Result<DumpOptions> {
    let mut opts = DumpOptions {
        fresh: false,
        repeat: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--fresh") => opts.fresh = true,
            Some("--repeat") => opts.repeat = number_after("--repeat", it.next(), 1)? as usize,
            _ => bail!("unknown option '{}' for dump\n{USAGE}", a.to_string_lossy()),
        }
    }
    Ok(opts)
}

/// Parse the options that follow `volume`.
fn parse_volume_options(args: &[OsString]) -> Result<VolumeOptions> {
    let mut opts = VolumeOptions {
        fresh: false,
        repeat: 1,
        size_mb: DEFAULT_VOLUME_MB,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--fresh") => opts.fresh = true,
            Some("--repeat") => opts.repeat = number_after("--repeat", it.next(), 1)? as usize,
            Some("--size-mb") => opts.size_mb = number_after("--size-mb", it.next(), 1)?,
            _ => bail!(
                "unknown option '{}' for volume\n{USAGE}",
                a.to_string_lossy()
            ),
        }
    }
    Ok(opts)
}

/// Parse the options that follow `incr`.
fn parse_incr_options(args: &[OsString]) -> Result<IncrOptions> {
    let mut opts = IncrOptions {
        fresh: false,
        repeat: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--fresh") => opts.fresh = true,
            Some("--repeat") => opts.repeat = number_after("--repeat", it.next(), 1)? as usize,
            _ => bail!("unknown option '{}' for incr\n{USAGE}", a.to_string_lossy()),
        }
    }
    Ok(opts)
}

/// Parse the options that follow `restore`.
fn parse_restore_options(args: &[OsString]) -> Result<RestoreOptions> {
    let mut opts = RestoreOptions {
        fresh: false,
        repeat: DEFAULT_RESTORE_REPEAT,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--fresh") => opts.fresh = true,
            Some("--repeat") => opts.repeat = number_after("--repeat", it.next(), 1)? as usize,
            _ => bail!(
                "unknown option '{}' for restore\n{USAGE}",
                a.to_string_lossy()
            ),
        }
    }
    Ok(opts)
}

/// The whole number (at least `min`) given after `option`.
fn number_after(option: &str, value: Option<&OsString>, min: u64) -> Result<u64> {
    let n = value
        .and_then(|v| v.to_str())
        .with_context(|| format!("{option} needs a number"))?;
    n.parse()
        .ok()
        .filter(|n| *n >= min)
        .with_context(|| format!("{option} {n}: give a whole number from {min}"))
}

/// The workspace root (this package lives in `<workspace>/tests/bench`).
pub fn workspace_root() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the current
/// directory, as cargo reads it) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            match std::env::current_dir() {
                Ok(cwd) if d.is_relative() => cwd.join(d),
                _ => d,
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The bench work directory: `$TB_BENCH_DIR` or `<target>/bench`.
pub fn bench_dir() -> PathBuf {
    match std::env::var_os("TB_BENCH_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => target_dir().join("bench"),
    }
}
