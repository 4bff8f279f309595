//! `tb-check`: verify backup files (and, as later issues add them, list
//! backups, report health and run restore drills).
//!
//! `tb-check verify [FILE...]` decompresses every file completely (gzip
//! CRC-32 and length), checks pg_dump's completion trailer, rejects trailing
//! garbage, and compares sizes and sha256 with the manifest beside the file.
//! Without FILE arguments it reads paths, or JSON records with a `path`
//! field (the output of another tb tool), from stdin.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod drill;
mod status;

use tb_shared::catalog;
use tb_shared::chain::{self, Depth, PointCheck};
use tb_shared::cli::{Common, ToolArgs};
use tb_shared::exit::{Health, Outcome};
use tb_shared::record::{Record, Reporter};
use tb_shared::verify::{Verdict, check_file};

const VERIFY_ABOUT: &str = "\
Verify backup files completely: full decompression (gzip CRC-32 and length),
pg_dump's completion trailer, no trailing garbage, and size, uncompressed
size, sha256 and row counts against the manifest beside the file. A
manifest given on its own must parse and list only files that exist.

A directory is an incremental chain (tb-incr): a point directory or a
chain directory (DIR/LABEL) verifies that chain, the incremental
directory every chain in it. Every point's archive is read completely
and compared with its index, every file with its manifest, every parent
link followed; one record per point says whether it is restorable, and
one `chain` record gives the restorable points and range.

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
    /// Report the health of the backups: freshness, verdicts, sizes,
    /// retention, disk, drills, containers (see `tb-check status --help`)
    #[command(long_about = STATUS_ABOUT)]
    Status(status::StatusArgs),
    /// Restore the newest backups into scratch copies and check them: the
    /// monthly restore drill (see `tb-check drill --help`)
    #[command(long_about = DRILL_ABOUT)]
    Drill(drill::DrillArgs),
    /// List the backups under a backup root (see `tb-check list --help`)
    #[command(long_about = LIST_ABOUT)]
    List {
        /// The backup root, or any directory of it
        #[arg(default_value = "/backup/toybox")]
        root: PathBuf,
        /// Also list what is not ours (names that do not parse, orphaned
        /// sidecars); it is never deleted by anything
        #[arg(long)]
        all: bool,
        /// Check every backup completely (as `tb-check verify`) instead of
        /// trusting its manifest's verdict and sizes
        #[arg(long)]
        verify: bool,
    },
}

const STATUS_ABOUT: &str = "\
Report the health of the backups under ROOT (default /backup/toybox), one
`finding` record per fact, with the monitoring-plugin exit codes: 0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN (for cron mail, Nagios/Icinga/Zabbix
checks, or anything that reads exit codes).

