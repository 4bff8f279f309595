//! Reading plain-SQL pg_dump output as it streams: is it complete, and how
//! many rows does each table have?
//!
//! pg_dump ends a complete plain dump with
//!
//! ```text
//! --
//! -- PostgreSQL database dump complete
//! --
//!
//! ```
//!
//! (pg_dumpall `--globals-only` says `database cluster dump complete`).
//! Minor releases from August 2025 on (17.6, 16.10, 15.14, 14.19, 13.22)
//! also open the dump with `\restrict KEY` and put `\unrestrict KEY` after
//! the trailer; when the dump opened with a key, the same key must close it.
//! A stream without the trailer was cut short, whatever exit code anyone saw.
//!
//! Row counts come from the `COPY … FROM stdin;` blocks: one line per row
//! (pg_dump escapes newlines inside values), ended by `\.`. Memory stays
//! bounded whatever the line lengths: inside COPY data only the first bytes
//! of each line are kept, elsewhere lines are cut at 64 KiB.

use std::collections::BTreeMap;

/// Which trailer to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpKind {
    /// pg_dump of one database.
    Database,
    /// pg_dumpall --globals-only (roles, tablespaces).
    Cluster,
}

impl DumpKind {
    fn header(self) -> &'static str {
        match self {
            DumpKind::Database => "-- PostgreSQL database dump",
            DumpKind::Cluster => "-- PostgreSQL database cluster dump",
        }
    }

    fn trailer(self) -> &'static str {
        match self {
            DumpKind::Database => "-- PostgreSQL database dump complete",
            DumpKind::Cluster => "-- PostgreSQL database cluster dump complete",
        }
    }
}

const MAX_LINE: usize = 64 << 10;
const TAIL: usize = 4096;

/// Streaming scanner; feed it the dump's bytes in any pieces.
#[derive(Debug)]
pub struct DumpScanner {
    kind: DumpKind,
    line: Vec<u8>,
    line_len: usize,
    copy: Option<(String, u64)>,
    tables: BTreeMap<String, u64>,
    tail: Vec<u8>,
    facts: DumpFacts,
    header_seen: bool,
    unrestricted: Option<String>,
}

/// What the scanner learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpFacts {
    /// `-- Dumped from database version X`.
    pub server_version: Option<String>,
    /// `-- Dumped by pg_dump version X` (or pg_dumpall).
    pub pg_dump_version: Option<String>,
    /// `SET client_encoding = 'X';`.
    pub encoding: Option<String>,
    /// The `\restrict` key, when the dump has one.
    pub restrict_key: Option<String>,
    /// Large objects created (`lo_create` calls).
    pub large_objects: u64,
    /// Rows per table, by the name as the dump writes it (`public.users`).
    pub tables: BTreeMap<String, u64>,
    /// Uncompressed bytes seen.
    pub raw_bytes: u64,
}

impl DumpFacts {
    /// Sum of all table rows.
    pub fn rows(&self) -> u64 {
        self.tables.values().sum()
    }
}

/// Why a dump is not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incomplete {
    /// Nothing at all.
    Empty,
    /// It does not look like pg_dump output.
    NotADump,
    /// It ends inside the data of a table.
    InsideCopy {
        /// Table whose data was cut.
        table: String,
    },
    /// The completion trailer is missing.
    NoTrailer,
    /// It opened with `\restrict KEY` and does not close with the same
    /// `\unrestrict KEY`.
    NoUnrestrict,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incomplete::Empty => write!(f, "the dump is empty"),
            Incomplete::NotADump => write!(f, "this is not pg_dump output (no pg_dump header)"),
            Incomplete::InsideCopy { table } => {
                write!(f, "the dump is cut short inside the data of table {table}")
            }
            Incomplete::NoTrailer => {
                write!(
                    f,
                    "the dump is cut short (no \"dump complete\" trailer at the end)"
                )
            }
            Incomplete::NoUnrestrict => write!(
                f,
                "the dump is cut short (it opened with \\restrict but does not end with the matching \\unrestrict)"
            ),
        }
    }
}

impl DumpScanner {
    /// A scanner expecting the trailer of `kind`.
    pub fn new(kind: DumpKind) -> DumpScanner {
        DumpScanner {
            kind,
            line: Vec::new(),
            line_len: 0,
            copy: None,
            tables: BTreeMap::new(),
            tail: Vec::with_capacity(2 * TAIL),
            facts: DumpFacts::default(),
            header_seen: false,
            unrestricted: None,
        }
    }

