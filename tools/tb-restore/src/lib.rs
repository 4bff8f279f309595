//! `tb-restore`: put a backup back. This version restores volume archives
//! (`tb-voltar`'s `.tar.gz`, or any tar.gz) into a directory or a Docker
//! volume, creating the volume when it is gone.
//!
//! A restore is all or nothing. The archive is extracted into a hidden
//! temporary directory beside the target (`.tb-tmp.NAME.PID`), checked
//! member by member against the archive's index and, at the end, against
//! the manifest's sha256 and the gzip CRC, flushed to disk, and only then
//! moved into place: renamed to the target when it does not exist, or
//! swapped with the empty target directory (`RENAME_EXCHANGE`). A failed
//! or interrupted restore leaves the target as it was; a killed one leaves
//! only the temporary directory, which the next restore there removes.
//! When the target is a mount point (a volume with its own filesystem) the
//! swap is impossible: the archive is extracted in place and, on failure,
//! the target is emptied again.
//!
//! Extraction is safe against hostile archives (see
//! `tb_shared::extract`): no entry can create, change or follow anything
//! outside the target. Any refused entry fails the restore.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use tb_shared::atomic::{ensure_dir, fsync_dir, parent_of, rename_noreplace};
use tb_shared::cli::{Common, ToolArgs};
use tb_shared::docker::Docker;
use tb_shared::error::{Cause, Failure, cause_of};
use tb_shared::exit::Outcome;
use tb_shared::extract::{ExtractOptions, Extracted, Extractor, Refusal, empty_dir, make_writable};
use tb_shared::gzip::{GzProblem, InflateReader, default_threads};
use tb_shared::index::IndexReader;
use tb_shared::manifest::Manifest;
use tb_shared::naming::{BackupName, Kind, TEMP_PREFIX, index_path, manifest_path};
use tb_shared::record::{Record, Reporter, path_value};
use tb_shared::signals;

mod chain_restore;
mod dump_restore;

/// psql as tb-restore runs it (for tb-check drill); the catalog check
/// before a second load session (for its tests).
pub use dump_restore::{load_sees_other_tables, psql, quote_ident};
mod helper;
mod plan_restore;
mod split;
mod table_restore;

/// Is `p` a dump by its name (`….sql.gz`, not a roles file)?
fn is_dump_file(p: &Path) -> bool {
    BackupName::parse(p.file_name().unwrap_or_default()).is_some_and(|n| n.kind == Kind::Dump)
        || p.to_string_lossy().ends_with(".sql.gz")
            && !p.to_string_lossy().ends_with(".roles.sql.gz")
}

const ABOUT: &str =
    "Restore a volume archive or an incremental chain into a directory or a Docker volume";
const LONG_ABOUT: &str = "\
Restore a volume archive (tb-voltar's LABEL_YYYYMMDD.tar.gz, or any tar.gz)
into a directory (--target) or a Docker volume (--volume, created when it
does not exist).

The target must be new or empty (or give --force). The archive is
extracted into a temporary directory beside the target, every entry is
checked against the archive's index and the whole file against its
manifest (sha256) and gzip CRC, and only a complete, checked tree is moved
into place. On any failure the target is left as it was.

Owners (numeric, as root), modes (setuid, setgid, sticky), nanosecond
mtimes, symlinks, hard links, FIFOs, devices, xattrs and ACLs, sparse files
and the root directory's own mode come back as archived. Entries that
would reach outside the target (absolute names, '..', paths through
symlinks, hard links to outside) are refused, and the restore fails.

An incremental chain (tb-incr) is restored to the newest point, or the
one chosen with --at: BACKUP is the incremental directory with --name
LABEL, or the chain directory DIR/LABEL, or one point directory. The
whole chain is checked first (every manifest, parent link and sha256);
when the point cannot be restored, nothing is touched and the restorable
points are named. Then the base and each point on the way from it to the
chosen one (by parent links) are applied (deleted paths removed, the
archive extracted), and the result is compared with the point's complete
listing before it is moved into place.

