//! What the tools that read a volume share: where the data comes from
//! (`--volume`, `--source`, `--name`), the live-PostgreSQL rule and the
//! containers stopped for it (`--stop`, `--allow-live`), housekeeping of a
//! backup directory, warnings, and the records and manifest entries of an
//! archive.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::archive::{ArchiveStats, ArchiveWarning};
use crate::atomic::{parent_of, remove_stale_temps};
use crate::docker::{Docker, Stopped, restart_leftovers};
use crate::error::{Cause, Failure};
use crate::gzip::{GzOptions, GzStats};
use crate::manifest::{ChunkIndex, FileEntry};
use crate::naming::valid_label;
use crate::record::{Record, Reporter};

/// Where a volume comes from and how to read it: the options tb-voltar and
/// tb-incr share.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// The Docker volume to archive (its data directory on this host)
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "source",
        conflicts_with = "source"
    )]
    pub volume: Option<String>,

    /// The directory to archive
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,

    /// Label for file names [default: the volume name without its Compose
    /// project prefix, or the directory's name]
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,

    /// Stop this container for the archive and start it again afterwards,
    /// also on failure or interruption (repeatable)
    #[arg(long, value_name = "CONTAINER")]
    pub stop: Vec<String>,

    /// Archive a live PostgreSQL data directory anyway (the manifest records
    /// it as inconsistent)
    #[arg(long)]
    pub allow_live: bool,

    /// Compression level for what compresses, 0 to 9
    #[arg(long, default_value_t = DEFAULT_LEVEL, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub level: u32,

    /// Compression threads [default: number of CPUs, at most 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=32))]
    pub threads: Option<u32>,

    /// Seconds to wait for another run writing to the same directory (then exit 75)
    #[arg(long, value_name = "SECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub wait: u64,

    /// The docker CLI
    #[arg(
        long,
        value_name = "PROGRAM",
        env = "TB_DOCKER",
        default_value = "docker"
    )]
    pub docker: String,
}

/// Default compression level for what compresses (text, JSON, HTML).
pub const DEFAULT_LEVEL: u32 = 3;

impl SourceArgs {
    /// The gzip options of `--level` and `--threads`.
    pub fn gz(&self) -> GzOptions {
        let mut o = GzOptions::new(self.level);
        if let Some(t) = self.threads {
            o.threads = t as usize;
        }
        o
    }

    /// How long to wait for the lock.
    pub fn lock_wait(&self) -> Duration {
        Duration::from_secs(self.wait)
    }
}

fn usage(msg: String) -> anyhow::Error {
    Failure::new(Cause::BadInput, msg).into()
}

/// Before a run writes into `dir` (holding its lock): remove stale
/// temporaries of killed runs, and start again the containers an earlier
/// run stopped and could not restart. Each is a record.
pub fn housekeeping(dir: &Path, docker: &Docker, rep: &mut Reporter) -> Result<()> {
    for (p, err) in remove_stale_temps(dir)? {
        match err {
            None => rep.emit(
                Record::new("removed")
                    .path(&p)
                    .with("reason", "stale temporary file of an interrupted run"),
            ),
            Some(e) => rep.warn(
                &format!(
                    "cannot remove the stale temporary file '{}' ({e}); remove it by hand",
                    p.display()
                ),
                Record::new("warning").path(&p),
            ),
        }
    }
    let (started_again, still_down) = restart_leftovers(docker, dir);
    for n in started_again {
        rep.warn(
            &format!(
                "container '{n}' was left stopped by an earlier run; it has been started again"
            ),
            Record::new("warning").with("container", &n),
        );
    }
    for (n, why) in &still_down {
        rep.warn(
            &format!("container '{n}' was left stopped by an earlier run and still cannot be started: {why}"),
            Record::new("warning").with("container", n),
        );
    }
    Ok(())
}

/// Where the data comes from.
#[derive(Debug, Clone)]
pub struct SourceDir {
    /// The directory read (absolute).
    pub path: PathBuf,
    /// The label for names.
    pub label: String,
    /// The Docker volume, when given by name.
    pub docker_volume: Option<String>,
}

