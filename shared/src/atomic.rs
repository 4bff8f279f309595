//! Atomic publish (design.md, contract 2): nothing half-written is ever
//! published.
//!
//! A backup is written to a hidden temporary name in its destination
//! directory (`.tb-tmp.NAME.PID`, mode 0600), fsynced, verified by the
//! caller, then renamed to its final name with `RENAME_NOREPLACE` (an
//! existing backup is never overwritten) and the directory is fsynced, so a
//! reader sees either nothing or the whole file, also after a crash. A temp
//! that is not published is removed when it is dropped; one left by a
//! killed run is removed by the next run under the directory lock
//! ([`remove_stale_temps`]). This follows bupstash's build-rename-sync_dir.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::{Cause, Failure};
use crate::naming::{TEMP_PREFIX, is_temp};

/// Mode of every file we create.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory we create.
pub const DIR_MODE: u32 = 0o700;

/// Create `dir` and any missing parents with mode 0700. Existing
/// directories keep their mode.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| crate::error::create_error(e, dir, "the directory"))
}

/// A file being written under a temporary name beside its destination.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    dest: PathBuf,
    file: File,
    published: bool,
}

/// The temporary path used for `dest`.
pub fn temp_path_for(dest: &Path) -> PathBuf {
    let mut name = OsString::from(TEMP_PREFIX);
    name.push(dest.file_name().unwrap_or(OsStr::new("out")));
    name.push(format!(".{}", std::process::id()));
    dest.with_file_name(name)
}

impl TempFile {
    /// Create the temporary file for `dest` (exclusive, 0600).
    pub fn create(dest: &Path) -> Result<TempFile> {
        let path = temp_path_for(dest);
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| crate::error::create_error(e, parent_of(dest), "a file"))?;
        crate::signals::track_temp(&path);
        Ok(TempFile {
            path,
            dest: dest.to_path_buf(),
            file,
            published: false,
        })
    }

    /// The open file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// fsync the data.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("cannot flush '{}' to disk", self.path.display()))
    }

    /// fsync, rename to the final name without replacing anything, fsync
    /// the directory. Returns the final path.
    pub fn publish(mut self) -> Result<PathBuf> {
        self.sync()?;
        rename_noreplace(&self.path, &self.dest)?;
        self.published = true;
        crate::signals::untrack_temp(&self.path);
        fsync_dir(parent_of(&self.dest))?;
        Ok(self.dest.clone())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.path);
            crate::signals::untrack_temp(&self.path);
        }
    }
}

/// The directory a path lives in (`.` for a bare name).
pub fn parent_of(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Rename `from` to `to`, failing with [`Cause::Exists`] if `to` exists.
/// Uses `renameat2(RENAME_NOREPLACE)`; where the filesystem does not
/// support it, `link` + `unlink` (also atomic and never replacing).
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    let exists = || {
        anyhow::Error::new(Failure::new(
            Cause::Exists,
            format!(
                "'{}' already exists; refusing to overwrite a backup",
                to.display()
            ),
        ))
    };
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => Err(exists()),
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => match fs::hard_link(from, to) {
            Ok(()) => {
                fs::remove_file(from).with_context(|| format!("cannot remove '{}'", from.display()))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
            Err(e) => Err(e).with_context(|| format!("cannot publish '{}'", to.display())),
        },
        Err(e) => {
            Err(io::Error::from(e)).with_context(|| format!("cannot publish '{}'", to.display()))
        }
    }
}

/// fsync a directory so a rename in it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush directory '{}' to disk", dir.display()))
}

