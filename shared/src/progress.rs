//! Progress of long runs on a terminal: bytes, rate and ETA on stderr.
//!
//! Shown only when stderr is a terminal, the records do not go to stderr
//! (`-o -`, `--sql`), and `TB_NO_PROGRESS` is not set: never in cron,
//! pipes or the log.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn progress off for this process (records on stderr).
pub fn disable() {
    ENABLED.store(false, Ordering::SeqCst);
}

fn wanted() -> bool {
    ENABLED.load(Ordering::SeqCst)
        && std::env::var_os("TB_NO_PROGRESS").is_none()
        && std::io::stderr().is_terminal()
}

/// A progress bar, or nothing when it is not wanted. Cleared when dropped.
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// Progress of `what`, with the total bytes when known (then an ETA).
    pub fn new(what: &str, total: Option<u64>) -> Progress {
        if !wanted() {
            return Progress(None);
        }
        let (bar, template) = match total {
            Some(t) if t > 0 => (
                indicatif::ProgressBar::new(t),
                "{msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ),
            _ => (
                indicatif::ProgressBar::no_length(),
                "{msg} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
            ),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        bar.set_message(what.to_string());
        Progress(Some(bar))
    }

    /// `n` more bytes done.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// A writer that counts what goes through it into a [`Progress`].
pub struct CountingWriter<W> {
    inner: W,
    progress: Progress,
}

impl<W> CountingWriter<W> {
    /// Count `inner`'s bytes into `progress`.
    pub fn new(inner: W, progress: Progress) -> Self {
        CountingWriter { inner, progress }
    }
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
