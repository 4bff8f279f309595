//! Restoring an incremental chain (tb-incr) to one of its points.
//!
//! Nothing is touched until the whole ancestry of the chosen point checks
//! out (manifests, parent links, the sha256 of every file). Then each
//! point from the base down is applied to the temporary tree (its deleted
//! paths removed, its archive extracted and checked against its index),
//! the result is compared with the chosen point's complete listing, and
//! only then is it moved into place, as for a volume archive.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use tb_shared::chain::{self, ARCHIVE, DELETED, Depth, INDEX, LISTING, PointCheck};
use tb_shared::error::{Cause, Failure, cause_of};
use tb_shared::exit::Outcome;
use tb_shared::record::{Record, Reporter, path_value};

use crate::{Args, Input, commit, extract, plan, roll_back, usage, warn_extracted};

/// The point to restore, with the checked chain.
pub(crate) struct Chosen {
    chain_dir: PathBuf,
    checks: Vec<PointCheck>,
    index: usize,
}

/// `--at`: a day (the end of it) or a time, as the latest point time allowed.
pub(crate) fn parse_at(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_time(NaiveTime::from_hms_opt(23, 59, 59)?));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y%m%d") {
        return Some(d.and_time(NaiveTime::from_hms_opt(23, 59, 59)?));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y%m%d_%H%M%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    None
}

