//! `tb-check`: verify backup files (and, as later issues add them, list
//! backups, report health and run restore drills).
//!
//! `tb-check verify [FILE...]` decompresses every file completely (gzip
//! CRC-32 and length), checks pg_dump's completion trailer, rejects trailing
//! garbage, and compares sizes and sha256 with the manifest beside the file.
//! Without FILE arguments it reads paths, or JSON records with a `path`
//! field (the output of another tb tool), from stdin.

use std::io::{self, BufRead, Read};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use tb_shared::cli::{Common, ToolArgs};
use tb_shared::exit::{Health, Outcome};
use tb_shared::record::{Record, Reporter};
use tb_shared::verify::{Verdict, check_file};

const VERIFY_ABOUT: &str = "\
Verify backup files completely: full decompression (gzip CRC-32 and length),
pg_dump's completion trailer, no trailing garbage, and size, uncompressed
size, sha256 and row counts against the manifest beside the file. A
manifest given on its own must parse and list only files that exist.

FILEs come from the arguments, or else from stdin: one path per line, or
JSON records with a \"path\" field as other tb tools print them, so that
`tb-dump | tb-check verify` checks what was just written.

Exit codes (monitoring-plugin convention): 0 all good, 1 all good but
tb-check itself had a warning (e.g. --log not writable), 2 a file is
damaged, 3 a file cannot be read at all (and none is damaged) or there was
nothing to verify.";

/// Command-line arguments of `tb-check`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tb-check",
    version,
    about = "Verify backups and report their health",
    long_about = "Verify backups and report their health.\n\nExit codes follow the monitoring-plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub common: Common,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Verify backup files completely (see `tb-check verify --help`)
    #[command(long_about = VERIFY_ABOUT)]
    Verify {
        /// Files to verify; none means read paths or records from stdin
        files: Vec<PathBuf>,
    },
}

impl ToolArgs for Args {
    fn common(&self) -> &Common {
        &self.common
    }
    /// A check that could not finish is UNKNOWN, never CRITICAL.
    fn failure_outcome(&self) -> Outcome {
        Outcome::health(Health::Unknown)
    }
}

/// Run `tb-check`.
pub fn run(args: Args, rep: &mut Reporter) -> Result<Outcome> {
    match args.command {
        Command::Verify { files } => {
            let files = if files.is_empty() {
                paths_from_stdin()?
            } else {
                files
            };
            verify(&files, rep)
        }
    }
}

/// Paths from stdin: plain lines, or JSON records with a `path`. Records
/// that describe no verifiable file (summaries, manifests, `-o -`
/// streams) are skipped.
fn paths_from_stdin() -> Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    const MAX_LINE: u64 = 64 << 10;
    let mut out = Vec::new();
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a line longer than any path or record is refused.
        let n = (&mut stdin)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .context("cannot read paths from stdin")?;
        if n == 0 {
            return Ok(out);
        }
        if line.len() as u64 > MAX_LINE {
            anyhow::bail!(tb_shared::error::Failure::new(
                tb_shared::error::Cause::BadInput,
                "a line on stdin is longer than 64 KiB: give paths or records, one per line"
            ));
        }
        match std::str::from_utf8(&line) {
            Ok(text) => out.extend(path_of_line(text)),
            // Paths need not be UTF-8 (records always are).
            Err(_) => {
                let raw = line.strip_suffix(b"\n").unwrap_or(&line);
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                out.push(PathBuf::from(std::ffi::OsStr::from_bytes(raw)));
            }
        }
    }
}

fn path_of_line(line: &str) -> Option<PathBuf> {
    let t = line.trim_end_matches(['\r', '\n']);
    if t.trim().is_empty() {
        return None;
    }
    if t.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t).ok()?;
        let event = v.get("event").and_then(|k| k.as_str()).unwrap_or("");
        if matches!(
            event,
            "summary" | "error" | "warning" | "removed" | "deleted"
        ) || v.get("kind").and_then(|k| k.as_str()) == Some("manifest")
        {
            return None;
        }
        let p = v.get("path")?.as_str()?;
        return (p != "-").then(|| PathBuf::from(p));
    }
    Some(PathBuf::from(t))
}

/// Verify `files`, one record each; the verdict decides the exit code.
pub fn verify(files: &[PathBuf], rep: &mut Reporter) -> Result<Outcome> {
    let mut health = Health::Ok;
    let (mut good, mut damaged, mut unreadable) = (0u64, 0u64, 0u64);
    for f in files {
        tb_shared::signals::check()?;
        let check = check_file(f);
        // A check cut short by a signal says nothing about the file.
        tb_shared::signals::check()?;
        match check.verdict {
            Verdict::Good => good += 1,
            Verdict::Damaged => {
                damaged += 1;
                health = health.worst(Health::Critical);
            }
            Verdict::Unreadable => {
                unreadable += 1;
                health = health.worst(Health::Unknown);
            }
        }
        if let Some(reason) = &check.reason {
            // One plain line per bad file for people; the record has the same.
            eprintln!(
                "tb-check: {}: {}: {reason}",
                check.verdict.as_str(),
                check.path.display()
            );
        }
        rep.emit(check.record());
    }
    if files.is_empty() {
        rep.warn(
            "no files to verify (give FILEs, or paths or records on stdin)",
            Record::new("warning"),
        );
        health = health.worst(Health::Unknown);
    }
    if rep.warnings() > 0 {
        health = health.worst(Health::Warning);
    }
    rep.summary_field("good", good);
    rep.summary_field("damaged", damaged);
    rep.summary_field("unreadable", unreadable);
    Ok(Outcome::health(health))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn stdin_lines_may_be_paths_or_records() {
        assert_eq!(
            path_of_line("/b/x.sql.gz"),
            Some(PathBuf::from("/b/x.sql.gz"))
        );
        assert_eq!(path_of_line("  "), None);
        assert_eq!(
            path_of_line(r#"{"event":"written","kind":"dump","path":"/b/t.sql.gz"}"#),
            Some(PathBuf::from("/b/t.sql.gz"))
        );
        assert_eq!(
            path_of_line(r#"{"event":"written","kind":"manifest","path":"/b/t.manifest.json"}"#),
            None
        );
        assert_eq!(
            path_of_line(r#"{"event":"summary","status":"ok","path":"/b/t.sql.gz"}"#),
            None
        );
        assert_eq!(
            path_of_line(r#"{"event":"written","kind":"dump","path":"-"}"#),
            None
        );
    }
}
