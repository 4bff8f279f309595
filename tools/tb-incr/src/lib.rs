//! `tb-incr`: one volume -> the next point of its chain (a base, then
//! increments holding only what changed).
//!
//! Each volume label has its own chain directory, `DIR/LABEL/`, holding
//! point directories `base_YYYYMMDD/` and `incr_YYYYMMDD/` (`_HHMMSS` added
//! when that day already has a point). A point is built in a hidden
//! temporary directory beside them, read back and checked, and only then
//! renamed into place (see `tb_shared::chain` for what a point holds).
//!
//! A run continues the newest point when the whole chain down to it is
//! intact (every manifest, parent link and file hash); otherwise, on the
//! first run, with `--full`, or when the chain's base is older than
//! `--max-chain-days`, it makes a new base, and says why. File hashes come
//! from the chain's verification cache while a file's size, times, inode
//! and device show it was not touched since it was hashed (or written and
//! read back), so an unchanged base is not read again on every run (see
//! [`tb_shared::chain::VerifyCache`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{Local, NaiveDateTime};
use clap::{Parser, ValueEnum};

use tb_shared::archive::{Archiver, Baseline, ListingDamaged, verify_archive};
use tb_shared::atomic::{ensure_dir, fsync_dir, rename_noreplace};
use tb_shared::chain::{self, DELETED, INDEX, LISTING, MANIFEST, Point, PointCheck, VerifyCache};
use tb_shared::cli::{Common, ToolArgs};
use tb_shared::docker::Docker;
use tb_shared::error::{Cause, Failure};
use tb_shared::exit::Outcome;
use tb_shared::gzip::sha256_file;
use tb_shared::listing::ListingReader;
use tb_shared::manifest::{ChainInfo, FileEntry, Manifest, Verification, VolumeInfo};
use tb_shared::naming::{BackupName, Kind, Precision, TEMP_PREFIX};
use tb_shared::record::{Record, Reporter, now_rfc3339, path_value};
use tb_shared::source::{
    SourceArgs, check_live, collector, emit_warnings, file_entry, housekeeping, live_postgres,
    resolve_source, restart, small_gz_entry, stop_containers, write_error,
};
use tb_shared::{lock, signals};

const ABOUT: &str = "Back up one volume as the next point of its base + increments chain";
const LONG_ABOUT: &str = "\
Back up one volume (a Docker volume or a directory) as the next point of
its chain: a base (everything) the first time, then increments holding
only what changed since the point before, and the paths that disappeared.

By default writes /backup/toybox/volumes-incremental/LABEL/base_YYYYMMDD/
then incr_YYYYMMDD/ (a second point the same day gets _HHMMSS). LABEL is
the volume name without its Compose project prefix
(backend_media_volume -> media_volume), or --name. Each point holds
archive.tar.gz (a standard tar.gz of what changed; directories always),
index.jsonl.gz (its entries), listing.jsonl.gz (the whole tree at that
moment, with sha256 of every file), deleted.nul (paths gone since the
parent, NUL-separated) and manifest.json (sizes and sha256 of the four,
the parent point and its manifest's sha256).

\"Changed\" is decided from type, size, mtime (nanoseconds), mode, owner,
link target, device numbers and xattrs, never from inode or device
numbers: a volume moved or copied elsewhere continues its chain.
Extended attributes are read again only where the entry or a directory
above it changed (ctime) since a minute before the previous walk.
--checksum also compares the contents of files whose metadata is the same,
and reads every entry's extended attributes.

A new base is made on the first run, with --full, when the chain's base is
older than --max-chain-days, and when the chain cannot be continued safely
(a point missing or damaged: a warning names it, exit 1).

A live PostgreSQL data directory is refused, as by tb-voltar, unless its
containers are stopped for the run (--stop) or --allow-live is given.

Restore: tb-restore DIR --name LABEL [--at YYYY-MM-DD] --target DIR.
Restore without tb: the base, then each point on the way to the chosen
one, in order (a point's parent is chain.parent in its manifest: the point
before it, or with --mode differential the base, so just the base and the
chosen point):
  (cd TARGET && xargs -0 -r rm -rf -- < POINT/deleted.nul)
  tar -xzpf POINT/archive.tar.gz --numeric-owner --xattrs --xattrs-include='*' -C TARGET

Exit codes: 0 ok, 1 done with warnings (a broken chain restarted with a
new base, files changed while read, a container that did not start
again), 2 failed (nothing published), 75 busy.";

/// How a point relates to the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Changes since the previous point (smallest; a restore applies every
    /// point since the base).
    Incremental,
    /// Changes since the base (bigger; a restore needs the base and one point).
    Differential,
}

