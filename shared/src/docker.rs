//! The Docker engine, through the `docker` CLI: volumes by name, and
//! containers stopped for a consistent backup and always started again.
//!
//! A volume of the `local` driver is a directory on this host
//! (`docker volume inspect` gives its `Mountpoint`); tb reads and writes it
//! there directly, so the tools must run as root on the Docker host.
//!
//! Containers stopped by a run are written to a marker file in the backup
//! directory (`.tb-stopped-containers.json`) before they are stopped. They
//! are started again when the run ends, whatever way it ends: normally, on
//! an error, on SIGINT/SIGTERM/SIGHUP (the signal path starts them too).
//! If a start fails, or the process is killed with SIGKILL, the marker
//! stays: the next run in that directory starts those containers first and
//! says so, and `tb-check` reports them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::{Cause, Failure};

/// Name of the marker file in a backup directory.
pub const STOPPED_MARKER: &str = ".tb-stopped-containers.json";

/// The docker CLI to use.
#[derive(Debug, Clone)]
pub struct Docker {
    /// Program name or path (`docker`).
    pub cli: String,
}

#[derive(Deserialize)]
struct VolumeInfo {
    #[serde(rename = "Mountpoint")]
    mountpoint: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// A volume found through the engine.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Where its data lives on this host.
    pub mountpoint: PathBuf,
    /// Its labels (`com.docker.compose.project`, …).
    pub labels: BTreeMap<String, String>,
}

impl Volume {
    /// The label for file names: the name without its Compose project
    /// prefix (`backend_media_volume` of project `backend` ->
    /// `media_volume`), else the name.
    pub fn default_label(&self) -> String {
        if let Some(project) = self.labels.get("com.docker.compose.project")
            && let Some(rest) = self.name.strip_prefix(&format!("{project}_"))
            && !rest.is_empty()
        {
            return rest.to_string();
        }
        self.name.clone()
    }
}

impl Docker {
    /// The CLI `cli`.
    pub fn new(cli: &str) -> Docker {
        Docker {
            cli: cli.to_string(),
        }
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.cli)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    anyhow::Error::new(Failure::new(
                        Cause::NotFound,
                        format!(
                            "cannot run '{}': not found; is the Docker CLI installed?",
                            self.cli
                        ),
                    ))
                } else {
                    anyhow::Error::new(e).context(format!("cannot run '{}'", self.cli))
                }
            })?;
        if !out.status.success() {
            let err = crate::record::one_line(&String::from_utf8_lossy(&out.stderr));
            let not_found = err.contains("No such") || err.contains("no such");
            let cause = if not_found {
                Cause::NotFound
            } else {
                Cause::Docker
            };
            return Err(
                Failure::new(cause, format!("docker {} failed: {err}", args.join(" "))).into(),
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Inspect volume `name`; [`Cause::NotFound`] when there is none.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        let json = self
            .run(&["volume", "inspect", "--format", "{{json .}}", name])
            .map_err(|e| {
                if crate::error::cause_of(&e) == Cause::NotFound {
                    anyhow::Error::new(Failure::new(
                        Cause::NotFound,
                        format!("no Docker volume named '{name}' (see docker volume ls)"),
                    ))
                } else {
                    e
                }
            })?;
        let info: VolumeInfo = serde_json::from_str(&json)
            .with_context(|| format!("cannot read docker volume inspect of '{name}'"))?;
        Ok(Volume {
            name: name.to_string(),
            mountpoint: PathBuf::from(info.mountpoint),
            labels: info.labels.unwrap_or_default(),
        })
    }

    /// Create volume `name` (local driver) and inspect it.
    pub fn create_volume(&self, name: &str) -> Result<Volume> {
        self.run(&["volume", "create", name])?;
        self.volume(name)
    }

    /// Is container `name` running? [`Cause::NotFound`] when there is none.
    pub fn is_running(&self, name: &str) -> Result<bool> {
        let s = self
            .run(&["inspect", "--format", "{{.State.Running}}", name])
            .map_err(|e| {
                if crate::error::cause_of(&e) == Cause::NotFound {
                    anyhow::Error::new(Failure::new(
                        Cause::NotFound,
                        format!("no container named '{name}' (see docker ps -a)"),
                    ))
                } else {
                    e
                }
            })?;
        Ok(s == "true")
    }

    /// Running containers that mount volume `name`.
    pub fn running_users_of(&self, name: &str) -> Result<Vec<String>> {
        let filter = format!("volume={name}");
        let out = self.run(&["ps", "--filter", &filter, "--format", "{{.Names}}"])?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// `docker volume rm NAME`.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.run(&["volume", "rm", name]).map(|_| ())
    }

    /// `docker stop NAME`.
    pub fn stop(&self, name: &str) -> Result<()> {
        self.run(&["stop", name]).map(|_| ())
    }

    /// `docker start NAME`.
    pub fn start(&self, name: &str) -> Result<()> {
        self.run(&["start", name]).map(|_| ())
    }
}