Restore without tb:
  mkdir TARGET && tar -xzpf ARCHIVE --numeric-owner --xattrs --xattrs-include='*' -C TARGET
  and for a chain, the base, then each point on the way to the chosen one
  (its parent is chain.parent in its manifest: the point before it, or for
  a differential point the base alone), in order:
  (cd TARGET && xargs -0 -r rm -rf -- < POINT/deleted.nul)
  tar -xzpf POINT/archive.tar.gz --numeric-owner --xattrs --xattrs-include='*' -C TARGET

Exit codes: 0 ok, 1 done with warnings (no manifest to check against,
owners not restored because not root, an archive taken live), 2 failed
(the target is as it was), 75 busy (another restore into the same target).";

/// Command-line arguments of `tb-restore`.
#[derive(Debug, Clone, Parser)]
#[command(name = "tb-restore", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// The backup to restore: a volume archive (.tar.gz), - for stdin, or
    /// an incremental chain: the incremental directory with --name, a chain
    /// directory (DIR/LABEL), or one point directory in it
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,

    /// With an incremental directory: the chain's label (media_volume)
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,

    /// With a chain: restore the volume as it was on that day (YYYY-MM-DD:
    /// the newest point of that day) or at that time (YYYY-MM-DDTHH:MM:SS,
    /// the newest point not after it) [default: the newest point]
    #[arg(long, value_name = "WHEN")]
    pub at: Option<String>,

    /// Restore into this directory (created if missing; must be empty
    /// unless --force)
    #[arg(long, value_name = "DIR", conflicts_with = "volume")]
    pub target: Option<PathBuf>,

    /// Restore into this Docker volume (created if missing; no running
    /// container may use it)
    #[arg(long, value_name = "NAME")]
    pub volume: Option<String>,

    /// Restore into a target that is not empty: entries of the same names
    /// are replaced, nothing else is removed, and a failure is not taken back
    #[arg(long)]
    pub force: bool,

    /// A dump: restore into this database (created; it must not exist or
    /// hold nothing, unless --clean). With a backup root and --at: DB for
    /// its only database, or LABEL=DB[,LABEL=DB] for several
    #[arg(short = 'd', long, value_name = "NAME", conflicts_with_all = ["target", "volume"])]
    pub dbname: Option<String>,

    /// A dump: the server's host or socket directory (else PGHOST)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,

    /// A dump: the server's port (else PGPORT)
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<String>,

    /// A dump: the user to connect as (else PGUSER); the password comes
    /// from PGPASSWORD or ~/.pgpass only
    #[arg(short = 'U', long, value_name = "USER")]
    pub username: Option<String>,

    /// A dump: run psql inside this container (docker exec -i, never a TTY)
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,

    /// A dump: replace a database that is not empty (the old one is dropped
    /// only after the new one restored and checked)
    #[arg(long)]
    pub clean: bool,

    /// A dump: psql sessions that load the tables' data side by side (1 or
    /// 2; 2 only for a file, not stdin)
    #[arg(short = 'j', long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(1..=2))]
    pub jobs: u8,

    /// A dump: restore the roles file beside it first when the server lacks
    /// roles the dump needs
    #[arg(long)]
    pub with_roles: bool,

    /// A dump: restore only this table (NAME or SCHEMA.NAME; repeatable),
    /// with its indexes, constraints, sequences, comments and grants, into
    /// a new database given with --dbname (or --sql)
    #[arg(short = 't', long, value_name = "TABLE")]
    pub table: Vec<String>,

    /// A dump: list its tables and their row counts, restore nothing
    #[arg(long, conflicts_with_all = ["table", "sql", "dbname", "target", "volume"])]
    pub list: bool,

    /// With --table: replace the tables in the live database given with
    /// --dbname, in one transaction, after a safety dump of each
    #[arg(long, requires = "table")]
    pub into_existing: bool,

    /// With --into-existing: where the safety dumps go [default: the dump's directory]
    #[arg(long, value_name = "DIR", requires = "into_existing")]
    pub safety_dir: Option<PathBuf>,

    /// With a backup root and --at: where a volume label goes (LABEL=VOLUME
    /// for a Docker volume, LABEL=/DIR for a directory; repeatable)
    #[arg(long, value_name = "LABEL=TARGET")]
    pub into: Vec<String>,

    /// With a backup root and --at: carry the plan out (else only print it
    /// when stdin is not a terminal, or ask)
    #[arg(long)]
    pub yes: bool,

    /// With a backup root and --at: only print the plan
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,

    /// With --table: print the table's SQL on stdout (for psql by hand)
    /// instead of restoring it; records go to stderr
    #[arg(long, requires = "table", conflicts_with_all = ["dbname", "target", "volume"])]
    pub sql: bool,

    /// The docker CLI
    #[arg(
        long,
        value_name = "PROGRAM",
        env = "TB_DOCKER",
        default_value = "docker"
    )]
    pub docker: String,

    #[command(flatten)]
    pub common: Common,
}

