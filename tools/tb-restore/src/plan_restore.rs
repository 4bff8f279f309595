//! `tb-restore ROOT --at WHEN`: one recovery point for everything.
//!
//! From the backup root, the newest good dump of that day or earlier, and
//! for each volume label the newest good full archive or restorable chain
//! point of that day or earlier. The plan (what, from which file, into
//! where, and how far each volume's time is from the database's) is printed
//! as `plan` records; with `--yes` each step is carried out by tb-restore
//! itself (one run per step, its records on the same output). Without
//! `--yes` it is a dry run when stdin is not a terminal, and asks first
//! when it is.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use tb_shared::catalog::{self, Backup, Status};
use tb_shared::error::{Cause, Failure};
use tb_shared::exit::Outcome;
use tb_shared::naming::Kind;
use tb_shared::record::{Record, Reporter, path_value};

use crate::Args;
use crate::chain_restore::parse_at;

/// Is `dir` a backup root (not a chain), so that `--at` plans everything?
pub(crate) fn is_root(args: &Args) -> bool {
    let b = &args.backup;
    let holds_chains = std::fs::read_dir(b).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| tb_shared::chain::looks_like_chain(&e.path()))
    });
    args.name.is_none()
        && b.is_dir()
        && tb_shared::chain::as_point(b).is_none()
        && !tb_shared::chain::looks_like_chain(b)
        && !holds_chains
}

/// One step of the plan.
struct Step {
    what: &'static str,
    backup: Backup,
    into: Option<String>,
}

/// Where each volume label goes: `--into LABEL=VOLUME` (a Docker volume) or
/// `--into LABEL=/path` (a directory).
fn targets(args: &Args) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for spec in &args.into {
        let (label, to) = spec.split_once('=').ok_or_else(|| {
            Failure::new(
                Cause::BadInput,
                format!("--into '{spec}': give LABEL=VOLUME or LABEL=/DIR"),
            )
        })?;
        out.insert(label.to_string(), to.to_string());
    }
    Ok(out)
}

fn good(b: &Backup) -> bool {
    b.status == Status::Good
}

