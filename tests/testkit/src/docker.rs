//! The real Docker engine for tests: tiny images built locally (no
//! registry is reachable), containers and volumes named `tbtest-*` and
//! removed on drop.
//!
//! The image `tb-test-hostusr` is an almost empty root filesystem made with
//! `docker import`: /etc/passwd with a `postgres` user (uid 999), /tmp, a
//! /data directory owned by 999, and the merged-/usr links (`bin -> usr/bin`
//! …). Containers bind-mount the host's /usr read-only, so they can run the
//! host's shell and the host's PostgreSQL server and clients, like a
//! database container such as `backend-db-1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The image name.
pub const HOSTUSR_IMAGE: &str = "tb-test-hostusr:1";

/// Run `docker ARGS`; returns the output.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Run `docker ARGS` and require success; returns stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Is a Docker engine reachable? If not: panic when `TB_REQUIRE_DOCKER=1`
/// (CI), else print SKIP and return false.
pub fn docker_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("TB_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "{test}: TB_REQUIRE_DOCKER=1 but no Docker engine is reachable"
        );
        eprintln!("SKIP {test}: no Docker engine");
    }
    ok
}

/// Build (once per test binary, and only if missing) the host-/usr image.
pub fn hostusr_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if docker(&["image", "inspect", HOSTUSR_IMAGE]).status.success() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["etc", "tmp", "data", "var/run/postgresql", "usr", "proc", "sys", "dev"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for (link, target) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")] {
            std::os::unix::fs::symlink(target, r.join(link)).unwrap();
        }
        std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999::/tmp:/bin/sh\n").unwrap();
        std::fs::write(r.join("etc/group"), "root:x:0:\npostgres:x:999:\n").unwrap();
        std::fs::write(r.join("etc/nsswitch.conf"), "passwd: files\ngroup: files\n").unwrap();
        let tarball = std::env::temp_dir().join(format!("tb-hostusr-{}.tar", std::process::id()));
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd '{r}' && chmod 1777 tmp && chown -R 999:999 data var && chown -h 0:0 bin lib lib64 sbin && tar --numeric-owner -cf '{t}' .",
                r = r.display(),
                t = tarball.display()
            ))
            .status()
            .unwrap();
        assert!(st.success(), "building the image tarball failed");
        let path = format!(
            "ENV PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            host_pg_bindir().display()
        );
        let out = Command::new("docker")
            .args(["import", "--change", &path])
            .arg(&tarball)
            .arg(HOSTUSR_IMAGE)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&tarball);
        assert!(out.status.success(), "docker import failed: {}", String::from_utf8_lossy(&out.stderr));
    });
    HOSTUSR_IMAGE
}

/// A unique name for test objects.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "tbtest-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A container removed (forcefully) on drop.
pub struct Container {
    /// Its name.
    pub name: String,
}

impl Container {
    /// `docker run -d` with the host's /usr mounted read-only, plus `extra`
    /// arguments (volumes, env) and the command.
    pub fn run(prefix: &str, extra: &[&str], cmd: &[&str]) -> Container {
        let name = unique(prefix);
        let image = hostusr_image();
        let mut args: Vec<&str> = vec!["run", "-d", "--name", &name, "-v", "/usr:/usr:ro"];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(cmd);
        docker_ok(&args);
        Container { name }
    }

    /// A PostgreSQL server in a container, as user postgres (uid 999), data
    /// in volume `volume` at /data, superuser `postgres` with password
    /// `password` required on the unix socket (scram-sha-256).
    pub fn postgres(volume: &str, password: &str) -> Container {
        let pgbin = host_pg_bindir();
        let script = format!(
            "set -e; if [ ! -s /data/PG_VERSION ]; then echo '{password}' > /tmp/pw; \
             {pgbin}/initdb -D /data -U postgres --pwfile=/tmp/pw --auth-local=scram-sha-256 --auth-host=scram-sha-256 >/tmp/initdb.log; rm /tmp/pw; fi; \
             exec {pgbin}/postgres -D /data -k /var/run/postgresql -c listen_addresses=''",
            pgbin = pgbin.display()
        );
        let mount = format!("{volume}:/data");
        let c = Container::run(
            "db",
            &["--user", "999:999", "-v", &mount],
            &["sh", "-c", &script],
        );
        c.wait_ready(password);
        c
    }

    /// Wait until the server in this container answers.
    pub fn wait_ready(&self, password: &str) {
        let pw = format!("PGPASSWORD={password}");
        crate::wait_for(60, "the containerised PostgreSQL to start", || {
            let out = Command::new("docker")
                .args([
                    "exec", "-e", &pw, &self.name, "psql", "-X", "-At", "-d", "postgres", "-c",
                    "SELECT 1",
                ])
                .output()
                .ok()?;
            out.status.success().then_some(())
        });
    }

    /// `docker exec -i` with stdin from `input`.
    pub fn exec_with_input(&self, env: &[&str], cmd: &[&str], input: &Path) -> Output {
        let mut args: Vec<String> = vec!["exec".into(), "-i".into()];
        for e in env {
            args.push("-e".into());
            args.push((*e).into());
        }
        args.push(self.name.clone());
        args.extend(cmd.iter().map(|s| s.to_string()));
        Command::new("docker")
            .args(&args)
            .stdin(std::fs::File::open(input).unwrap())
            .output()
            .unwrap()
    }

    /// `docker exec` and require success; returns stdout.
    pub fn exec_ok(&self, env: &[&str], cmd: &[&str]) -> String {
        let mut args: Vec<&str> = vec!["exec"];
        for e in env {
            args.push("-e");
            args.push(e);
        }
        args.push(&self.name);
        args.extend_from_slice(cmd);
        docker_ok(&args)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// A named volume removed on drop.
pub struct Volume {
    /// Its name.
    pub name: String,
}

impl Volume {
    /// Create a new volume.
    pub fn create(prefix: &str) -> Volume {
        let name = unique(prefix);
        docker_ok(&["volume", "create", &name]);
        Volume { name }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.name]);
    }
}

/// The host's PostgreSQL server directory (under /usr, so containers see it).
pub fn host_pg_bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop()
        .expect("no PostgreSQL server under /usr/lib/postgresql")
}