impl ToolArgs for Args {
    fn common(&self) -> &Common {
        &self.common
    }
    fn stdout_carries_bytes(&self) -> bool {
        self.sql
    }
}

fn usage(msg: String) -> anyhow::Error {
    Failure::new(Cause::BadInput, msg).into()
}

/// What is restored.
enum Source {
    Archive(Box<Input>),
    Chain(chain_restore::Chosen),
}

/// Where the archive comes from and what can check it.
pub(crate) struct Input {
    pub(crate) path: Option<PathBuf>,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) index: Option<PathBuf>,
}

impl Input {
    fn shown(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into())
    }
}

fn open_input(args: &Args, rep: &mut Reporter) -> Result<Input> {
    if args.backup == Path::new("-") {
        return Ok(Input {
            path: None,
            manifest: None,
            index: None,
        });
    }
    let p = &args.backup;
    let meta = std::fs::metadata(p).map_err(|e| {
        Failure::new(
            Cause::NotFound,
            format!("cannot read the backup '{}': {e}", p.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(usage(format!("'{}' is not a regular file", p.display())));
    }
    if let Some(n) = BackupName::parse(p.file_name().unwrap_or_default())
        && matches!(n.kind, Kind::Dump | Kind::Roles)
    {
        return Err(usage(format!(
            "'{}' is a roles file (pg_dumpall --globals-only): restore it with: gunzip -c '{}' | psql -d postgres, or restore its dump with --dbname NAME --with-roles",
            p.display(),
            p.display()
        )));
    }
    let mpath = manifest_path(p);
    let manifest = if mpath.exists() {
        let m = Manifest::load(&mpath).map_err(|e| {
            Failure::new(
                Cause::Damaged,
                format!(
                    "{e:#}; the archive cannot be checked against it: fix or move the manifest away to restore unchecked"
                ),
            )
        })?;
        if m.kind != "volume" {
            return Err(usage(format!(
                "'{}' says this is a {} backup, not a volume archive",
                mpath.display(),
                m.kind
            )));
        }
        Some(m)
    } else {
        rep.warn(
            &format!(
                "no manifest beside '{}' ('{}'): the archive is checked only by its gzip CRC and tar structure, not against the sha256 and contents recorded when it was made",
                p.display(),
                mpath.display()
            ),
            Record::new("warning").path(p),
        );
        None
    };
    let ipath = index_path(p);
    let index = match &manifest {
        Some(m) => {
            let name = ipath
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match m.file(&name) {
                Some(entry) => {
                    let sha = tb_shared::gzip::sha256_file(&ipath).map_err(|e| {
                        Failure::new(
                            Cause::Damaged,
                            format!(
                                "cannot read the index '{}' listed in the manifest: {e}",
                                ipath.display()
                            ),
                        )
                    })?;
                    if sha != entry.sha256 {
                        return Err(Failure::new(
                            Cause::Damaged,
                            format!(
                                "the index '{}' does not match its manifest (sha256 differs): it is damaged",
                                ipath.display()
                            ),
                        )
                        .into());
                    }
                    Some(ipath)
                }
                None => None,
            }
        }
        None => None,
    };
    Ok(Input {
        path: Some(p.clone()),
        manifest,
        index,
    })
}

/// How the tree gets into place.
pub(crate) enum Plan {
    /// The target does not exist: extract into `temp`, rename to `dest`.
    Fresh { dest: PathBuf, temp: PathBuf },
    /// The target is an empty directory: extract into `temp`, swap.
    Swap {
        dest: PathBuf,
        temp: PathBuf,
        _lock: File,
    },
    /// Extract into `dest` itself (a mount point, or `--force`).
    InPlace {
        dest: PathBuf,
        rollback: Option<RootState>,
        _lock: File,
    },
}

/// The target's own metadata, to put back when an in-place restore fails.
struct RootState {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: (i64, i64),
    mtime: (i64, i64),
}

impl Plan {
    fn extract_dir(&self) -> &Path {
        match self {
            Plan::Fresh { temp, .. } | Plan::Swap { temp, .. } => temp,
            Plan::InPlace { dest, .. } => dest,
        }
    }
    fn dest(&self) -> &Path {
        match self {
            Plan::Fresh { dest, .. } | Plan::Swap { dest, .. } | Plan::InPlace { dest, .. } => dest,
        }
    }
}

/// Lock a target directory (an `flock` on the directory itself, so no
/// file is added to it): a second restore into it is busy.
fn lock_dir(dir: &Path) -> Result<File> {
    let f = File::open(dir).with_context(|| format!("cannot open '{}'", dir.display()))?;
    match nix::fcntl::Flock::lock(
        f.try_clone().context("cannot duplicate a descriptor")?,
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    ) {
        Ok(l) => {
            // Keep the lock for as long as `f` (same open file) lives.
            std::mem::forget(l);
            Ok(f)
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Failure::new(
            Cause::Busy,
            format!(
                "another restore into '{}' is running; wait for it to finish",
                dir.display()
            ),
        )
        .into()),
        Err((_, e)) => {
            Err(io::Error::from(e)).with_context(|| format!("cannot lock '{}'", dir.display()))
        }
    }
}

fn temp_dir_for(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    parent_of(dest).join(format!("{TEMP_PREFIX}{name}.{}", std::process::id()))
}

/// Remove temporary directories of killed restores into `dest`
/// (`.tb-tmp.NAME.PID` whose process is gone).
fn remove_stale_restores(dest: &Path, rep: &mut Reporter) {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!("{TEMP_PREFIX}{name}.");
    let parent = parent_of(dest);
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(pid) = n
            .to_str()
            .and_then(|s| s.strip_prefix(&prefix))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            .map(|_| true)
            .unwrap_or_else(|err| err != nix::errno::Errno::ESRCH);
        if alive {
            continue;
        }
        let p = e.path();
        make_writable(&p);
        match std::fs::remove_dir_all(&p) {
            Ok(()) => rep.emit(
                Record::new("removed")
                    .path(&p)
                    .with("reason", "temporary directory of an interrupted restore"),
            ),
            Err(err) => rep.warn(
                &format!(
                    "cannot remove '{}', left by an interrupted restore ({err}); remove it by hand",
                    p.display()
                ),
                Record::new("warning").path(&p),
            ),
        }
    }
}

pub(crate) fn plan(dest: &Path, force: bool, rep: &mut Reporter) -> Result<Plan> {
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            ensure_dir(parent_of(dest))?;
            remove_stale_restores(dest, rep);
            let temp = temp_dir_for(dest);
            make_temp_dir(&temp)?;
            Ok(Plan::Fresh {
                dest: dest.to_path_buf(),
                temp,
            })
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the target '{}'", dest.display())),
        Ok(m) if m.file_type().is_symlink() => Err(usage(format!(
            "the target '{}' is a symlink; give the directory it points to",
            dest.display()
        ))),
        Ok(m) if !m.is_dir() => Err(usage(format!(
            "the target '{}' exists and is not a directory",
            dest.display()
        ))),
        Ok(m) => {
            let lock = lock_dir(dest)?;
            let entries = std::fs::read_dir(dest)
                .with_context(|| format!("cannot read the target '{}'", dest.display()))?
                .count();
            if entries > 0 && !force {
                return Err(Failure::new(
                    Cause::NotEmpty,
                    format!(
                        "the target '{}' is not empty ({entries} entries): restore into a new or empty directory, or give --force to restore over it (entries of the same names are replaced)",
                        dest.display()
                    ),
                )
                .into());
            }
            let parent = std::fs::metadata(parent_of(dest)).ok();
            let mount_point = parent.is_none_or(|p| p.dev() != m.dev());
            if entries == 0 && !mount_point {
                remove_stale_restores(dest, rep);
                let temp = temp_dir_for(dest);
                make_temp_dir(&temp)?;
                return Ok(Plan::Swap {
                    dest: dest.to_path_buf(),
                    temp,
                    _lock: lock,
                });
            }
            let rollback = (entries == 0).then(|| RootState {
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                atime: (m.atime(), m.atime_nsec()),
                mtime: (m.mtime(), m.mtime_nsec()),
            });
            Ok(Plan::InPlace {
                dest: dest.to_path_buf(),
                rollback,
                _lock: lock,
            })
        }
    }
}

fn make_temp_dir(temp: &Path) -> Result<()> {
    std::fs::create_dir(temp)
        .map_err(|e| tb_shared::error::create_error(e, parent_of(temp), "a temporary directory"))?;
    std::fs::set_permissions(temp, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of '{}'", temp.display()))?;
    signals::track_temp(temp);
    Ok(())
}

/// Take back a failed restore. Returns a note for the error message.
pub(crate) fn roll_back(plan: &Plan) -> String {
    signals::critical(|| match plan {
        Plan::Fresh { temp, .. } | Plan::Swap { temp, .. } => {
            make_writable(temp);
            let _ = std::fs::remove_dir_all(temp);
            signals::untrack_temp(temp);
            format!("'{}' is as it was", plan.dest().display())
        }
        Plan::InPlace {
            dest,
            rollback: Some(root),
            ..
        } => {
            make_writable(dest);
            let emptied = empty_dir(dest);
            let _ = std::fs::set_permissions(dest, std::fs::Permissions::from_mode(root.mode));
            let _ = nix::unistd::chown(
                dest,
                Some(nix::unistd::Uid::from_raw(root.uid)),
                Some(nix::unistd::Gid::from_raw(root.gid)),
            );
            let ts = |(s, ns): (i64, i64)| nix::sys::time::TimeSpec::new(s, ns);
            let _ = nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                dest,
                &ts(root.atime),
                &ts(root.mtime),
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
            match emptied {
                Ok(()) => format!("'{}' was emptied again", dest.display()),
                Err(e) => format!(
                    "'{}' could not be emptied again ({e:#}): it holds a partial restore; empty it before using it",
                    dest.display()
                ),
            }
        }
        Plan::InPlace { dest, .. } => format!(
            "'{}' is partly restored (--force): restore again, or clean it before using it",
            dest.display()
        ),
    })
}

/// Put the checked tree in place.
pub(crate) fn commit(plan: &Plan, rep: &mut Reporter) -> Result<()> {
    Extractor::sync(plan.extract_dir())?;
    signals::check()?;
    signals::critical(|| match plan {
        Plan::Fresh { dest, temp } => {
            rename_noreplace(temp, dest)?;
            signals::untrack_temp(temp);
            fsync_dir(parent_of(dest))
        }
        Plan::Swap { dest, temp, .. } => {
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                temp.as_path(),
                nix::fcntl::AT_FDCWD,
                dest.as_path(),
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(io::Error::from)
            .with_context(|| {
                format!(
                    "cannot move the restored tree '{}' into place at '{}'",
                    temp.display(),
                    dest.display()
                )
            })?;
            signals::untrack_temp(temp);
            // `temp` now names the old, empty target directory.
            if let Err(e) = std::fs::remove_dir(temp) {
                rep.warn(
                    &format!(
                        "the old target directory, now at '{}', could not be removed ({e}); remove it by hand",
                        temp.display()
                    ),
                    Record::new("warning").path(temp),
                );
            }
            fsync_dir(parent_of(dest))
        }
        Plan::InPlace { .. } => Ok(()),
    })
}

struct Counting<R> {
    inner: R,
    n: u64,
    progress: tb_shared::progress::Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

fn damaged(input: &Input, why: impl std::fmt::Display) -> anyhow::Error {
    Failure::new(
        Cause::Damaged,
        format!("'{}' is damaged: {why}", input.shown()),
    )
    .into()
}

/// Extract and check everything; the error says why it failed.
pub(crate) fn extract(
    input: &Input,
    dir: &Path,
    refusals: &mut Vec<Refusal>,
    refused_total: &mut u64,
) -> Result<(Extracted, tb_shared::gzip::Inflated)> {
    let chunks = input
        .manifest
        .as_ref()
        .and_then(|m| m.files.iter().find(|f| f.role == "archive"))
        .and_then(|f| f.chunks.as_ref())
        .and_then(|c| c.chunks());
    let reader = match &input.path {
        Some(p) => InflateReader::open(p, chunks, default_threads()),
        None => InflateReader::from_reader(io::stdin()),
    };
    let total = input
        .manifest
        .as_ref()
        .and_then(|m| m.files.iter().find(|f| f.role == "archive"))
        .map(|f| f.raw_bytes);
    let mut counting = Counting {
        inner: reader,
        n: 0,
        progress: tb_shared::progress::Progress::new("restoring", total),
    };
    let mut index = match &input.index {
        Some(p) => Some(IndexReader::open(p).map_err(|e| damaged(input, format!("{e:#}")))?),
        None => None,
    };
    let mut on_refuse = |r: Refusal| {
        *refused_total += 1;
        if refusals.len() < 1000 {
            refusals.push(r);
        }
    };
    let extracted = Extractor::new(dir, ExtractOptions::default(), &mut on_refuse)
        .and_then(|x| x.extract_all(&mut counting, index.as_mut()));
    // What follows the end-of-archive blocks must be zeros.
    let mut trailing = 0u64;
    if extracted.is_ok() {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = counting.read(&mut buf) {
            if n == 0 {
                break;
            }
            trailing += buf[..n].iter().filter(|b| **b != 0).count() as u64;
        }
    }
    let tar_bytes = counting.n;
    // The gzip verdict (truncated, corrupt) is the real reason of most tar
    // errors, so it comes first.
    let gz = counting.inner.finish();
    let gz = match gz {
        Ok(gz) => gz,
        Err(GzProblem::Unreadable(e)) => {
            return Err(Failure::new(
                Cause::NotFound,
                format!("cannot read the backup '{}': {e}", input.shown()),
            )
            .into());
        }
        Err(p) => return Err(damaged(input, p)),
    };
    let extracted = extracted?;
    if trailing > 0 {
        return Err(damaged(
            input,
            format!("{trailing} bytes of data after the end of the tar archive"),
        ));
    }
    if tar_bytes < 1024 || !tar_bytes.is_multiple_of(512) {
        return Err(damaged(
            input,
            "the tar stream does not end with its end-of-archive blocks",
        ));
    }
    if let Some(m) = &input.manifest {
        let name = input
            .path
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match m
            .file(&name)
            .or_else(|| m.files.iter().find(|f| f.role == "archive"))
        {
            Some(f) if f.sha256 != gz.sha256 || f.bytes != gz.gz_bytes => {
                return Err(damaged(
                    input,
                    format!(
                        "it does not match its manifest ({} bytes, sha256 {}; the manifest says {} bytes, sha256 {})",
                        gz.gz_bytes, gz.sha256, f.bytes, f.sha256
                    ),
                ));
            }
            Some(_) => {}
            None => {
                return Err(damaged(
                    input,
                    "its manifest does not list it (a manifest of another backup?)",
                ));
            }
        }
    }
    Ok((extracted, gz))
}

/// Run `tb-restore`.
pub fn run(args: Args, rep: &mut Reporter) -> Result<Outcome> {
    let clock = Instant::now();
    let is_chain =
        args.backup != Path::new("-") && std::fs::metadata(&args.backup).is_ok_and(|m| m.is_dir());
    if !is_chain && (args.name.is_some() || args.at.is_some()) {
        return Err(usage(
            "--name and --at choose a point of an incremental chain: give the incremental directory (or a chain directory) as BACKUP".into(),
        ));
    }
    if args.list {
        return table_restore::list(&args, rep);
    }
    if plan_restore::is_root(&args) {
        if args.at.is_none() {
            return Err(usage(format!(
                "'{}' is a backup root: give --at YYYY-MM-DD to restore everything to one day (or give one backup: a dump, an archive, a chain with --name)",
                args.backup.display()
            )));
        }
        return plan_restore::run(&args, rep);
    }
    if !args.table.is_empty() {
        if args.backup == Path::new("-") {
            return Err(usage("--table needs the dump as a file, not stdin".into()));
        }
        return if args.sql {
            table_restore::sql(&args, rep)
        } else {
            table_restore::restore(&args, rep, clock)
        };
    }
    if args.dbname.is_some() || is_dump_file(&args.backup) {
        if is_chain {
            return Err(usage(
                "--dbname restores a dump (.sql.gz), not a directory".into(),
            ));
        }
        if args.dbname.is_none() {
            return Err(usage(format!(
                "'{}' is a database dump: give --dbname NAME (the database to restore into; add --host/--port/--username or --container as for tb-dump)",
                args.backup.display()
            )));
        }
        let input = if args.backup == Path::new("-") {
            rep.warn(
                "the dump comes from stdin: it cannot be verified before the restore; it is checked as it streams, and the restore is taken back if it is incomplete",
                Record::new("warning"),
            );
            dump_restore::DumpInput {
                path: None,
                manifest: None,
                facts: None,
                plain: false,
                verify_streaming: false,
            }
        } else {
            dump_restore::open_for_restore(&args.backup, rep)?
        };
        return dump_restore::restore_dump(&args, &input, rep, clock);
    }
    if args.target.is_none() && args.volume.is_none() {
        return Err(usage(
            "give --target DIR or --volume NAME for a volume archive or chain, or --dbname NAME for a dump".into(),
        ));
    }
    let source = if is_chain {
        Source::Chain(chain_restore::resolve(&args, rep)?)
    } else {
        Source::Archive(Box::new(open_input(&args, rep)?))
    };
    let docker = Docker::new(&args.docker);
    let mut created_volume = None;
    let dest = match (&args.target, &args.volume) {
        (Some(t), _) => t.clone(),
        (None, Some(v)) => {
            let vol = match docker.volume(v) {
                Ok(vol) => {
                    let users = docker.running_users_of(v)?;
                    if !users.is_empty() {
                        return Err(Failure::new(
                            Cause::InUse,
                            format!(
                                "volume '{v}' is in use by the running container(s) {}: stop them first (docker stop {}), then restore",
                                users.join(", "),
                                users.join(" ")
                            ),
                        )
                        .into());
                    }
                    vol
                }
                Err(e) if cause_of(&e) == Cause::NotFound => {
                    let vol = docker.create_volume(v)?;
                    rep.emit(
                        Record::new("created")
                            .with("kind", "docker_volume")
                            .with("volume", v)
                            .with("path", path_value(&vol.mountpoint)),
                    );
                    created_volume = Some(v.clone());
                    vol
                }
                Err(e) => return Err(e),
            };
            vol.mountpoint
        }
        (None, None) => return Err(usage("give --target DIR or --volume NAME".into())),
    };
    let result = match &source {
        Source::Archive(input) => restore(&args, input, &dest, rep, clock),
        Source::Chain(point) => chain_restore::restore(&args, point, &dest, rep, clock),
    };
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            if let Some(v) = created_volume {
                let _ = docker.remove_volume(&v);
            }
            Err(e)
        }
    }
}

fn restore(
    args: &Args,
    input: &Input,
    dest: &Path,
    rep: &mut Reporter,
    clock: Instant,
) -> Result<Outcome> {
    let plan = plan(dest, args.force, rep)?;
    let mut refusals = Vec::new();
    let mut refused_total = 0u64;
    let result = extract(input, plan.extract_dir(), &mut refusals, &mut refused_total)
        .and_then(|r| {
            if refused_total > 0 {
                Err(Failure::new(
                    Cause::UnsafeArchive,
                    format!(
                        "'{}' holds {refused_total} entries that would reach outside the target or cannot be restored safely (see the refused records); nothing was restored",
                        input.shown()
                    ),
                )
                .into())
            } else {
                Ok(r)
            }
        })
        .and_then(|r| commit(&plan, rep).map(|()| r));
    for r in &refusals {
        rep.emit(
            Record::new("refused")
                .with("entry", &r.entry)
                .with("reason", &r.reason),
        );
    }
    let (ex, gz) = match result {
        Ok(r) => r,
        Err(e) => {
            let note = roll_back(&plan);
            return Err(Failure::new(cause_of(&e), format!("{e:#}; {note}")).into());
        }
    };
    if let Some(m) = &input.manifest
        && let Some(v) = &m.volume
    {
        if !v.consistent {
            rep.warn(
                "the archive was taken from a running PostgreSQL (--allow-live): its data directory may need crash recovery, or may not start; prefer a dump for the database",
                Record::new("warning"),
            );
        }
        if v.warnings_total > 0 {
            rep.warn(
                &format!(
                    "the archive was made with {} warnings (files that changed while read, sockets skipped): see its manifest",
                    v.warnings_total
                ),
                Record::new("warning"),
            );
        }
    }
    warn_extracted(&ex, rep);
    let checked = if ex.indexed {
        "index"
    } else if input.manifest.is_some() {
        "manifest"
    } else {
        "gzip"
    };
    let mut rec = Record::new("restored")
        .with("kind", "volume")
        .with(
            "path",
            input
                .path
                .as_ref()
                .map(|p| path_value(p))
                .unwrap_or_else(|| "-".into()),
        )
        .with("target", path_value(dest))
        .with("entries", ex.entries)
        .with("files", ex.files)
        .with("dirs", ex.dirs)
        .with("symlinks", ex.symlinks)
        .with("hardlinks", ex.hardlinks)
        .with("specials", ex.specials)
        .with("file_bytes", ex.file_bytes)
        .with("bytes", gz.gz_bytes)
        .with("sha256", &gz.sha256)
        .with("checked", checked)
        .with("duration_ms", clock.elapsed().as_millis() as u64);
    if let Some(v) = &args.volume {
        rec.set("docker_volume", v);
    }
    rep.emit(rec);
    rep.summary_field("restored", 1);
    rep.summary_field("target", path_value(dest));
    Ok(rep.outcome())
}

/// Warnings about what an extraction could not reproduce.
pub(crate) fn warn_extracted(ex: &Extracted, rep: &mut Reporter) {
    if ex.owners_not_set > 0 {
        rep.warn(
            &format!(
                "not running as root: {} entries are owned by you, not by their archived owners",
                ex.owners_not_set
            ),
            Record::new("warning"),
        );
    }
    if !ex.devices_skipped.is_empty() {
        rep.warn(
            &format!(
                "not running as root: {} device nodes were not created ({})",
                ex.devices_skipped.len(),
                ex.devices_skipped.join(", ")
            ),
            Record::new("warning"),
        );
    }
    if !ex.xattrs_not_set.is_empty() {
        rep.warn(
            &format!(
                "{} extended attributes could not be set (the target filesystem may not support them): {}",
                ex.xattrs_not_set.len(),
                ex.xattrs_not_set.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            ),
            Record::new("warning"),
        );
    }
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
    fn temp_dirs_sit_beside_the_target() {
        let t = temp_dir_for(Path::new("/var/lib/docker/volumes/v/_data"));
        let n = t.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(t.parent().unwrap(), Path::new("/var/lib/docker/volumes/v"));
        assert!(n.starts_with(".tb-tmp._data."), "{n}");
    }
}
