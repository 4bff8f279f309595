//! `tb-bench`: the tb tools side by side with the commands the team runs
//! today, on databases of realistic size (`make bench`).
//!
//! ```text
//! tb-bench dump [--fresh] [--repeat N]
//! ```
//!
//! `dump` starts a throwaway PostgreSQL cluster (`tests/pg-throwaway`) in
//! the bench directory (`$TB_BENCH_DIR`, default `<workspace>/target/bench`),
//! generates two TOYBOX-like databases once (kept for later runs), then
//! measures `tb-dump` against `pg_dump | gzip` and `tb-check verify` against
//! `gzip -t`. It prints a table and the targets, and exits 1 when a target
//! is missed, 2 when the benchmark itself failed.
//!
//! Every measured command runs under a small helper (`tb-bench rusage-exec`,
//! this same binary) whose only children are that command's process tree,
//! so that its `RUSAGE_CHILDREN` is exactly the tree's CPU time and peak
//! RSS, whatever else the harness ran before.

mod cluster;
mod dump;
mod generate;
mod measure;
mod report;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: tb-bench dump [--fresh] [--repeat N]

Benchmarks for `make bench`.

  dump      tb-dump vs `pg_dump | gzip`, tb-check verify vs `gzip -t`,
            on two generated databases (about 255 MB and 1.17 GB of SQL)

options of dump:
  --fresh       drop and regenerate the databases (else they are reused)
  --repeat N    run every measured command N times and report the median
                (default 1)

environment:
  TB_BENCH_DIR  work directory: the PostgreSQL cluster (kept between runs,
                about 3 GB) and the dumps being measured (deleted at the end)
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
            let all_met = dump::run(&opts)?;
            Ok(if all_met {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some(measure::HELPER_SUBCOMMAND) => measure::helper_main(rest),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!(
            "unknown subcommand '{}' (try: tb-bench dump)",
            cmd.to_string_lossy()
        ),
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
            Some("--repeat") => {
                let n = it
                    .next()
                    .and_then(|v| v.to_str())
                    .context("--repeat needs a number")?;
                opts.repeat = n
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .with_context(|| format!("--repeat {n}: give a whole number from 1"))?;
            }
            _ => bail!("unknown option '{}' for dump\n{USAGE}", a.to_string_lossy()),
        }
    }
    Ok(opts)
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