fn shown_time(c: &PointCheck) -> String {
    c.point.name.time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Find the chain and the point, check the chain, and say what is
/// restorable (one `point` record each).
pub(crate) fn resolve(args: &Args, rep: &mut Reporter) -> Result<Chosen> {
    let b = &args.backup;
    let (chain_dir, explicit) = if let Some(label) = &args.name {
        (chain::chain_dir(b, label), None)
    } else if let Some(p) = chain::as_point(b) {
        (b.parent().unwrap_or(b).to_path_buf(), Some(p.id()))
    } else {
        (b.clone(), None)
    };
    if explicit.is_some() && args.at.is_some() {
        return Err(usage(
            "give either a point directory or --at, not both".into(),
        ));
    }
    let checks = chain::check_chain(&chain_dir, Depth::Hashes)?;
    if checks.is_empty() {
        let hint = if args.name.is_none() {
            " (for the incremental directory, name the chain with --name LABEL)"
        } else {
            ""
        };
        return Err(Failure::new(
            Cause::NotFound,
            format!(
                "'{}' holds no chain points (base_YYYYMMDD/, incr_YYYYMMDD/){hint}",
                chain_dir.display()
            ),
        )
        .into());
    }
    for c in &checks {
        let mut r = Record::new("point")
            .with("kind", c.kind())
            .path(&c.point.dir)
            .with("point", c.point.id())
            .with("point_time", shown_time(c))
            .with("restorable", c.restorable());
        if let Some(p) = c.parent() {
            r.set("parent", p);
        }
        if let Some(ch) = c.chain() {
            r.set("chain", ch);
        }
        if let Some(why) = &c.unrestorable {
            r.set("reason", why);
        }
        rep.emit(r);
    }
    let index = match (&explicit, &args.at) {
        (Some(id), _) => checks.iter().position(|c| &c.point.id() == id),
        (None, Some(at)) => {
            let limit = parse_at(at).ok_or_else(|| {
                usage(format!(
                    "--at '{at}': give a day (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM:SS)"
                ))
            })?;
            let found = checks.iter().rposition(|c| c.point.name.time <= limit);
            if found.is_none() {
                return Err(Failure::new(
                    Cause::NotFound,
                    format!(
                        "the chain '{}' has no point at or before {at}: its oldest is {} ({})",
                        chain_dir.display(),
                        checks[0].point.id(),
                        shown_time(&checks[0])
                    ),
                )
                .into());
            }
            found
        }
        (None, None) => Some(checks.len() - 1),
    };
    let Some(index) = index else {
        return Err(Failure::new(
            Cause::NotFound,
            format!("no point '{}' in '{}'", b.display(), chain_dir.display()),
        )
        .into());
    };
    let chosen = &checks[index];
    if let Some(why) = &chosen.unrestorable {
        let ok: Vec<String> = checks
            .iter()
            .filter(|c| c.restorable())
            .map(|c| format!("{} ({})", c.point.id(), shown_time(c)))
            .collect();
        return Err(Failure::new(
            Cause::Damaged,
            format!(
                "the point '{}' cannot be restored: {why}; nothing was touched. Restorable points: {}",
                chosen.point.id(),
                if ok.is_empty() {
                    "none".to_string()
                } else {
                    ok.join(", ")
                }
            ),
        )
        .into());
    }
    Ok(Chosen {
        chain_dir,
        checks,
        index,
    })
}

/// Apply the chain down to the chosen point into `dest`.
pub(crate) fn restore(
    args: &Args,
    chosen: &Chosen,
    dest: &Path,
    rep: &mut Reporter,
    clock: Instant,
) -> Result<Outcome> {
    let target = &chosen.checks[chosen.index];
    let plan = plan(dest, args.force, rep)?;
    let dir = plan.extract_dir().to_path_buf();
    let mut refusals = Vec::new();
    let mut refused_total = 0u64;
    let mut applied = Vec::new();
    let mut totals = (0u64, 0u64, 0u64);
    let result = (|| -> Result<()> {
        for &i in &target.path {
            let c = &chosen.checks[i];
            let mut removed = 0u64;
            for rel in chain::read_deleted(&c.point.file(DELETED))? {
                if chain::remove_under(&dir, &rel)? {
                    removed += 1;
                }
            }
            let input = Input {
                path: Some(c.point.file(ARCHIVE)),
                manifest: c.manifest.clone(),
                index: Some(c.point.file(INDEX)),
            };
            let (ex, gz) = extract(&input, &dir, &mut refusals, &mut refused_total)?;
            if refused_total > 0 {
                return Err(Failure::new(
                    Cause::UnsafeArchive,
                    format!(
                        "'{}' holds {refused_total} entries that would reach outside the target or cannot be restored safely (see the refused records); nothing was restored",
                        c.point.dir.display()
                    ),
                )
                .into());
            }
            warn_extracted(&ex, rep);
            totals.0 += ex.entries;
            totals.1 += removed;
            totals.2 += gz.gz_bytes;
            rep.emit(
                Record::new("applied")
                    .with("kind", c.kind())
                    .path(&c.point.dir)
                    .with("point", c.point.id())
                    .with("entries", ex.entries)
                    .with("files", ex.files)
                    .with("file_bytes", ex.file_bytes)
                    .with("deleted", removed)
                    .with("bytes", gz.gz_bytes),
            );
            applied.push(c.point.id());
        }
        let owners = nix::unistd::geteuid().is_root();
        let diffs = chain::compare_tree(&dir, &target.point.file(LISTING), owners, args.force, 20)?;
        if !diffs.is_empty() {
            return Err(Failure::new(
                Cause::Damaged,
                format!(
                    "the restored tree differs from the listing of '{}': {}",
                    target.point.id(),
                    diffs.join("; ")
                ),
            )
            .into());
        }
        commit(&plan, rep)
    })();
    for r in &refusals {
        rep.emit(
            Record::new("refused")
                .with("entry", &r.entry)
                .with("reason", &r.reason),
        );
    }
    if let Err(e) = result {
        let note = roll_back(&plan);
        return Err(Failure::new(cause_of(&e), format!("{e:#}; {note}")).into());
    }
    if let Some(v) = target.manifest.as_ref().and_then(|m| m.volume.as_ref())
        && !v.consistent
    {
        rep.warn(
            "the chain point was taken from a running PostgreSQL (--allow-live): its data directory may need crash recovery, or may not start",
            Record::new("warning"),
        );
    }
    let listed = target
        .manifest
        .as_ref()
        .and_then(|m| m.chain.as_ref())
        .map(|c| (c.listed, c.listed_file_bytes))
        .unwrap_or_default();
    let mut rec = Record::new("restored")
        .with("kind", "chain")
        .with("path", path_value(&target.point.dir))
        .with("chain_dir", path_value(&chosen.chain_dir))
        .with("point", target.point.id())
        .with("point_time", shown_time(target))
        .with("points", &applied)
        .with("target", path_value(dest))
        .with("entries", listed.0)
        .with("file_bytes", listed.1)
        .with("extracted", totals.0)
        .with("deleted", totals.1)
        .with("bytes", totals.2)
        .with("checked", "listing")
        .with("duration_ms", clock.elapsed().as_millis() as u64);
    if let Some(v) = &args.volume {
        rec.set("docker_volume", v);
    }
    rep.emit(rec);
    rep.summary_field("restored", 1);
    rep.summary_field("target", path_value(dest));
    Ok(rep.outcome())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_takes_a_day_or_a_time() {
        let t = |s: &str| parse_at(s).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        assert_eq!(t("2026-01-20").as_deref(), Some("2026-01-20 23:59:59"));
        assert_eq!(t("20260120").as_deref(), Some("2026-01-20 23:59:59"));
        assert_eq!(
            t("2026-01-20T03:45:00").as_deref(),
            Some("2026-01-20 03:45:00")
        );
        assert_eq!(
            t("2026-01-20 03:45").as_deref(),
            Some("2026-01-20 03:45:00")
        );
        assert_eq!(t("20260120_034501").as_deref(), Some("2026-01-20 03:45:01"));
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2026-02-30"), None);
    }
}
