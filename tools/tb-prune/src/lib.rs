//! `tb-prune`: a backup listing on stdin -> delete what the retention rules
//! no longer keep, and never the last good backup.
//!
//! The listing is `tb-check list`'s records, or plain paths one per line
//! (`ls`, `find`). Every path is looked at again on disk: its kind, label
//! and time come from its name (never the mtime), its verdict from its
//! manifest (or a `damaged` verdict in the listing). Chains are expanded to
//! every point on disk and kept or deleted as a whole. The rules are
//! `tb_shared::retention` (pure functions of the listing and the time);
//! tb-prune only carries the plan out, under the lock of each directory it
//! deletes in, newest chain point first, a backup's manifest last.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{Local, NaiveDateTime};
use clap::Parser;

use tb_shared::atomic::fsync_dir;
use tb_shared::catalog::{self, Backup, PlanUnit, Status};
use tb_shared::chain;
use tb_shared::cli::{Common, ToolArgs};
use tb_shared::error::{Cause, Failure};
use tb_shared::exit::Outcome;
use tb_shared::naming::{BackupName, Kind};
use tb_shared::record::{Record, Reporter, path_value};
use tb_shared::retention::{Policy, default_keep_days};
use tb_shared::{lock, signals};

const ABOUT: &str =
    "Delete the backups that the retention rules no longer keep (a listing on stdin)";
