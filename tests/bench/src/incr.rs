//! The `incr` benchmark: `tb-incr` against GNU tar's incremental mode
//! (`tar -czg SNAPSHOT`, gzip), and the chain restores, on two trees.
//!
//! Trees (in `$TB_BENCH_DIR/incr`, made once and kept for later runs):
//!
//! - `small-100k/`: 100,000 text and JSON files of 200 B to 4 KB in 1,000
//!   directories (generated deterministically, see [`generate_small`]);
//! - `media-work/`: a copy (`cp -a`) of the `volume` benchmark's media-like
//!   tree (generated first when missing), which this benchmark rewrites
//!   1 % of on every run; the `volume` benchmark's own tree stays as
//!   generated.
//!
//! Steps: build the tools (release), make or reuse the trees, read every
//! file of both once (the warm-up, as the `volume` benchmark does; the page
//! cache is not dropped), then:
//!
//! 1. the 100,000-file tree: both bases (measured and shown), then the
//!    increment of each tool with nothing changed (`--repeat` times,
//!    median; tb's point is removed after each run so that every run
//!    continues the base, tar starts each run from a copy of the level-0
//!    snapshot, as people do);
//! 2. the media tree: both bases, then every 100th regular file in path
//!    order is rewritten with new content of its kind and the same size
//!    (new random bytes for the already-compressed kinds, new text for the
//!    others), and both increments are measured; the changed files alone,
//!    archived with `tar czf`, are the size an increment's archive is
//!    compared with (tb's listing and other point files are shown apart,
//!    as tar's snapshot file is);
//! 3. the chain restores of the media tree (base + the 1 % increment):
//!    `tb-restore ROOT --name LABEL --target DIR` against the two GNU tar
//!    extractions with `--listed-incremental=/dev/null`; each restored
//!    tree is compared entry by entry with the tree (paths, types, modes,
//!    sizes) and the changed files byte by byte, then deleted.
//!
//! Every measured command starts after a `sync`. The outputs are deleted
//! at the end; the table and the targets are printed last.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::common::{self, BUSY_WARNING, Scratch, busy_share, free_bytes, free_space, remove_dir};
use crate::measure::{self, Usage, median, median_usage};
use crate::media::{self, Entry, Listing, TreeStats};
use crate::report::{Table, bytes, mib, ratio, secs};
use crate::{DEFAULT_VOLUME_MB, IncrOptions, bench_dir};

/// Files of the small tree.
const SMALL_FILES: u64 = 100_000;
/// Top directories of the small tree...
const SMALL_TOP_DIRS: u64 = 20;
/// ... and directories in each (1,000 leaf directories of 100 files).
const SMALL_SUB_DIRS: u64 = 50;
/// Smallest and largest file of the small tree (log-uniform in between).
const SMALL_MIN_BYTES: u64 = 200;
const SMALL_MAX_BYTES: u64 = 4_096;
/// Bumped whenever the small tree's content changes: older ones are remade.
const SMALL_VERSION: u64 = 1;
/// Bumped whenever the work copy must be made again.
const WORK_VERSION: u64 = 1;
/// The small tree's directory name in the bench directory.
const SMALL_NAME: &str = "small-100k";
/// The media work copy's directory name.
const WORK_NAME: &str = "media-work";
/// One file in this many is rewritten (1 %).
const CHANGE_EVERY: usize = 100;

/// Target: tb-incr's no-change increment at most this times tar's wall time.
const NOCHANGE_WALL_FACTOR_MAX: f64 = 1.0;
/// Target: tb-incr's 1 % increment at most this times tar's wall time.
const CHANGED_WALL_FACTOR_MAX: f64 = 0.5;
/// Target: tb-incr's 1 % increment (its `archive.tar.gz`, what a restore
/// extracts) at most this times the changed files archived alone with `tar
/// czf`. The point's listing of the whole tree (and its index, deleted
/// paths and manifest) is shown on rows of its own, as tar's snapshot file
/// is, and counted in neither.
const INCR_SIZE_FACTOR_MAX: f64 = 1.05;
/// Target: tb-incr's own peak RSS on the small tree below this.
const SMALL_RSS_MAX_BYTES: u64 = 128 << 20;

/// tb-incr's labels (`--name`).
const SMALL_LABEL: &str = "small_files";
const MEDIA_LABEL: &str = "media_volume";
/// The outputs need about this many times the media tree's size: two bases
/// (about 0.8 each) and one restored tree at a time.
const OUTPUT_SPACE_FACTOR: f64 = 2.7;

/// The binaries under test.
struct Tools {
    tb_incr: PathBuf,
    tb_restore: PathBuf,
}

/// One measured run of one side (or the median of several).
#[derive(Debug, Clone, Default)]
struct Side {
    usage: Usage,
    /// tb-incr's own peak RSS (its summary record); `None` for tar.
    own_rss: Option<u64>,
    /// What the run left: tb's whole point directory, tar's .tar.gz.
    output_bytes: u64,
    /// The .tar.gz alone (tb's `archive.tar.gz`, tar's output).
    archive_bytes: u64,
    /// tar's snapshot file after the run; 0 for tb.
    snapshot_bytes: u64,
    /// tb: files stored in the point (added + changed) and paths deleted,
    /// from its record.
    stored: u64,
    deleted: u64,
    /// tb: the files of the point directory and their sizes.
    parts: Vec<(String, u64)>,
    /// tb: point files hashed, and taken from its verification cache,
    /// when it checked the chain (its summary).
    verify: Option<(u64, u64)>,
    /// tb: milliseconds until the chain was checked (its record).
    check_ms: Option<u64>,
}

impl Side {
    /// The size of the tb point's file `name` (0 when there is none).
    fn part(&self, name: &str) -> u64 {
        self.parts
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, b)| *b)
    }

    /// The tb point's files other than its archive and listing.
    fn other_parts(&self) -> u64 {
        self.parts
            .iter()
            .filter(|(n, _)| n != ARCHIVE && n != LISTING)
            .map(|(_, b)| b)
            .sum()
    }
}

/// The files of a tb point shown on their own rows.
const ARCHIVE: &str = "archive.tar.gz";
const LISTING: &str = "listing.jsonl.gz";