Per kind and label: freshness (newest dump younger than 26 hours, full
volume archive 8 days, incremental point 26 hours), the newest backup
verified good, the number of good restore points, size anomalies (the
newest much smaller than the usual, a dump's row count fallen sharply);
retention working (nothing past its retention plus a margin, apart from
what the safety rules keep, each explained); the disk of the backup
filesystem (WARNING at 80 %, CRITICAL at 90 %) and the days until full at
the last week's growth; containers a backup stopped and did not start
again; and, from the log (--read-log), the last failure of each tool and
the last restore drill's age and verdict.

--prom FILE writes the same facts as a Prometheus textfile (for
node_exporter's textfile collector), atomically.";

const DRILL_ABOUT: &str = "\
The monthly restore drill: prove the newest backups restore.

The newest dump of each database under ROOT (default /backup/toybox) is
restored with tb-restore into a scratch database (tb_drill_LABEL_PID,
created and dropped by the drill) on the server given by the libpq
settings or --container; its row counts are checked against the manifest
and each --sql check (one query per line, which must return true) is run
in it. The newest full volume archive and the newest chain point of each
label are restored into scratch directories (--scratch, default the
temporary directory), every entry compared with the archive's index or the
point's listing, then removed.

One `drill` record per check with `ok` and `restore_ms`, the measured
restore time. Exit codes (monitoring-plugin convention): 0 OK, 1 WARNING
(nothing to drill for a kind), 2 CRITICAL (a restore or a check failed),
3 UNKNOWN (the drill itself could not run).";

const LIST_ABOUT: &str = "\
List the backups under a backup root (default /backup/toybox): dumps,
full volume archives and incremental chain points, one `backup` record
each, oldest first per directory, then a summary. Its output is what
tb-prune reads: `tb-check list /backup/toybox | tb-prune`.

Each record has kind (dump, volume, chain_base, chain_incr), label,
backup_time (from the name, never the mtime), path, bytes, verdict (good,
damaged or unverified) and reason, the sidecars that go with it (a dump's
roles file and manifest, an archive's index and manifest), and for chain
points chain, parent and point. Without --verify the verdict is the one
recorded in the manifest when the backup was made, checked against the
sizes of its files (and, for chains, every parent link); with --verify
every file is read completely.

Names that do not parse are not ours: listed only with --all (`foreign`
records), and never deleted by any tb tool.

Exit codes: 0 listed (whatever the verdicts; see tb-check verify), 3 the
root cannot be read.";

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
        Command::List { root, all, verify } => list(&root, all, verify, rep),
        Command::Drill(a) => drill::drill(&a, rep),
        Command::Status(a) => status::status(&a, rep),
    }
}

/// The `backup` record of one backup.
pub fn backup_record(b: &catalog::Backup) -> Record {
    let mut r = b
        .record("backup")
        .with("bytes", b.bytes)
        .with("verdict", b.status.as_str())
        .with("verified", b.status == catalog::Status::Good);
    if let Some(why) = b.status.reason() {
        r.set("reason", why);
    }
    if !b.sidecars.is_empty() {
        r.set(
            "sidecars",
            b.sidecars
                .iter()
                .map(|p| tb_shared::record::path_value(p))
                .collect::<Vec<_>>(),
        );
    }
    if let Some(c) = &b.chain {
        r.set("point", &c.point);
        if let Some(ch) = &c.chain {
            r.set("chain", ch);
        }
        if let Some(p) = &c.parent {
            r.set("parent", p);
        }
    }
    r
}

/// `tb-check list`.
fn list(root: &Path, all: bool, verify: bool, rep: &mut Reporter) -> Result<Outcome> {
    let cat = match catalog::scan(root, verify) {
        Ok(c) => c,
        Err(e) => {
            return Err(tb_shared::error::Failure::new(
                tb_shared::error::Cause::NotFound,
                format!("cannot read the backup root '{}': {e}", root.display()),
            )
            .into());
        }
    };
    tb_shared::signals::check()?;
    let mut damaged = 0u64;
    for b in &cat.backups {
        if matches!(b.status, catalog::Status::Damaged(_)) {
            damaged += 1;
        }
        rep.emit(backup_record(b));
    }
    if all {
        for f in &cat.foreign {
            rep.emit(
                Record::new("foreign")
                    .path(&f.path)
                    .with("reason", &f.reason),
            );
        }
    }
    rep.summary_field("root", tb_shared::record::path_value(root));
    rep.summary_field("backups", cat.backups.len());
    rep.summary_field("damaged", damaged);
    rep.summary_field("foreign", cat.foreign.len());
    Ok(Outcome::OK)
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
        if std::fs::metadata(f).is_ok_and(|m| m.is_dir()) {
            let h = verify_chains(f, rep, &mut good, &mut damaged)?;
            health = health.worst(h);
            continue;
        }
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

/// The chain directories `dir` stands for: its own chain when it is a
/// point or a chain directory, else every chain directory in it (an
/// incremental root).
fn chain_dirs(dir: &Path) -> Vec<PathBuf> {
    if let Some(p) = chain::as_point(dir) {
        return vec![p.dir.parent().unwrap_or(dir).to_path_buf()];
    }
    if chain::looks_like_chain(dir) {
        return vec![dir.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .filter(|p| chain::looks_like_chain(p))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Verify every point of the chains `dir` stands for: each point's files
/// completely (every archive entry against its index, sizes and sha256
/// against the manifest), every parent link; one record per point and one
/// per chain with the restorable points.
fn verify_chains(
    dir: &Path,
    rep: &mut Reporter,
    good: &mut u64,
    damaged: &mut u64,
) -> Result<Health> {
    let dirs = chain_dirs(dir);
    if dirs.is_empty() {
        eprintln!(
            "tb-check: unreadable: {}: a directory, but no incremental chain (base_YYYYMMDD/, incr_YYYYMMDD/) is in it",
            dir.display()
        );
        rep.emit(
            Record::new("verified")
                .path(dir)
                .with("verdict", Verdict::Unreadable.as_str())
                .with("reason", "a directory that holds no incremental chain"),
        );
        return Ok(Health::Unknown);
    }
    let mut health = Health::Ok;
    for cdir in dirs {
        let checks = chain::check_chain(&cdir, Depth::Full)?;
        tb_shared::signals::check()?;
        let mut restorable = Vec::new();
        let mut broken = Vec::new();
        for c in &checks {
            let verdict = if c.problem.is_some() {
                Verdict::Damaged
            } else {
                Verdict::Good
            };
            let mut r = Record::new("verified")
                .with("kind", c.kind())
                .path(&c.point.dir)
                .with("verdict", verdict.as_str())
                .with("restorable", c.restorable());
            if let Some(p) = c.parent() {
                r.set("parent", p);
            }
            if let Some(ch) = c.chain() {
                r.set("chain", ch);
            }
            if let Some(why) = &c.unrestorable {
                r.set("reason", why);
                eprintln!(
                    "tb-check: {}: {}: not restorable: {why}",
                    verdict.as_str(),
                    c.point.dir.display()
                );
            }
            rep.emit(r);
            if c.problem.is_some() {
                *damaged += 1;
            } else {
                *good += 1;
            }
            if c.restorable() {
                restorable.push(c);
            } else {
                broken.push(c.point.id());
                health = health.worst(Health::Critical);
            }
        }
        let when = |c: &&PointCheck| c.point.name.time.format("%Y-%m-%d %H:%M:%S").to_string();
        let mut r = Record::new("chain")
            .path(&cdir)
            .with("points", checks.len())
            .with(
                "restorable_points",
                restorable.iter().map(|c| c.point.id()).collect::<Vec<_>>(),
            )
            .with("unrestorable_points", &broken);
        if let (Some(first), Some(last)) = (restorable.first(), restorable.last()) {
            r.set("restorable_from", when(first));
            r.set("restorable_to", when(last));
        }
        rep.emit(r);
    }
    Ok(health)
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
