//! The walk of a tree in archive order, run ahead in a thread of its own.
//!
//! Looking every entry up (`lstat`, relative to its open directory) and
//! reading its extended attributes are two system calls per entry, most of
//! the time an increment takes on a tree where little changed. The walk
//! does them in its own thread, a few hundred entries ahead of the
//! archiver, which compares, stores and lists them meanwhile.
//!
//! Order: `.` is not walked (the caller has it); then depth first, the
//! children of a directory sorted by the raw bytes of their names, each
//! directory before its contents (see [`crate::archive::walk_cmp`]).

use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use anyhow::Result;

/// Directory levels kept open during a walk (one descriptor each), shared
/// among its threads; deeper ones are looked up by their whole path.
pub const OPEN_DEPTH: usize = 128;
/// Steps passed to the archiver at a time.
const BATCH: usize = 256;

/// Extended attributes, sorted by name.
pub type Xattrs = Vec<(String, Vec<u8>)>;

/// Which entries' extended attributes the walk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrRead {
    /// Every entry's.
    All,
    /// Only those of directories and of entries that changed (ctime,
    /// nanoseconds since the epoch) at or after this time or are under a
    /// directory that did: for the others the archiver may take them from
    /// a listing made after it (or reads them itself). An entry can only
    /// come to a path by a change to it (a rename or a new link changes
    /// its ctime) or to a directory on the way (which changes that
    /// directory's), so an entry and directories all older than that time
    /// are the very inode the listing saw there.
    ChangedSince(i64),
}

/// An entry found by the walk.
#[derive(Debug)]
pub struct Found {
    /// Name relative to the root, raw bytes.
    pub rel: Vec<u8>,
    /// Path to open it by.
    pub full: PathBuf,
    /// What `lstat` said.
    pub meta: Metadata,
    /// Its extended attributes, unless [`XattrRead::ChangedSince`] left
    /// them unread.
    pub xattrs: Option<Xattrs>,
    /// Extended attributes left out (their names are not UTF-8).
    pub xattrs_skipped: usize,
}

/// One step of the walk.
// Nearly every step is an entry: boxing it would add an allocation to each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// An entry, in archive order.
    Entry(Found),
    /// Something left out (a directory that cannot be read, an entry that
    /// vanished): the name and why.
    Warning(Vec<u8>, String),
}

/// The extended attributes of `path` (not following a symlink), sorted;
/// none when they cannot be read. Also how many there were whose name is
/// not UTF-8 (the index cannot hold them: left out, the caller warns).
pub fn xattrs_of(path: &Path) -> (Xattrs, usize) {
    let Ok(names) = xattr::list(path) else {
        return (Vec::new(), 0);
    };
    let mut skipped = 0;
    let mut out: Xattrs = names
        .filter_map(|n| {
            let Some(key) = n.to_str() else {
                skipped += 1;
                return None;
            };
            let v = xattr::get(path, &n).ok().flatten()?;
            Some((key.to_string(), v))
        })
        .collect();
    out.sort();
    (out, skipped)
}

/// The warning for an entry with extended attributes that cannot be kept.
pub fn skipped_xattrs_warning(n: usize) -> String {
    format!("has {n} extended attribute(s) whose name is not UTF-8: not in the archive")
}

/// Whether an error is the system running out of something (descriptors,
/// memory) rather than something about the entry: the run must stop, not
/// leave the entry out.
pub fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOMEM | nix::libc::ENOBUFS)
    )
}

/// Nanoseconds since the epoch of a change time.
fn ctime_ns(meta: &Metadata) -> i64 {
    meta.ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.ctime_nsec())
}

/// Steps a walking thread may hold that the archiver has not taken yet
/// (about 300 bytes each): enough for one thread to walk a whole subtree
/// of a few ten thousand entries while the archiver takes another's.
const STREAM_STEPS: usize = 32 << 10;

/// What a walking thread sends: steps, or where another thread's walk of
/// a subdirectory goes in the order.
enum Out {
    Step(Result<Step>),
    Splice(Stream),
}