/// Run the plan.
pub(crate) fn run(args: &Args, rep: &mut Reporter) -> Result<Outcome> {
    let at_text = args.at.clone().unwrap_or_default();
    let at = parse_at(&at_text).ok_or_else(|| {
        Failure::new(
            Cause::BadInput,
            format!("--at '{at_text}': give a day (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM:SS)"),
        )
    })?;
    let cat = catalog::scan(&args.backup, false)
        .with_context(|| format!("cannot read the backup root '{}'", args.backup.display()))?;
    let into = targets(args)?;
    let before = |b: &&Backup| b.time <= at;
    // One label in several directories (a copy of the layout): ambiguous.
    let mut dirs_of: BTreeMap<(&str, &str), std::collections::BTreeSet<PathBuf>> = BTreeMap::new();
    for b in &cat.backups {
        let (kind, dir) = match &b.chain {
            Some(c) => (
                "volume",
                c.dir.parent().map(PathBuf::from).unwrap_or_default(),
            ),
            None if b.kind == Kind::Dump => (
                "database",
                b.path.parent().map(PathBuf::from).unwrap_or_default(),
            ),
            None => (
                "volume",
                b.path.parent().map(PathBuf::from).unwrap_or_default(),
            ),
        };
        dirs_of
            .entry((kind, b.label.as_str()))
            .or_default()
            .insert(dir);
    }
    for ((kind, label), dirs) in &dirs_of {
        // A volume has a full-archive directory and an incremental one.
        let limit = if *kind == "volume" { 2 } else { 1 };
        if dirs.len() > limit {
            return Err(Failure::new(
                Cause::BadInput,
                format!(
                    "the {kind} '{label}' has backups in several places under '{}' ({}): give the root of one layout",
                    args.backup.display(),
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            )
            .into());
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    // The database: the newest good dump of each label.
    let mut dumps: BTreeMap<&str, &Backup> = BTreeMap::new();
    for b in cat
        .backups
        .iter()
        .filter(before)
        .filter(|b| b.kind == Kind::Dump && good(b))
    {
        let e = dumps.entry(b.label.as_str()).or_insert(b);
        if b.time > e.time {
            *e = b;
        }
    }
    // --dbname DB for the only database, or LABEL=DB for each.
    let db_for = |label: &str| -> Result<Option<String>> {
        let Some(spec) = &args.dbname else {
            return Ok(None);
        };
        let pairs: Vec<(&str, &str)> = spec.split(',').filter_map(|p| p.split_once('=')).collect();
        if !pairs.is_empty() {
            return Ok(pairs
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, d)| d.to_string()));
        }
        if dumps.len() > 1 {
            return Err(Failure::new(
                Cause::BadInput,
                format!(
                    "the root holds dumps of several databases ({}): say which goes where with --dbname LABEL=DB[,LABEL=DB]",
                    dumps.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
            .into());
        }
        Ok(Some(spec.clone()))
    };
    for b in dumps.values() {
        steps.push(Step {
            what: "database",
            backup: (*b).clone(),
            into: db_for(&b.label)?,
        });
    }
    // Each volume: the newest good full archive or restorable chain point.
    let mut vols: BTreeMap<&str, &Backup> = BTreeMap::new();
    for b in
        cat.backups.iter().filter(before).filter(|b| {
            matches!(b.kind, Kind::Volume | Kind::ChainBase | Kind::ChainIncr) && good(b)
        })
    {
        let e = vols.entry(b.label.as_str()).or_insert(b);
        if b.time > e.time {
            *e = b;
        }
    }
    for (label, b) in &vols {
        steps.push(Step {
            what: "volume",
            backup: (*b).clone(),
            into: into.get(*label).cloned(),
        });
    }
    for label in into.keys() {
        if !vols.contains_key(label.as_str()) {
            return Err(Failure::new(
                Cause::NotFound,
                format!(
                    "--into {label}=…: no good backup of volume '{label}' at or before {at_text}"
                ),
            )
            .into());
        }
    }
    if steps.is_empty() {
        return Err(Failure::new(
            Cause::NotFound,
            format!(
                "no good backup at or before {at_text} under '{}'",
                args.backup.display()
            ),
        )
        .into());
    }
    let db_time = steps
        .iter()
        .find(|s| s.what == "database")
        .map(|s| s.backup.time);
    for s in &steps {
        let mut r = Record::new("plan")
            .with("what", s.what)
            .with("kind", s.backup.kind.as_str())
            .with("label", &s.backup.label)
            .with(
                "backup_time",
                s.backup.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            )
            .with("path", path_value(&s.backup.path))
            .with("into", s.into.clone());
        if let (Some(d), "volume") = (db_time, s.what) {
            r.set("skew_s", (s.backup.time - d).num_seconds());
        }
        if s.into.is_none() {
            r.set(
                "note",
                if s.what == "database" {
                    "no --dbname: not restored".to_string()
                } else {
                    format!("no --into {}=…: not restored", s.backup.label)
                },
            );
        }
        rep.emit(r);
    }
    let go = if args.yes {
        true
    } else if std::io::stdin().is_terminal() && !args.dry_run {
        eprint!("tb-restore: carry out this plan? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes")
    } else {
        false
    };
    if !go {
        rep.summary_field("dry_run", true);
        rep.summary_field("steps", steps.len());
        return Ok(rep.outcome());
    }
    let me = std::env::current_exe().context("cannot find the tb-restore program itself")?;
    let mut failed = Vec::new();
    let mut done = 0u64;
    for s in steps.iter().filter(|s| s.into.is_some()) {
        tb_shared::signals::check()?;
        let to = s.into.clone().unwrap_or_default();
        let mut cmd = Command::new(&me);
        cmd.arg(&s.backup.path);
        match s.what {
            "database" => {
                cmd.args(["--dbname", &to]);
                for (flag, v) in [
                    ("--host", &args.host),
                    ("--port", &args.port),
                    ("--username", &args.username),
                    ("--container", &args.container),
                ] {
                    if let Some(v) = v {
                        cmd.args([flag, v]);
                    }
                }
                if args.clean {
                    cmd.arg("--clean");
                }
                if args.with_roles {
                    cmd.arg("--with-roles");
                }
            }
            _ => {
                if to.contains('/') {
                    cmd.arg("--target").arg(PathBuf::from(&to));
                } else {
                    cmd.args(["--volume", &to]);
                }
                if args.force {
                    cmd.arg("--force");
                }
            }
        }
        cmd.args(["--docker", &args.docker]);
        if let Some(log) = &args.common.log {
            cmd.arg("--log").arg(log);
        }
        let status = cmd.status().context("cannot run tb-restore for a step")?;
        if status.success() || status.code() == Some(1) {
            done += 1;
        } else {
            failed.push(format!(
                "{} {} from '{}'",
                s.what,
                s.backup.label,
                s.backup.path.display()
            ));
        }
    }
    rep.summary_field("steps_done", done);
    if !failed.is_empty() {
        return Err(Failure::new(
            Cause::Other,
            format!(
                "{} steps failed ({}); the others are restored, see their records",
                failed.len(),
                failed.join(", ")
            ),
        )
        .into());
    }
    Ok(rep.outcome())
}