const LONG_ABOUT: &str = "\
Read a listing of backups on stdin and delete what the retention rules no
longer keep, never the last good backup:

  tb-check list /backup/toybox | tb-prune
  ls /backup/toybox/database/*.sql.gz | tb-prune --dry-run

The listing is tb-check list's records or plain paths, one per line. Each
path is looked at again on disk; its time comes from its name, never from
the file's mtime. Rules, per kind and label:

  default    dumps 7 days, full volume archives 14 days, incremental
             chains 14 days (from the newest point of the chain)
  --keep-days N, --keep-last N, --keep-daily N, --keep-weekly N,
  --keep-monthly N (calendar buckets, as restic and borg do); a backup
  is kept when any rule keeps it

Safety rules, always on: the newest verified backup of each kind and label
is never deleted, whatever its age; at least --min-keep (default 1)
verified backups stay; a damaged or unverified backup never counts toward
what is kept; a chain is deleted only as a whole (never a base under its
increments, never a middle point), once its newest point has expired;
nothing is deleted when the listing is empty or cut short (records
without tb-check list's closing summary, a last line without its newline),
or when every backup of a label would go. Names that do not parse are not
ours and are never deleted.

Every decision is a record (kept, deleted, or would_delete with
--dry-run), with the rule that decided. A deletion removes the backup and
its sidecars (roles file, index, manifest last), under the lock of its
directory.

Exit codes: 0 ok, 1 done with warnings (lines skipped, nothing to prune),
2 failed (the listing was cut short, a deletion failed) or bad usage, 75
busy (a backup is being written where it would delete).";

/// Command-line arguments of `tb-prune`.
#[derive(Debug, Clone, Parser)]
#[command(name = "tb-prune", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// Keep every backup younger than N days [default: dumps 7, volumes and chains 14,
    /// unless a count rule is given]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=36_500))]
    pub keep_days: Option<u32>,

    /// Keep the newest N verified backups
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: u32,

    /// Keep the newest verified backup of each of the last N days that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u32,

    /// … of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u32,

    /// … of each of the last N months that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u32,

    /// Keep at least N verified backups of each kind and label, whatever their age
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub min_keep: u32,

    /// Print the plan (`kept` and `would_delete` records) without deleting anything
    #[arg(long)]
    pub dry_run: bool,

    /// Decide as if it were this local time (YYYY-MM-DDTHH:MM:SS) [default: now]
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,

    /// Seconds to wait for a backup being written in a directory (then exit 75)
    #[arg(long, value_name = "SECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub wait: u64,

    #[command(flatten)]
    pub common: Common,
}

impl ToolArgs for Args {
    fn common(&self) -> &Common {
        &self.common
    }
}

impl Args {
    fn policy(&self, kind: Kind) -> Policy {
        let mut p = Policy {
            keep_days: self.keep_days,
            keep_last: self.keep_last,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            min_keep: self.min_keep,
        };
        if p.keep_days.is_none() && !p.has_counts() {
            p.keep_days = Some(default_keep_days(kind));
        }
        p
    }
}

fn usage(msg: String) -> anyhow::Error {
    Failure::new(Cause::BadInput, msg).into()
}

/// One line of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A path to look at, and whether the listing says it is damaged.
    Path(PathBuf, bool),
    /// A record that names no backup (summary, foreign, warning…).
    Other,
}

/// What stdin held.
#[derive(Debug, Default)]
struct Listing {
    paths: Vec<(PathBuf, bool)>,
    records: bool,
    complete: bool,
    why_incomplete: String,
}

const MAX_LINE: u64 = 64 << 10;

fn parse_line(line: &[u8]) -> Result<(Line, Option<serde_json::Value>)> {
    use std::os::unix::ffi::OsStrExt;
    let text = std::str::from_utf8(line).ok();
    if let Some(t) = text
        && t.trim_start().starts_with('{')
    {
        let v: serde_json::Value = serde_json::from_str(t)
            .map_err(|e| usage(format!("a line on stdin is not a valid record: {e}")))?;
        let event = v.get("event").and_then(|e| e.as_str()).unwrap_or("");
        let path = v.get("path").and_then(|p| p.as_str());
        let line = match (event, path) {
            ("backup" | "written" | "verified", Some(p)) if p != "-" => {
                let damaged = v.get("verdict").and_then(|d| d.as_str()) == Some("damaged");
                Line::Path(PathBuf::from(p), damaged)
            }
            _ => Line::Other,
        };
        return Ok((line, Some(v)));
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok((Line::Other, None));
    }
    Ok((
        Line::Path(PathBuf::from(std::ffi::OsStr::from_bytes(line)), false),
        None,
    ))
}

fn read_listing(input: &mut dyn BufRead) -> Result<Listing> {
    let mut l = Listing::default();
    let mut buf = Vec::new();
    let mut last_record: Option<serde_json::Value> = None;
    let mut last_had_newline = true;
    loop {
        buf.clear();
        let n = input
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .context("cannot read the listing from stdin")?;
        if n == 0 {
            break;
        }
        if buf.len() as u64 > MAX_LINE {
            bail!(usage(
                "a line on stdin is longer than 64 KiB: give records or paths, one per line".into()
            ));
        }
        last_had_newline = buf.ends_with(b"\n");
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (parsed, rec) = parse_line(line)?;
        if let Some(r) = rec {
            l.records = true;
            last_record = Some(r);
        }
        if let Line::Path(p, d) = parsed {
            l.paths.push((p, d));
        }
    }
    l.complete = true;
    if !last_had_newline {
        l.complete = false;
        l.why_incomplete = "its last line has no newline (the producer stopped mid-line)".into();
    } else if l.records {
        match &last_record {
            Some(r) if r.get("event").and_then(|e| e.as_str()) == Some("summary") => {
                let code = r.get("exit_code").and_then(|c| c.as_u64()).unwrap_or(2);
                if code >= 2 {
                    l.complete = false;
                    l.why_incomplete =
                        format!("the listing's own summary says it failed (exit code {code})");
                }
            }
            _ => {
                l.complete = false;
                l.why_incomplete =
                    "the records do not end with a summary record (the listing was cut short)"
                        .into();
            }
        }
    }
    Ok(l)
}

fn parse_now(s: &str) -> Result<NaiveDateTime> {
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s.trim(), f) {
            return Ok(t);
        }
    }
    Err(usage(format!(
        "--now '{s}': give a local time as YYYY-MM-DDTHH:MM:SS"
    )))
}

/// Look at every listed path on disk. Chain points bring their whole chain.
/// `p` with its directory resolved (symlinks, `..`), the last component
/// kept as it is: one spelling per file, so a file listed twice through
/// different paths is one backup, never "one kept, one deleted".
fn canonical(p: &Path) -> PathBuf {
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return p.to_path_buf();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match std::fs::canonicalize(dir) {
        Ok(d) => d.join(name),
        Err(_) => p.to_path_buf(),
    }
}

fn describe(listing: &Listing, rep: &mut Reporter) -> Vec<Backup> {
    let mut out: Vec<Backup> = Vec::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    // Chain directories to describe, and the points the listing says are damaged.
    let mut chains: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (given, damaged) in &listing.paths {
        let canon = canonical(given);
        let p = &canon;
        let skip = |rep: &mut Reporter, why: &str| {
            rep.warn(
                &format!("'{}' is skipped: {why}", p.display()),
                Record::new("skipped").path(p).with("reason", why),
            );
        };
        let meta = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) => {
                skip(rep, &format!("it cannot be read ({e})"));
                continue;
            }
        };
        if meta.is_dir() {
            match chain::as_point(p) {
                Some(point) => {
                    let dir = point.dir.parent().unwrap_or(p).to_path_buf();
                    let e = chains.entry(dir).or_default();
                    if *damaged {
                        e.insert(point.dir.clone());
                    }
                }
                None => skip(
                    rep,
                    "a directory that is not a chain point (base_…, incr_…)",
                ),
            }
            continue;
        }
        match p.file_name().and_then(BackupName::parse) {
            Some(n) if matches!(n.kind, Kind::Dump | Kind::Volume) => {}
            Some(n) => {
                // Sidecars go with their backup; listed alone, they stay.
                if n.kind != Kind::Manifest && n.kind != Kind::Index && n.kind != Kind::Roles {
                    skip(rep, "not a backup of ours");
                }
                continue;
            }
            None => {
                skip(rep, "not ours (its name does not parse): never deleted");
                continue;
            }
        }
        let Some(mut b) = catalog::describe_file(p, false) else {
            skip(rep, "not a regular file");
            continue;
        };
        if *damaged && b.status == Status::Good {
            b.status = Status::Damaged("the listing says it is damaged".into());
        }
        if seen.insert(b.path.clone()) {
            out.push(b);
        }
    }
    for (dir, damaged) in chains {
        for mut b in catalog::describe_chain(&dir, false) {
            if damaged.contains(&b.path) && b.status == Status::Good {
                // A full check (tb-check list --verify) found this point damaged.
                b.status = Status::Damaged("the listing says this point is damaged".into());
            }
            if seen.insert(b.path.clone()) {
                out.push(b);
            }
        }
    }
    out
}

/// Remove one file, or a chain point directory (`dir_ok`); false when it
/// was already gone. Anything else in the way (a directory or a FIFO
/// named like a sidecar) is never touched.
fn remove(path: &Path, dir_ok: bool) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", path.display())),
    };
    if !(meta.is_file() || dir_ok && meta.is_dir()) {
        return Ok(false);
    }
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .with_context(|| format!("cannot delete '{}'", path.display()))?;
    Ok(true)
}

fn decision_record(event: &str, u: &PlanUnit, b: &Backup) -> Record {
    let mut r = b
        .record(event)
        .with("verdict", b.status.as_str())
        .with("rule", &u.verdict.rule);
    if let Some(c) = &b.chain {
        r.set("point", &c.point);
        if let Some(ch) = &c.chain {
            r.set("chain", ch);
        }
    }
    if !b.sidecars.is_empty() {
        r.set(
            "sidecars",
            b.sidecars.iter().map(|p| path_value(p)).collect::<Vec<_>>(),
        );
    }
    r
}

/// Plan, then check completely the backup that will stay as the newest
/// verified one of every group that loses anything (a manifest's verdict
/// and sizes cannot see a flipped byte): when it is damaged, it no longer
/// counts and the plan is made again, so a broken newest backup never
/// pushes out the last good one.
fn plan_checked(
    backups: &mut [Backup],
    args: &Args,
    now: NaiveDateTime,
    rep: &mut Reporter,
) -> Vec<PlanUnit> {
    let mut checked: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let units = catalog::plan(backups, &|k| args.policy(k), now);
        let mut changed = false;
        // Groups that lose something: (kind, directory, label).
        let key = |b: &Backup| {
            let dir = match &b.chain {
                Some(c) => c.dir.clone(),
                None => b.path.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let kind = match b.kind {
                Kind::ChainBase | Kind::ChainIncr => "chain",
                k => k.as_str(),
            };
            (kind, dir, b.label.clone())
        };
        let losing: BTreeSet<_> = units
            .iter()
            .filter(|u| !u.verdict.keep)
            .map(|u| key(&backups[u.members[0]]))
            .collect();
        for u in units.iter().filter(|u| u.verdict.keep && u.verified) {
            let newest = u.members[0];
            if !losing.contains(&key(&backups[newest]))
                || !checked.insert(backups[newest].path.clone())
            {
                continue;
            }
            let why = full_check(&backups[newest]);
            let mut r = Record::new("verified")
                .with("kind", backups[newest].kind.as_str())
                .path(&backups[newest].path)
                .with("verdict", if why.is_none() { "good" } else { "damaged" })
                .with("reason", &why);
            r.set("by", "tb-prune, before deleting older backups");
            rep.emit(r);
            if let Some(why) = why {
                rep.warn(
                    &format!(
                        "'{}' looked good but is damaged ({why}): it no longer counts as the newest good backup",
                        backups[newest].path.display()
                    ),
                    Record::new("warning").path(&backups[newest].path),
                );
                backups[newest].status = Status::Damaged(why);
                changed = true;
            }
        }
        if !changed {
            return units;
        }
    }
}

/// A complete check of one backup: None when good, else why not.
fn full_check(b: &Backup) -> Option<String> {
    match &b.chain {
        None => {
            let c = tb_shared::verify::check_file(&b.path);
            (c.verdict != tb_shared::verify::Verdict::Good)
                .then(|| c.reason.unwrap_or_else(|| "damaged".into()))
        }
        Some(c) => match chain::check_chain(&c.dir, chain::Depth::Full) {
            Err(e) => Some(format!("{e:#}")),
            Ok(checks) => match checks.iter().find(|x| x.point.dir == b.path) {
                None => Some("the point is gone".into()),
                Some(me) => me.unrestorable.clone(),
            },
        },
    }
}

/// Run `tb-prune`.
pub fn run(args: Args, rep: &mut Reporter) -> Result<Outcome> {
    let now = match &args.now {
        Some(s) => parse_now(s)?,
        None => Local::now().naive_local(),
    };
    let listing = read_listing(&mut std::io::stdin().lock())?;
    if !listing.complete {
        bail!(Failure::new(
            Cause::Incomplete,
            format!(
                "the listing on stdin is incomplete: {}; nothing was deleted (run it as `set -o pipefail; tb-check list ROOT | tb-prune`)",
                listing.why_incomplete
            )
        ));
    }
    if listing.paths.is_empty() {
        rep.warn(
            "the listing is empty: nothing to prune, nothing deleted (is the backup root right?)",
            Record::new("warning"),
        );
        rep.summary_field("kept", 0);
        rep.summary_field("deleted", 0);
        return Ok(Outcome::WARNINGS);
    }
    let mut backups = describe(&listing, rep);
    let units = plan_checked(&mut backups, &args, now, rep);

    // Directories to lock: every one a deletion happens in.
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for u in units.iter().filter(|u| !u.verdict.keep) {
        for &m in &u.members {
            let b = &backups[m];
            let d = b
                .chain
                .as_ref()
                .map(|c| c.dir.clone())
                .unwrap_or_else(|| b.path.parent().unwrap_or(Path::new(".")).to_path_buf());
            dirs.insert(d);
        }
    }
    let mut locks = HashMap::new();
    if !args.dry_run {
        for d in &dirs {
            let l = lock::acquire(d, Duration::from_secs(args.wait))
                .with_context(|| format!("cannot lock '{}'", d.display()))?;
            locks.insert(d.clone(), l);
        }
    }

    let (mut kept, mut deleted, mut freed) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for u in &units {
        signals::check()?;
        if u.verdict.keep {
            for &m in &u.members {
                rep.emit(decision_record("kept", u, &backups[m]));
                kept += 1;
            }
            continue;
        }
        for &m in &u.members {
            let b = &backups[m];
            if args.dry_run {
                rep.emit(decision_record("would_delete", u, b));
                deleted += 1;
                freed += b.bytes;
                continue;
            }
            // The backup first; its manifest last, so an interruption
            // leaves at most sidecars of a deleted backup, never a backup
            // without its manifest.
            let mut files = vec![b.path.clone()];
            let (manifests, others): (Vec<PathBuf>, Vec<PathBuf>) = b
                .sidecars
                .iter()
                .cloned()
                .partition(|p| p.to_string_lossy().ends_with(".manifest.json"));
            files.extend(others);
            files.extend(manifests);
            let is_point = b.chain.is_some();
            let result = signals::critical(|| -> Result<()> {
                for (i, f) in files.iter().enumerate() {
                    remove(f, is_point && i == 0)?;
                }
                fsync_dir(b.path.parent().unwrap_or(Path::new(".")))
            });
            match result {
                Ok(()) => {
                    rep.emit(decision_record("deleted", u, b));
                    deleted += 1;
                    freed += b.bytes;
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    rep.warn(
                        &format!("could not delete '{}': {msg}", b.path.display()),
                        Record::new("warning").path(&b.path),
                    );
                    failures.push(msg);
                    if b.chain.is_some() {
                        // Never go on to older points of a chain whose newer
                        // point could not be deleted.
                        break;
                    }
                }
            }
        }
    }
    drop(locks);
    rep.summary_field("kept", kept);
    rep.summary_field(
        if args.dry_run {
            "would_delete"
        } else {
            "deleted"
        },
        deleted,
    );
    rep.summary_field("freed_bytes", freed);
    if !failures.is_empty() {
        bail!(Failure::new(
            Cause::Other,
            format!(
                "{} deletions failed (first: {}); what was deleted is in the records",
                failures.len(),
                failures[0]
            )
        ));
    }
    Ok(rep.outcome())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Args::command().debug_assert();
    }

    fn listing(s: &[u8]) -> Listing {
        read_listing(&mut std::io::Cursor::new(s.to_vec())).unwrap()
    }

    #[test]
    fn a_listing_without_its_summary_is_cut_short() {
        let l = listing(b"{\"event\":\"backup\",\"path\":\"/b/x.sql.gz\"}\n");
        assert!(!l.complete);
        let l = listing(
            b"{\"event\":\"backup\",\"path\":\"/b/x.sql.gz\"}\n{\"event\":\"summary\",\"exit_code\":0}\n",
        );
        assert!(l.complete);
        assert_eq!(l.paths, vec![(PathBuf::from("/b/x.sql.gz"), false)]);
        let l = listing(b"{\"event\":\"summary\",\"exit_code\":3}\n");
        assert!(!l.complete, "a failed listing");
    }

    #[test]
    fn plain_paths_must_end_with_a_newline() {
        let l = listing(b"/b/a.sql.gz\n/b/b.sql");
        assert!(!l.complete);
        let l = listing(b"/b/a.sql.gz\n\n/b/b.sql.gz\n");
        assert!(l.complete);
        assert_eq!(l.paths.len(), 2);
    }

    #[test]
    fn damaged_verdicts_in_the_listing_are_kept() {
        let l = listing(
            b"{\"event\":\"backup\",\"path\":\"/b/x.sql.gz\",\"verdict\":\"damaged\"}\n{\"event\":\"summary\",\"exit_code\":0}\n",
        );
        assert_eq!(l.paths, vec![(PathBuf::from("/b/x.sql.gz"), true)]);
    }

    #[test]
    fn the_default_policy_depends_on_the_kind_unless_counts_are_given() {
        let a = Args::parse_from(["tb-prune"]);
        assert_eq!(a.policy(Kind::Dump).keep_days, Some(7));
        assert_eq!(a.policy(Kind::ChainBase).keep_days, Some(14));
        let a = Args::parse_from(["tb-prune", "--keep-last", "3"]);
        assert_eq!(a.policy(Kind::Dump).keep_days, None);
        let a = Args::parse_from(["tb-prune", "--keep-days", "30", "--keep-weekly", "8"]);
        assert_eq!(a.policy(Kind::Volume).keep_days, Some(30));
    }
}