/// One thread's walk of a subtree, in order.
struct Stream {
    rx: Receiver<Vec<Out>>,
    batch: std::vec::IntoIter<Out>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the walking threads share.
struct Shared {
    xattrs: XattrRead,
    /// Walking threads running, and how many may.
    live: AtomicUsize,
    most: usize,
    /// Directory levels each thread may keep open (its share of
    /// [`OPEN_DEPTH`]).
    open_levels: usize,
}

impl Shared {
    fn take_slot(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.most).then_some(n + 1)
            })
            .is_ok()
    }
}

/// Gives a thread's slot back when it ends, however it ends.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a walk of a directory starts.
struct At {
    dir: PathBuf,
    rel: Vec<u8>,
    /// Directories above it left open by this thread.
    open: usize,
    /// It and every directory above it are older than the xattr threshold.
    settled: bool,
}

/// Walk `at` in a new thread, which holds a slot already taken.
fn spawn_stream(shared: Arc<Shared>, at: At) -> io::Result<Stream> {
    let (tx, rx) = sync_channel(STREAM_STEPS / BATCH);
    let slot = Slot(shared.clone());
    let thread = std::thread::Builder::new()
        .name("tb-walk".into())
        .spawn(move || {
            let _slot = slot;
            let mut sink = Sink {
                tx,
                batch: Vec::with_capacity(BATCH),
                shared,
            };
            // Whatever ended the walk, what was found is sent: an error
            // step among it (a failure must not pass for the end of the
            // subtree). When the archiver stopped listening, nothing is.
            let _ = sink.walk_dir(at);
            let _ = sink.flush();
        })?;
    Ok(Stream {
        rx,
        batch: Vec::new().into_iter(),
        thread: Some(thread),
    })
}

/// The walk of a tree: an iterator of its steps, in order.
///
/// The tree is walked by up to as many threads as there are cores (at
/// most four): a thread that comes to a subdirectory while another may
/// start hands the subdirectory to a new thread and goes on with what
/// follows it; the steps are taken from the threads in order. Each thread
/// holds at most [`STREAM_STEPS`] steps not yet taken, so memory stays
/// bounded whatever the tree.
pub struct Walk {
    /// The stream being read, and those it is spliced into.
    stack: Vec<Stream>,
}

/// A walking thread's end: steps batched into its stream.
struct Sink {
    tx: SyncSender<Vec<Out>>,
    batch: Vec<Out>,
    shared: Arc<Shared>,
}

/// The archiver stopped listening: the walk ends.
struct Gone;

