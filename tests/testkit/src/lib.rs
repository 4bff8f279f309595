//! `tb-testkit`: dev-only helpers shared by the tools' tests.
//!
//! - [`Sandbox`]: a temporary directory per test;
//! - [`Pg`]: a real, throwaway PostgreSQL cluster (initdb in a temporary
//!   directory, unix socket and 127.0.0.1, run as an unprivileged user
//!   when the tests run as root), through `tests/pg-throwaway`;
//! - [`records`]: parse JSON-lines records;
//! - [`fingerprint`]: everything a restore must reproduce (rows of every
//!   table, sequences, large objects, owners) as one comparable string.
//!
//! Nothing here fakes PostgreSQL: tests talk to a real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub use tempfile;

pub mod docker;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fixture file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures").join(name)
}

/// Are we root? (Some failure tests need mounts.)
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temporary directory for one test, removed at the end.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A new, empty sandbox.
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("tb-test-")
                .tempdir()
                .unwrap(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The names in `rel` (sorted), hidden ones included.
    pub fn list(&self, rel: impl AsRef<Path>) -> Vec<String> {
        list_dir(&self.join(rel))
    }
}

/// Sorted names in a directory (empty if it does not exist).
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// PostgreSQL 16.2 programs fetched by `tests/fetch-pg16` (a server newer
/// than the system's pg_dump, and a pg_dump from before `\restrict`):
/// `TB_PG16_BINDIR`, else `$TB_PG16_DIR` (default `/var/tmp/tb-pg16`) `/pgserver/pginstall/bin`. Missing: panic under
/// `TB_REQUIRE_PG16=1` (CI), else print SKIP and return `None`.
pub fn pg16_or_skip(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TB_PG16_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(
                std::env::var_os("TB_PG16_DIR").unwrap_or_else(|| "/var/tmp/tb-pg16".into()),
            )
            .join("pgserver/pginstall/bin")
        });
    if dir.join("postgres").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("TB_REQUIRE_PG16").as_deref() != Ok("1"),
        "{test}: TB_REQUIRE_PG16=1 but {} has no PostgreSQL 16 (run tests/fetch-pg16)",
        dir.display()
    );
    eprintln!("SKIP {test}: no PostgreSQL 16 programs (run tests/fetch-pg16)");
    None
}

/// Every file in `dir` with its bytes (to prove nothing changed).
pub fn snapshot_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    list_dir(dir)
        .into_iter()
        .filter_map(|n| {
            let p = dir.join(&n);
            p.is_file().then(|| (n, std::fs::read(&p).unwrap()))
        })
        .collect()
}

/// Parse JSON-lines records; panics on a line that is not a JSON object
/// (every line a tool prints on its record stream must parse).
pub fn records(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}"));
            assert!(v.is_object(), "record is not an object: {l}");
            assert!(
                v["event"].is_string() && v["tool"].is_string() && v["time"].is_string(),
                "{l}"
            );
            v
        })
        .collect()
}

/// The records with `event == name`.
pub fn events<'a>(recs: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    recs.iter().filter(|r| r["event"] == name).collect()
}

/// The one summary record (it must be last).
pub fn summary(recs: &[serde_json::Value]) -> &serde_json::Value {
    let last = recs.last().expect("no records");
    assert_eq!(
        last["event"], "summary",
        "the summary record must be last: {recs:#?}"
    );
    last
}

/// sha256 of a file, hex (computed with `sha256sum`, a tool of its own).
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A throwaway PostgreSQL cluster. Stopped and removed on drop, and by a
/// watchdog process when the test process exits (statics are never dropped).
pub struct Pg {
    dir: PathBuf,
    /// Unix-socket directory (PGHOST).
    pub host: String,
    /// TCP port on 127.0.0.1 and socket port.
    pub port: u16,
    /// Superuser (trust over the socket).
    pub user: String,
    /// Directory of the server programs.
    pub bindir: PathBuf,
}