/// Field-by-field median of several runs.
fn median_side(runs: &[Side]) -> Side {
    let pick = |f: fn(&Side) -> u64| median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0);
    Side {
        usage: median_usage(&runs.iter().map(|s| s.usage).collect::<Vec<_>>()),
        own_rss: median(&runs.iter().filter_map(|s| s.own_rss).collect::<Vec<_>>()),
        output_bytes: pick(|s| s.output_bytes),
        archive_bytes: pick(|s| s.archive_bytes),
        snapshot_bytes: pick(|s| s.snapshot_bytes),
        stored: runs.iter().map(|s| s.stored).max().unwrap_or(0),
        deleted: runs.iter().map(|s| s.deleted).max().unwrap_or(0),
        parts: runs.last().map(|s| s.parts.clone()).unwrap_or_default(),
        verify: runs.last().and_then(|s| s.verify),
        check_ms: median(&runs.iter().filter_map(|s| s.check_ms).collect::<Vec<_>>()),
    }
}

/// The two sides of one comparison.
#[derive(Debug, Clone, Default)]
struct Pair {
    tb: Side,
    tar: Side,
}

/// The small tree's results.
#[derive(Debug, Default)]
struct SmallResult {
    base: Pair,
    nochange: Pair,
}

/// What was rewritten in the media tree.
#[derive(Debug, Default)]
struct Change {
    /// Relative paths of the rewritten files.
    files: Vec<PathBuf>,
    /// Their bytes, and how many of them in already-compressed files.
    bytes: u64,
    compressed_kind_bytes: u64,
    /// The size of `tar czf` of just these files.
    reference_bytes: u64,
    /// How long that `tar czf` took.
    reference_wall: Duration,
}

/// The media tree's results.
#[derive(Debug, Default)]
struct MediaResult {
    base: Pair,
    change: Change,
    changed: Pair,
    restore: Pair,
    /// The first difference between tb-restore's tree and the source.
    tb_difference: Option<String>,
}

/// Everything measured.
#[derive(Debug, Default)]
struct IncrResult {
    small_tree: TreeStats,
    media_tree: TreeStats,
    busy_before: Option<f64>,
    warmup: Duration,
    small: SmallResult,
    media: MediaResult,
}

/// The machine and the software versions, for the report header.
struct Machine {
    nproc: usize,
    cpu: String,
    tar: String,
    gzip: String,
}

impl Machine {
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

/// How the trees were obtained, for the report.
#[derive(Debug, Default)]
struct Setup {
    small: Option<Duration>,
    work: Option<Duration>,
}

/// Run the `incr` benchmark; true when every target is met.
pub fn run(opts: &IncrOptions) -> Result<bool> {
    let run_start = Instant::now();
    progress!("building tb-incr and tb-restore (release)...");
    common::cargo_build_release(&["tb-incr", "tb-restore"])?;
    let tools = Tools {
        tb_incr: common::release_binary("tb-incr")?,
        tb_restore: common::release_binary("tb-restore")?,
    };
    let work = bench_dir().join("incr");
    fs::create_dir_all(&work)
        .with_context(|| format!("cannot create the bench directory '{}'", work.display()))?;
    progress!(
        "work directory {} ({} free)",
        work.display(),
        free_space(&work)
    );

    let mut setup = Setup::default();
    let (small, small_stamp, took) = small_tree(&work, opts.fresh)?;
    setup.small = took;
    let (media_tree, media_stamp, took) = work_tree(&work, opts.fresh)?;
    setup.work = took;

    let needed = (media_stamp.bytes as f64 * OUTPUT_SPACE_FACTOR) as u64;
    match free_bytes(&work) {
        Ok(free) if free < needed => progress!(
            "warning: {} free, the outputs need about {}: the run may fail for lack of space",
            bytes(free),
            bytes(needed)
        ),
        Ok(_) => {}
        Err(e) => progress!("warning: {e:#}"),
    }

    progress!("warm-up: reading every file of both trees once...");
    let warm_start = Instant::now();
    let (_, small_stats) = media::list(&small, true)?;
    media::check_kept(&small_stamp, &small_stats)?;
    let (media_listing, media_stats) = media::list(&media_tree, true)?;
    media::check_kept(&media_stamp, &media_stats)?;
    let warmup = warm_start.elapsed();
    progress!(
        "warm-up: {} read in {}",
        bytes(small_stats.bytes + media_stats.bytes),
        secs(warmup)
    );
    let busy_before = busy_share(Duration::from_secs(2));
    if let Some(b) = busy_before.filter(|b| *b > BUSY_WARNING) {
        progress!(
            "warning: {:.0} % of the CPUs are busy with other work; times will be skewed",
            b * 100.0
        );
    }

    let machine = Machine::probe()?;
    let scratch = Scratch::create(work.join("out"))?;
    let small_result = bench_small(&tools, &small, &scratch.0, opts.repeat)?;
    let media_result = bench_media(&tools, &media_tree, &media_listing, &scratch.0, opts.repeat)?;
    drop(scratch);
    let result = IncrResult {
        small_tree: small_stats,
        media_tree: media_stats,
        busy_before,
        warmup,
        small: small_result,
        media: media_result,
    };
    Ok(print_report(
        &machine,
        &small,
        &media_tree,
        &result,
        &setup,
        opts.repeat,
        run_start.elapsed(),
    ))
}

// ---------------------------------------------------------------- trees

/// Read a stamp file: the stats it holds when its version is `version`.
fn read_stamp(stamp: &Path, version: u64) -> Option<TreeStats> {
    let v: Value = serde_json::from_str(&fs::read_to_string(stamp).ok()?).ok()?;
    if v["version"].as_u64() != Some(version) {
        return None;
    }
    Some(TreeStats {
        files: v["files"].as_u64()?,
        dirs: v["dirs"].as_u64()?,
        bytes: v["bytes"].as_u64()?,
        compressed_bytes: v["compressed_bytes"].as_u64()?,
    })
}

/// Write a stamp file (the tree is complete).
fn write_stamp(stamp: &Path, version: u64, stats: &TreeStats) -> Result<()> {
    let text = json!({
        "version": version,
        "files": stats.files,
        "dirs": stats.dirs,
        "bytes": stats.bytes,
        "compressed_bytes": stats.compressed_bytes,
    });
    fs::write(stamp, format!("{text}\n"))
        .with_context(|| format!("cannot write the stamp '{}'", stamp.display()))
}

/// Remove a tree (when present) and its stamp (first: the tree is then
/// never taken for complete).
fn remove_tree(tree: &Path, stamp: &Path) -> Result<()> {
    if stamp.exists() {
        fs::remove_file(stamp).with_context(|| format!("cannot remove '{}'", stamp.display()))?;
    }
    if tree.exists() {
        remove_dir(tree)?;
    }
    Ok(())
}

/// The small tree: kept, or generated. Its path, its stamp's stats, and
/// how long the generation took when there was one.
fn small_tree(work: &Path, fresh: bool) -> Result<(PathBuf, TreeStats, Option<Duration>)> {
    let tree = work.join(SMALL_NAME);
    let stamp = work.join(format!("{SMALL_NAME}.done"));
    if !fresh
        && tree.is_dir()
        && let Some(stats) = read_stamp(&stamp, SMALL_VERSION)
    {
        progress!(
            "reusing the small-file tree {} ({} files, {})",
            tree.display(),
            stats.files,
            bytes(stats.bytes)
        );
        return Ok((tree, stats, None));
    }
    progress!(
        "generating the small-file tree ({SMALL_FILES} files) in {}...",
        tree.display()
    );
    remove_tree(&tree, &stamp)?;
    let start = Instant::now();
    let stats = generate_small(&tree)?;
    nix::unistd::sync();
    write_stamp(&stamp, SMALL_VERSION, &stats)?;
    let took = start.elapsed();
    progress!(
        "generated {} files in {} directories, {}, in {}",
        stats.files,
        stats.dirs,
        bytes(stats.bytes),
        secs(took)
    );
    Ok((tree, stats, Some(took)))
}

/// The relative path of file `i` of the small tree: 100 files in each of
/// `aNN/bNN/`, of four kinds in turn.
fn small_path(i: u64) -> PathBuf {
    let per_dir = SMALL_FILES / (SMALL_TOP_DIRS * SMALL_SUB_DIRS);
    let d = i / per_dir;
    let name = match i % 4 {
        0 => format!("card_{i:06}.json"),
        1 => format!("IMG_{i:06}.json"),
        2 => format!("notes_{i:06}.txt"),
        _ => format!("page_{i:06}.html"),
    };
    PathBuf::from(format!(
        "a{:02}/b{:02}/{name}",
        d / SMALL_SUB_DIRS,
        d % SMALL_SUB_DIRS
    ))
}

/// Generate the small tree in `tree` (which must not exist).
fn generate_small(tree: &Path) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    for a in 0..SMALL_TOP_DIRS {
        for b in 0..SMALL_SUB_DIRS {
            let dir = tree.join(format!("a{a:02}/b{b:02}"));
            fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create '{}'", dir.display()))?;
            stats.dirs += 1;
        }
        stats.dirs += 1;
    }
    let mut buf = Vec::new();
    for i in 0..SMALL_FILES {
        let rel = small_path(i);
        let size = media::size_between(0x5a11_0000 + i, SMALL_MIN_BYTES, SMALL_MAX_BYTES);
        media::content_like(&rel, size, 0x5a11_f11e_0000 + i, &mut buf);
        let path = tree.join(&rel);
        fs::write(&path, &buf).with_context(|| format!("cannot write '{}'", path.display()))?;
        stats.files += 1;
        stats.bytes += size;
    }
    Ok(stats)
}