impl Sink {
    fn push(&mut self, o: Out) -> Result<(), Gone> {
        self.batch.push(o);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Gone> {
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.send(full).map_err(|_| Gone)
    }

    fn warn(&mut self, rel: Vec<u8>, message: String) -> Result<(), Gone> {
        self.push(Out::Step(Ok(Step::Warning(rel, message))))
    }

    /// Stop the walk: the run fails (the error is sent with what was
    /// found before it).
    fn fail(&mut self, e: anyhow::Error) -> Result<(), Gone> {
        self.push(Out::Step(Err(e)))?;
        self.flush()?;
        Err(Gone)
    }

    fn walk_dir(&mut self, at: At) -> Result<(), Gone> {
        let At {
            dir,
            rel,
            open,
            settled,
        } = at;
        if let Err(e) = crate::signals::check() {
            return self.fail(e);
        }
        let mut entries: Vec<(std::ffi::OsString, Option<std::fs::DirEntry>)> =
            match std::fs::read_dir(&dir) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| (e.file_name(), Some(e))))
                    .collect(),
                Err(e) if out_of_resources(&e) => {
                    return self.fail(anyhow::anyhow!(
                        "cannot read directory '{}': {e}; the run stops rather than leave it out",
                        dir.display()
                    ));
                }
                Err(e) => {
                    return self.warn(
                        rel,
                        format!("cannot read directory: {e}; its contents are not in the archive"),
                    );
                }
            };
        // The entries keep the directory open, so that each is looked up in
        // it rather than by its whole path again; past its share of
        // OPEN_DEPTH levels a thread drops them (closing it) and looks them
        // up by path, so that a very deep tree cannot run out of file
        // descriptors, whatever the number of threads.
        let kept_open = open < self.shared.open_levels;
        if !kept_open {
            entries.iter_mut().for_each(|e| e.1 = None);
        }
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, dirent) in entries {
            let full = dir.join(&name);
            let mut child = Vec::with_capacity(rel.len() + 1 + name.len());
            child.extend_from_slice(&rel);
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let looked_up = match &dirent {
                // lstat, relative to the open directory.
                Some(d) => d.metadata(),
                None => std::fs::symlink_metadata(&full),
            };
            drop(dirent);
            let meta = match looked_up {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.warn(child, "vanished while the archive was made".into())?;
                    continue;
                }
                Err(e) if out_of_resources(&e) => {
                    return self.fail(anyhow::anyhow!(
                        "cannot read '{}': {e}; the run stops rather than leave it out",
                        full.display()
                    ));
                }
                Err(e) => {
                    self.warn(child, format!("cannot read: {e}; not in the archive"))?;
                    continue;
                }
            };
            let is_dir = meta.is_dir();
            let (settled_here, xattrs) = match self.shared.xattrs {
                XattrRead::ChangedSince(t) => {
                    let old = settled && ctime_ns(&meta) < t;
                    // Directories are stored in every archive: always read.
                    (old, (is_dir || !old).then(|| xattrs_of(&full)))
                }
                XattrRead::All => (false, Some(xattrs_of(&full))),
            };
            let (xattrs, xattrs_skipped) = match xattrs {
                Some((x, skipped)) => (Some(x), skipped),
                None => (None, 0),
            };
            let sub = is_dir.then(|| At {
                dir: full.clone(),
                rel: child.clone(),
                open: open + 1,
                settled: settled_here,
            });
            self.push(Out::Step(Ok(Step::Entry(Found {
                rel: child,
                full,
                meta,
                xattrs,
                xattrs_skipped,
            }))))?;
            let Some(mut sub) = sub else { continue };
            // Another thread when one may start (if it cannot, the slot
            // came back with the failed spawn: walked here).
            if self.shared.take_slot() {
                let theirs = At {
                    dir: sub.dir.clone(),
                    rel: sub.rel.clone(),
                    open: 0,
                    settled: sub.settled,
                };
                if let Ok(s) = spawn_stream(self.shared.clone(), theirs) {
                    self.push(Out::Splice(s))?;
                    continue;
                }
            }
            if !kept_open {
                sub.open = open;
            }
            self.walk_dir(sub)?;
        }
        Ok(())
    }
}

impl Walk {
    /// Walk the tree under `root` (not `root` itself).
    pub fn spawn(root: &Path, xattrs: XattrRead) -> io::Result<Walk> {
        let most = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let shared = Arc::new(Shared {
            xattrs,
            live: AtomicUsize::new(1),
            most,
            open_levels: (OPEN_DEPTH / most).max(1),
        });
        // The root counts as a directory on the way to every entry.
        let settled = match xattrs {
            XattrRead::ChangedSince(t) => {
                std::fs::symlink_metadata(root).is_ok_and(|m| ctime_ns(&m) < t)
            }
            XattrRead::All => false,
        };
        let at = At {
            dir: root.to_path_buf(),
            rel: Vec::new(),
            open: 0,
            settled,
        };
        let root = spawn_stream(shared, at)?;
        Ok(Walk { stack: vec![root] })
    }
}

impl Iterator for Walk {
    type Item = Result<Step>;

