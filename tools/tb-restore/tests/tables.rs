//! Single-table restores out of a full plain dump against a real server:
//! the table comes back with its identity column, indexes, unique
//! constraints, foreign keys, comments, grants and sequence values, and
//! nothing else (not a decoy of a similar name, not a same-named table in
//! another schema).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use clap::Parser;
use tb_shared::record::Reporter;
use tb_testkit::{Pg, Sandbox, events, records};

const SHOP: &str = "
CREATE SCHEMA app;
CREATE TABLE public.owners (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.items (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    owner_id integer REFERENCES public.owners(id),
    note text
);
CREATE INDEX items_note_idx ON public.items (note);
COMMENT ON TABLE public.items IS 'the items';
COMMENT ON COLUMN public.items.sku IS 'stock keeping unit';
GRANT SELECT ON public.items TO PUBLIC;
CREATE TABLE public.items_archive (id serial PRIMARY KEY, sku text);
CREATE INDEX items_archive_sku_idx ON public.items_archive (sku);
CREATE TABLE app.items (id serial PRIMARY KEY, what text);
INSERT INTO public.owners (name) VALUES ('ann'), ('bo');
INSERT INTO public.items (sku, owner_id, note) SELECT 'sku-' || g, 1 + g % 2, 'n' || (g % 7) FROM generate_series(1, 40) g;
DELETE FROM public.items WHERE id > 37;
INSERT INTO public.items_archive (sku) SELECT 'old-' || g FROM generate_series(1, 5) g;
INSERT INTO app.items (what) VALUES ('other schema');
-- A function body with a line that looks like the start of table data:
-- the extraction must not take it for one (it swallowed the tables after
-- it, up to the next end of data).
CREATE FUNCTION public.tricky() RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    RETURN '
COPY public.owners (id, name) FROM stdin;
';
END
$f$;
";

struct Dump {
    _sb: Sandbox,
    path: PathBuf,
}

fn dump() -> &'static Dump {
    static D: OnceLock<Dump> = OnceLock::new();
    D.get_or_init(|| {
        let pg = Pg::shared();
        pg.createdb("shop");
        pg.psql("shop", SHOP);
        let sb = Sandbox::new();
        let mut args = vec![
            "tb-dump".to_string(),
            "--dbname".into(),
            "shop".into(),
            "--dir".into(),
            sb.path().to_string_lossy().into(),
        ];
        args.extend(pg.conn_args());
        let mut rep = Reporter::quiet("tb-dump");
        assert_eq!(
            tb_dump::run(tb_dump::Args::parse_from(args), &mut rep)
                .unwrap()
                .code,
            0
        );
        let path = rep
            .records()
            .iter()
            .find(|r| r["event"] == "written" && r["kind"] == "dump")
            .map(|r| PathBuf::from(r["path"].as_str().unwrap()))
            .unwrap();
        Dump { _sb: sb, path }
    })
}

fn restore(extra: &[&str]) -> Output {
    let pg = Pg::shared();
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-restore"));
    pg.env(&mut c);
    c.arg(&dump().path).args(extra).stdin(Stdio::null());
    c.output().unwrap()
}

fn relations(db: &str) -> String {
    Pg::shared().psql(
        db,
        "SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('public', 'app') ORDER BY 1",
    )
}

#[test]
fn one_table_comes_back_with_its_indexes_constraints_sequence_comments_and_grants_only() {
    let pg = Pg::shared();
    let out = restore(&["--table", "public.items", "--dbname", "items_only"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the left-out foreign key is a warning: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        relations("items_only"),
        "public.items:r\npublic.items_id_seq:S\npublic.items_note_idx:i\npublic.items_pkey:i\npublic.items_sku_key:i\n"
    );
    let same = |sql: &str| assert_eq!(pg.psql("items_only", sql), pg.psql("shop", sql), "{sql}");
    same("SELECT id, sku, owner_id, note FROM public.items ORDER BY id");
    same("SELECT last_value, is_called FROM public.items_id_seq");
    same(
        "SELECT obj_description('public.items'::regclass, 'pg_class'), col_description('public.items'::regclass, 2)",
    );
    same("SELECT relacl FROM pg_class WHERE oid = 'public.items'::regclass");
    // The identity continues after the dumped value (37 rows, last id 40).
    assert_eq!(
        pg.psql(
            "items_only",
            "INSERT INTO public.items (sku) VALUES ('new') RETURNING id"
        )
        .trim(),
        "41"
    );
    // The unique constraint holds.
    let dup = pg
        .env(&mut Command::new("psql"))
        .args([
            "-X",
            "-q",
            "-d",
            "items_only",
            "-c",
            "INSERT INTO public.items (sku) VALUES ('sku-1')",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&dup.stderr).contains("items_sku_key"));
    let recs = records(&out.stdout);
    let w = events(&recs, "warning");
    assert!(w.iter().any(|w| w["constraint"] == "items_owner_id_fkey" && w["references"] == "public.owners"), "{w:?}");
    let t = events(&recs, "table");
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0]["table"].as_str(), t[0]["rows"].as_u64()),
        (Some("public.items"), Some(37))
    );
    assert_eq!(events(&recs, "restored")[0]["kind"], "tables");
}