/// The media work tree: kept, or copied from the `volume` benchmark's tree
/// (generated first when missing).
fn work_tree(work: &Path, fresh: bool) -> Result<(PathBuf, TreeStats, Option<Duration>)> {
    let tree = work.join(WORK_NAME);
    let stamp = work.join(format!("{WORK_NAME}.done"));
    if !fresh
        && tree.is_dir()
        && let Some(stats) = read_stamp(&stamp, WORK_VERSION)
    {
        progress!(
            "reusing the media work tree {} ({} files, {})",
            tree.display(),
            stats.files,
            bytes(stats.bytes)
        );
        return Ok((tree, stats, None));
    }
    let start = Instant::now();
    let volume = bench_dir().join("volume");
    let (source, _) = media::tree_paths(&volume, DEFAULT_VOLUME_MB);
    let stats = match media::kept(&volume, DEFAULT_VOLUME_MB) {
        Some(stats) => stats,
        None => {
            progress!(
                "generating the media tree ({DEFAULT_VOLUME_MB} MB) in {}...",
                source.display()
            );
            let (stats, took) = media::generate(&volume, DEFAULT_VOLUME_MB)?;
            progress!("generated {} files in {}", stats.files, secs(took));
            stats
        }
    };
    progress!("copying the media tree to {} (cp -a)...", tree.display());
    remove_tree(&tree, &stamp)?;
    let partial = work.join(format!("{WORK_NAME}.partial"));
    if partial.exists() {
        remove_dir(&partial)?;
    }
    let out = Command::new("cp")
        .arg("-a")
        .arg(&source)
        .arg(&partial)
        .output()
        .context("cannot run cp")?;
    if !out.status.success() {
        bail!(
            "cp -a '{}' '{}' failed: {}",
            source.display(),
            partial.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fs::rename(&partial, &tree)
        .with_context(|| format!("cannot rename '{}'", partial.display()))?;
    nix::unistd::sync();
    write_stamp(&stamp, WORK_VERSION, &stats)?;
    let took = start.elapsed();
    progress!("copied {} in {}", bytes(stats.bytes), secs(took));
    Ok((tree, stats, Some(took)))
}

/// Rewrite every [`CHANGE_EVERY`]th regular file of `tree` (in path order)
/// with new content of its kind and the same size.
fn rewrite_share(tree: &Path, listing: &Listing) -> Result<Change> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut change = Change::default();
    let mut buf = Vec::new();
    let files = listing.iter().filter_map(|(p, e)| match e {
        Entry::File { size, .. } => Some((p, *size)),
        _ => None,
    });
    for (i, (rel, size)) in files.enumerate() {
        if (i + 1) % CHANGE_EVERY != 0 {
            continue;
        }
        media::content_like(
            rel,
            size,
            seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9)),
            &mut buf,
        );
        let path = tree.join(rel);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("cannot open '{}'", path.display()))?;
        f.write_all(&buf)
            .with_context(|| format!("cannot write '{}'", path.display()))?;
        change.bytes += size;
        if media::is_compressed_kind(rel) {
            change.compressed_kind_bytes += size;
        }
        change.files.push(rel.clone());
    }
    Ok(change)
}

// ---------------------------------------------------------------- runs