/// Command-line arguments of `tb-incr`.
#[derive(Debug, Clone, Parser)]
#[command(name = "tb-incr", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    #[command(flatten)]
    pub src: SourceArgs,

    /// Directory of the chains (one directory per label inside; created
    /// 0700 if missing)
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/backup/toybox/volumes-incremental"
    )]
    pub dir: PathBuf,

    /// Make a new base even when the chain could be continued
    #[arg(long)]
    pub full: bool,

    /// What an increment holds: changes since the previous point, or since the base
    #[arg(long, value_enum, default_value_t = Mode::Incremental)]
    pub mode: Mode,

    /// Also compare the contents (sha256) of files whose metadata did not change
    #[arg(long)]
    pub checksum: bool,

    /// Start a new base when the chain's base is this many days old or older
    #[arg(long, value_name = "DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub max_chain_days: u32,

    #[command(flatten)]
    pub common: Common,
}

impl ToolArgs for Args {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// What the new point is taken against.
struct Parent {
    check: PointCheck,
    /// The point whose listing is compared (the parent itself, or for a
    /// differential point the base).
    listing: PathBuf,
    /// The point of that listing.
    listing_point: String,
    /// When the walk that made that listing began, if its manifest says.
    listing_walk_started: Option<std::time::SystemTime>,
    chain: String,
}

/// Why the chain is not continued, or what it continues from.
enum Decision {
    Base(String),
    Continue(Box<Parent>),
}

fn decide(
    args: &Args,
    checks: Vec<PointCheck>,
    now: NaiveDateTime,
    rep: &mut Reporter,
) -> Decision {
    if args.full {
        return Decision::Base("--full".into());
    }
    let Some(newest) = checks.last() else {
        return Decision::Base("first run (no point in the chain directory)".into());
    };
    if let Some(why) = &newest.unrestorable {
        let restorable: Vec<String> = checks
            .iter()
            .filter(|c| c.restorable())
            .map(|c| c.point.id())
            .collect();
        let msg = format!(
            "the chain cannot be continued: its newest point '{}' is not restorable ({why}); starting a new base. Still restorable: {}",
            newest.point.id(),
            if restorable.is_empty() {
                "none".to_string()
            } else {
                restorable.join(", ")
            }
        );
        rep.warn(
            &msg,
            Record::new("warning")
                .path(&newest.point.dir)
                .with("reason", why),
        );
        return Decision::Base(format!("chain broken at '{}': {why}", newest.point.id()));
    }
    let base = &checks[newest.path[0]];
    let age = now.signed_duration_since(base.point.name.time);
    if age >= chrono::Duration::days(i64::from(args.max_chain_days)) {
        return Decision::Base(format!(
            "the chain's base '{}' is {} days old (--max-chain-days {})",
            base.point.id(),
            age.num_days(),
            args.max_chain_days
        ));
    }
    let chain = base.point.id();
    let (parent, listed_by) = match args.mode {
        Mode::Incremental => (newest.clone(), newest),
        Mode::Differential => (base.clone(), base),
    };
    let listing_walk_started = listed_by
        .manifest
        .as_ref()
        .and_then(|m| m.chain.as_ref()?.walk_started_at.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(std::time::SystemTime::from);
    Decision::Continue(Box::new(Parent {
        check: parent,
        listing: listed_by.point.file(LISTING),
        listing_point: listed_by.point.id(),
        listing_walk_started,
        chain,
    }))
}

/// The name of the next point: the date alone when that day has no point
/// yet, else with the time (waiting for the next second when taken), and
/// always after the newest point.
fn next_name(
    chain_dir: &Path,
    kind: Kind,
    label: &str,
    newest: Option<&Point>,
) -> Result<BackupName> {
    let day_taken = |t: NaiveDateTime| {
        chain::points(chain_dir)
            .map(|ps| ps.iter().any(|p| p.name.time.date() == t.date()))
            .unwrap_or(true)
    };
    for _ in 0..8 {
        let now = Local::now().naive_local();
        let precision = if day_taken(now) {
            Precision::Second
        } else {
            Precision::Day
        };
        let n = BackupName::new(kind, label, now, precision);
        let taken = std::fs::symlink_metadata(chain_dir.join(n.file_name())).is_ok();
        let after = newest.is_none_or(|p| n > p.name);
        if !taken && after {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!(Failure::new(
        Cause::Exists,
        format!(
            "cannot name the next point in '{}': the clock is behind its newest point{}; check the system clock",
            chain_dir.display(),
            newest.map(|p| format!(" '{}'", p.id())).unwrap_or_default()
        )
    ))
}

fn private_file(path: &Path) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| tb_shared::error::create_error(e, path.parent().unwrap_or(path), "a file"))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of '{}'", path.display()))?;
    Ok(f)
}

fn plain_entry(role: &str, path: &Path, name: &str) -> Result<FileEntry> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("cannot read '{}'", path.display()))?
        .len();
    Ok(FileEntry {
        role: role.into(),
        name: name.into(),
        bytes,
        raw_bytes: bytes,
        sha256: sha256_file(path).with_context(|| format!("cannot read '{}'", path.display()))?,
        crc32: 0,
        chunks: None,
    })
}