impl Pg {
    /// initdb + start a new cluster.
    pub fn start() -> Pg {
        Pg::start_with(None)
    }

    /// initdb + start a new cluster with the server programs in `bindir`
    /// (the system's newest when `None`).
    pub fn start_with(bindir: Option<&Path>) -> Pg {
        let dir = tempfile::Builder::new()
            .prefix("tb-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let mut cmd = Command::new(workspace().join("tests/pg-throwaway"));
        if let Some(b) = bindir {
            cmd.env("TB_PG_BINDIR", b);
        }
        let out = cmd
            .arg("start")
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/pg-throwaway");
        assert!(
            out.status.success(),
            "could not start a throwaway PostgreSQL (is the server installed? apt-get install -y postgresql)"
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {k}=")))
                .unwrap_or_else(|| panic!("no {k} in {text}"))
                .to_string()
        };
        let pg = Pg {
            host: get("PGHOST"),
            port: get("PGPORT").parse().unwrap(),
            user: get("PGUSER"),
            bindir: PathBuf::from(get("PGBINDIR")),
            dir,
        };
        // Watchdog: stop and remove the cluster when this process is gone.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; '{script}' stop '{dir}'; rm -rf '{dir}'",
                pid = std::process::id(),
                script = workspace().join("tests/pg-throwaway").display(),
                dir = pg.dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        pg
    }

    /// One cluster shared by the tests of this test binary.
    pub fn shared() -> &'static Pg {
        static PG: OnceLock<Pg> = OnceLock::new();
        PG.get_or_init(Pg::start)
    }

    /// Point `cmd` at this cluster: PGHOST, PGPORT, PGUSER set, other libpq
    /// and tb variables removed.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().to_string();
            if k.starts_with("PG") || k.starts_with("TB_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("TZ", "UTC")
    }