    /// Feed the next bytes.
    pub fn feed(&mut self, mut data: &[u8]) {
        self.facts.raw_bytes += data.len() as u64;
        self.keep_tail(data);
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.push_partial(&data[..i]);
                    self.end_line();
                    data = &data[i + 1..];
                }
                None => {
                    self.push_partial(data);
                    break;
                }
            }
        }
    }

    fn keep_tail(&mut self, data: &[u8]) {
        if data.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > 2 * TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
        }
    }

    fn push_partial(&mut self, piece: &[u8]) {
        // In COPY data only `\.` matters, so 3 bytes tell; elsewhere keep
        // enough for any statement we parse.
        let cap = if self.copy.is_some() { 3 } else { MAX_LINE };
        let room = cap.saturating_sub(self.line.len());
        self.line.extend_from_slice(&piece[..room.min(piece.len())]);
        self.line_len += piece.len();
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let len = std::mem::replace(&mut self.line_len, 0);
        if let Some((_, rows)) = &mut self.copy {
            if len == 2 && line == b"\\." {
                let (table, rows) = self.copy.take().unwrap_or_default();
                *self.tables.entry(table).or_insert(0) += rows;
            } else {
                *rows += 1;
            }
        } else {
            self.statement_line(&line);
        }
        self.line = line;
        self.line.clear();
    }

    fn statement_line(&mut self, line: &[u8]) {
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(rest) = line.strip_prefix("COPY ") {
            if line.ends_with(" FROM stdin;") {
                self.copy = Some((copy_table_name(rest), 0));
            }
        } else if let Some(v) = line.strip_prefix("-- Dumped from database version ") {
            self.facts
                .server_version
                .get_or_insert_with(|| v.trim().to_string());
        } else if let Some(v) = line
            .strip_prefix("-- Dumped by pg_dump version ")
            .or_else(|| line.strip_prefix("-- Dumped by pg_dumpall version "))
        {
            self.facts
                .pg_dump_version
                .get_or_insert_with(|| v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("SET client_encoding = '") {
            if let Some(enc) = v.strip_suffix("';") {
                self.facts.encoding.get_or_insert_with(|| enc.to_string());
            }
        } else if let Some(k) = line.strip_prefix("\\restrict ") {
            if self.facts.restrict_key.is_none() {
                self.facts.restrict_key = Some(k.trim().to_string());
            }
        } else if let Some(k) = line.strip_prefix("\\unrestrict ") {
            self.unrestricted = Some(k.trim().to_string());
        } else if line == self.kind.header() {
            self.header_seen = true;
        } else if line.starts_with("SELECT pg_catalog.lo_create(") {
            self.facts.large_objects += 1;
        }
    }

    /// What was learned so far (tables counted once their `\.` was seen).
    pub fn facts(&self) -> DumpFacts {
        let mut f = self.facts.clone();
        f.tables = self.tables.clone();
        f
    }

    /// Finish: the facts, and whether the dump is complete.
    pub fn finish(self) -> (DumpFacts, Result<(), Incomplete>) {
        let verdict = self.verdict();
        (self.facts(), verdict)
    }

    fn verdict(&self) -> Result<(), Incomplete> {
        if self.facts.raw_bytes == 0 {
            return Err(Incomplete::Empty);
        }
        if let Some((table, _)) = &self.copy {
            return Err(Incomplete::InsideCopy {
                table: table.clone(),
            });
        }
        if !self.header_seen {
            return Err(Incomplete::NotADump);
        }
        // pg_dump puts `\unrestrict KEY` after the trailer, pg_dumpall
        // --globals-only just before it; either way the trailer ends the
        // SQL and the key must match the one that opened the dump.
        let tail = String::from_utf8_lossy(&self.tail);
        let mut t = tail.trim_end();
        if let Some(i) = t.rfind('\n')
            && t[i + 1..].starts_with("\\unrestrict ")
        {
            t = t[..i].trim_end();
        }
        if !t.ends_with(&format!("\n{}\n--", self.kind.trailer())) {
            return Err(Incomplete::NoTrailer);
        }
        if let Some(open) = &self.facts.restrict_key
            && self.unrestricted.as_ref() != Some(open)
        {
            return Err(Incomplete::NoUnrestrict);
        }
        Ok(())
    }
}

/// The table name of `COPY <name> (cols) FROM stdin;` as written, quotes
/// kept (`public."Odd Name"`).
fn copy_table_name(rest: &str) -> String {
    let mut out = String::new();
    let mut in_quotes = false;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                out.push_str("\"\"");
                chars.next();
            }
            '"' => {
                in_quotes = !in_quotes;
                out.push('"');
            }
            ' ' | '(' if !in_quotes => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 12.1\n-- Dumped by pg_dump version 12.1\n\nSET client_encoding = 'UTF8';\n\nCOPY public.users (id, name) FROM stdin;\n1\tann\n2\tbob\\nline\n\\.\n\nCOPY public.\"Odd \"\"T\"\"\" (x) FROM stdin;\n\\\\.\n\\.\n\nSELECT pg_catalog.lo_create('16400');\n\n--\n-- PostgreSQL database dump complete\n--\n\n";
    const NEW: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\n-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)\n\nSET client_encoding = 'SQL_ASCII';\n\nCOPY public.t (a) FROM stdin;\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict AbC123\n\n";

    fn scan(s: &[u8], piece: usize) -> (DumpFacts, Result<(), Incomplete>) {
        let mut sc = DumpScanner::new(DumpKind::Database);
        for p in s.chunks(piece.max(1)) {
            sc.feed(p);
        }
        sc.finish()
    }

    #[test]
    fn old_style_dump_is_complete_and_counted_in_any_pieces() {
        for piece in [1, 2, 3, 7, 64, 100_000] {
            let (f, v) = scan(OLD.as_bytes(), piece);
            assert_eq!(v, Ok(()), "piece {piece}");
            assert_eq!(f.tables.get("public.users"), Some(&2));
            assert_eq!(
                f.tables.get("public.\"Odd \"\"T\"\"\""),
                Some(&1),
                "{:?}",
                f.tables
            );
            assert_eq!(f.rows(), 3);
            assert_eq!(f.large_objects, 1);
            assert_eq!(f.server_version.as_deref(), Some("12.1"));
            assert_eq!(f.encoding.as_deref(), Some("UTF8"));
            assert_eq!(f.restrict_key, None);
            assert_eq!(f.raw_bytes, OLD.len() as u64);
        }
    }

    #[test]
    fn restrict_style_dump_needs_the_matching_unrestrict() {
        let (f, v) = scan(NEW.as_bytes(), 5);
        assert_eq!(v, Ok(()));
        assert_eq!(f.restrict_key.as_deref(), Some("AbC123"));
        assert_eq!(f.tables.get("public.t"), Some(&0));
        assert_eq!(
            f.pg_dump_version.as_deref(),
            Some("15.18 (Debian 15.18-0+deb12u1)")
        );
        let cut = NEW.find("\\unrestrict").unwrap();
        assert_eq!(
            scan(&NEW.as_bytes()[..cut], 64).1,
            Err(Incomplete::NoUnrestrict)
        );
        let wrong = NEW.replace("\\unrestrict AbC123", "\\unrestrict XYZ");
        assert_eq!(scan(wrong.as_bytes(), 64).1, Err(Incomplete::NoUnrestrict));
    }

    #[test]
    fn every_cut_of_a_dump_is_incomplete() {
        for dump in [OLD, NEW] {
            let end = dump.trim_end().len();
            for cut in 0..end {
                let (_, v) = scan(&dump.as_bytes()[..cut], 13);
                assert!(v.is_err(), "cut at {cut} of {dump:?} passed");
            }
        }
    }

    #[test]
    fn a_cut_inside_copy_names_the_table() {
        let cut = OLD.find("2\tbob").unwrap();
        assert_eq!(
            scan(&OLD.as_bytes()[..cut], 64).1,
            Err(Incomplete::InsideCopy {
                table: "public.users".into()
            })
        );
    }

    #[test]
    fn plain_text_and_empty_are_not_dumps() {
        assert_eq!(scan(b"", 1).1, Err(Incomplete::Empty));
        assert_eq!(
            scan(b"hello\n-- PostgreSQL database dump complete\n--\n", 4).1,
            Err(Incomplete::NotADump)
        );
    }

    #[test]
    fn cluster_trailer_is_distinct() {
        // pg_dumpall 15.18 --globals-only: no version line, \unrestrict before the trailer.
        let globals = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict K1\n\nCREATE ROLE app;\n\n\\unrestrict K1\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";
        for cut in 0..globals.trim_end().len() {
            let mut sc = DumpScanner::new(DumpKind::Cluster);
            sc.feed(&globals.as_bytes()[..cut]);
            assert!(sc.finish().1.is_err(), "cut at {cut}");
        }
        let mut sc = DumpScanner::new(DumpKind::Cluster);
        sc.feed(globals.as_bytes());
        assert_eq!(sc.finish().1, Ok(()));
        let mut sc = DumpScanner::new(DumpKind::Database);
        sc.feed(globals.as_bytes());
        assert_eq!(
            sc.finish().1,
            Err(Incomplete::NotADump),
            "a roles file is not a database dump"
        );
    }

    #[test]
    fn huge_copy_lines_do_not_grow_memory() {
        let mut sc = DumpScanner::new(DumpKind::Database);
        sc.feed(b"-- PostgreSQL database dump\nCOPY public.blobs (b) FROM stdin;\n");
        let big = vec![b'a'; 1 << 20];
        for _ in 0..20 {
            sc.feed(&big);
            assert!(
                sc.line.capacity() < 1 << 20,
                "line buffer grew to {}",
                sc.line.capacity()
            );
        }
        sc.feed(b"\n\\.\n");
        assert_eq!(sc.facts().tables.get("public.blobs"), Some(&1));
    }
}