/// Write the verification cache. It only saves work: when it cannot be
/// written the summary says why and the next run hashes those files again.
fn save_cache(cache: &mut VerifyCache, rep: &mut Reporter) {
    if let Err(e) = cache.save() {
        rep.summary_field("verify_cache_error", format!("{e:#}"));
    }
}

/// A point being built: its temporary directory, removed unless published.
struct Building {
    temp: PathBuf,
    published: bool,
}

impl Drop for Building {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.temp);
            signals::untrack_temp(&self.temp);
        }
    }
}

/// Run `tb-incr`.
pub fn run(args: Args, rep: &mut Reporter) -> Result<Outcome> {
    let started = now_rfc3339();
    let clock = Instant::now();
    let docker = Docker::new(&args.src.docker);
    let src = resolve_source(&args.src, &docker)?;
    ensure_dir(&args.dir)?;
    let chain_dir = chain::chain_dir(&args.dir, &src.label);
    ensure_dir(&chain_dir)?;
    let _lock = lock::acquire(&chain_dir, args.src.lock_wait())
        .with_context(|| format!("cannot lock chain directory '{}'", chain_dir.display()))?;
    housekeeping(&chain_dir, &docker, rep)?;

    let mut cache = VerifyCache::load(&chain_dir);
    let checks = chain::check_chain_cached(&chain_dir, &mut cache)?;
    if cache.has_news() {
        // What was hashed is kept even if this run fails later.
        save_cache(&mut cache, rep);
    }
    rep.summary_field("verify_hashed", cache.hashed());
    rep.summary_field("verify_cached", cache.trusted());
    let check_ms = clock.elapsed().as_millis() as u64;
    let newest = checks.last().map(|c| c.point.clone());
    let decision = decide(&args, checks, Local::now().naive_local(), rep);
    let kind = match decision {
        Decision::Base(_) => Kind::ChainBase,
        Decision::Continue(_) => Kind::ChainIncr,
    };
    let name = next_name(&chain_dir, kind, &src.label, newest.as_ref())?;
    let point_id = name.file_name();
    let dest = chain_dir.join(&point_id);

    let live = live_postgres(&src.path);
    let consistent = check_live(&args.src, &src, live.as_deref(), rep)?;

    let temp = chain_dir.join(format!("{TEMP_PREFIX}{point_id}.{}", std::process::id()));
    std::fs::create_dir(&temp)
        .map_err(|e| tb_shared::error::create_error(e, &chain_dir, "a temporary directory"))?;
    let mut building = Building {
        temp: temp.clone(),
        published: false,
    };
    signals::track_temp(&temp);
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of '{}'", temp.display()))?;
    let archive_path = temp.join(chain::ARCHIVE);
    let index_path = temp.join(INDEX);
    let listing_path = temp.join(LISTING);
    let deleted_path = temp.join(DELETED);
    let afile = private_file(&archive_path)?;
    let ifile = private_file(&index_path)?;
    let lfile = private_file(&listing_path)?;
    let dfile = private_file(&deleted_path)?;

    let (prev_listing, listing_walk_started) = match &decision {
        Decision::Continue(p) => (
            Some(ListingReader::open(&p.listing)?),
            p.listing_walk_started,
        ),
        Decision::Base(_) => (None, None),
    };
    let mut baseline = Baseline::new(
        prev_listing,
        Box::new(BufWriter::new(
            lfile
                .try_clone()
                .context("cannot duplicate a file handle")?,
        )),
        Box::new(BufWriter::new(
            dfile
                .try_clone()
                .context("cannot duplicate a file handle")?,
        )),
        args.checksum,
    )?;
    if let Some(t) = listing_walk_started {
        baseline = baseline.listing_walk_started(t);
    }

    let stopped = stop_containers(&args.src, &docker, Some(&chain_dir), rep)?;
    let stopped_names: Vec<String> = stopped
        .as_ref()
        .map(|s| s.names().to_vec())
        .unwrap_or_default();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let arch = Archiver::new(
        &src.path,
        afile
            .try_clone()
            .context("cannot duplicate a file handle")?,
        BufWriter::new(
            ifile
                .try_clone()
                .context("cannot duplicate a file handle")?,
        ),
        args.src.gz(),
        collector(&warnings),
    )
    .with_baseline(baseline);
    let result = arch.archive_all();
    let restart_failed = restart(stopped, rep);
    let result = result.map_err(|e| match (&decision, e.downcast_ref::<ListingDamaged>()) {
        (Decision::Continue(p), Some(_)) => {
            // Damaged although the cache vouched for it (its attributes did
            // not change): the next run reads every file again, finds the
            // damage and starts a new base instead of failing again.
            cache.forget(&p.listing_point);
            save_cache(&mut cache, rep);
            e.context(format!(
                "'{}' was damaged after it was checked; the next run checks the whole chain again and starts a new base",
                p.listing.display()
            ))
        }
        _ => e,
    });
    let (_, index_w, stats) = result.map_err(|e| write_error(e, &dest))?;
    index_w
        .into_inner()
        .map_err(|e| e.into_error())
        .context("cannot write the index")?;
    let mut written = Vec::new();
    for f in [&afile, &ifile, &lfile, &dfile] {
        f.sync_all()
            .map_err(|e| write_error(e.into(), &dest))
            .context("cannot flush the point to disk")?;
        // What each file is before it is read back (for the cache).
        written.push(f.metadata().ok());
    }
    let archive_ms = clock.elapsed().as_millis() as u64;
    let warning_list = emit_warnings(rep, &warnings);
    let changes = stats.changes.clone().unwrap_or_default();

    // Read it back: the archive against its index, the listing whole.
    let check = verify_archive(
        &archive_path,
        Some(stats.gz.chunks.clone()),
        Some(&index_path),
    );
    signals::check()?;
    let check = check.map_err(|(_, why)| {
        Failure::new(
            Cause::Other,
            format!(
                "the written archive '{}' does not verify: {why}",
                archive_path.display()
            ),
        )
    })?;
    if check.gz.sha256 != stats.gz.sha256 || check.entries != stats.counts.entries {
        bail!(Failure::new(
            Cause::Other,
            format!(
                "the written archive '{}' reads back different from what was written: the disk or filesystem is not keeping data",
                archive_path.display()
            )
        ));
    }
    // The listing was counted and hashed as it was written: read back, it
    // must be those very bytes (and hold every entry listed).
    let listing = stats.listing.clone().unwrap_or_default();
    let listing_sha = sha256_file(&listing_path)
        .with_context(|| format!("cannot read '{}'", listing_path.display()))?;
    let listing_bytes = std::fs::metadata(&listing_path)
        .with_context(|| format!("cannot read '{}'", listing_path.display()))?
        .len();
    if listing.entries != changes.listed
        || listing_sha != listing.sha256
        || listing_bytes != listing.gz_bytes
    {
        bail!(Failure::new(
            Cause::Other,
            format!(
                "the written listing '{}' reads back different from what was written ({listing_bytes} bytes, {} written, {} of {} entries): the disk or filesystem is not keeping data",
                listing_path.display(),
                listing.gz_bytes,
                listing.entries,
                changes.listed
            )
        ));
    }

    let finished = now_rfc3339();
    let tool = format!("tb-incr {}", env!("CARGO_PKG_VERSION"));
    let mut manifest = Manifest::new(kind.as_str(), &src.label, &tool, &started);
    manifest.finished_at = finished.clone();
    manifest.duration_ms = clock.elapsed().as_millis() as u64;
    manifest.files.push(file_entry(
        "archive",
        &dest.join(chain::ARCHIVE),
        &stats.gz,
        true,
    ));
    let index_entry = small_gz_entry("index", &index_path, &dest.join(INDEX))?;
    let index_sha = index_entry.sha256.clone();
    manifest.files.push(index_entry);
    manifest.files.push(FileEntry {
        role: "listing".into(),
        name: LISTING.into(),
        bytes: listing.gz_bytes,
        raw_bytes: listing.raw_bytes,
        sha256: listing.sha256.clone(),
        crc32: listing.crc32,
        chunks: None,
    });
    let deleted_entry = plain_entry("deleted", &deleted_path, DELETED)?;
    let deleted_sha = deleted_entry.sha256.clone();
    manifest.files.push(deleted_entry);
    let c = &stats.counts;
    manifest.volume = Some(VolumeInfo {
        source: src.path.display().to_string(),
        docker_volume: src.docker_volume.clone(),
        consistent,
        stopped_containers: stopped_names,
        entries: c.entries,
        files: c.files,
        dirs: c.dirs,
        symlinks: c.symlinks,
        hardlinks: c.hardlinks,
        specials: c.specials,
        sockets_skipped: c.sockets_skipped,
        file_bytes: c.file_bytes,
        tar_bytes: stats.tar_bytes,
        warnings: warning_list.iter().take(100).cloned().collect(),
        warnings_total: warning_list.len() as u64,
    });
    let (mode, parent, parent_sha, chain_id, base_reason) = match &decision {
        Decision::Base(why) => ("base", None, None, point_id.clone(), Some(why.clone())),
        Decision::Continue(p) => (
            match args.mode {
                Mode::Incremental => "incremental",
                Mode::Differential => "differential",
            },
            Some(p.check.point.id()),
            p.check.manifest_sha256.clone(),
            p.chain.clone(),
            None,
        ),
    };
    manifest.chain = Some(ChainInfo {
        point: point_id.clone(),
        chain: chain_id.clone(),
        mode: mode.into(),
        parent: parent.clone(),
        parent_manifest_sha256: parent_sha,
        base_reason: base_reason.clone(),
        listed: changes.listed,
        listed_file_bytes: changes.listed_file_bytes,
        added: changes.added,
        changed: changes.changed,
        unchanged: changes.unchanged,
        deleted: changes.deleted,
        walk_started_at: Some(
            chrono::DateTime::<chrono::Utc>::from(stats.walk_started)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        ),
    });
    manifest.verified = Some(Verification {
        at: finished,
        verdict: "good".into(),
        by: tool,
    });
    let mpath = temp.join(MANIFEST);
    {
        let mut f = private_file(&mpath)?;
        let mut text =
            serde_json::to_vec_pretty(&manifest).context("cannot encode the manifest")?;
        text.push(b'\n');
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| write_error(e.into(), &dest))?;
    }
    fsync_dir(&temp)?;

    signals::check()?;
    signals::critical(|| -> Result<()> {
        rename_noreplace(&temp, &dest)?;
        building.published = true;
        signals::untrack_temp(&temp);
        fsync_dir(&chain_dir)
    })?;

    // The files were just read back with these hashes: cached, so the next
    // run need not read them again while they stay as they are.
    let shas = [&check.gz.sha256, &index_sha, &listing.sha256, &deleted_sha];
    let names = [chain::ARCHIVE, INDEX, LISTING, DELETED];
    for ((name, sha), before) in names.iter().zip(shas).zip(&written) {
        if let Some(before) = before {
            cache.record(&point_id, name, &dest.join(name), before, sha);
        }
    }
    if cache.has_news() {
        save_cache(&mut cache, rep);
    }

    let mut rec = Record::new("written")
        .with("kind", kind.as_str())
        .with("path", path_value(&dest))
        .with("label", &src.label)
        .with("chain", &chain_id)
        .with("mode", mode)
        .with("bytes", stats.gz.gz_bytes)
        .with("raw_bytes", stats.tar_bytes)
        .with("sha256", &stats.gz.sha256)
        .with("entries", changes.listed)
        .with("stored", c.entries)
        .with("added", changes.added)
        .with("changed", changes.changed)
        .with("unchanged", changes.unchanged)
        .with("deleted", changes.deleted)
        .with("file_bytes", c.file_bytes)
        .with("listing_members_copied", listing.copied_members)
        .with("listing_members_written", listing.new_members)
        .with("check_ms", check_ms)
        .with("archive_ms", archive_ms)
        .with("consistent", consistent)
        .with("duration_ms", clock.elapsed().as_millis() as u64);
    if let Some(p) = &parent {
        rec.set("parent", p);
    }
    if let Some(r) = &base_reason {
        rec.set("base_reason", r);
    }
    if let Some(v) = &src.docker_volume {
        rec.set("docker_volume", v);
    }
    rep.emit(rec);
    rep.summary_field("written", 1);
    rep.summary_field("path", path_value(&dest));
    Ok(if restart_failed {
        Outcome::WARNINGS
    } else {
        rep.outcome()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Args::command().debug_assert();
    }

    fn check(kind: Kind, time: NaiveDateTime, path: Vec<usize>) -> PointCheck {
        let name = BackupName::new(kind, "media", time, Precision::Second);
        PointCheck {
            point: Point {
                dir: PathBuf::from("/chains/media").join(name.file_name()),
                name,
            },
            manifest: None,
            manifest_sha256: Some(format!("{:064}", path.len())),
            problem: None,
            unrestorable: None,
            path,
        }
    }

    fn decided(args: &[&str], checks: &[PointCheck], now: NaiveDateTime) -> Result<String, String> {
        let mut argv = vec!["tb-incr", "--source", "/vol"];
        argv.extend_from_slice(args);
        let mut rep = Reporter::quiet("tb-incr");
        let d = decide(&Args::parse_from(argv), checks.to_vec(), now, &mut rep);
        assert!(rep.records().is_empty(), "no warning: {:?}", rep.records());
        match d {
            Decision::Base(why) => Err(why),
            Decision::Continue(p) => {
                assert_eq!(p.chain, checks[0].point.id());
                assert_eq!(p.listing, p.check.point.file(LISTING));
                Ok(p.check.point.id())
            }
        }
    }

    #[test]
    fn an_old_base_starts_a_new_chain() {
        let t0 = chrono::NaiveDate::from_ymd_opt(2026, 1, 19)
            .and_then(|d| d.and_hms_opt(3, 45, 0))
            .expect("a time");
        let day = chrono::Duration::days(1);
        let chain = [
            check(Kind::ChainBase, t0, vec![0]),
            check(Kind::ChainIncr, t0 + day * 6, vec![0, 1]),
        ];
        let (base, newest) = (chain[0].point.id(), chain[1].point.id());
        // A second short of 7 days (the default): continued, from the newest.
        let almost = t0 + day * 7 - chrono::Duration::seconds(1);
        assert_eq!(decided(&[], &chain, almost), Ok(newest.clone()));
        assert_eq!(
            decided(&["--mode", "differential"], &chain, almost),
            Ok(base.clone()),
            "a differential point's parent is the base"
        );
        // 7 days: a new base, and why.
        assert_eq!(
            decided(&[], &chain, t0 + day * 7),
            Err(format!(
                "the chain's base '{base}' is 7 days old (--max-chain-days 7)"
            ))
        );
        assert_eq!(
            decided(&["--max-chain-days", "30"], &chain, t0 + day * 29),
            Ok(newest)
        );
        assert_eq!(
            decided(&["--max-chain-days", "1"], &chain, t0 + day * 2),
            Err(format!(
                "the chain's base '{base}' is 2 days old (--max-chain-days 1)"
            ))
        );
        assert_eq!(
            decided(&["--full"], &chain, almost),
            Err("--full".to_string())
        );
        assert_eq!(
            decided(&[], &[], t0),
            Err("first run (no point in the chain directory)".to_string())
        );
    }
}