#[test]
fn a_foreign_key_comes_back_when_the_table_it_references_is_restored_too() {
    let pg = Pg::shared();
    let out = restore(&[
        "--table",
        "public.items",
        "--table",
        "owners",
        "--dbname",
        "items_owners",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fk = pg.psql(
        "items_owners",
        "SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
    );
    assert_eq!(fk.trim(), "items_owner_id_fkey");
    assert_eq!(
        pg.psql("items_owners", "SELECT count(*) FROM public.owners")
            .trim(),
        "2"
    );
}

#[test]
fn a_name_in_two_schemas_must_be_qualified_and_the_other_schema_is_left_alone() {
    // `items` alone is ambiguous: public.items and app.items.
    let out = restore(&["--table", "items", "--dbname", "never_t1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app.items") && err.contains("public.items"),
        "{err}"
    );
    // app.items brings its schema and only itself.
    let out = restore(&["--table", "app.items", "--dbname", "app_items"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        relations("app_items"),
        "app.items:r\napp.items_id_seq:S\napp.items_pkey:i\n"
    );
    assert_eq!(
        Pg::shared()
            .psql("app_items", "SELECT what FROM app.items")
            .trim(),
        "other schema"
    );
    // A name the dump does not have.
    let out = restore(&["--table", "itemz", "--dbname", "never_t2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such table"));
}

#[test]
fn list_shows_the_tables_and_sql_prints_what_psql_can_run() {
    let out = restore(&["--list"]);
    assert_eq!(out.status.code(), Some(0));
    let recs = records(&out.stdout);
    let tables: Vec<(String, u64)> = events(&recs, "table")
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tables,
        vec![
            ("app.items".to_string(), 1),
            ("public.items".to_string(), 37),
            ("public.items_archive".to_string(), 5),
            ("public.owners".to_string(), 2)
        ]
    );
    let out = restore(&["--table", "public.items_archive", "--sql"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql = String::from_utf8(out.stdout).unwrap();
    assert!(sql.contains("CREATE TABLE public.items_archive"));
    assert!(
        !sql.contains("CREATE TABLE public.items ("),
        "the decoy's neighbour is not in it"
    );
    assert!(sql.contains("items_archive_sku_idx"));
    // Records went to stderr; the SQL runs in psql as it is.
    assert!(
        records(&out.stderr)
            .iter()
            .any(|r| r["event"] == "extracted")
    );
    let pg = Pg::shared();
    pg.createdb("by_hand");
    let f = Sandbox::new();
    std::fs::write(f.join("t.sql"), &sql).unwrap();
    pg.psql_file("by_hand", &f.join("t.sql"));
    assert_eq!(
        pg.psql("by_hand", "SELECT count(*) FROM public.items_archive")
            .trim(),
        "5"
    );
}

#[test]
fn into_existing_replaces_the_live_table_in_one_transaction_after_a_safety_dump() {
    let pg = Pg::shared();
    let _ = dump();
    // The same contents as the dumped database (not TEMPLATE shop: other
    // tests may be connected to it).
    pg.createdb("shop_live");
    pg.psql("shop_live", SHOP);
    pg.psql("shop_live", "UPDATE public.owners SET name = 'changed'");
    let safety = Sandbox::new();
    let out = restore(&[
        "--table",
        "public.owners",
        "--dbname",
        "shop_live",
        "--into-existing",
        "--safety-dir",
        safety.path().to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pg.psql(
            "shop_live",
            "SELECT string_agg(name, ',' ORDER BY id) FROM public.owners"
        )
        .trim(),
        "ann,bo"
    );
    // The foreign key of the other table that points at it is back.
    assert_eq!(
        pg.psql(
            "shop_live",
            "SELECT conname FROM pg_constraint WHERE confrelid = 'public.owners'::regclass"
        )
        .trim(),
        "items_owner_id_fkey"
    );
    // The safety dump holds the table as it was before.
    let recs = records(&out.stdout);
    let w = events(&recs, "written");
    let file = PathBuf::from(w[0]["path"].as_str().unwrap());
    assert!(file.starts_with(safety.path()));
    let sql = String::from_utf8(tb_testkit::gunzip(&file)).unwrap();
    assert!(sql.contains("changed") && sql.contains("CREATE TABLE public.owners"));

    // A live row that would lose its parent: everything is rolled back.
    pg.psql(
        "shop_live",
        "UPDATE public.owners SET name = 'changed again'",
    );
    pg.psql(
        "shop_live",
        "INSERT INTO public.owners (id, name) OVERRIDING SYSTEM VALUE VALUES (3, 'cy')",
    );
    pg.psql(
        "shop_live",
        "INSERT INTO public.items (sku, owner_id) VALUES ('needs-cy', 3)",
    );
    let out = restore(&[
        "--table",
        "public.owners",
        "--dbname",
        "shop_live",
        "--into-existing",
        "--safety-dir",
        safety.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"));
    assert_eq!(
        pg.psql(
            "shop_live",
            "SELECT string_agg(name, ',' ORDER BY id) FROM public.owners"
        )
        .trim(),
        "changed again,changed again,cy"
    );
    assert_eq!(
        pg.psql(
            "shop_live",
            "SELECT count(*) FROM public.items WHERE owner_id = 3"
        )
        .trim(),
        "1"
    );
}