/// The marker's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedMarker {
    /// Containers stopped and not yet known to be started again.
    pub containers: Vec<String>,
    /// Tool and pid that stopped them.
    pub by: String,
    /// When (RFC 3339).
    pub time: String,
}

/// Read the marker in `dir`, if any.
pub fn read_marker(dir: &Path) -> Option<StoppedMarker> {
    let p = dir.join(STOPPED_MARKER);
    let meta = std::fs::symlink_metadata(&p).ok()?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

fn write_marker(dir: &Path, m: &StoppedMarker) -> Result<()> {
    let dest = dir.join(STOPPED_MARKER);
    let tmp = crate::atomic::temp_path_for(&dest);
    let _ = std::fs::remove_file(&tmp);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write '{}'", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(m)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("cannot write '{}'", dest.display()))?;
    crate::atomic::fsync_dir(dir)
}

/// Containers this run stopped; started again on [`Stopped::restart`] or
/// when dropped.
#[derive(Debug)]
pub struct Stopped {
    docker: Docker,
    names: Vec<String>,
    dir: PathBuf,
    done: bool,
}

impl Stopped {
    /// Record `names` in the marker in `dir`, then stop them in order. If
    /// one cannot be stopped, those already stopped are started again and
    /// the error returned.
    pub fn stop(docker: &Docker, names: &[String], dir: &Path, by: &str) -> Result<Stopped> {
        let marker = StoppedMarker {
            containers: names.to_vec(),
            by: by.to_string(),
            time: crate::record::now_rfc3339(),
        };
        write_marker(dir, &marker)?;
        let mut s = Stopped {
            docker: docker.clone(),
            names: Vec::new(),
            dir: dir.to_path_buf(),
            done: false,
        };
        for n in names {
            crate::signals::track_container(&docker.cli, n);
            docker
                .stop(n)
                .with_context(|| format!("cannot stop container '{n}' for the backup"))?;
            s.names.push(n.clone());
        }
        Ok(s)
    }

    /// The stopped containers.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Start them again (last stopped first). Returns the ones that could
    /// not be started, with why; the marker is removed only when all are
    /// running.
    pub fn restart(mut self) -> Vec<(String, String)> {
        self.restart_all()
    }

    fn restart_all(&mut self) -> Vec<(String, String)> {
        self.done = true;
        let mut failed = Vec::new();
        for n in self.names.iter().rev() {
            match self.docker.start(n) {
                Ok(()) => crate::signals::untrack_container(n),
                Err(e) => failed.push((n.clone(), format!("{e:#}"))),
            }
        }
        if failed.is_empty() {
            let _ = std::fs::remove_file(self.dir.join(STOPPED_MARKER));
            let _ = crate::atomic::fsync_dir(&self.dir);
        } else {
            let marker = StoppedMarker {
                containers: failed.iter().map(|f| f.0.clone()).collect(),
                by: "restart failed".into(),
                time: crate::record::now_rfc3339(),
            };
            let _ = write_marker(&self.dir, &marker);
        }
        failed
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.restart_all();
        }
    }
}

/// Start the containers an earlier run left stopped (its marker in `dir`).
/// Returns (started, failed with why); the marker is removed when none
/// failed.
pub fn restart_leftovers(docker: &Docker, dir: &Path) -> (Vec<String>, Vec<(String, String)>) {
    let Some(m) = read_marker(dir) else {
        return (Vec::new(), Vec::new());
    };
    let mut started = Vec::new();
    let mut failed = Vec::new();
    for n in &m.containers {
        match docker.is_running(n) {
            Ok(true) => {}
            Ok(false) => match docker.start(n) {
                Ok(()) => started.push(n.clone()),
                Err(e) => failed.push((n.clone(), format!("{e:#}"))),
            },
            Err(e) => failed.push((n.clone(), format!("{e:#}"))),
        }
    }
    if failed.is_empty() {
        let _ = std::fs::remove_file(dir.join(STOPPED_MARKER));
    }
    (started, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, project: Option<&str>) -> Volume {
        let mut labels = BTreeMap::new();
        if let Some(p) = project {
            labels.insert("com.docker.compose.project".to_string(), p.to_string());
        }
        Volume {
            name: name.into(),
            mountpoint: PathBuf::from("/x"),
            labels,
        }
    }

    #[test]
    fn compose_prefix_is_dropped_from_the_label() {
        assert_eq!(
            vol("backend_media_volume", Some("backend")).default_label(),
            "media_volume"
        );
        assert_eq!(
            vol("backend_postgres_data", Some("backend")).default_label(),
            "postgres_data"
        );
        assert_eq!(vol("mydata", None).default_label(), "mydata");
        assert_eq!(vol("other_x", Some("backend")).default_label(), "other_x");
        assert_eq!(vol("backend_", Some("backend")).default_label(), "backend_");
    }

    #[test]
    fn the_marker_round_trips() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_marker(d.path()), None);
        let m = StoppedMarker {
            containers: vec!["db".into()],
            by: "tb-voltar 1".into(),
            time: "t".into(),
        };
        write_marker(d.path(), &m).unwrap();
        assert_eq!(read_marker(d.path()), Some(m));
    }
}
