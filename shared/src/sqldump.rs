//! Reading plain-SQL pg_dump output as it streams: is it complete and
//! well formed, and how many rows does each table have?
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
//! also open the dump with `\restrict KEY` and close it with
//! `\unrestrict KEY` (pg_dump after the trailer, pg_dumpall before it); when
//! the dump opened with a key, the same key must close it. A stream without
//! the trailer was cut short, whatever exit code anyone saw.
//!
//! The SQL between the data is lexed (strings, quoted identifiers,
//! dollar quotes, comments), so that a line reading `COPY x FROM stdin;`
//! inside a comment or a function body is not mistaken for table data, and
//! so that a trailer inside a string does not count. Row counts come from
//! the `COPY … FROM stdin;` blocks: one line per row (COPY escapes tabs,
//! newlines and backslashes inside values), ended by `\.`; every row must
//! have exactly one field per column, so two dumps glued together (a cut
//! one followed by a whole one) do not pass for one. A second dump header
//! is refused too.
//!
//! Memory stays bounded whatever the line lengths: only the first 64 KiB
//! and the last bytes of a statement line are kept, and of a data line only
//! its first bytes and its count of tabs.

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

/// The longest statement line [`LineKind`] classifies by its text (longer
/// ones are [`LineKind::Other`], a long `COPY` line is `CopyStart` with
/// `long`).
pub const LINE_CAP: usize = MAX_LINE;

/// What a line of the dump was, as psql will take it ([`DumpScanner::feed_lines`]).
/// The rows of a COPY block give no event of their own: the block ends
/// with [`LineKind::CopyEnd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Blank, or a `--` comment, between statements.
    Quiet,
    /// A backslash line of plain SQL (pg_dump's `\restrict`): psql does
    /// not get it, only its line end.
    Dropped,
    /// One whole statement that only sets session state, as pg_dump writes
    /// it: `SET …;` or `SELECT pg_catalog.set_config(…);`.
    Session,
    /// One whole `SELECT pg_catalog.setval(…);` (a sequence's value).
    Setval,
    /// A `COPY … FROM stdin;` that starts data; `long` when the line is
    /// longer than [`LINE_CAP`]; `alone` when no more SQL follows its `;`
    /// on the line (psql runs what does once the data is in).
    CopyStart { long: bool, alone: bool },
    /// The `\.` that ends a COPY block; `lines`: the block's lines after
    /// its COPY line (rows and the `\.`).
    CopyEnd { lines: u64 },
    /// A statement (or part of one) that changes the session or the order
    /// of things so that the data of two tables may not load side by side
    /// before it: a transaction (`BEGIN`, `COMMIT`…), `RESET`/`DISCARD`,
    /// a `SET` or `set_config` other than one [`LineKind::Session`] line,
    /// `DO`, a trigger or rule, a temporary object, a cursor, a lock.
    Barrier,
    /// Anything else.
    Other,
}
const LINE_TAIL: usize = 32;
const TAIL: usize = 4096;

/// Lexical state of the SQL between data blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Normal,
    /// After `-`: a second `-` starts a line comment.
    Dash,
    /// After `/`: a `*` starts a block comment.
    Slash,
    LineComment,
    /// Block comment at this nesting depth; `star`/`slash` remember a
    /// pending `*` or `/`.
    Block {
        depth: u32,
        star: bool,
        slash: bool,
    },
    /// Inside '…'; `escapes` for E'…' strings; `quote` after a `'` that
    /// may be doubled; `backslash` after `\` in an E-string.
    Single {
        escapes: bool,
        quote: bool,
        backslash: bool,
    },
    /// Inside "…"; `quote` after a `"` that may be doubled.
    Double {
        quote: bool,
    },
    /// After `$`, reading a possible dollar-quote tag.
    DollarOpen(Vec<u8>),
    /// Inside $tag$…$tag$; `matched` is how much of the closing `$tag$`
    /// has been seen (0 = none).
    Dollar {
        tag: Vec<u8>,
        matched: usize,
    },
}

/// A COPY data block being read.
#[derive(Debug, Clone)]
struct Copy {
    table: String,
    rows: u64,
    /// Tabs every row must have (columns - 1).
    tabs: u64,
}

/// Where psql's lexer is in a statement: whether its query buffer holds
/// anything, and what decides whether a `;` ends the statement (psql
/// ends one only outside parentheses and outside the `BEGIN … END` of a
/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, by its own heuristic,
/// followed here). A `COPY … FROM stdin;` line starts COPY data only when
/// it begins a statement: on the line after `SELECT` it is plain SQL to
/// psql, and reading what follows as data would miss a `\!` in it. Where
/// this guess is unsure it says a statement is open: the COPY is then not
/// taken as one, its data is read as SQL and its `\.` refused (safe).
#[derive(Debug, Clone, Copy, Default)]
struct Stmt {
    open: bool,
    parens: u32,
    begin_depth: u32,
    /// Identifiers seen in the statement, and the first letters of the
    /// first four when they are create/or/replace/function/procedure.
    idents: u32,
    first: [u8; 4],
    /// The identifier being read (its first bytes; longer ones are no
    /// keyword anyway).
    word: [u8; WORD],
    word_len: u8,
    /// The statement's first four words and its last three (lowercase,
    /// their first bytes; a longer word is empty).
    words: [[u8; WORD]; 4],
    last: [[u8; WORD]; 3],
    /// How many of its words are `create` (a `CREATE SCHEMA` with elements
    /// has more than one); whether an `AS` is outside parentheses (a
    /// `CREATE TABLE … AS` runs a query); whether a word is `rename`;
    /// whether the scanner found it risky by what it names (a temporary
    /// schema).
    creates: u8,
    top_as: bool,
    renames: bool,
    named_risky: bool,
    /// Statements ended so far (kept across statements), and of them: ones
    /// that may change the session or what another table's load sees
    /// (`risky`, see [`Stmt::judge`]); `SET`/`SELECT`/`COPY` ones, harmless
    /// only in the exact shapes pg_dump writes them (`shaped`).
    ended: u32,
    risky: u32,
    shaped: u32,
}

/// The bytes of a word [`Stmt`] keeps.
const WORD: usize = 16;

/// What a statement defines that matters to loads side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `CREATE [OR REPLACE] FUNCTION|AGGREGATE`: its name may be called.
    Routine,
    /// `CREATE|ALTER TABLE|FOREIGN TABLE|DOMAIN`: may hold expressions
    /// evaluated as rows load (CHECK, generated, DEFAULT, partition key,
    /// foreign key, constraint index).
    Table,
    /// `CREATE TYPE`: a base or range type's functions run on input.
    Type,
    /// `CREATE OPERATOR|CAST|TEXT SEARCH|TRANSFORM`: functions called
    /// without their names. (A table access method's handler and a
    /// conversion's function take `internal`, so they can only be C code
    /// of the server's own libraries: trusted as the built-ins are.)
    Opaque,
    /// `CREATE EXTENSION`: functions the dump does not show.
    Extension,
    Other,
}

impl Stmt {
    fn word_byte(&mut self, b: u8) {
        if (self.word_len as usize) < self.word.len() {
            self.word[self.word_len as usize] = b.to_ascii_lowercase();
        }
        self.word_len = self.word_len.saturating_add(1);
    }