/// Is something (even a dangling symlink) at `path`?
pub fn occupied(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Publish several files as one: fsync them all, then rename each to its
/// final name (never replacing anything) and fsync the directory. If any
/// rename fails, the ones already renamed are removed again, so a failed
/// run leaves no final name behind. Runs as a signal-critical section.
pub fn publish_all(temps: Vec<TempFile>) -> Result<Vec<PathBuf>> {
    for t in &temps {
        t.sync()?;
    }
    crate::signals::critical(|| {
        let mut done: Vec<PathBuf> = Vec::new();
        let mut temps = temps;
        let mut result = Ok(());
        for t in temps.iter_mut() {
            match rename_noreplace(&t.path, &t.dest) {
                Ok(()) => {
                    t.published = true;
                    crate::signals::untrack_temp(&t.path);
                    done.push(t.dest.clone());
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = result {
            for p in &done {
                let _ = fs::remove_file(p);
            }
            for p in &done {
                let _ = fsync_dir(parent_of(p));
            }
            return Err(e);
        }
        let mut dirs: Vec<&Path> = done.iter().map(|p| parent_of(p)).collect();
        dirs.dedup();
        for d in dirs {
            fsync_dir(d)?;
        }
        Ok(done)
    })
}

/// Remove our temporaries (`.tb-tmp.*`) left in `dir` by killed runs.
/// Call only while holding the directory's lock. Returns each temporary
/// with `None` when it was removed, or why it could not be (a warning for
/// the caller: a stuck temp must not stop every later backup).
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<(PathBuf, Option<String>)>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read directory '{}'", dir.display()));
        }
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read directory '{}'", dir.display()))?;
        if !is_temp(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let res = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        let err = res.err().map(|e| e.to_string());
        removed.push((path, err));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn publish_renames_a_private_file_into_place() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("toybox_20260101_030000.sql.gz");
        let mut t = TempFile::create(&dest).unwrap();
        t.file().write_all(b"data").unwrap();
        let tmp = t.path().to_path_buf();
        assert!(
            tmp.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(".tb-tmp.toybox_20260101_030000.sql.gz.")
        );
        assert!(!dest.exists());
        assert_eq!(t.publish().unwrap(), dest);
        assert_eq!(fs::read(&dest).unwrap(), b"data");
        assert!(!tmp.exists());
        assert_eq!(mode(&dest), 0o600);
    }

    #[test]
    fn publish_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("b.sql.gz");
        fs::write(&dest, b"old backup").unwrap();
        let mut t = TempFile::create(&dest).unwrap();
        t.file().write_all(b"new").unwrap();
        let tmp = t.path().to_path_buf();
        let err = t.publish().unwrap_err();
        assert_eq!(crate::error::cause_of(&err), Cause::Exists);
        assert_eq!(fs::read(&dest).unwrap(), b"old backup");
        assert!(!tmp.exists(), "the failed temp is removed");
    }

    #[test]
    fn a_failed_group_publish_leaves_no_final_name() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("x.roles.sql.gz");
        let b = d.path().join("x.sql.gz");
        let c = d.path().join("x.manifest.json");
        // A dangling symlink already sits at the second name.
        std::os::unix::fs::symlink("/nonexistent", &b).unwrap();
        assert!(occupied(&b) && !b.exists());
        let temps: Vec<TempFile> = [&a, &b, &c]
            .iter()
            .map(|p| {
                let mut t = TempFile::create(p).unwrap();
                t.file().write_all(b"x").unwrap();
                t
            })
            .collect();
        let err = publish_all(temps).unwrap_err();
        assert_eq!(crate::error::cause_of(&err), Cause::Exists);
        assert!(!occupied(&a), "the first file was rolled back");
        assert!(!occupied(&c));
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            [std::ffi::OsString::from("x.sql.gz")],
            "only the symlink that was there"
        );
    }

    #[test]
    fn a_group_publish_renames_all() {
        let d = tempfile::tempdir().unwrap();
        let names = ["a", "b"].map(|n| d.path().join(n));
        let temps: Vec<TempFile> = names.iter().map(|p| TempFile::create(p).unwrap()).collect();
        assert_eq!(publish_all(temps).unwrap(), names);
        assert!(names.iter().all(|p| p.is_file()));
    }

    #[test]
    fn dropped_temp_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let t = TempFile::create(&d.path().join("x")).unwrap();
        let tmp = t.path().to_path_buf();
        assert!(tmp.exists());
        drop(t);
        assert!(!tmp.exists());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_temps_are_removed_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        for n in [".tb-tmp.a.sql.gz.1", "a.sql.gz", ".tb.lock", "notes.txt"] {
            fs::write(d.path().join(n), b"x").unwrap();
        }
        fs::create_dir(d.path().join(".tb-tmp.incr_20260101.9")).unwrap();
        fs::write(d.path().join(".tb-tmp.incr_20260101.9/f"), b"x").unwrap();
        let mut removed: Vec<PathBuf> = remove_stale_temps(d.path())
            .unwrap()
            .into_iter()
            .map(|(p, e)| {
                assert!(e.is_none());
                p
            })
            .collect();
        removed.sort();
        assert_eq!(removed.len(), 2);
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".tb.lock", "a.sql.gz", "notes.txt"]);
    }

    #[test]
    fn ensure_dir_creates_private_dirs() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("backup/toybox/database");
        ensure_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&d.path().join("backup")), 0o700);
    }

    #[test]
    fn unwritable_directory_names_the_directory() {
        let err = TempFile::create(Path::new("/proc/x.sql.gz")).unwrap_err();
        assert!(format!("{err:#}").contains("'/proc'"), "{err:#}");
    }
}