    fn next(&mut self) -> Option<Result<Step>> {
        loop {
            let top = self.stack.last_mut()?;
            match top.batch.next() {
                Some(Out::Step(s)) => return Some(s),
                Some(Out::Splice(s)) => {
                    self.stack.push(s);
                    continue;
                }
                None => {}
            }
            match top.rx.recv() {
                Ok(b) => top.batch = b.into_iter(),
                Err(_) => {
                    // That thread's walk is over: whole, or cut by a panic
                    // (which must not pass for the end of its subtree).
                    let ended = top.thread.take().map(std::thread::JoinHandle::join);
                    self.stack.pop();
                    if let Some(Err(_)) = ended {
                        self.stack.clear();
                        return Some(Err(anyhow::anyhow!(
                            "the walk of the tree failed (a thread stopped); the archive is incomplete"
                        )));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(root: &Path, xattrs: XattrRead) -> Vec<(String, bool)> {
        Walk::spawn(root, xattrs)
            .expect("a thread")
            .map(|s| match s.expect("a step") {
                Step::Entry(f) => (
                    String::from_utf8_lossy(&f.rel).into_owned(),
                    f.xattrs.is_some(),
                ),
                Step::Warning(rel, m) => panic!("{}: {m}", String::from_utf8_lossy(&rel)),
            })
            .collect()
    }

    #[test]
    fn the_walk_is_in_archive_order_and_reads_xattrs_of_changed_inodes_only() {
        let t = tempfile::tempdir().expect("a temp dir");
        let r = t.path();
        for d in ["a", "a/b", "a-c", "z"] {
            std::fs::create_dir(r.join(d)).expect("mkdir");
        }
        for f in ["a/b/1", "a/0", "a-c/x", "B", "z/é"] {
            std::fs::write(r.join(f), f).expect("write");
        }
        let all = names(r, XattrRead::All);
        let order: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            order,
            ["B", "a", "a/0", "a/b", "a/b/1", "a-c", "a-c/x", "z", "z/é"]
        );
        assert!(all.iter().all(|(_, x)| *x), "every entry's xattrs read");
        // Nothing changed since a time in the future: only the directories'
        // read (they are stored in every archive); since the epoch: all.
        let future = i64::MAX;
        let dirs = ["a", "a/b", "a-c", "z"];
        for (n, read) in names(r, XattrRead::ChangedSince(future)) {
            assert_eq!(read, dirs.contains(&n.as_str()), "{n}");
        }
        assert!(names(r, XattrRead::ChangedSince(0)).iter().all(|(_, x)| *x));
    }

    /// The names under `dir` in archive order, one thread, by recursion.
    fn reference(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            out.push(child.clone());
            let p = dir.join(&n);
            if p.symlink_metadata().unwrap().is_dir() {
                reference(&p, &child, out);
            }
        }
    }

    #[test]
    fn threads_walking_subtrees_keep_the_order_of_one() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        // Directories of every size at several depths, with files between
        // them, so that subtrees are handed to other threads and spliced.
        let mut n = 0u64;
        for a in 0..7 {
            for b in 0..(a * 3 % 5) {
                let dir = r.join(format!("d{a}/s{b}/t{}", (a + b) % 3));
                std::fs::create_dir_all(&dir).unwrap();
                for f in 0..(n % 40) {
                    std::fs::write(dir.join(format!("f{f}")), b"x").unwrap();
                }
                n = n * 31 + 7;
                std::fs::write(r.join(format!("d{a}/s{b}/after")), b"y").unwrap();
            }
            std::fs::create_dir_all(r.join(format!("d{a}"))).unwrap();
            std::fs::write(r.join(format!("d{a}.file")), b"z").unwrap();
        }
        let mut want = Vec::new();
        reference(r, "", &mut want);
        assert!(want.len() > 100, "{}", want.len());
        for _ in 0..20 {
            let got: Vec<String> = names(r, XattrRead::All)
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_walk_dropped_early_stops_its_thread() {
        let t = tempfile::tempdir().expect("a temp dir");
        for i in 0..(STREAM_STEPS + 4 * BATCH) {
            std::fs::write(t.path().join(format!("f{i}")), b"").expect("write");
        }
        let mut w = Walk::spawn(t.path(), XattrRead::All).expect("a thread");
        assert!(matches!(w.next(), Some(Ok(Step::Entry(_)))));
        drop(w); // its thread stops at its next send
    }
}