    fn end_word(&mut self) {
        if self.word_len == 0 {
            return;
        }
        let n = self.word_len as usize;
        self.word_len = 0;
        let w: &[u8] = if n <= self.word.len() {
            &self.word[..n]
        } else {
            b""
        };
        if self.idents == 0 {
            self.first = [0; 4];
        }
        let mut kept = [0; WORD];
        kept[..w.len()].copy_from_slice(w);
        if let Some(slot) = self.words.get_mut(self.idents as usize) {
            *slot = kept;
        }
        self.last = [self.last[1], self.last[2], kept];
        if w == b"create" {
            self.creates = self.creates.saturating_add(1);
        }
        if w == b"as" && self.parens == 0 {
            self.top_as = true;
        }
        if w == b"rename" {
            self.renames = true;
        }
        if matches!(
            w,
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) && (self.idents as usize) < self.first.len()
        {
            self.first[self.idents as usize] = w[0];
        }
        self.idents = self.idents.saturating_add(1);
        let f = self.first;
        let routine = f[0] == b'c'
            && (f[1] == b'f'
                || f[1] == b'p'
                || (f[1] == b'o' && f[2] == b'r' && (f[3] == b'f' || f[3] == b'p')));
        if routine && self.parens == 0 {
            match w {
                b"begin" => self.begin_depth += 1,
                b"case" if self.begin_depth >= 1 => self.begin_depth += 1,
                b"end" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
    }

    /// The `i`th word of the statement (empty if none).
    fn word_at(&self, i: usize) -> &[u8] {
        if (self.idents as usize) <= i {
            return b"";
        }
        let w = &self.words[i];
        &w[..w.iter().position(|&b| b == 0).unwrap_or(w.len())]
    }

    /// The word that says what a `CREATE` makes (`table`, `function`…):
    /// its index among the first words.
    fn create_kind(&self) -> usize {
        let w = |i| self.word_at(i);
        let mut k = 1;
        if w(1) == b"or" && w(2) == b"replace" {
            k = 3;
        }
        if matches!(
            w(k),
            b"unlogged" | b"materialized" | b"trusted" | b"procedural"
        ) {
            k += 1;
        }
        k
    }

    /// What the statement defines (see [`Scope`]), by its first words.
    fn scope(&self) -> Scope {
        let w = |i| self.word_at(i);
        match w(0) {
            b"create" => match w(self.create_kind()) {
                b"function" | b"aggregate" => Scope::Routine,
                b"table" | b"foreign" | b"domain" => Scope::Table,
                b"type" => Scope::Type,
                b"operator" | b"cast" | b"text" | b"transform" => Scope::Opaque,
                b"extension" => Scope::Extension,
                _ => Scope::Other,
            },
            b"alter" if matches!(w(1), b"table" | b"foreign" | b"domain") => Scope::Table,
            _ => Scope::Other,
        }
    }

    /// What a statement is, by its words: `(risky, shaped)`. Harmless:
    /// what pg_dump writes before and among the data (`CREATE` of tables,
    /// types, functions, sequences, views…, `ALTER … OWNER`/columns,
    /// `COMMENT`, `GRANT`, `REVOKE`, `SECURITY LABEL`, `DROP`). Risky:
    /// everything else (a transaction, `LOCK`, `DO`, DML, a trigger, rule,
    /// index, temporary object, role or database setting, a table made `AS`
    /// a query, a materialized view made with its data, a `CREATE SCHEMA`
    /// with elements, anything naming `pg_temp`…). `SET`, `SELECT` and
    /// `COPY` are judged by their line's exact shape.
    fn judge(&self) -> (bool, bool) {
        let w = |i| self.word_at(i);
        if self.named_risky || self.creates > 1 {
            return (true, false);
        }
        match w(0) {
            b"" => (false, false),
            b"create" => {
                let k = self.create_kind();
                let kind = w(k);
                let last = |i: usize| {
                    let l = &self.last[i];
                    &l[..l.iter().position(|&b| b == 0).unwrap_or(l.len())]
                };
                let no_data = (last(0), last(1), last(2)) == (b"with", b"no", b"data");
                // An index before the data (pg_dump writes them after) may
                // call a function as rows load, like a CHECK; a table made
                // `AS` a query, or a materialized view made with its data
                // (pg_dump writes `WITH NO DATA`), runs the query.
                let risky = (kind == b"table" && self.top_as)
                    || (kind == b"view" && w(k - 1) == b"materialized" && !no_data)
                    || matches!(
                        kind,
                        b"temp"
                            | b"temporary"
                            | b"global"
                            | b"local"
                            | b"trigger"
                            | b"constraint"
                            | b"rule"
                            | b"event"
                            | b"index"
                            | b"unique"
                    );
                (risky, false)
            }
            // A renamed function is called by a name the scanner did not
            // see defined (pg_dump renames nothing).
            b"alter" => (
                matches!(w(1), b"role" | b"user" | b"group" | b"database" | b"system")
                    || self.renames,
                false,
            ),
            b"comment" | b"grant" | b"revoke" | b"security" | b"drop" => (false, false),
            b"set" | b"select" | b"copy" => (false, true),
            _ => (true, false),
        }
    }

    /// The statement ended: what it was is counted; the statement as it
    /// was is returned.
    fn end_statement(&mut self) -> Stmt {
        let (risky, shaped) = self.judge();
        let old = *self;
        *self = Stmt {
            ended: self.ended + u32::from(self.idents > 0),
            risky: self.risky + u32::from(risky),
            shaped: self.shaped + u32::from(shaped),
            ..Stmt::default()
        };
        old
    }

    /// A byte of SQL outside strings and comments.
    /// The statement that ends with it, if `b` ends one.
    fn code_byte(&mut self, b: u8) -> Option<Stmt> {
        if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 || (b == b'$' && self.word_len > 0) {
            if self.word_len > 0 || !b.is_ascii_digit() {
                self.word_byte(b);
            }
            self.open = true;
            return None;
        }
        self.end_word();
        match b {
            b';' if self.parens == 0 && self.begin_depth == 0 => return Some(self.end_statement()),
            b'(' => {
                self.parens += 1;
                self.open = true;
            }
            b')' => {
                self.parens = self.parens.saturating_sub(1);
                self.open = true;
            }
            b if b.is_ascii_whitespace() => {}
            // `-` and `/` may begin a comment: decided by the next byte.
            b'-' | b'/' => {}
            _ => self.open = true,
        }
        None
    }
}

/// Streaming scanner; feed it the dump's bytes in any pieces.
#[derive(Debug)]
pub struct DumpScanner {
    kind: DumpKind,
    lex: Lex,
    prev: u8,
    /// The byte before `prev`; whether `prev` is an `E` that starts an
    /// escape string (`E'…'`, not the end of a name: `name'\'` is a
    /// standard string).
    prev2: u8,
    e_string: bool,
    /// The current line: its first bytes, its last bytes, its length.
    line: Vec<u8>,
    line_tail: Vec<u8>,
    line_len: usize,
    /// Whether the current line started outside strings and comments.
    line_normal: bool,
    /// Top-level commas and parenthesis depth on the current line.
    commas: u64,
    parens: i64,
    saw_paren: bool,
    /// Tabs on the current data line.
    line_tabs: u64,
    /// Something other than blanks was seen on the current line.
    line_seen: bool,
    /// The current line starts with a backslash in plain SQL: a psql
    /// meta-command (allowed only if it is `\restrict`/`\unrestrict`).
    line_meta: bool,
    /// The current line's bytes are not passed on ([`Self::feed_kept`]).
    line_dropped: bool,
    /// `SET standard_conforming_strings = off` is in force: backslashes
    /// escape in every string, as psql then reads them.
    scs_off: bool,
    copy: Option<Copy>,
    /// psql's statement state, as its lexer keeps it (see [`Stmt`]); and
    /// as it was when the current line began.
    stmt: Stmt,
    line_start_stmt: Stmt,
    tables: BTreeMap<String, u64>,
    tail: Vec<u8>,
    facts: DumpFacts,
    headers: u32,
    unrestricted: Option<String>,
    garbled: Option<String>,
    /// The kind of the statement line that just ended.
    last_kind: LineKind,
    /// What the code of the statement being read names (see [`Calls`]).
    calls: Calls,
    /// From the statements so far: an expression evaluated as rows load
    /// was seen (a CHECK, generated column, DEFAULT, partition key,
    /// constraint index or foreign key; a base type's input function); one
    /// that reads another table for sure (a foreign key, a built-in that
    /// runs a query: `query_to_xml`…, `dblink`, `ts_stat`); functions the
    /// dump defines and names such expressions call (lowercase, see
    /// [`NAME`]), and whether one is both; functions that may run unnamed
    /// (an operator, cast, extension, or a name not read); more names than
    /// kept.
    expressions: bool,
    query_functions: bool,
    defined: std::collections::BTreeSet<Vec<u8>>,
    called: std::collections::BTreeSet<Vec<u8>>,
    calls_defined: bool,
    opaque: bool,
    capped: bool,
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
    /// `INSERT INTO` statements (a `pg_dump --inserts` dump has its rows
    /// so, and no COPY: nothing to count rows by).
    pub inserts: u64,
    /// Rows per table, by the name as the dump writes it (`public.users`).
    pub tables: BTreeMap<String, u64>,
    /// Uncompressed bytes seen.
    pub raw_bytes: u64,
    /// Roles the dump's statements name (`OWNER TO`, `GRANT … TO`,
    /// `REVOKE … FROM`, `FOR ROLE`): a restore needs them to exist.
    pub roles: std::collections::BTreeSet<String>,
    /// Extensions it creates (`CREATE EXTENSION`): the target server must
    /// have them available.
    pub extensions: std::collections::BTreeSet<String>,
    /// psql meta-commands other than `\restrict`/`\unrestrict` (the first
    /// few): pg_dump never writes them, and psql would run them (`\!` runs
    /// a shell command), so a restore refuses such a dump.
    pub meta_commands: Vec<String>,
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
    /// It ends inside a string, a quoted name or a comment.
    InsideQuote,
    /// The completion trailer is missing.
    NoTrailer,
    /// It opened with `\restrict KEY` and does not close with the same
    /// `\unrestrict KEY`.
    NoUnrestrict,
    /// The stream is not one well-formed dump (a data row with the wrong
    /// number of fields, two dump headers).
    Garbled(String),
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incomplete::Empty => write!(f, "the dump is empty"),
            Incomplete::NotADump => write!(f, "this is not pg_dump output (no pg_dump header)"),
            Incomplete::InsideCopy { table } => {
                write!(f, "the dump is cut short inside the data of table {table}")
            }
            Incomplete::InsideQuote => {
                write!(
                    f,
                    "the dump is cut short inside a string, quoted name or comment"
                )
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
            Incomplete::Garbled(why) => write!(f, "the stream is not one well-formed dump: {why}"),
        }
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

impl DumpScanner {
    /// A scanner expecting the trailer of `kind`.
    pub fn new(kind: DumpKind) -> DumpScanner {
        DumpScanner {
            kind,
            lex: Lex::Normal,
            prev: b'\n',
            prev2: b'\n',
            e_string: false,
            line: Vec::new(),
            line_tail: Vec::new(),
            line_len: 0,
            line_normal: true,
            commas: 0,
            parens: 0,
            saw_paren: false,
            line_tabs: 0,
            line_seen: false,
            line_meta: false,
            line_dropped: false,
            scs_off: false,
            copy: None,
            stmt: Stmt::default(),
            line_start_stmt: Stmt::default(),
            tables: BTreeMap::new(),
            tail: Vec::with_capacity(2 * TAIL),
            facts: DumpFacts::default(),
            headers: 0,
            unrestricted: None,
            garbled: None,
            last_kind: LineKind::Quiet,
            calls: Calls::default(),
            expressions: false,
            query_functions: false,
            defined: std::collections::BTreeSet::new(),
            called: std::collections::BTreeSet::new(),
            calls_defined: false,
            opaque: false,
            capped: false,
        }
    }

    /// Feed the next bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.feed_inner(data, None, None);
    }

    /// [`feed`](Self::feed), and say what each line that ended in `data`
    /// was: `(end, kind)`, `end` just after its `\n`, for every line of
    /// plain SQL and for the `\.` that ends a COPY block (its rows give no
    /// event). A line whose end is in a later piece is told there.
    pub fn feed_lines(&mut self, data: &[u8], events: &mut Vec<(usize, LineKind)>) {
        events.clear();
        self.feed_inner(data, None, Some(events));
    }

    /// [`feed`](Self::feed), and say which bytes of `data` to pass on to
    /// psql (`keep`: ranges, in order): all but the lines of plain SQL that
    /// begin with a backslash, whose bytes are left out (their line end
    /// kept, so psql's line numbers stay the dump's). Such a line is
    /// pg_dump's `\restrict`/`\unrestrict`, or a meta-command the scanner
    /// refuses anyway.
    pub fn feed_kept(&mut self, data: &[u8], keep: &mut Vec<(usize, usize)>) {
        keep.clear();
        self.feed_inner(data, Some(keep), None);
    }

    fn feed_inner(
        &mut self,
        mut data: &[u8],
        mut keep: Option<&mut Vec<(usize, usize)>>,
        mut events: Option<&mut Vec<(usize, LineKind)>>,
    ) {
        // `at`: where `data` now starts in what was fed; `from`: where the
        // bytes kept since the last left-out line start.
        let (total, mut at, mut from) = (data.len(), 0usize, 0usize);
        self.facts.raw_bytes += data.len() as u64;
        self.keep_tail(data);
        while !data.is_empty() {
            if self.copy.is_some() {
                // Data rows: find line ends fast, count tabs, keep 3 bytes.
                let end = memchr::memchr(b'\n', data);
                let piece = &data[..end.unwrap_or(data.len())];
                // Tabs counted and NUL bytes found in one pass.
                for i in memchr::memchr2_iter(b'\t', 0, piece) {
                    if piece[i] == b'\t' {
                        self.line_tabs += 1;
                    } else {
                        self.nul_check(&piece[i..=i]);
                    }
                }
                let room = 3usize.saturating_sub(self.line.len());
                self.line.extend_from_slice(&piece[..room.min(piece.len())]);
                self.line_len += piece.len();
                match end {
                    Some(i) => {
                        if let Some(lines) = self.end_data_line()
                            && let Some(ev) = events.as_deref_mut()
                        {
                            ev.push((at + i + 1, LineKind::CopyEnd { lines }));
                        }
                        data = &data[i + 1..];
                        at += i + 1;
                    }
                    None => break,
                }
            } else {
                let end = memchr::memchr(b'\n', data);
                let piece = &data[..end.unwrap_or(data.len())];
                if self.line_len == 0 && matches!(self.lex, Lex::Normal) {
                    self.line_dropped = piece.first() == Some(&b'\\');
                    self.line_meta |= self.line_dropped;
                }
                // A left-out line is not lexed: psql never gets it.
                if !self.line_dropped {
                    for &b in piece {
                        self.lex_byte(b);
                    }
                }
                self.nul_check(piece);
                self.keep_line(piece);
                if self.line_dropped {
                    if let Some(k) = keep.as_deref_mut()
                        && from < at
                    {
                        k.push((from, at));
                    }
                    from = at + piece.len();
                }
                match end {
                    Some(i) => {
                        if !self.line_dropped {
                            self.lex_byte(b'\n');
                        }
                        if self.line_meta {
                            self.line_meta_end();
                        }
                        self.end_statement_line();
                        if let Some(ev) = events.as_deref_mut() {
                            ev.push((at + i + 1, self.last_kind));
                        }
                        self.line_dropped = false;
                        data = &data[i + 1..];
                        at += i + 1;
                    }
                    None => break,
                }
            }
        }
        if let Some(k) = keep
            && from < total
        {
            k.push((from, total));
        }
    }

    /// psql reads a line only up to a NUL byte (and pg_dump writes none):
    /// a dump with one is refused.
    fn nul_check(&mut self, piece: &[u8]) {
        if self.garbled.is_none() && memchr::memchr(0, piece).is_some() {
            self.garbled =
                Some("a NUL byte (pg_dump writes none; psql drops the rest of its line)".into());
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

    fn keep_line(&mut self, piece: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        self.line.extend_from_slice(&piece[..room.min(piece.len())]);
        self.line_tail
            .extend_from_slice(&piece[piece.len().saturating_sub(LINE_TAIL)..]);
        if self.line_tail.len() > LINE_TAIL {
            self.line_tail.drain(..self.line_tail.len() - LINE_TAIL);
        }
        self.line_len += piece.len();
    }

    /// One byte of SQL outside data blocks.
    fn lex_byte(&mut self, b: u8) {
        let prev = self.prev;
        let prev2 = std::mem::replace(&mut self.prev2, prev);
        self.prev = b;
        self.e_string = matches!(prev, b'E' | b'e') && !is_ident(prev2) && prev2 != b'$';
        if b == b'\\' && matches!(self.lex, Lex::Normal | Lex::Dash | Lex::Slash) {
            // psql runs a backslash command wherever it finds one outside
            // quotes, also after SQL on the same line.
            if self.line_seen {
                self.meta_command(b"a backslash command after SQL on the same line");
            } else {
                self.line_meta = true;
            }
        }
        if !b.is_ascii_whitespace() {
            self.line_seen = true;
        }
        let lex = std::mem::replace(&mut self.lex, Lex::Normal);
        self.lex = match lex {
            Lex::Normal | Lex::Dash | Lex::Slash => {
                match lex {
                    Lex::Dash if b == b'-' => return self.set(Lex::LineComment),
                    Lex::Slash if b == b'*' => {
                        // psql keeps block comments in the query buffer.
                        self.stmt.open = true;
                        return self.set(Lex::Block {
                            depth: 1,
                            star: false,
                            slash: false,
                        });
                    }
                    // The `-` or `/` before was SQL.
                    Lex::Dash | Lex::Slash => self.stmt.open = true,
                    _ => {}
                }
                self.normal_byte(b, prev)
            }
            // psql ends a `--` comment at a carriage return too.
            Lex::LineComment => {
                if b == b'\n' || b == b'\r' {
                    Lex::Normal
                } else {
                    Lex::LineComment
                }
            }
            Lex::Block { depth, star, slash } => {
                if star && b == b'/' {
                    if depth == 1 {
                        Lex::Normal
                    } else {
                        Lex::Block {
                            depth: depth - 1,
                            star: false,
                            slash: false,
                        }
                    }
                } else if slash && b == b'*' {
                    Lex::Block {
                        depth: depth + 1,
                        star: false,
                        slash: false,
                    }
                } else {
                    Lex::Block {
                        depth,
                        star: b == b'*',
                        slash: b == b'/',
                    }
                }
            }
            Lex::Single {
                escapes,
                quote,
                backslash,
            } => {
                if quote {
                    if b == b'\'' {
                        Lex::Single {
                            escapes,
                            quote: false,
                            backslash: false,
                        }
                    } else {
                        // The string ended at the previous quote.
                        self.normal_byte(b, prev)
                    }
                } else if backslash {
                    Lex::Single {
                        escapes,
                        quote: false,
                        backslash: false,
                    }
                } else if b == b'\'' {
                    Lex::Single {
                        escapes,
                        quote: true,
                        backslash: false,
                    }
                } else {
                    Lex::Single {
                        escapes,
                        quote: false,
                        backslash: escapes && b == b'\\',
                    }
                }
            }
            Lex::Double { quote } => {
                if quote {
                    if b == b'"' {
                        self.calls.quoted_byte(b);
                        Lex::Double { quote: false }
                    } else {
                        self.quoted_end();
                        self.normal_byte(b, prev)
                    }
                } else if b == b'"' {
                    Lex::Double { quote: true }
                } else {
                    self.calls.quoted_byte(b);
                    Lex::Double { quote: false }
                }
            }
            Lex::DollarOpen(mut tag) => {
                if b == b'$' {
                    Lex::Dollar { tag, matched: 0 }
                } else if (tag.is_empty() && (b.is_ascii_alphabetic() || b == b'_' || b >= 0x80))
                    || (!tag.is_empty() && is_ident(b))
                {
                    tag.push(b);
                    Lex::DollarOpen(tag)
                } else {
                    // Not a dollar quote (`$1`, `a$b`): plain SQL.
                    self.normal_byte(b, prev)
                }
            }
            Lex::Dollar { tag, matched } => {
                // Closing delimiter is `$tag$`: position 0 and len+1 are `$`.
                let want = |i: usize| {
                    if i == 0 || i == tag.len() + 1 {
                        b'$'
                    } else {
                        tag[i - 1]
                    }
                };
                if b == want(matched) {
                    if matched == tag.len() + 1 {
                        Lex::Normal
                    } else {
                        Lex::Dollar {
                            tag,
                            matched: matched + 1,
                        }
                    }
                } else if b == b'$' {
                    Lex::Dollar { tag, matched: 1 }
                } else {
                    Lex::Dollar { tag, matched: 0 }
                }
            }
        };
    }

    fn set(&mut self, lex: Lex) {
        self.lex = lex;
    }

    /// A byte in plain SQL: may open a string, comment or dollar quote, and
    /// counts top-level commas (for COPY column lists).
    fn normal_byte(&mut self, b: u8, prev: u8) -> Lex {
        self.calls_code(b);
        if let Some(old) = self.stmt.code_byte(b) {
            self.calls_end(&old);
        }
        match b {
            b'-' => Lex::Dash,
            b'/' => Lex::Slash,
            b'\'' => Lex::Single {
                escapes: self.e_string || self.scs_off,
                quote: false,
                backslash: false,
            },
            b'"' => Lex::Double { quote: false },
            b'$' if !is_ident(prev) && prev != b'$' => Lex::DollarOpen(Vec::new()),
            b'(' => {
                self.parens += 1;
                self.saw_paren = true;
                Lex::Normal
            }
            b')' => {
                self.parens -= 1;
                Lex::Normal
            }
            b',' if self.parens == 1 => {
                self.commas += 1;
                Lex::Normal
            }
            _ => Lex::Normal,
        }
    }

    fn reset_line(&mut self) {
        self.line.clear();
        self.line_tail.clear();
        self.line_len = 0;
        self.commas = 0;
        self.parens = 0;
        self.saw_paren = false;
        self.line_tabs = 0;
        self.line_seen = false;
        self.line_meta = false;
        self.line_normal = matches!(self.lex, Lex::Normal);
        self.line_start_stmt = self.stmt;
    }

    /// Note a psql meta-command (the first few).
    fn meta_command(&mut self, what: &[u8]) {
        if self.facts.meta_commands.len() < 5 {
            self.facts
                .meta_commands
                .push(String::from_utf8_lossy(&what[..what.len().min(80)]).into_owned());
        }
    }

    /// A data line ended; `Some(lines)` when it was the `\.` that ends the
    /// block (`lines`: its rows and the `\.`).
    fn end_data_line(&mut self) -> Option<u64> {
        // `\.` ends the data, also with a CRLF line end (psql takes it so).
        let done = (self.line_len == 2 && self.line == b"\\.")
            || (self.line_len == 3 && self.line == b"\\.\r");
        let tabs = self.line_tabs;
        let mut ended = None;
        if let Some(copy) = &mut self.copy {
            if done {
                let copy = self.copy.take().unwrap_or_else(|| unreachable!());
                ended = Some(copy.rows + 1);
                *self.tables.entry(copy.table).or_insert(0) += copy.rows;
            } else {
                copy.rows += 1;
                if tabs != copy.tabs && self.garbled.is_none() {
                    self.garbled = Some(format!(
                        "row {} of table {} has {} fields, the table has {}",
                        copy.rows,
                        copy.table,
                        tabs + 1,
                        copy.tabs + 1
                    ));
                }
            }
        }
        self.reset_line();
        ended
    }

    fn end_statement_line(&mut self) {
        let copy_before = self.copy.is_some();
        if self.line_normal && matches!(self.lex, Lex::Normal) {
            self.statement_line();
        } else if self.line_normal {
            // A line that starts in plain SQL but opens a string may still
            // be a psql meta-command or a header comment: not our concern.
        }
        self.last_kind = self.line_kind(copy_before);
        self.reset_line();
    }

    /// What the statement line that just ended is (see [`LineKind`]).
    fn line_kind(&mut self, copy_before: bool) -> LineKind {
        if self.line_dropped {
            return LineKind::Dropped;
        }
        if !copy_before && self.copy.is_some() {
            // psql runs what follows the COPY's `;` on its line once the
            // data is in: pg_dump writes nothing there.
            let (now, before) = (self.stmt, self.line_start_stmt);
            return LineKind::CopyStart {
                long: self.line_len > MAX_LINE,
                alone: now.ended - before.ended == 1 && !now.open,
            };
        }
        let text = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        let text = text.trim_ascii();
        let whole = self.line_len <= MAX_LINE;
        let (now, before) = (self.stmt, self.line_start_stmt);
        let ended = now.ended - before.ended;
        let risky = now.risky > before.risky;
        let shaped = now.shaped > before.shaped;
        // An expression evaluated as rows load (a CHECK, a generated
        // column, a domain's CHECK…) can read other tables only through a
        // function of the dump's own (or a built-in that runs a query, or
        // a foreign key): with both, the tables' loads may not overlap.
        let reads_tables = self.expressions
            && (self.query_functions || self.opaque || self.capped || self.calls_defined);
        // A setting that makes the temporary schema the place new objects
        // go; standard_conforming_strings set otherwise than in the two
        // lines the lexer follows (it decides what a backslash in a
        // string does: the scanner would read the rest otherwise than psql).
        let lower = text.to_ascii_lowercase();
        let temp = shaped && memchr::memmem::find(&lower, b"pg_temp").is_some();
        let scs = memchr::memmem::find(&lower, b"standard_conforming_strings").is_some()
            && !(self.line_normal
                && (lower == b"set standard_conforming_strings = on;"
                    || lower == b"set standard_conforming_strings = off;"));
        // An encoding whose characters may hold the bytes of `\` or `'`
        // (psql reads them as characters, the scanner as bytes).
        let encoding = memchr::memmem::find(&lower, b"client_encoding").is_some()
            && CLIENT_ONLY_ENCODINGS
                .iter()
                .any(|e| memchr::memmem::find(&lower, e.as_bytes()).is_some());
        if risky || reads_tables || temp || scs || encoding {
            return LineKind::Barrier;
        }
        let alone = ended == 1
            && self.line_normal
            && matches!(self.lex, Lex::Normal)
            && !before.open
            && !now.open
            && whole;
        if shaped {
            // SET, SELECT or COPY: harmless only as pg_dump writes them.
            return if alone && session_shape(text) {
                LineKind::Session
            } else if alone && setval_shape(text) {
                LineKind::Setval
            } else if alone && lo_create_shape(text) {
                LineKind::Other
            } else {
                LineKind::Barrier
            };
        }
        if !self.line_normal || !matches!(self.lex, Lex::Normal) || before.open || now.open {
            // Part of a statement of several lines, or one that goes on.
            return LineKind::Other;
        }
        if text.is_empty() || text.starts_with(b"--") {
            return LineKind::Quiet;
        }
        LineKind::Other
    }

    fn statement_line(&mut self) {
        let Ok(line) = std::str::from_utf8(&self.line) else {
            if let Ok(start) = std::str::from_utf8(&self.line[..self.line.len().min(5)])
                && start == "COPY "
            {
                self.start_copy();
            }
            return;
        };
        let line = line.strip_suffix('\r').unwrap_or(line).to_string();
        if line.starts_with("COPY ") {
            self.start_copy();
        } else if line == self.kind.header() {
            self.headers += 1;
            if self.headers > 1 && self.garbled.is_none() {
                self.garbled = Some(
                    "a second dump header inside the stream (two dumps glued together?)".into(),
                );
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
            } else if self.garbled.is_none() {
                self.garbled = Some("a second \\restrict line (two dumps glued together?)".into());
            }
        } else if let Some(k) = line.strip_prefix("\\unrestrict ") {
            self.unrestricted = Some(k.trim().to_string());
        } else if line.starts_with("SELECT pg_catalog.lo_create(") {
            self.facts.large_objects += 1;
        } else if line.starts_with("INSERT INTO ") {
            self.facts.inserts += 1;
        } else if line.starts_with('\\') {
            // A meta-command: noted when its line ended.
        } else if line.eq_ignore_ascii_case("SET standard_conforming_strings = off;") {
            self.scs_off = true;
        } else if line.eq_ignore_ascii_case("SET standard_conforming_strings = on;") {
            self.scs_off = false;
        } else {
            requirements(&line, &mut self.facts);
        }
    }

    /// A line that began with a backslash ended: a meta-command unless it
    /// is pg_dump's `\restrict KEY` or `\unrestrict KEY`.
    fn line_meta_end(&mut self) {
        // A backslash command is not part of psql's query buffer.
        if !self.line_dropped {
            self.stmt = self.line_start_stmt;
            self.calls = Calls::default();
        }
        let line = self.line.clone();
        let text = line.trim_ascii();
        let allowed = [&b"\\restrict "[..], b"\\unrestrict "]
            .iter()
            .any(|p| text.starts_with(p) && !text[p.len()..].contains(&b'\\'));
        if !allowed {
            self.meta_command(text);
        }
    }

    fn start_copy(&mut self) {
        if self.line_start_stmt.open {
            // Not the start of a statement: psql sends this line as part
            // of the one before, and reads what follows as SQL.
            return;
        }
        let tail = String::from_utf8_lossy(&self.line_tail);
        let tail = tail.strip_suffix('\r').unwrap_or(&tail);
        if !tail.ends_with(" FROM stdin;") {
            return;
        }
        let head = String::from_utf8_lossy(&self.line[5..]);
        let columns = if self.saw_paren { self.commas + 1 } else { 0 };
        self.copy = Some(Copy {
            table: copy_table_name(&head),
            rows: 0,
            tabs: columns.saturating_sub(1),
        });
    }

    /// Whether what comes next starts a line of plain SQL: not inside a
    /// string, identifier, comment, dollar quote (a function body) or the
    /// data of a COPY.
    pub fn at_plain_line_start(&self) -> bool {
        self.copy.is_none() && self.line_len == 0 && matches!(self.lex, Lex::Normal)
    }

    /// Whether the line being read is a backslash line of plain SQL, whose
    /// bytes are not passed on ([`Self::feed_kept`]).
    pub fn in_dropped_line(&self) -> bool {
        self.line_dropped
    }

    /// Whether the scanner is inside the data of a `COPY … FROM stdin`.
    pub fn in_copy_data(&self) -> bool {
        self.copy.is_some()
    }

    /// Whether a psql meta-command other than `\restrict`/`\unrestrict`
    /// has been seen (cheap; see [`DumpFacts::meta_commands`]).
    pub fn has_meta_commands(&self) -> bool {
        !self.facts.meta_commands.is_empty()
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
        if let Some(copy) = &self.copy {
            return Err(Incomplete::InsideCopy {
                table: copy.table.clone(),
            });
        }
        if self.headers == 0 {
            return Err(Incomplete::NotADump);
        }
        if let Some(why) = &self.garbled {
            return Err(Incomplete::Garbled(why.clone()));
        }
        if !matches!(
            self.lex,
            Lex::Normal | Lex::LineComment | Lex::Dash | Lex::Slash
        ) {
            return Err(Incomplete::InsideQuote);
        }
        // pg_dump puts `\unrestrict KEY` after the trailer, pg_dumpall
        // --globals-only just before it; either way the trailer ends the
        // SQL and the key must match the one that opened the dump.
        // CRLF line ends read as LF (psql takes them so).
        let tail = String::from_utf8_lossy(&self.tail).replace("\r\n", "\n");
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

/// The most function names kept (defined, called); past it, any CHECK or
/// generated column may read other tables.
const NAMES_CAP: usize = 10_000;

/// The bytes of a name compared: the server keeps 63 of a longer one,
/// cut where a character starts; the first 60 are the same in both.
const NAME: usize = 60;

/// Extensions whose functions read no table the dump loads (C code, or
/// SQL that names `pg_catalog`'s functions only: earthdistance's call
/// `earth()` by the search path, which may find the dump's own): a dump
/// that creates any other may call such functions unseen.
pub const PLAIN_EXTENSIONS: &[&str] = &[
    "plpgsql",
    "pgcrypto",
    "uuid-ossp",
    "citext",
    "pg_trgm",
    "hstore",
    "btree_gin",
    "btree_gist",
    "unaccent",
    "fuzzystrmatch",
    "ltree",
    "isn",
    "cube",
    "moddatetime",
    "pg_stat_statements",
];

/// Client encodings (lower case, and their aliases) whose second bytes may
/// be ASCII: psql lexes them by characters.
pub const CLIENT_ONLY_ENCODINGS: &[&str] = &[
    "sjis",
    "shift_jis",
    "mskanji",
    "big5",
    "gbk",
    "uhc",
    "gb18030",
    "johab",
    "win932",
    "win936",
    "win949",
    "win950",
    "cp932",
    "cp936",
    "cp949",
    "cp950",
    "tcvn",
];

/// Whether a built-in runs a query or reads another database.
fn runs_queries(name: &[u8]) -> bool {
    name.ends_with(b"_to_xml")
        || name.ends_with(b"_to_xmlschema")
        || name.ends_with(b"_to_xml_and_xmlschema")
        || name.starts_with(b"dblink")
        || name == b"ts_stat"
        || name == b"ts_rewrite"
}

/// What the code of one statement names, as the scanner reads it: the
/// word or quoted name being read, the last name (a call when `(`
/// follows, with only blanks or comments between), the names so called
/// (in a table's statement), the first name so called (in a routine's:
/// its own), the statement's first names, and whether its words say it
/// holds an expression evaluated as rows load (`expr`), a foreign key, or
/// a type's input function.
#[derive(Debug, Default)]
struct Calls {
    word: Vec<u8>,
    word_started: bool,
    quoted: Option<Vec<u8>>,
    pending: Option<Vec<u8>>,
    names: std::collections::BTreeSet<Vec<u8>>,
    first_call: Option<Vec<u8>>,
    heads: Vec<Vec<u8>>,
    expr: bool,
    foreign_key: bool,
    /// Words `input`/`receive`/`typmod_in`, `canonical`, `function`.
    type_io: bool,
    canonical: bool,
    function: bool,
    /// A `.` came after the last name.
    dotted: bool,
    prev: u8,
}

impl Calls {
    fn quoted_byte(&mut self, b: u8) {
        if let Some(q) = &mut self.quoted
            && q.len() < NAME
        {
            q.push(b.to_ascii_lowercase());
        }
    }
}

impl DumpScanner {
    /// A byte of code (outside strings and comments) for [`Calls`].
    fn calls_code(&mut self, b: u8) {
        let prev = std::mem::replace(&mut self.calls.prev, b);
        let c = &mut self.calls;
        if is_ident(b) || (b == b'$' && c.word_started) {
            // A word starts with a letter (digits first: a number).
            if c.word_started || !b.is_ascii_digit() {
                c.word_started = true;
                if c.word.len() < NAME {
                    c.word.push(b.to_ascii_lowercase());
                }
            } else {
                c.dotted = false;
            }
            return;
        }
        if c.word_started {
            c.word_started = false;
            let w = std::mem::take(&mut c.word);
            self.name_seen(w, false);
        }
        match b {
            b'(' => {
                self.calls.dotted = false;
                if let Some(n) = self.calls.pending.take() {
                    self.called_name(n);
                }
            }
            // `(row).f` calls `f(row)`.
            b'.' => self.calls.dotted = true,
            b'"' => {
                // `U&"…"` spells a name with escapes: not read here.
                if prev == b'&' {
                    self.opaque = true;
                }
                self.calls.quoted = Some(Vec::new());
            }
            b'-' | b'/' => {}
            b if b.is_ascii_whitespace() => {}
            _ => {
                self.calls.pending = None;
                self.calls.dotted = false;
            }
        }
    }

    /// A quoted name ended.
    fn quoted_end(&mut self) {
        if let Some(q) = self.calls.quoted.take() {
            self.name_seen(q, true);
        }
    }

    fn name_seen(&mut self, w: Vec<u8>, quoted: bool) {
        if w == b"pg_temp" || w.starts_with(b"pg_temp_") {
            self.stmt.named_risky = true;
        }
        if std::mem::take(&mut self.calls.dotted) {
            self.called_name(w.clone());
        }
        let c = &mut self.calls;
        if !quoted {
            match w.as_slice() {
                b"check" | b"generated" | b"partition" | b"default" | b"exclude" | b"primary"
                | b"unique" | b"expression" => c.expr = true,
                b"references" => c.foreign_key = true,
                b"input" | b"receive" | b"typmod_in" => c.type_io = true,
                b"canonical" => c.canonical = true,
                b"function" => c.function = true,
                _ => {}
            }
        }
        if c.heads.len() < 8 {
            c.heads.push(w.clone());
        }
        c.pending = Some(w);
    }

    /// A name followed by `(`, or after a `.` (in an expression, `(row).f`
    /// calls `f`). In a table's statement, only names after the word that
    /// starts an expression count: the table's own name before it does not.
    fn called_name(&mut self, n: Vec<u8>) {
        let c = &mut self.calls;
        match self.stmt.scope() {
            Scope::Routine => {
                c.first_call.get_or_insert(n);
            }
            Scope::Table if !(c.expr || c.foreign_key) => {}
            Scope::Table if c.names.len() < NAMES_CAP => {
                c.names.insert(n);
            }
            Scope::Table => self.capped = true,
            _ => {}
        }
    }

    /// The statement `old` ended: what it defines and calls is noted.
    fn calls_end(&mut self, old: &Stmt) {
        let c = std::mem::take(&mut self.calls);
        match old.scope() {
            Scope::Routine => match c.first_call {
                Some(n) => {
                    self.calls_defined |= self.called.contains(&n);
                    if self.defined.len() < NAMES_CAP {
                        self.defined.insert(n);
                    } else {
                        self.capped = true;
                    }
                }
                None => self.opaque = true,
            },
            Scope::Table if c.expr || c.foreign_key => {
                self.expressions = true;
                self.query_functions |= c.foreign_key;
                for n in c.names {
                    self.query_functions |= runs_queries(&n);
                    self.calls_defined |= self.defined.contains(&n);
                    if self.called.len() < NAMES_CAP {
                        self.called.insert(n);
                    } else {
                        self.capped = true;
                    }
                }
            }
            // A base type (no `AS`) has input functions; a range type may
            // have a canonical function (run on input too).
            Scope::Type if (c.type_io && !old.top_as) || (c.canonical && old.top_as) => {
                self.expressions = true;
                self.opaque = true;
            }
            // A cast `WITH INOUT` or `WITHOUT FUNCTION` calls no function
            // of the dump's (a type's input function is judged above).
            Scope::Opaque if old.word_at(1) != b"cast" || c.function => self.opaque = true,
            Scope::Extension => {
                let name = c
                    .heads
                    .iter()
                    .skip_while(|h| h.as_slice() != b"extension")
                    .skip(1)
                    .find(|h| !matches!(h.as_slice(), b"if" | b"not" | b"exists"));
                if !name.is_some_and(|n| PLAIN_EXTENSIONS.iter().any(|e| e.as_bytes() == n)) {
                    self.opaque = true;
                }
            }
            _ => {}
        }
    }
}

/// A cursor over a line, for the exact shapes below.
struct Shape<'a>(&'a [u8]);

impl Shape<'_> {
    fn lit(&mut self, s: &[u8]) -> bool {
        match self.0.strip_prefix(s) {
            Some(r) => {
                self.0 = r;
                true
            }
            None => false,
        }
    }

    /// Bytes while `ok`; how many.
    fn many(&mut self, ok: impl Fn(u8) -> bool) -> usize {
        let n = self.0.iter().take_while(|&&b| ok(b)).count();
        self.0 = &self.0[n..];
        n
    }

    /// `'…'` with no quote or backslash inside (`doubled`: `''` allowed).
    fn string(&mut self, doubled: bool) -> Option<Vec<u8>> {
        if !self.lit(b"'") {
            return None;
        }
        let mut v = Vec::new();
        loop {
            match self.0 {
                [b'\'', b'\'', rest @ ..] if doubled => {
                    v.push(b'\'');
                    self.0 = rest;
                }
                [b'\'', rest @ ..] => {
                    self.0 = rest;
                    return Some(v);
                }
                [b'\\', ..] | [] => return None,
                [b, rest @ ..] => {
                    v.push(*b);
                    self.0 = rest;
                }
            }
        }
    }

    fn boolean(&mut self) -> bool {
        self.lit(b"true") || self.lit(b"false")
    }

    fn end(&self) -> bool {
        self.0.is_empty()
    }
}

/// `SET name = value[, value…];` (values plain words or strings) or
/// `SELECT pg_catalog.set_config('name', 'value', false);`: a setting and
/// nothing else, as pg_dump writes them. `standard_conforming_strings`
/// only as `= on` / `= off` (the lexer follows those).
fn session_shape(t: &[u8]) -> bool {
    let word = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.';
    let mut c = Shape(t);
    if c.lit(b"SET ") {
        let name = c.0;
        if c.many(word) == 0 {
            return false;
        }
        let name = &name[..name.len() - c.0.len()];
        if !c.lit(b" = ") || (name != b"standard_conforming_strings" && !plain_setting(name)) {
            return false;
        }
        if name == b"standard_conforming_strings" {
            return c.0 == b"on;" || c.0 == b"off;";
        }
        loop {
            let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-';
            if c.0.first() == Some(&b'\'') {
                if c.string(false).is_none() {
                    return false;
                }
            } else if c.many(plain) == 0 {
                return false;
            }
            if c.lit(b";") {
                return c.end();
            }
            if !c.lit(b", ") {
                return false;
            }
        }
    }
    c.lit(b"SELECT pg_catalog.set_config(")
        && c.string(false).is_some_and(|n| plain_setting(&n))
        && c.lit(b", ")
        && c.string(false).is_some()
        && c.lit(b", ")
        && c.boolean()
        && c.lit(b");")
        && c.end()
}

/// A setting the data sessions can begin with as the first session ended
/// (`pg_settings` shows it): not the role or session user, not a custom
/// (dotted) one, not `standard_conforming_strings` (the lexer follows only
/// pg_dump's own `SET` lines of it).
fn plain_setting(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.contains(&b'.')
        && !matches!(
            lower.as_slice(),
            b"role" | b"session_authorization" | b"standard_conforming_strings"
        )
}

/// `SELECT pg_catalog.setval('name', N, true|false);` with literals only.
fn setval_shape(t: &[u8]) -> bool {
    let mut c = Shape(t);
    c.lit(b"SELECT pg_catalog.setval(")
        && c.string(true).is_some()
        && c.lit(b", ")
        && {
            c.lit(b"-");
            c.many(|b| b.is_ascii_digit()) > 0
        }
        && c.lit(b", ")
        && c.boolean()
        && c.lit(b");")
        && c.end()
}

/// `SELECT pg_catalog.lo_create('N');`.
fn lo_create_shape(t: &[u8]) -> bool {
    let mut c = Shape(t);
    c.lit(b"SELECT pg_catalog.lo_create('")
        && c.many(|b| b.is_ascii_digit()) > 0
        && c.lit(b"');")
        && c.end()
}

/// The table name of `COPY <name> (cols) FROM stdin;` as written, quotes
/// kept (`public."Odd Name"`).
/// An identifier as pg_dump writes it (`name` or `"Quoted ""Name"""`) at
/// the start of `s`: its value and the rest.
fn ident(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut it = rest.char_indices();
        while let Some((i, c)) = it.next() {
            if c == '"' {
                if rest[i + 1..].starts_with('"') {
                    out.push('"');
                    it.next();
                } else {
                    return Some((out, &rest[i + 1..]));
                }
            } else {
                out.push(c);
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), &s[end..]))
}

/// Roles and extensions a statement line needs.
fn requirements(line: &str, facts: &mut DumpFacts) {
    let mut role_list = |list: &str| {
        let mut rest = list;
        while let Some((name, r)) = ident(rest) {
            // The keywords only when bare: "PUBLIC" in quotes is a role.
            let quoted = rest.trim_start().starts_with('"');
            if quoted
                || !matches!(
                    name.to_ascii_uppercase().as_str(),
                    "PUBLIC" | "CURRENT_USER" | "SESSION_USER" | "CURRENT_ROLE"
                )
            {
                facts.roles.insert(name);
            }
            let r = r.trim_start();
            match r.strip_prefix(',') {
                Some(next) => rest = next,
                None => break,
            }
        }
    };
    if line.starts_with("ALTER ")
        && let Some(i) = line.rfind(" OWNER TO ")
    {
        role_list(&line[i + " OWNER TO ".len()..]);
    } else if line.starts_with("GRANT ") {
        if let Some(i) = line.rfind(" TO ") {
            role_list(&line[i + 4..]);
        }
    } else if line.starts_with("REVOKE ") {
        if let Some(i) = line.rfind(" FROM ") {
            role_list(&line[i + 6..]);
        }
    } else if let Some(rest) = line
        .strip_prefix("CREATE EXTENSION IF NOT EXISTS ")
        .or_else(|| line.strip_prefix("CREATE EXTENSION "))
        && let Some((name, _)) = ident(rest)
    {
        facts.extensions.insert(name);
    }
    if let Some(rest) = line.strip_prefix("ALTER DEFAULT PRIVILEGES FOR ROLE ") {
        role_list(rest);
    }
}

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
    fn insert_statements_are_counted() {
        let sql = OLD.replace(
            "COPY public.users",
            "INSERT INTO public.users VALUES (9, 'x');\nINSERT INTO public.users VALUES (10, 'y');\nCOPY public.users",
        );
        let (f, v) = scan(sql.as_bytes(), 5);
        assert_eq!(v, Ok(()));
        assert_eq!(f.inserts, 2);
    }

    #[test]
    fn a_dump_with_crlf_line_ends_is_complete_and_counted() {
        let crlf = OLD.replace('\n', "\r\n");
        let (f, v) = scan(crlf.as_bytes(), 7);
        assert_eq!(v, Ok(()));
        assert_eq!(f.tables.get("public.users"), Some(&2));
        assert_eq!(f.rows(), 3);
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

    fn db_dump(body: &str) -> String {
        format!(
            "--\n-- PostgreSQL database dump\n--\n\n-- Dumped by pg_dump version 16.2\n\n{body}\n--\n-- PostgreSQL database dump complete\n--\n\n"
        )
    }

    #[test]
    fn copy_lines_inside_strings_comments_and_functions_are_not_data() {
        let body = "COMMENT ON INDEX public.notes_body IS 'Load data with:\nCOPY notes FROM stdin;\nthen check.';\n\
            CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $fn$\nCOPY zzz (a) FROM stdin;\n--\n-- PostgreSQL database dump complete\n--\n$fn$;\n\
            COMMENT ON TABLE t IS E'it''s \\' COPY x FROM stdin;\nCOPY y FROM stdin;\n';\n\
            /* block /* nested */\nCOPY q FROM stdin;\n*/\n\
            CREATE TABLE \"we\"\"ird\nCOPY w FROM stdin;\" (a int);\n\
            SELECT $1, a$b, $$x$$;\n\
            COPY public.notes (id, body) FROM stdin;\n1\tone\n2\ttwo\n\\.\n";
        for piece in [1, 3, 7, 1000] {
            let (f, v) = scan(db_dump(body).as_bytes(), piece);
            assert_eq!(v, Ok(()), "piece {piece}");
            assert_eq!(f.tables.len(), 1, "{:?}", f.tables);
            assert_eq!(f.tables.get("public.notes"), Some(&2));
        }
    }

    #[test]
    fn a_trailer_inside_a_function_body_does_not_count() {
        let body = "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\n--\n-- PostgreSQL database dump complete\n--\n";
        let text = format!("--\n-- PostgreSQL database dump\n--\n{body}");
        assert_eq!(scan(text.as_bytes(), 5).1, Err(Incomplete::InsideQuote));
    }

    #[test]
    fn glued_dumps_are_refused() {
        let whole = db_dump(
            "COPY public.s (a, b, c) FROM stdin;\nx\ty\tz\nu\tv\tw\n\\.\n\nCREATE TABLE t (a int);\n",
        );
        // Cut inside data, then a whole dump: rows with the wrong field count.
        let cut = whole.find("u\tv").unwrap();
        let glued = format!("{}{}", &whole[..cut], whole);
        assert!(
            matches!(scan(glued.as_bytes(), 64).1, Err(Incomplete::Garbled(_))),
            "{:?}",
            scan(glued.as_bytes(), 64).1
        );
        // Cut in the schema, then a whole dump: a second header.
        let cut = whole.find("CREATE TABLE").unwrap();
        let glued = format!("{}{}", &whole[..cut], whole);
        assert!(matches!(
            scan(glued.as_bytes(), 64).1,
            Err(Incomplete::Garbled(_))
        ));
        // Each part alone is fine.
        assert_eq!(scan(whole.as_bytes(), 64).1, Ok(()));
    }

    /// psql reads a line only up to a NUL byte: a dump with one, in its SQL
    /// or its data, is not pg_dump's (hostile review 4: one after a quote
    /// hid the next line's statement from the scanner).
    #[test]
    fn a_nul_byte_anywhere_is_garbled() {
        for d in [
            db_dump(
                "COMMENT ON TABLE public.b IS 'x';\0'\nCREATE TABLE public.c (x integer); -- '\n",
            ),
            db_dump("COPY public.t (a) FROM stdin;\n1\0\n\\.\n"),
        ] {
            for piece in [1, 7, 1 << 20] {
                let (_, verdict) = scan(d.as_bytes(), piece);
                assert!(
                    matches!(&verdict, Err(Incomplete::Garbled(g)) if g.contains("NUL")),
                    "{verdict:?}"
                );
            }
        }
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_garbled() {
        let d = db_dump("COPY public.s (a, \"b,c\") FROM stdin;\nx\ty\nonly-one\n\\.\n");
        match scan(d.as_bytes(), 64).1 {
            Err(Incomplete::Garbled(why)) => assert!(
                why.contains("row 2 of table public.s has 1 fields, the table has 2"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn copy_headers_longer_than_the_line_buffer_still_count() {
        let cols: Vec<String> = (0..3000)
            .map(|i| format!("column_with_a_rather_long_name_{i:05}"))
            .collect();
        let row = vec!["v"; 3000].join("\t");
        let d = db_dump(&format!(
            "COPY public.wide ({}) FROM stdin;\n{row}\n{row}\n\\.\n",
            cols.join(", ")
        ));
        assert!(d.lines().find(|l| l.starts_with("COPY")).unwrap().len() > MAX_LINE);
        let (f, v) = scan(d.as_bytes(), 4096);
        assert_eq!(v, Ok(()));
        assert_eq!(f.tables.get("public.wide"), Some(&2));
    }

    #[test]
    fn roles_and_extensions_a_restore_needs_are_collected() {
        let body = "CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;\n\
            CREATE EXTENSION \"uuid-ossp\";\n\
            ALTER TABLE public.users OWNER TO app;\n\
            ALTER SCHEMA s OWNER TO \"Odd \"\"Role\"\"\";\n\
            GRANT SELECT ON TABLE public.users TO reader, \"report ing\" WITH GRANT OPTION;\n\
            GRANT ALL ON SCHEMA public TO PUBLIC;\n\
            ALTER TABLE public.a OWNER TO \"PUBLIC\";\n\
            GRANT SELECT ON TABLE public.a TO \"CURRENT_USER\", current_user;\n\
            REVOKE ALL ON TABLE public.users FROM old_role;\n\
            ALTER DEFAULT PRIVILEGES FOR ROLE owner_role IN SCHEMA public GRANT SELECT ON TABLES TO reader;\n\
            CREATE FUNCTION public.f() RETURNS void AS $$\nGRANT SELECT ON t TO inside_body;\n$$ LANGUAGE sql;\n";
        let (facts, done) = scan(db_dump(body).as_bytes(), 7);
        assert_eq!(done, Ok(()));
        let roles: Vec<&str> = facts.roles.iter().map(String::as_str).collect();
        assert_eq!(
            roles,
            vec![
                "CURRENT_USER",
                "Odd \"Role\"",
                "PUBLIC",
                "app",
                "old_role",
                "owner_role",
                "reader",
                "report ing"
            ]
        );
        let ext: Vec<&str> = facts.extensions.iter().map(String::as_str).collect();
        assert_eq!(ext, vec!["pgcrypto", "uuid-ossp"]);
    }

    #[test]
    fn meta_commands_after_sql_or_blanks_and_under_scs_off_are_found() {
        for (sql, found) in [
            ("SELECT 1; \\! touch /tmp/x\n", true),
            ("   \\! touch /tmp/x\n", true),
            ("SELECT 'a\\b'; SELECT E'\\\\';\n", false),
            ("SELECT \"we\\ird\";\n-- a comment \\! no\n", false),
            ("\\restrict abc\nSELECT 1;\n\\unrestrict abc\n", false),
            ("\\restrict abc \\! touch /tmp/x\n", true),
            // With standard_conforming_strings off, psql reads 'x\'' as
            // one string: what follows the second quote is SQL again.
            (
                "SET standard_conforming_strings = off;\nSELECT 'x\\'; \\! touch /tmp/x';\n",
                false,
            ),
            (
                "SET standard_conforming_strings = off;\nSELECT 'x\\''; \\! touch /tmp/x\n",
                true,
            ),
            // `name'\'` is the name `name`, then a standard string: psql
            // runs the `\!` (the scanner read an E-string: hostile review 3).
            ("SELECT name'\\'; \\! touch /tmp/x\n", true),
            ("SELECT a$e'\\'; \\! touch /tmp/x\n", true),
            ("SELECT (E'\\'; \\! touch /tmp/x');\n", false),
            // The setting's name in another case: psql follows it as well.
            (
                "SET STANDARD_CONFORMING_STRINGS = OFF;\nSELECT 'x\\'; \\! touch /tmp/x';\n",
                false,
            ),
        ] {
            let mut sc = DumpScanner::new(DumpKind::Database);
            sc.feed(sql.as_bytes());
            assert_eq!(sc.has_meta_commands(), found, "{sql}");
        }
    }

    /// A `COPY … FROM stdin;` line that does not begin a statement is SQL
    /// to psql: what follows is checked as SQL (it was taken as COPY data,
    /// and a `\!` in it ran).
    #[test]
    fn a_copy_line_inside_a_statement_does_not_hide_what_follows() {
        for (sql, found) in [
            (
                "SELECT\nCOPY FROM stdin;\n\\! id\nSELECT '\n\\.\nx'; --'\n",
                true,
            ),
            ("SELECT (1;\nCOPY t FROM stdin;\n\\! id\n", true),
            ("/* c */\nCOPY t (a) FROM stdin;\n\\! id\n\\.\n", true),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\nSELECT 1;\nCOPY t FROM stdin;\n\\! id\nEND;\n",
                true,
            ),
            (
                "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql\nBEGIN ATOMIC\nSELECT CASE WHEN true THEN 1 END;\nCOPY t FROM stdin;\n\\! id\nEND;\n",
                true,
            ),
            // What pg_dump writes: COPY after a finished statement.
            (
                "SET client_encoding = 'UTF8';\n-- a comment\n\nCOPY public.t (a, b) FROM stdin;\n1\t\\\\x\n\\.\n",
                false,
            ),
            (
                "CREATE FUNCTION public.f() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT CASE WHEN true THEN 1 ELSE 2 END AS \"case\";\nEND;\n\nCOPY public.t (a) FROM stdin;\n\\N\n\\.\n",
                false,
            ),
            (
                "SELECT pg_catalog.set_config('search_path', '', false);\n\\restrict k\nCOPY public.t (a) FROM stdin;\n\\.\n",
                false,
            ),
        ] {
            let mut sc = DumpScanner::new(DumpKind::Database);
            sc.feed(sql.as_bytes());
            assert_eq!(sc.has_meta_commands(), found, "{sql}");
            if !found {
                assert!(!sc.in_copy_data(), "{sql}");
            }
        }
    }

    /// What is passed on to psql: everything but the backslash lines of
    /// plain SQL (their line ends kept), in any pieces.
    #[test]
    fn backslash_lines_of_sql_are_left_out_of_what_psql_gets() {
        let sql = "\\restrict K\nSELECT 1;\nCOPY t (a) FROM stdin;\n\\N\n\\.\nSELECT '\n\\x';\n\\unrestrict K\n";
        let want = "\nSELECT 1;\nCOPY t (a) FROM stdin;\n\\N\n\\.\nSELECT '\n\\x';\n\n";
        for piece in [1, 2, 3, 5, 7, 100] {
            let mut sc = DumpScanner::new(DumpKind::Database);
            let mut out = Vec::new();
            let mut keep = Vec::new();
            for p in sql.as_bytes().chunks(piece) {
                sc.feed_kept(p, &mut keep);
                for &(a, b) in &keep {
                    out.extend_from_slice(&p[a..b]);
                }
            }
            assert_eq!(String::from_utf8(out).unwrap(), want, "pieces of {piece}");
            assert!(!sc.has_meta_commands());
        }
    }

    #[test]
    fn meta_commands_other_than_restrict_are_collected() {
        let body = "\\! touch /tmp/x\nCREATE TABLE t (a int);\n\\c other\n";
        let (facts, _) = scan(db_dump(body).as_bytes(), 5);
        assert_eq!(facts.meta_commands, vec!["\\! touch /tmp/x", "\\c other"]);
        let (facts, _) = scan(db_dump("CREATE TABLE t (a int);\n").as_bytes(), 5);
        assert!(facts.meta_commands.is_empty());
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