/// The directory and label of `--volume` / `--source`, `--name`.
pub fn resolve_source(args: &SourceArgs, docker: &Docker) -> Result<SourceDir> {
    let (path, default_label, docker_volume) = match (&args.volume, &args.source) {
        (Some(v), _) => {
            let vol = docker.volume(v)?;
            (vol.mountpoint.clone(), vol.default_label(), Some(v.clone()))
        }
        (None, Some(s)) => {
            // The absolute path, for the manifest (relative names say little later).
            let abs = s.canonicalize().unwrap_or_else(|_| s.clone());
            let name = abs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (abs, name, None)
        }
        (None, None) => return Err(usage("give --volume NAME or --source DIR".into())),
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(usage(format!("'{}' is not a directory", path.display()))),
        Err(e) => {
            return Err(Failure::new(
                Cause::NotFound,
                format!("cannot read the source '{}': {e}", path.display()),
            )
            .into());
        }
    }
    let label = args.name.clone().unwrap_or(default_label);
    if !valid_label(&label) {
        return Err(usage(format!(
            "'{label}' cannot be used in a file name (letters, digits, '_' and '-' only): give a label with --name"
        )));
    }
    Ok(SourceDir {
        path,
        label,
        docker_volume,
    })
}

/// A running PostgreSQL in `dir` or one level below (`postmaster.pid`
/// beside `PG_VERSION`)?
pub fn live_postgres(dir: &Path) -> Option<PathBuf> {
    let is_live = |d: &Path| d.join("postmaster.pid").is_file() && d.join("PG_VERSION").is_file();
    if is_live(dir) {
        return Some(dir.to_path_buf());
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .find(|p| is_live(p))
}

/// Errors while archiving: a full disk names the archive being written.
pub fn write_error(e: anyhow::Error, dest: &Path) -> anyhow::Error {
    for c in e.chain() {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && crate::error::io_cause(io) == Some(Cause::DiskFull)
        {
            return Failure::new(
                Cause::DiskFull,
                format!(
                    "disk full: no space left in '{}' while writing {}; free space there or choose another --dir",
                    parent_of(dest).display(),
                    dest.display()
                ),
            )
            .into();
        }
    }
    e
}

/// Refuse a live database unless its containers are being stopped or
/// `--allow-live` was given. Returns whether the archive is consistent.
pub fn check_live(
    args: &SourceArgs,
    src: &SourceDir,
    live: Option<&Path>,
    rep: &mut Reporter,
) -> Result<bool> {
    let Some(pgdata) = live else { return Ok(true) };
    if !args.stop.is_empty() {
        return Ok(true);
    }
    if args.allow_live {
        rep.warn(
            &format!(
                "'{}' holds a running PostgreSQL: archived live (--allow-live), the copy is not consistent; the manifest says so",
                pgdata.display()
            ),
            Record::new("warning").path(pgdata),
        );
        return Ok(false);
    }
    let how = match &src.docker_volume {
        Some(v) => {
            format!("--stop CONTAINER (the container using volume '{v}', e.g. backend-db-1)")
        }
        None => "--stop CONTAINER".to_string(),
    };
    Err(Failure::new(
        Cause::LiveDatabase,
        format!(
            "'{}' holds a running PostgreSQL (postmaster.pid): a live copy of its files is not consistent. Stop it during the archive with {how}, or take a logical backup with tb-dump; --allow-live archives it anyway, marked inconsistent",
            pgdata.display()
        ),
    )
    .into())
}

/// Stop the `--stop` containers (a marker in `dir` lets a later run start
/// them again if this one dies).
pub fn stop_containers(
    args: &SourceArgs,
    docker: &Docker,
    dir: Option<&Path>,
    rep: &mut Reporter,
) -> Result<Option<Stopped>> {
    if args.stop.is_empty() {
        return Ok(None);
    }
    let marker_dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let by = format!("{} pid {}", rep.tool(), std::process::id());
    let s = Stopped::stop(docker, &args.stop, &marker_dir, &by)?;
    for n in s.names() {
        rep.emit(Record::new("stopped").with("container", n));
    }
    Ok(Some(s))
}

/// Start stopped containers again; loud when one does not start. Returns
/// whether any failed.
pub fn restart(stopped: Option<Stopped>, rep: &mut Reporter) -> bool {
    let Some(s) = stopped else { return false };
    let names = s.names().to_vec();
    let failed = s.restart();
    for n in names.iter().filter(|n| !failed.iter().any(|f| &f.0 == *n)) {
        rep.emit(Record::new("started").with("container", n));
    }
    for (n, why) in &failed {
        rep.warn(
            &format!(
                "container '{n}' was stopped for the backup and could NOT be started again: {why}; start it by hand (docker start {n}); the next run will try too"
            ),
            Record::new("warning").with("container", n).with("severity", "critical"),
        );
    }
    !failed.is_empty()
}

/// A warning callback for [`Archiver`] that collects into `warnings`.
pub fn collector(
    warnings: &Arc<Mutex<Vec<ArchiveWarning>>>,
) -> Box<dyn FnMut(ArchiveWarning) + Send> {
    let w = Arc::clone(warnings);
    Box::new(move |x| {
        if let Ok(mut v) = w.lock() {
            v.push(x);
        }
    })
}

/// One warning record per archive warning (the first 1000; the count after).
pub fn emit_warnings(
    rep: &mut Reporter,
    warnings: &Arc<Mutex<Vec<ArchiveWarning>>>,
) -> Vec<String> {
    let list = warnings.lock().map(|v| v.clone()).unwrap_or_default();
    let mut texts = Vec::new();
    for (i, w) in list.iter().enumerate() {
        let text = format!("'{}' {}", w.path.display(), w.message);
        if i < 1000 {
            rep.warn(&text, Record::new("warning").with("entry", &w.path));
        }
        texts.push(text);
    }
    if list.len() > 1000 {
        rep.warn(
            &format!("{} more warnings (see the manifest)", list.len() - 1000),
            Record::new("warning"),
        );
    }
    texts
}

/// The `written` record of a volume archive.
pub fn volume_record(path: serde_json::Value, stats: &ArchiveStats, clock: Instant) -> Record {
    let c = &stats.counts;
    Record::new("written")
        .with("kind", "volume")
        .with("path", path)
        .with("bytes", stats.gz.gz_bytes)
        .with("raw_bytes", stats.tar_bytes)
        .with("sha256", &stats.gz.sha256)
        .with("entries", c.entries)
        .with("files", c.files)
        .with("file_bytes", c.file_bytes)
        .with("stored_chunks", stats.gz.stored_chunks)
        .with("duration_ms", clock.elapsed().as_millis() as u64)
}

/// The manifest entry of a gzip file written by [`crate::gzip::ParGzWriter`].
pub fn file_entry(role: &str, path: &Path, gz: &GzStats, chunks: bool) -> FileEntry {
    FileEntry {
        role: role.into(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: gz.gz_bytes,
        raw_bytes: gz.raw_bytes,
        sha256: gz.sha256.clone(),
        crc32: gz.crc32,
        chunks: chunks.then(|| ChunkIndex::new(&gz.chunks)),
    }
}

/// Manifest entry of a small gzip file (the index): read back whole.
pub fn small_gz_entry(role: &str, temp: &Path, dest: &Path) -> Result<FileEntry> {
    let gz = crate::gzip::inflate_file(temp, &mut |_| Ok(())).map_err(|p| {
        anyhow::anyhow!(
            "the written {role} '{}' does not verify: {p}",
            temp.display()
        )
    })?;
    Ok(FileEntry {
        role: role.into(),
        name: dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: gz.gz_bytes,
        raw_bytes: gz.raw_bytes,
        sha256: gz.sha256,
        crc32: gz.crc32,
        chunks: None,
    })
}
