//! `tb-shared`: what the tb tools must agree on.
//!
//! Each module is one concern that at least two tools share:
//!
//! - [`naming`]: backup names, formatted and parsed in one place;
//! - [`record`]: the JSON-lines records and the `--log` file;
//! - [`exit`]: exit codes; [`error`]: failure causes;
//! - [`atomic`]: publish files so nothing half-written has a final name;
//! - [`lock`]: one run at a time per backup directory;
//! - [`retention`]: what to keep (pure rules); [`catalog`]: what a backup
//!   directory holds, and the retention plan for it;
//! - [`gzip`]: parallel gzip writing and complete, checked reading;
//! - [`sqldump`]: completion trailer and row counts of pg_dump output;
//! - [`manifest`]: the JSON manifest beside each backup;
//! - [`chain`]: incremental chains (points, links, checks, applying them);
//! - [`verify`]: the checks `tb-check verify` and every publisher run;
//! - [`pg`]: running PostgreSQL clients locally or in a container;
//! - [`source`]: reading a volume (source, live PostgreSQL, `--stop`);
//! - [`progress`]: progress bars on a terminal;
//! - [`signals`]: clean interruption; [`cli`]: wiring a tool to the process.
//!
//! Rules here are pure functions where possible: clocks and listings are
//! passed in, so tests need neither.

pub mod archive;
pub mod atomic;
pub mod catalog;
pub mod chain;
pub mod cli;
pub mod docker;
pub mod error;
pub mod exit;
pub mod extract;
pub mod gzip;
pub mod index;
pub mod listing;
pub mod lock;
pub mod manifest;
pub mod naming;
pub mod pg;
pub mod progress;
pub mod record;
pub mod retention;
pub mod signals;
pub mod source;
pub mod sqldump;
pub mod verify;
pub mod walk;
