//! What the `dump` and `volume` benchmarks share: building the tools under
//! test, the scratch directory for the outputs being measured, and the
//! machine probes (free space, other work on the CPUs, tool versions).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::measure;
use crate::report::bytes;
use crate::{target_dir, workspace_root};

/// Above this share of all CPUs busy with other work, times are unreliable.
pub const BUSY_WARNING: f64 = 0.25;

/// `cargo build --release -p PKG...` in the workspace (`cargo run -p
/// tb-bench` builds only this package).
pub fn cargo_build_release(packages: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!(
            "cargo build --release -p {} failed ({status})",
            packages.join(" -p ")
        );
    }
    Ok(())
}

/// The path of a release binary that the build has just made.
pub fn release_binary(name: &str) -> Result<PathBuf> {
    let path = target_dir().join("release").join(name);
    if !path.is_file() {
        bail!(
            "'{}' is missing after the build (is CARGO_TARGET_DIR the same as cargo's?)",
            path.display()
        );
    }
    Ok(path)
}

/// A scratch directory for the outputs being measured, emptied when
/// created and deleted when dropped (on error too).
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Create `dir`, removing what a previous, killed run left there.
    pub fn create(dir: PathBuf) -> Result<Scratch> {
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot empty '{}'", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create '{}'", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "tb-bench: warning: cannot remove '{}': {e}",
                self.0.display()
            );
        }
    }
}

/// Remove a measured output directory.
pub fn remove_dir(dir: &Path) -> Result<()> {
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove '{}'", dir.display()))
}

/// Free bytes on the filesystem of `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir)
        .with_context(|| format!("cannot read the free space of '{}'", dir.display()))?;
    Ok(s.blocks_available() * s.fragment_size())
}

/// Free space on the filesystem of `dir`, for the progress line.
pub fn free_space(dir: &Path) -> String {
    match free_bytes(dir) {
        Ok(n) => bytes(n),
        Err(e) => format!("unknown: {e:#}"),
    }
}

/// Share of all CPUs' time that was busy during `window`, from
/// `/proc/stat`; sampled while the harness itself waits, so it is other
/// work (another build, a test suite) that would skew the measurements.
pub fn busy_share(window: Duration) -> Option<f64> {
    let sample = || -> Option<(u64, u64)> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((v.iter().take(8).sum(), idle))
    };
    let (total0, idle0) = sample()?;
    std::thread::sleep(window);
    let (total1, idle1) = sample()?;
    let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
    let idle = idle1.saturating_sub(idle0).min(total);
    Some((total - idle) as f64 / total as f64)
}

/// The first line of what `cmd` prints on stdout (`--version` probes).
pub fn first_line(mut cmd: Command) -> Result<String> {
    let what = measure::describe(&cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("?")
        .trim()
        .to_string())
}

/// The CPU model from `/proc/cpuinfo`, `?` when unknown.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// The number of CPUs this process may use.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