    /// Connection arguments for a tool: `--host H --port P --username U`.
    pub fn conn_args(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.host.clone(),
            "--port".into(),
            self.port.to_string(),
            "--username".into(),
            self.user.clone(),
        ]
    }

    /// Run SQL in `db` with psql (ON_ERROR_STOP); returns unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .env(&mut Command::new("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run a SQL file in `db` (ON_ERROR_STOP).
    pub fn psql_file(&self, db: &str, file: &Path) {
        let out = self
            .env(&mut Command::new("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql -f {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Create a database (from template0, UTF8).
    pub fn createdb(&self, db: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{db}\" TEMPLATE template0 ENCODING 'UTF8'"),
        );
    }

    /// Create a database and load the TOYBOX fixture into it.
    pub fn toybox(&self, db: &str) {
        self.createdb(db);
        self.psql_file(db, &fixture("toybox.sql"));
    }

    /// The cluster's data directory (PGDATA).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stop the server cleanly (a shutdown checkpoint: a cold, consistent
    /// data directory).
    pub fn stop_clean(&self) {
        let data = self.data_dir();
        let st = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .status()
                .unwrap()
        } else {
            Command::new(self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .status()
                .unwrap()
        };
        assert!(st.success(), "pg_ctl stop failed");
    }

    /// Stop the server (fast, like a crash).
    pub fn stop(&self) {
        let st = Command::new(workspace().join("tests/pg-throwaway"))
            .arg("stop")
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("tests/pg-throwaway"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything a restore must reproduce, as one string: the rows of every
/// table (sorted by the whole row), every sequence's state, every large
/// object's bytes (md5) and every table's owner.
pub fn fingerprint(pg: &Pg, db: &str) -> String {
    let mut out = String::new();
    let tables = pg.psql(
        db,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
    );
    for t in tables.lines() {
        let rows = pg.psql(db, &format!("SELECT count(*) FROM {t}"));
        out.push_str(&format!("== table {t} ({} rows)\n", rows.trim()));
        let copy = pg
            .env(&mut Command::new("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c"])
            .arg(format!(
                "COPY (SELECT * FROM {t} x ORDER BY x::text) TO STDOUT"
            ))
            .output()
            .unwrap();
        assert!(
            copy.status.success(),
            "{}",
            String::from_utf8_lossy(&copy.stderr)
        );
        out.push_str(&String::from_utf8_lossy(&copy.stdout));
    }
    let seqs = pg.psql(
        db,
        "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1",
    );
    for s in seqs.lines() {
        out.push_str(&format!(
            "== sequence {s}: {}",
            pg.psql(db, &format!("SELECT last_value, is_called FROM {s}"))
        ));
    }
    out.push_str("== large objects\n");
    out.push_str(&pg.psql(
        db,
        "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
    ));
    out.push_str("== owners\n");
    out.push_str(&pg.psql(
        db,
        "SELECT schemaname, tablename, tableowner FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1,2",
    ));
    out.push_str("== comments\n");
    out.push_str(&pg.psql(db, "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c WHERE obj_description(c.oid, 'pg_class') IS NOT NULL ORDER BY 1"));
    out
}

/// Decompress a gzip file with GNU gzip (an independent reader).
pub fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "gzip -dc {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Restore a .sql.gz with nothing but `gunzip -c FILE | psql` into a new
/// database `db` of `pg`, as the README tells users to.
pub fn restore_with_psql(pg: &Pg, file: &Path, db: &str) {
    pg.createdb(db);
    let script = format!(
        "set -o pipefail; gunzip -c '{}' | psql -X -q -v ON_ERROR_STOP=1 -d '{db}' >/dev/null",
        file.display()
    );
    let out = pg
        .env(&mut Command::new("bash"))
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mode bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Child processes of `pid` as (pid, command name).
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').unwrap() + 1..close].to_string();
        let ppid: u32 = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        if ppid == pid {
            out.push((p, comm));
        }
    }
    out
}

/// Poll `f` every 2 ms for up to `secs` seconds; panics with `what` on timeout.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Send a signal to a pid.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// A small tmpfs mounted on a directory (root only): for "disk full" and
/// "read-only" tests. Unmounted on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. "2m") on `path` (created).
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {} failed", path.display());
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Remount read-only.
    pub fn make_read_only(&self) {
        let st = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fill `root` with every kind of entry a volume can hold: text and binary
/// files, an empty file, a JPEG-like file, a 20 MiB sparse file, symlinks
/// (relative, absolute, dangling), three names of one file, empty and
/// read-only directories, setuid/setgid/sticky modes, a FIFO, a socket
/// (kept alive by the returned listener), names that are not UTF-8, a
/// 200-byte name, a deep path, nanosecond mtimes, a `user.` xattr, and, as
/// root, foreign owners and a character device.
pub fn tree_with_every_kind(root: &Path) -> std::os::unix::net::UnixListener {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileExt, PermissionsExt, symlink};
    let p = |rel: &[u8]| root.join(std::ffi::OsStr::from_bytes(rel));
    std::fs::create_dir_all(p(b"img/thumbs")).unwrap();
    std::fs::create_dir_all(p(b"empty/dir")).unwrap();
    let deep = p(&b"deep/".repeat(30));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom.txt"), b"deep").unwrap();
    std::fs::write(p(b"readme.txt"), "hello, world\n".repeat(500)).unwrap();
    std::fs::write(p(b"empty.txt"), b"").unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut jpeg = b"\xff\xd8\xff\xe0".to_vec();
    while jpeg.len() < 200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        jpeg.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(p(b"img/photo.jpg"), &jpeg).unwrap();
    std::fs::write(p(b"img/thumbs/t1.png"), &jpeg[..5000]).unwrap();
    let sparse = std::fs::File::create(p(b"sparse.img")).unwrap();
    sparse.set_len(20 << 20).unwrap();
    sparse.write_at(b"data in the middle", 10 << 20).unwrap();
    symlink("readme.txt", p(b"link-rel")).unwrap();
    symlink("/etc/hostname", p(b"link-abs")).unwrap();
    symlink("nowhere/at/all", p(b"link-dangling")).unwrap();
    std::fs::hard_link(p(b"readme.txt"), p(b"img/hard1")).unwrap();
    std::fs::hard_link(p(b"readme.txt"), p(b"empty/hard2")).unwrap();
    std::fs::write(p(b"caf\xe9-latin1.txt"), b"not utf-8 name").unwrap();
    std::fs::write(p(b"\xff\xfe\x01weird"), b"bytes").unwrap();
    std::fs::write(p(&[b'n'; 200]), b"a long name").unwrap();
    std::fs::write(p("日本語のファイル.txt".as_bytes()), "こんにちは").unwrap();
    std::fs::write(p(b"setuid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(p(b"setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::create_dir(p(b"sticky")).unwrap();
    std::fs::set_permissions(p(b"sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir(p(b"sgid")).unwrap();
    std::fs::set_permissions(p(b"sgid"), std::fs::Permissions::from_mode(0o2750)).unwrap();
    std::fs::create_dir(p(b"readonly")).unwrap();
    std::fs::write(p(b"readonly/inside"), b"x").unwrap();
    std::fs::set_permissions(p(b"readonly"), std::fs::Permissions::from_mode(0o500)).unwrap();
    nix::unistd::mkfifo(&p(b"fifo"), nix::sys::stat::Mode::from_bits_truncate(0o620)).unwrap();
    let sock = std::os::unix::net::UnixListener::bind(p(b"app.sock")).unwrap();
    let _ = xattr::set(p(b"readme.txt"), "user.origin", b"upload \x00\xff");
    if is_root() {
        nix::unistd::chown(
            &p(b"img/photo.jpg"),
            Some(nix::unistd::Uid::from_raw(12345)),
            Some(nix::unistd::Gid::from_raw(54321)),
        )
        .unwrap();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &p(b"link-rel"),
            Some(nix::unistd::Uid::from_raw(4242)),
            Some(nix::unistd::Gid::from_raw(4343)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        nix::sys::stat::mknod(
            &p(b"null-dev"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
    }
    // Nanosecond mtimes everywhere, set deepest first so directory times stick.
    let out = Command::new("find")
        .arg(root)
        .args([
            "-depth",
            "-exec",
            "touch",
            "-h",
            "-d",
            "2026-01-19 03:30:00.123456789",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(out.success());
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
    sock
}

/// `len` incompressible bytes (xorshift64, seeded): stands for JPEG/MP4
/// data, which no compressor shrinks.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A full listing of the tree at `root`, one line per entry, sorted by raw
/// name: name (escaped bytes), type, mode, uid, gid, size, mtime in
/// nanoseconds, symlink target, sha256 of the contents, extended attributes,
/// and for names of one inode the first name of that inode (the hard-link
/// structure). Two trees are equal, as a restore must make them, when their
/// listings are equal. The root itself is `.`.
pub fn tree_listing(root: &Path) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(root: &Path, rel: &Path, out: &mut Vec<(Vec<u8>, std::fs::Metadata, PathBuf)>) {
        let full = root.join(rel);
        let meta = std::fs::symlink_metadata(&full).unwrap();
        let name = if rel.as_os_str().is_empty() {
            b".".to_vec()
        } else {
            rel.as_os_str().as_bytes().to_vec()
        };
        let is_dir = meta.is_dir();
        out.push((name, meta, full.clone()));
        if is_dir {
            let mut kids: Vec<_> = std::fs::read_dir(&full)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            kids.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for k in kids {
                walk(root, &rel.join(k), out);
            }
        }
    }
    let mut all = Vec::new();
    walk(root, Path::new(""), &mut all);
    let mut first_name: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut lines = Vec::new();
    for (name, m, full) in &all {
        let shown = name
            .iter()
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    (*b as char).to_string()
                } else {
                    format!("\\x{b:02x}")
                }
            })
            .collect::<String>();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "socket"
        };
        let target = if ft.is_symlink() {
            String::from_utf8_lossy(std::fs::read_link(full).unwrap().as_os_str().as_bytes())
                .into_owned()
        } else {
            String::new()
        };
        let sha = if ft.is_file() {
            sha256sum(full)
        } else {
            String::new()
        };
        let mut xattrs: Vec<String> = xattr::list(full)
            .map(|l| {
                l.map(|k| {
                    let v = xattr::get(full, &k).ok().flatten().unwrap_or_default();
                    format!("{}={:02x?}", k.to_string_lossy(), v)
                })
                .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        let link = if !ft.is_dir() && m.nlink() > 1 {
            first_name
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| shown.clone())
                .clone()
        } else {
            String::new()
        };
        let rdev = if ft.is_char_device() || ft.is_block_device() {
            m.rdev()
        } else {
            0
        };
        let size = if ft.is_dir() { 0 } else { m.size() };
        lines.push(format!(
            "{shown} {kind} {:o} {}:{} size={size} mtime={}.{:09} target={target} sha={sha} rdev={rdev} xattrs=[{}] first={link}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec(),
            xattrs.join(",")
        ));
    }
    lines
}

impl Pg {
    /// Start a server on the existing data directory `dir/data` exactly as
    /// it is, e.g. a copy restored from a backup: nothing is initialised,
    /// chowned or chmodded, so PostgreSQL itself refuses a data directory
    /// whose owner or mode is wrong. As root the server runs as the data
    /// directory's owner (PostgreSQL refuses to run as root), so `dir` and
    /// its parents must be traversable by that user. It listens only on a
    /// unix socket in `dir/sock` (created), logs to `dir/server.log`, and
    /// runs the programs in `bindir` (of the cluster's major version, e.g.
    /// the original [`Pg::bindir`]). `user` is the superuser to connect as
    /// (`tbsuper` for clusters made by [`Pg::start`]). Like [`Pg::start`]:
    /// stopped and `dir` removed on drop, and by a watchdog process when the
    /// test process exits.
    pub fn start_existing(dir: &Path, bindir: &Path, user: &str) -> Pg {
        use std::os::unix::fs::MetadataExt;
        let data = dir.join("data");
        let meta = std::fs::metadata(&data)
            .unwrap_or_else(|e| panic!("no data directory {}: {e}", data.display()));
        let sock = dir.join("sock");
        let log = dir.join("server.log");
        std::fs::create_dir_all(&sock).unwrap();
        std::fs::write(&log, b"").unwrap();
        let owner = if is_root() {
            let (uid, gid) = (
                nix::unistd::Uid::from_raw(meta.uid()),
                nix::unistd::Gid::from_raw(meta.gid()),
            );
            for p in [&sock, &log] {
                nix::unistd::chown(p, Some(uid), Some(gid)).unwrap();
            }
            let name = nix::unistd::User::from_uid(uid)
                .unwrap()
                .unwrap_or_else(|| panic!("no user with uid {uid} owns {}", data.display()))
                .name;
            Some(name)
        } else {
            None
        };
        // Only a unix socket in a directory of its own: any port is free.
        let port = 20000 + (std::process::id() % 40000) as u16;
        let mut cmd = match &owner {
            Some(name) => {
                let mut c = Command::new("runuser");
                c.args(["-u", name, "--"]).arg(bindir.join("pg_ctl"));
                c
            }
            None => Command::new(bindir.join("pg_ctl")),
        };
        let st = cmd
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-k '{}' -p {port} -c listen_addresses=''",
                sock.display()
            ))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "PostgreSQL did not start on {}: {}",
            data.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let pg = Pg {
            dir: dir.to_path_buf(),
            host: sock.to_string_lossy().into_owned(),
            port,
            user: user.to_string(),
            bindir: bindir.to_path_buf(),
        };
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; '{script}' stop '{dir}'; rm -rf '{dir}'",
                pid = std::process::id(),
                script = workspace().join("tests/pg-throwaway").display(),
                dir = pg.dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        pg
    }
}