/// Measure `cmd` after `sync`: what the previous command left to write
/// back is then not charged to this one.
fn measure_synced(cmd: &Command) -> Result<measure::Run> {
    nix::unistd::sync();
    measure::measure(cmd)
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

/// The files of a point directory and their sizes, by name.
fn dir_parts(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut parts = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("cannot read '{}'", dir.display()))? {
        let e = e.with_context(|| format!("cannot read '{}'", dir.display()))?;
        let meta = e
            .metadata()
            .with_context(|| format!("cannot stat '{}'", e.path().display()))?;
        if meta.is_file() {
            parts.push((e.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    parts.sort();
    Ok(parts)
}

/// What tb-incr's records say about the point it wrote.
#[derive(Debug, Default, PartialEq)]
struct TbRecords {
    /// The point directory.
    path: Option<PathBuf>,
    /// Size of its archive.
    archive_bytes: u64,
    added: u64,
    changed: u64,
    deleted: u64,
    /// `max_rss_bytes` of the summary.
    max_rss_bytes: Option<u64>,
    /// `verify_hashed` and `verify_cached` of the summary.
    verify: Option<(u64, u64)>,
    /// `check_ms` of the `written` record.
    check_ms: Option<u64>,
    warnings: Vec<String>,
}

/// Read the records tb-incr printed.
fn parse_tb_incr(stdout: &str) -> Result<TbRecords> {
    let mut r = TbRecords::default();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("tb-incr printed a line that is not JSON: {line}"))?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        match v["event"].as_str() {
            Some("written") => {
                r.path = v["path"].as_str().map(PathBuf::from);
                r.archive_bytes = n("bytes");
                r.added = n("added");
                r.changed = n("changed");
                r.deleted = n("deleted");
                r.check_ms = v["check_ms"].as_u64();
            }
            Some("summary") => {
                r.max_rss_bytes = v["max_rss_bytes"].as_u64();
                r.verify = v["verify_hashed"].as_u64().zip(v["verify_cached"].as_u64());
            }
            Some("warning") => r
                .warnings
                .push(v["message"].as_str().unwrap_or(line).to_string()),
            _ => {}
        }
    }
    Ok(r)
}

/// Run `tb-incr --source TREE --name LABEL --dir ROOT`: the measured side
/// and the point directory it wrote.
fn run_tb_incr(tools: &Tools, tree: &Path, root: &Path, label: &str) -> Result<(Side, PathBuf)> {
    let mut cmd = Command::new(&tools.tb_incr);
    cmd.arg("--source")
        .arg(tree)
        .args(["--name", label, "--dir"])
        .arg(root);
    for var in ["TB_LOG", "TB_DOCKER"] {
        cmd.env_remove(var);
    }
    let run = measure_synced(&cmd)?;
    run.expect_codes("tb-incr", &[0, 1])?;
    let rec = parse_tb_incr(&run.stdout)?;
    for w in &rec.warnings {
        progress!("tb-incr warning: {w}");
    }
    let point = rec
        .path
        .clone()
        .context("tb-incr printed no `written` record with a path")?;
    let parts = dir_parts(&point)?;
    let archive = parts
        .iter()
        .find(|(n, _)| n == "archive.tar.gz")
        .map(|(_, n)| *n);
    if archive != Some(rec.archive_bytes) {
        bail!(
            "tb-incr's `written` record says {} bytes, '{}' has {archive:?}",
            rec.archive_bytes,
            point.join("archive.tar.gz").display()
        );
    }
    let side = Side {
        usage: run.usage,
        own_rss: Some(
            rec.max_rss_bytes
                .context("tb-incr's summary has no max_rss_bytes")?,
        ),
        output_bytes: parts.iter().map(|(_, n)| n).sum(),
        archive_bytes: rec.archive_bytes,
        snapshot_bytes: 0,
        stored: rec.added + rec.changed,
        deleted: rec.deleted,
        parts,
        verify: rec.verify,
        check_ms: rec.check_ms,
    };
    Ok((side, point))
}

/// Run `tar -czg SNAPSHOT -f OUT -C TREE .`; with `from`, SNAPSHOT is a
/// fresh copy of that (level-0) snapshot first, else it must not exist.
fn run_tar_incr(tree: &Path, snapshot: &Path, from: Option<&Path>, out: &Path) -> Result<Side> {
    if let Some(from) = from {
        fs::copy(from, snapshot).with_context(|| {
            format!(
                "cannot copy '{}' to '{}'",
                from.display(),
                snapshot.display()
            )
        })?;
    }
    let mut cmd = Command::new("tar");
    cmd.arg("-czg")
        .arg(snapshot)
        .arg("-f")
        .arg(out)
        .arg("-C")
        .arg(tree)
        .arg(".");
    let run = measure_synced(&cmd)?;
    run.expect_codes("tar -czg", &[0])?;
    let size = file_size(out)?;
    Ok(Side {
        usage: run.usage,
        output_bytes: size,
        archive_bytes: size,
        snapshot_bytes: file_size(snapshot)?,
        ..Default::default()
    })
}

/// One progress line for a measured side.
fn report_side(what: &str, s: &Side) {
    let own = s
        .own_rss
        .map_or(String::new(), |r| format!(", {} own peak RSS", mib(r)));
    let snap = if s.snapshot_bytes > 0 {
        format!(" (+ snapshot {})", bytes(s.snapshot_bytes))
    } else {
        String::new()
    };
    progress!(
        "{what}: {} wall, {} CPU{own}, {}{snap}",
        secs(s.usage.wall),
        secs(s.usage.cpu()),
        bytes(s.output_bytes)
    );
}

/// " (run i of n)" when there are several runs.
fn round_label(i: usize, repeat: usize) -> String {
    if repeat > 1 {
        format!(" (run {} of {repeat})", i + 1)
    } else {
        String::new()
    }
}

/// The small tree: both bases, then the no-change increments.
fn bench_small(tools: &Tools, tree: &Path, out: &Path, repeat: usize) -> Result<SmallResult> {
    let root = out.join("tb-small");
    let (tb_base, _) = run_tb_incr(tools, tree, &root, SMALL_LABEL)?;
    report_side("100k files, tb-incr base", &tb_base);
    let snap0 = out.join("small-0.snar");
    let tar_base_file = out.join("small-base.tar.gz");
    let tar_base = run_tar_incr(tree, &snap0, None, &tar_base_file)?;
    report_side("100k files, tar -czg level 0", &tar_base);

    let mut tb = Vec::new();
    let mut tar = Vec::new();
    for i in 0..repeat {
        let round = round_label(i, repeat);
        let (side, point) = run_tb_incr(tools, tree, &root, SMALL_LABEL)?;
        report_side(
            &format!("100k files, tb-incr no-change increment{round}"),
            &side,
        );
        // Removed so that every run continues the base.
        remove_dir(&point)?;
        tb.push(side);

        let snap1 = out.join("small-1.snar");
        let file = out.join("small-incr.tar.gz");
        let side = run_tar_incr(tree, &snap1, Some(&snap0), &file)?;
        report_side(
            &format!("100k files, tar -czg level 1, no change{round}"),
            &side,
        );
        remove_file(&file)?;
        remove_file(&snap1)?;
        tar.push(side);
    }
    remove_dir(&root)?;
    remove_file(&tar_base_file)?;
    remove_file(&snap0)?;
    Ok(SmallResult {
        base: Pair {
            tb: tb_base,
            tar: tar_base,
        },
        nochange: Pair {
            tb: median_side(&tb),
            tar: median_side(&tar),
        },
    })
}

/// The media tree: both bases, 1 % rewritten, both increments, then the
/// chain restores.
fn bench_media(
    tools: &Tools,
    tree: &Path,
    listing: &Listing,
    out: &Path,
    repeat: usize,
) -> Result<MediaResult> {
    let root = out.join("tb-media");
    let (tb_base, _) = run_tb_incr(tools, tree, &root, MEDIA_LABEL)?;
    report_side("media, tb-incr base", &tb_base);
    let snap0 = out.join("media-0.snar");
    let tar_base_file = out.join("media-base.tar.gz");
    let tar_base = run_tar_incr(tree, &snap0, None, &tar_base_file)?;
    report_side("media, tar -czg level 0", &tar_base);

    let mut change = rewrite_share(tree, listing)?;
    nix::unistd::sync();
    let list_file = out.join("changed.list");
    let mut names = Vec::new();
    for p in &change.files {
        names.extend_from_slice(p.as_os_str().as_encoded_bytes());
        names.push(0);
    }
    fs::write(&list_file, names)
        .with_context(|| format!("cannot write '{}'", list_file.display()))?;
    let reference = out.join("changed.tar.gz");
    let mut cmd = Command::new("tar");
    cmd.arg("-czf")
        .arg(&reference)
        .arg("-C")
        .arg(tree)
        .args(["--no-recursion", "--null", "-T"])
        .arg(&list_file);
    let run = measure_synced(&cmd)?;
    run.expect_codes("tar czf of the changed files", &[0])?;
    change.reference_bytes = file_size(&reference)?;
    change.reference_wall = run.usage.wall;
    remove_file(&reference)?;
    progress!(
        "media: rewrote {} files, {} ({} of it already-compressed kinds); tar czf of just them: {}",
        change.files.len(),
        bytes(change.bytes),
        bytes(change.compressed_kind_bytes),
        bytes(change.reference_bytes)
    );

    let mut tb = Vec::new();
    let mut tar = Vec::new();
    let tar_incr_file = out.join("media-incr.tar.gz");
    for i in 0..repeat {
        let round = round_label(i, repeat);
        let last = i + 1 == repeat;
        let (side, point) = run_tb_incr(tools, tree, &root, MEDIA_LABEL)?;
        report_side(&format!("media, tb-incr 1 % increment{round}"), &side);
        if side.stored != change.files.len() as u64 || side.deleted != 0 {
            bail!(
                "tb-incr stored {} files and {} deletions in the increment, {} files were rewritten",
                side.stored,
                side.deleted,
                change.files.len()
            );
        }
        if !last {
            remove_dir(&point)?;
        }
        tb.push(side);

        let snap1 = out.join("media-1.snar");
        let side = run_tar_incr(tree, &snap1, Some(&snap0), &tar_incr_file)?;
        report_side(
            &format!("media, tar -czg level 1, 1 % changed{round}"),
            &side,
        );
        if !last {
            remove_file(&tar_incr_file)?;
        }
        remove_file(&snap1)?;
        tar.push(side);
    }

    let (after, _) = media::list(tree, false)?;
    let mut tb_restore = Vec::new();
    let mut tar_restore = Vec::new();
    let mut tb_difference = None;
    for i in 0..repeat {
        let round = round_label(i, repeat);
        // tb-restore creates the target itself: it must not exist.
        let target = out.join(format!("restore-tb-{i}"));
        let mut cmd = Command::new(&tools.tb_restore);
        cmd.arg(&root)
            .args(["--name", MEDIA_LABEL, "--target"])
            .arg(&target);
        for var in ["TB_LOG", "TB_DOCKER"] {
            cmd.env_remove(var);
        }
        let run = measure_synced(&cmd)?;
        run.expect_codes("tb-restore", &[0, 1])?;
        let difference = compare_restored(tree, &after, &target, &change.files)?;
        let own = parse_tb_incr(&run.stdout)
            .ok()
            .and_then(|r| r.max_rss_bytes);
        progress!(
            "tb-restore chain{round}: {} wall, {} CPU, {} peak RSS; {}",
            secs(run.usage.wall),
            secs(run.usage.cpu()),
            mib(own.unwrap_or(run.usage.max_rss_bytes)),
            difference.as_deref().unwrap_or("same entries as the tree")
        );
        remove_dir(&target)?;
        tb_restore.push(Side {
            usage: run.usage,
            own_rss: own,
            ..Default::default()
        });
        if tb_difference.is_none() {
            tb_difference = difference;
        }

        let target = out.join(format!("restore-tar-{i}"));
        let mut cmd = Command::new("bash");
        cmd.args([
            "-c",
            "mkdir \"$3\" && tar -xzpg /dev/null -f \"$1\" --numeric-owner -C \"$3\" \
             && exec tar -xzpg /dev/null -f \"$2\" --numeric-owner -C \"$3\"",
            "bash",
        ])
        .arg(&tar_base_file)
        .arg(&tar_incr_file)
        .arg(&target);
        let run = measure_synced(&cmd)?;
        run.expect_codes("tar -xzpg /dev/null (base, then increment)", &[0])?;
        if let Some(d) = compare_restored(tree, &after, &target, &change.files)? {
            bail!("GNU tar restored a chain that differs from the tree: {d}");
        }
        progress!(
            "tar -xzpg /dev/null base + increment{round}: {} wall, {} CPU",
            secs(run.usage.wall),
            secs(run.usage.cpu())
        );
        remove_dir(&target)?;
        tar_restore.push(Side {
            usage: run.usage,
            ..Default::default()
        });
    }
    remove_dir(&root)?;
    for f in [&tar_base_file, &tar_incr_file, &snap0, &list_file] {
        remove_file(f)?;
    }
    Ok(MediaResult {
        base: Pair {
            tb: tb_base,
            tar: tar_base,
        },
        change,
        changed: Pair {
            tb: median_side(&tb),
            tar: median_side(&tar),
        },
        restore: Pair {
            tb: median_side(&tb_restore),
            tar: median_side(&tar_restore),
        },
        tb_difference,
    })
}

/// The first difference between a restored tree and the tree: its entries
/// (paths, types, modes, sizes), then the rewritten files' bytes.
fn compare_restored(
    tree: &Path,
    listing: &Listing,
    restored: &Path,
    changed: &[PathBuf],
) -> Result<Option<String>> {
    let (got, _) = media::list(restored, false)?;
    if let Some(d) = media::first_difference(listing, &got) {
        return Ok(Some(d));
    }
    for rel in changed {
        let want = fs::read(tree.join(rel))
            .with_context(|| format!("cannot read '{}'", tree.join(rel).display()))?;
        let path = restored.join(rel);
        let mut have = Vec::with_capacity(want.len());
        File::open(&path)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut have))
            .with_context(|| format!("cannot read '{}'", path.display()))?;
        if have != want {
            return Ok(Some(format!(
                "'{}' does not hold the rewritten content",
                rel.display()
            )));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------- report

/// One target: its verdict and the line that explains it.
struct Target {
    met: bool,
    text: String,
}

/// Wall time ratio `a / b`.
fn wall_ratio(a: &Side, b: &Side) -> f64 {
    a.usage.wall.as_secs_f64() / b.usage.wall.as_secs_f64().max(1e-9)
}

/// Check the targets against the results.
fn targets(r: &IncrResult) -> Vec<Target> {
    let s = &r.small;
    let m = &r.media;
    let nochange = wall_ratio(&s.nochange.tb, &s.nochange.tar);
    let changed = wall_ratio(&m.changed.tb, &m.changed.tar);
    let size = m.changed.tb.archive_bytes as f64 / m.change.reference_bytes.max(1) as f64;
    let rss = [&s.base.tb, &s.nochange.tb]
        .iter()
        .filter_map(|t| t.own_rss)
        .max()
        .unwrap_or(0);
    vec![
        Target {
            met: nochange <= NOCHANGE_WALL_FACTOR_MAX,
            text: format!(
                "no-change increment, 100k files: tb-incr wall <= {NOCHANGE_WALL_FACTOR_MAX:.2} x tar -czg: {nochange:.3} ({} vs {})",
                secs(s.nochange.tb.usage.wall),
                secs(s.nochange.tar.usage.wall)
            ),
        },
        Target {
            met: changed <= CHANGED_WALL_FACTOR_MAX,
            text: format!(
                "1 % increment, media: tb-incr wall <= {CHANGED_WALL_FACTOR_MAX:.2} x tar -czg: {changed:.3} ({} vs {})",
                secs(m.changed.tb.usage.wall),
                secs(m.changed.tar.usage.wall)
            ),
        },
        Target {
            met: size <= INCR_SIZE_FACTOR_MAX,
            text: format!(
                "1 % increment size (archive.tar.gz; the listing and other point files apart, as tar's snapshot) <= {INCR_SIZE_FACTOR_MAX:.2} x the changed files compressed (tar czf of just them): {size:.3} ({} vs {})",
                bytes(m.changed.tb.archive_bytes),
                bytes(m.change.reference_bytes)
            ),
        },
        Target {
            met: rss < SMALL_RSS_MAX_BYTES,
            text: format!(
                "tb-incr peak memory on the 100k-file tree (base and no-change increment) < {}: {}",
                mib(SMALL_RSS_MAX_BYTES),
                mib(rss)
            ),
        },
        Target {
            met: m.tb_difference.is_none(),
            text: format!(
                "tb-restore restores the chain (entries, and the rewritten files' bytes): {}",
                m.tb_difference.as_deref().unwrap_or("same")
            ),
        },
        Target {
            met: r.small_tree.files == SMALL_FILES,
            text: format!(
                "setup: small tree of {SMALL_FILES} files: {}",
                r.small_tree.files
            ),
        },
    ]
}

/// A row comparing a duration.
fn time_row(label: &str, a: Duration, b: Duration) -> [String; 4] {
    [
        label.to_string(),
        secs(a),
        secs(b),
        ratio(a.as_secs_f64(), b.as_secs_f64()),
    ]
}

/// A row comparing a size in bytes.
fn bytes_row(label: &str, a: u64, b: u64) -> [String; 4] {
    [
        label.to_string(),
        bytes(a),
        bytes(b),
        ratio(a as f64, b as f64),
    ]
}

/// A row comparing memory.
fn mem_row(label: &str, a: u64, b: u64) -> [String; 4] {
    [label.to_string(), mib(a), mib(b), ratio(a as f64, b as f64)]
}

/// The size rows of one comparison: the archives side by side, then
/// what else each side keeps for the next run on rows of its own (tb's
/// listing and other point files, tar's snapshot), then everything.
fn size_rows(what: &str, p: &Pair) -> Vec<[String; 4]> {
    let dash = || "-".to_string();
    vec![
        bytes_row(
            &format!("{what}: archive (tb {ARCHIVE}; tar .tar.gz)"),
            p.tb.archive_bytes,
            p.tar.archive_bytes,
        ),
        [
            format!("{what}: tb {LISTING} (the whole tree, with hashes)"),
            bytes(p.tb.part(LISTING)),
            dash(),
            dash(),
        ],
        [
            format!("{what}: tb index.jsonl.gz, deleted.nul, manifest.json"),
            bytes(p.tb.other_parts()),
            dash(),
            dash(),
        ],
        [
            format!("{what}: tar snapshot file (-g)"),
            dash(),
            bytes(p.tar.snapshot_bytes),
            dash(),
        ],
        bytes_row(
            &format!("{what}: all of it (tb point dir; tar .tar.gz + snapshot)"),
            p.tb.output_bytes,
            p.tar.output_bytes + p.tar.snapshot_bytes,
        ),
    ]
}

/// The measurement rows: label, tb, GNU tar, ratio.
fn rows(r: &IncrResult) -> Vec<[String; 4]> {
    let s = &r.small;
    let m = &r.media;
    let dash = || "-".to_string();
    let own = |side: &Side| side.own_rss.map_or(dash(), mib);
    let mut rows = vec![
        time_row(
            "100k files, base: wall time",
            s.base.tb.usage.wall,
            s.base.tar.usage.wall,
        ),
        time_row(
            "100k files, base: CPU time (user+sys)",
            s.base.tb.usage.cpu(),
            s.base.tar.usage.cpu(),
        ),
        [
            "100k files, base: peak RSS, tb-incr itself".into(),
            own(&s.base.tb),
            dash(),
            dash(),
        ],
    ];
    rows.extend(size_rows("100k files, base", &s.base));
    rows.extend([
        time_row(
            "100k files, no change: wall time",
            s.nochange.tb.usage.wall,
            s.nochange.tar.usage.wall,
        ),
        time_row(
            "100k files, no change: CPU time (user+sys)",
            s.nochange.tb.usage.cpu(),
            s.nochange.tar.usage.cpu(),
        ),
        [
            "100k files, no change: peak RSS, tb-incr itself".into(),
            own(&s.nochange.tb),
            dash(),
            dash(),
        ],
        mem_row(
            "100k files, no change: peak RSS, largest process",
            s.nochange.tb.usage.max_rss_bytes,
            s.nochange.tar.usage.max_rss_bytes,
        ),
    ]);
    rows.extend(size_rows("100k files, no change", &s.nochange));
    rows.extend([
        time_row(
            "media, base: wall time",
            m.base.tb.usage.wall,
            m.base.tar.usage.wall,
        ),
        time_row(
            "media, base: CPU time (user+sys)",
            m.base.tb.usage.cpu(),
            m.base.tar.usage.cpu(),
        ),
    ]);
    rows.extend(size_rows("media, base", &m.base));
    rows.extend([
        time_row(
            "media, 1 % changed: wall time",
            m.changed.tb.usage.wall,
            m.changed.tar.usage.wall,
        ),
        time_row(
            "media, 1 % changed: CPU time (user+sys)",
            m.changed.tb.usage.cpu(),
            m.changed.tar.usage.cpu(),
        ),
        [
            "media, 1 % changed: peak RSS, tb-incr itself".into(),
            own(&m.changed.tb),
            dash(),
            dash(),
        ],
        mem_row(
            "media, 1 % changed: peak RSS, largest process",
            m.changed.tb.usage.max_rss_bytes,
            m.changed.tar.usage.max_rss_bytes,
        ),
    ]);
    rows.extend(size_rows("media, 1 % changed", &m.changed));
    let reference = m.change.reference_bytes as f64;
    rows.push([
        "media, 1 % changed: archive / changed files compressed".into(),
        ratio(m.changed.tb.archive_bytes as f64, reference),
        ratio(m.changed.tar.archive_bytes as f64, reference),
        dash(),
    ]);
    rows.push([
        "media, 1 % changed: all of it / changed files compressed".into(),
        ratio(m.changed.tb.output_bytes as f64, reference),
        ratio(
            (m.changed.tar.output_bytes + m.changed.tar.snapshot_bytes) as f64,
            reference,
        ),
        dash(),
    ]);
    rows.push(time_row(
        "chain restore (base + 1 %): wall time",
        m.restore.tb.usage.wall,
        m.restore.tar.usage.wall,
    ));
    rows.push(time_row(
        "chain restore (base + 1 %): CPU time (user+sys)",
        m.restore.tb.usage.cpu(),
        m.restore.tar.usage.cpu(),
    ));
    rows.push([
        "chain restore (base + 1 %): peak RSS, tb-restore itself".into(),
        own(&m.restore.tb),
        dash(),
        dash(),
    ]);
    rows.push(mem_row(
        "chain restore (base + 1 %): peak RSS, largest process",
        m.restore.tb.usage.max_rss_bytes,
        m.restore.tar.usage.max_rss_bytes,
    ));
    rows
}

/// "archive.tar.gz 1.2 MB, listing.jsonl.gz ..." for a tb point.
fn parts_text(side: &Side) -> String {
    side.parts
        .iter()
        .map(|(name, n)| format!("{name} {}", bytes(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Print the whole report on stdout; true when every target is met.
fn print_report(
    machine: &Machine,
    small: &Path,
    media_tree: &Path,
    r: &IncrResult,
    setup: &Setup,
    repeat: usize,
    total: Duration,
) -> bool {
    let m = &r.media;
    println!();
    println!("tb-bench incr");
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
        "trees:     {} ({} files of {} to {}, {} directories, {})",
        small.display(),
        r.small_tree.files,
        bytes(SMALL_MIN_BYTES),
        bytes(SMALL_MAX_BYTES),
        r.small_tree.dirs,
        bytes(r.small_tree.bytes)
    );
    println!(
        "           {} (copy of the volume bench's media-like tree: {} files, {} directories, {})",
        media_tree.display(),
        r.media_tree.files,
        r.media_tree.dirs,
        bytes(r.media_tree.bytes)
    );
    println!(
        "compared:  tb-incr --source TREE --name LABEL --dir ROOT (defaults; first run base, then increments)"
    );
    println!(
        "           vs tar -czg SNAPSHOT -f FILE.tar.gz -C TREE . (level 0 with a new SNAPSHOT, level 1 with a copy of it)"
    );
    println!("           restore: tb-restore ROOT --name LABEL --target DIR (DIR new)");
    println!(
        "                    vs mkdir DIR && tar -xzpg /dev/null -f BASE.tar.gz --numeric-owner -C DIR"
    );
    println!("                       && tar -xzpg /dev/null -f INCR.tar.gz --numeric-owner -C DIR");
    println!(
        "change:    every {CHANGE_EVERY}th regular file of the media tree in path order rewritten, same size, new content of its kind:"
    );
    println!(
        "           {} files, {} ({} in already-compressed kinds); tar czf of just them: {} (the \"changed files compressed\")",
        m.change.files.len(),
        bytes(m.change.bytes),
        bytes(m.change.compressed_kind_bytes),
        bytes(m.change.reference_bytes)
    );
    println!(
        "runs:      bases once; increments and restores {repeat} per command{}, `sync` before each",
        if repeat > 1 { " (median)" } else { "" }
    );
    println!(
        "cache:     warm: every file of both trees was read once before measuring ({}); the page",
        secs(r.warmup)
    );
    println!("           cache is not dropped, both sides read the same cached trees");
    println!();

    let mut t = Table::default();
    t.row(["measurement", "tb", "GNU tar", "ratio"]);
    for row in rows(r) {
        t.row(row);
    }
    print!("{}", t.render(1));
    println!();
    println!(
        "tb point directories: no-change increment of the 100k files: {}",
        parts_text(&r.small.nochange.tb)
    );
    println!(
        "                      1 % increment of the media tree: {}",
        parts_text(&m.changed.tb)
    );
    println!(
        "sizes:     the size target compares tb's {ARCHIVE} alone (what a restore extracts) with the changed"
    );
    println!(
        "           files compressed; tb's {LISTING} (the whole tree with hashes, read by the next run)"
    );
    println!(
        "           and its other point files are on rows of their own, as tar's snapshot file (-g) is, and"
    );
    println!("           counted in neither; \"all of it\" rows add everything up on both sides");
    println!(
        "checks:    tb-incr checks the whole chain before adding a point (manifests, links, sizes; the sha256 of"
    );
    println!(
        "           point files untouched since they were hashed or written come from its verification cache"
    );
    println!(
        "           .tb-verified.json, the others are read) and reads the new point back before publishing it;"
    );
    println!("           its times include both");
    for (what, side) in [
        (
            "no-change increment of the 100k files",
            &r.small.nochange.tb,
        ),
        ("1 % increment of the media tree", &m.changed.tb),
    ] {
        if let Some((hashed, cached)) = side.verify {
            println!(
                "           {what}: {hashed} point files hashed, {cached} from the cache; chain checked {} into the run",
                side.check_ms
                    .map_or("?".to_string(), |ms| format!("{ms} ms"))
            );
        }
    }
    if r.small.nochange.tb.stored > 0 || r.small.nochange.tb.deleted > 0 {
        println!(
            "note: tb-incr's no-change increment stored {} files and {} deletions (expected none)",
            r.small.nochange.tb.stored, r.small.nochange.tb.deleted
        );
    }
    println!();

    let targets = targets(r);
    println!("targets:");
    for t in &targets {
        println!("  {}  {}", if t.met { "PASS" } else { "FAIL" }, t.text);
    }
    let missed = targets.iter().filter(|t| !t.met).count();
    println!();
    let setup_line = |what: &str, d: Option<Duration>| match d {
        Some(d) => format!("{what} {}", secs(d)),
        None => format!("{what} kept"),
    };
    println!(
        "setup:      {}; {} (--fresh makes both again)",
        setup_line("small tree", setup.small),
        setup_line("media work copy", setup.work)
    );
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
    fn tb_incr_records_are_read() {
        let out = concat!(
            r#"{"event":"written","tool":"tb-incr","kind":"chain_incr","path":"/o/m/incr_20260101","bytes":10,"added":1,"changed":2,"deleted":3,"check_ms":7}"#,
            "\n",
            r#"{"event":"warning","tool":"tb-incr","message":"hm"}"#,
            "\n",
            r#"{"event":"summary","tool":"tb-incr","status":"ok","max_rss_bytes":1048576,"verify_hashed":1,"verify_cached":3}"#,
            "\n"
        );
        let r = parse_tb_incr(out).unwrap();
        assert_eq!(r.path, Some(PathBuf::from("/o/m/incr_20260101")));
        assert_eq!(
            (r.archive_bytes, r.added, r.changed, r.deleted),
            (10, 1, 2, 3)
        );
        assert_eq!(r.max_rss_bytes, Some(1 << 20));
        assert_eq!((r.verify, r.check_ms), (Some((1, 3)), Some(7)));
        assert_eq!(r.warnings, vec!["hm".to_string()]);
        assert!(parse_tb_incr("not json").is_err());
    }

    #[test]
    fn small_tree_paths_fill_a_thousand_directories() {
        assert_eq!(small_path(0), PathBuf::from("a00/b00/card_000000.json"));
        assert_eq!(small_path(101), PathBuf::from("a00/b01/IMG_000101.json"));
        assert_eq!(
            small_path(SMALL_FILES - 1),
            PathBuf::from("a19/b49/page_099999.html")
        );
    }

    #[test]
    fn one_file_in_a_hundred_is_rewritten_with_the_same_size() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("t");
        fs::create_dir(&tree).unwrap();
        for i in 0..250u64 {
            let rel = small_path(i);
            fs::create_dir_all(tree.join(&rel).parent().unwrap()).unwrap();
            fs::write(tree.join(&rel), vec![b'x'; 300 + i as usize]).unwrap();
        }
        let (listing, _) = media::list(&tree, false).unwrap();
        let change = rewrite_share(&tree, &listing).unwrap();
        assert_eq!(change.files.len(), 2);
        let (after, _) = media::list(&tree, false).unwrap();
        assert_eq!(media::first_difference(&listing, &after), None);
        for rel in &change.files {
            assert!(fs::read(tree.join(rel)).unwrap().iter().any(|b| *b != b'x'));
        }
        assert_eq!(
            change.bytes,
            change
                .files
                .iter()
                .map(|p| fs::metadata(tree.join(p)).unwrap().len())
                .sum::<u64>()
        );
    }

    #[test]
    fn the_listing_is_shown_apart_from_the_archive() {
        let part = |n: &str, b: u64| (n.to_string(), b);
        let p = Pair {
            tb: Side {
                archive_bytes: 1000,
                output_bytes: 1800,
                parts: vec![
                    part(ARCHIVE, 1000),
                    part("deleted.nul", 0),
                    part("index.jsonl.gz", 200),
                    part(LISTING, 500),
                    part("manifest.json", 100),
                ],
                ..Default::default()
            },
            tar: Side {
                archive_bytes: 900,
                output_bytes: 900,
                snapshot_bytes: 400,
                ..Default::default()
            },
        };
        let rows = size_rows("x", &p);
        assert_eq!(rows[0][1..3], [bytes(1000), bytes(900)]);
        assert_eq!(rows[1][1..3], [bytes(500), "-".to_string()]);
        assert_eq!(rows[2][1..3], [bytes(300), "-".to_string()]);
        assert_eq!(rows[3][1..3], ["-".to_string(), bytes(400)]);
        assert_eq!(rows[4][1..3], [bytes(1800), bytes(1300)]);
    }

    #[test]
    fn median_side_is_per_field() {
        let s = |w: u64, n: u64| Side {
            usage: Usage {
                wall: Duration::from_secs(w),
                ..Default::default()
            },
            output_bytes: n,
            own_rss: Some(n),
            ..Default::default()
        };
        let m = median_side(&[s(5, 10), s(1, 30), s(3, 20)]);
        assert_eq!(m.usage.wall, Duration::from_secs(3));
        assert_eq!((m.output_bytes, m.own_rss), (20, Some(20)));
    }
}
