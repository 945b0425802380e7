//! The documentation, tested as code is: every ```sql example of README.md and docs/*.md runs
//! against the demo salon (examples/salon.sql) with the fixed clock, each in its own rolled-back
//! transaction; every function and setting of the extension is documented in docs/; every
//! signature written out in docs/ has the parameter names the function really has.
//!
//! Annotations on the fence (after `sql`): none, the example must run without an error;
//! `fails=SQLSTATE`, it must fail with that SQLSTATE (a refusal shown on purpose);
//! `illustrative`, it is not run (kept rare: each one's paragraph says why it cannot run here).

use std::path::{Path, PathBuf};
use std::process::Command;

use postgres::{Client, NoTls};
use regex::Regex;

const DATABASE: &str = "booking_docs";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// README.md and every docs/*.md, with their text.
pub fn documents() -> Vec<(String, String)> {
    let mut paths = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(repo()).unwrap_or(&p).display().to_string();
            (name, std::fs::read_to_string(&p).expect("readable"))
        })
        .collect()
}

/// The text of docs/ alone (where the reference lives).
fn reference() -> String {
    documents().into_iter().filter(|(name, _)| name.starts_with("docs/")).map(|(_, text)| text).collect()
}

#[derive(Debug, PartialEq)]
enum Expect {
    Runs,
    Fails(String),
    Illustrative,
}

#[derive(Debug)]
struct Example {
    place: String,
    expect: Expect,
    sql: String,
}

/// The fenced ```sql blocks of a document (indented ones in lists too).
fn examples(name: &str, text: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```sql") else { continue };
        let indent = line.len() - trimmed.len();
        let expect = match info.trim() {
            "" => Expect::Runs,
            "illustrative" => Expect::Illustrative,
            other => match other.strip_prefix("fails=") {
                Some(code) if code.len() == 5 => Expect::Fails(code.to_string()),
                _ => panic!("{name}:{}: unknown annotation {other:?} (fails=SQLSTATE or illustrative)", i + 1),
            },
        };
        let mut sql = String::new();
        for (_, body) in lines.by_ref() {
            if body.trim_start().starts_with("```") {
                break;
            }
            sql.push_str(body.get(indent..).unwrap_or(body.trim_start()));
            sql.push('\n');
        }
        out.push(Example { place: format!("{name}:{}", i + 1), expect, sql });
    }
    out
}

fn admin() -> Client {
    Client::connect(&crate::common::dsn(), NoTls).expect("connect to the test cluster")
}

fn docs_dsn() -> String {
    crate::common::dsn().replace("dbname=booking_it", &format!("dbname={DATABASE}"))
}

/// A fresh database with the extension and the demo salon; dropped when the test ends, so the
/// tests that count databases and workers afterwards do not see it.
struct DocsDatabase;

impl DocsDatabase {
    fn create() -> DocsDatabase {
        let mut c = admin();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {DATABASE}")).unwrap();
        let mut d = Client::connect(&docs_dsn(), NoTls).unwrap();
        d.batch_execute("SET client_min_messages = warning; CREATE EXTENSION booking_engine CASCADE").unwrap();
        let pg_bin =
            std::env::var("BOOKING_ENGINE_TEST_PG_BIN").expect("BOOKING_ENGINE_TEST_PG_BIN is set by make test");
        let salon = repo().join("examples/salon.sql");
        // salon.sql is a psql script (\set ON_ERROR_STOP on), as the demo runs it.
        let status = Command::new(Path::new(&pg_bin).join("psql"))
            .args(["-X", "-q", "-d", &docs_dsn(), "-f"])
            .arg(&salon)
            .env("PGOPTIONS", "-c booking_engine.now=2026-03-01T00:00+01")
            .status()
            .expect("psql runs");
        assert!(status.success(), "examples/salon.sql loads");
        DocsDatabase
    }
}

impl Drop for DocsDatabase {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"));
    }
}

/// One statement of an example and the result its `-- =>` comment promises, if it has one.
#[derive(Debug, PartialEq)]
struct Statement {
    sql: String,
    promise: Option<String>,
}

/// The statements of an example, split at each `;` outside quotes (single quotes, dollar
/// quotes) and comments. A `-- => value` comment promises the first value of the first row of
/// the statement it follows (on the same line after its `;`, or on the next lines before any
/// other code).
fn statements(sql: &str) -> Vec<Statement> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out: Vec<Statement> = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            let end = chars[i..].iter().position(|c| *c == '\n').map_or(chars.len(), |p| i + p);
            let comment: String = chars[i + 2..end].iter().collect();
            match comment.trim().strip_prefix("=>") {
                Some(promise) if current.trim().is_empty() && !out.is_empty() => {
                    out.last_mut().expect("not empty").promise = Some(promise.trim().to_string());
                }
                _ => current.push_str(&format!("--{comment}")),
            }
            i = end;
            continue;
        }
        if c == '\'' {
            // A string, '' inside it being a quote.
            let mut j = i + 1;
            while j < chars.len() && !(chars[j] == '\'' && chars.get(j + 1) != Some(&'\'')) {
                j += if chars[j] == '\'' { 2 } else { 1 };
            }
            current.extend(&chars[i..(j + 1).min(chars.len())]);
            i = j + 1;
            continue;
        }
        if c == '$' {
            // A dollar-quoted string: $$ or $tag$ up to the same tag.
            let tag_end = chars[i + 1..].iter().position(|c| !(c.is_alphanumeric() || *c == '_')).map(|p| i + 1 + p);
            if let Some(t) = tag_end.filter(|t| chars[*t] == '$') {
                let tag: String = chars[i..=t].iter().collect();
                let rest: String = chars[t + 1..].iter().collect();
                let close =
                    rest.find(&tag).map_or(chars.len(), |p| t + 1 + rest[..p].chars().count() + tag.chars().count());
                current.extend(&chars[i..close]);
                i = close;
                continue;
            }
        }
        current.push(c);
        i += 1;
        if c == ';' {
            out.push(Statement { sql: std::mem::take(&mut current), promise: None });
        }
    }
    if !current.trim().is_empty() {
        out.push(Statement { sql: current, promise: None });
    }
    out
}

/// Whether `expected` (JSON) is contained in `actual`: objects by their keys, arrays element by
/// element in any order, scalars equal.
fn contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value::{Array, Object};
    match (actual, expected) {
        (Object(a), Object(e)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|x| contains(x, v))),
        (Array(a), Array(e)) => e.iter().all(|v| a.iter().any(|x| contains(x, v))),
        (a, e) => a == e,
    }
}

/// Whether a statement's first value keeps its promise: JSON is compared by containment, any
/// other value as text.
fn kept(actual: Option<&str>, promise: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(promise) {
        Ok(e) if e.is_object() || e.is_array() => {
            actual.and_then(|a| serde_json::from_str(a).ok()).is_some_and(|a: serde_json::Value| contains(&a, &e))
        }
        _ => actual == Some(promise),
    }
}

fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Runs one example in a transaction that is rolled back: statement by statement, checking
/// each promised result. Err is the SQLSTATE and message of its error, or a broken promise.
fn run(c: &mut Client, sql: &str) -> Result<(), String> {
    c.batch_execute("BEGIN").unwrap();
    let mut outcome = Ok(());
    for st in statements(sql) {
        let rows = match c.simple_query(&st.sql) {
            Ok(messages) => messages,
            Err(e) => {
                outcome = Err(describe(&e));
                break;
            }
        };
        if let Some(promise) = &st.promise {
            let first = rows.iter().find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
                _ => None,
            });
            let first = first.flatten();
            if !kept(first.as_deref(), promise) {
                outcome = Err(format!("promised {promise}, got {first:?} from {}", st.sql.trim()));
                break;
            }
        }
    }
    c.batch_execute("ROLLBACK").unwrap();
    outcome
}

#[test]
fn every_sql_example_of_the_documentation_runs_against_the_demo_salon() {
    let _db = DocsDatabase::create();
    let mut c = Client::connect(&docs_dsn(), NoTls).unwrap();
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'; SET timezone = 'Europe/Zurich'").unwrap();
    let (mut ran, mut illustrative, mut wrong) = (0, 0, Vec::new());
    for (name, text) in documents() {
        for ex in examples(&name, &text) {
            let outcome = match &ex.expect {
                Expect::Illustrative => {
                    illustrative += 1;
                    continue;
                }
                _ => run(&mut c, &ex.sql),
            };
            ran += 1;
            match (&ex.expect, outcome) {
                (Expect::Runs, Ok(())) => {}
                (Expect::Fails(code), Err(e)) if e.starts_with(&format!("{code}:")) => {}
                (expect, got) => wrong.push(format!("{}: expected {expect:?}, got {got:?}\n{}", ex.place, ex.sql)),
            }
        }
    }
    eprintln!("{ran} documented SQL examples ran, {illustrative} illustrative");
    assert!(ran >= 40, "the examples were found ({ran})");
    assert!(illustrative <= 5, "illustrative examples stay rare ({illustrative})");
    assert!(
        wrong.is_empty(),
        "{} examples do not do what the documentation says:\n\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}

#[test]
fn statements_and_their_promises_are_read_as_written() {
    let found = statements(
        "SELECT 1;  -- => 1\nSELECT 'a -- b; c'\n     AS x;\n-- => a -- b\nSELECT 3; -- a comment\nSELECT '{\"k\":\n \"it''s\"}'::jsonb ->> 'k';  -- => it's\nSELECT $f$ ; $f$;\n",
    );
    let promises: Vec<Option<&str>> = found.iter().map(|s| s.promise.as_deref()).collect();
    assert_eq!(promises, [Some("1"), Some("a -- b"), None, Some("it's"), None]);
    assert_eq!(found[1].sql.trim(), "SELECT 'a -- b; c'\n     AS x;");
    assert_eq!(found[4].sql.trim(), "SELECT $f$ ; $f$;");
    assert!(kept(
        Some(r#"{"valid": false, "violations": [{"code": "holiday", "m": "x"}]}"#),
        r#"{"violations": [{"code": "holiday"}]}"#
    ));
    assert!(!kept(Some(r#"{"success": false}"#), r#"{"success": true}"#));
    assert!(kept(Some("true"), "true") && !kept(None, "true"));
}

#[test]
fn the_annotations_are_read_as_written() {
    let text = "a\n```sql\nSELECT 1;\n```\n  ```sql fails=22023\n  SELECT 2;\n  ```\n```sql illustrative\nX\n```\n";
    let found = examples("t.md", text);
    assert_eq!(found.len(), 3);
    assert_eq!((found[0].expect == Expect::Runs, found[0].sql.as_str()), (true, "SELECT 1;\n"));
    assert_eq!(found[1].expect, Expect::Fails("22023".into()));
    assert_eq!(found[1].sql, "SELECT 2;\n", "list indentation is removed");
    assert_eq!(found[2].expect, Expect::Illustrative);
}

/// Whether the docs mention a function: `name(`, `` `name` ``, or `schema.name`.
fn mentioned(docs: &str, schema: &str, name: &str) -> bool {
    docs.contains(&format!("{schema}.{name}"))
        || docs.contains(&format!("`{name}`"))
        || Regex::new(&format!(r"\b{name}\(")).unwrap().is_match(docs)
}

#[test]
fn every_function_and_setting_is_documented_in_docs() {
    let mut c = admin();
    let docs = reference();
    let functions: Vec<(String, String)> = c
        .query(
            "SELECT DISTINCT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
             JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'booking_engine'
             ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(functions.len() > 150, "the extension's functions are found ({})", functions.len());
    let missing: Vec<String> =
        functions.iter().filter(|(s, f)| !mentioned(&docs, s, f)).map(|(s, f)| format!("{s}.{f}")).collect();
    assert!(missing.is_empty(), "functions not documented in docs/: {missing:?}");

    let configuration = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let settings: Vec<String> = c
        .query("SELECT name FROM pg_settings WHERE name LIKE 'booking_engine.%' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(settings.len() >= 28, "the settings are found ({})", settings.len());
    let undocumented: Vec<&String> = settings
        .iter()
        .filter(|s| {
            let short = s.trim_start_matches("booking_engine.");
            !configuration.contains(&format!("`{s}`")) && !configuration.contains(&format!("`{short}`"))
        })
        .collect();
    assert!(undocumented.is_empty(), "settings not in docs/configuration.md: {undocumented:?}");
}

/// Signatures written out as `schema.name(p_a type, p_b type DEFAULT x)`: the parameter names,
/// in order, of one of the function's overloads.
#[test]
fn documented_signatures_have_the_real_parameter_names() {
    let mut c = admin();
    let docs = reference();
    let signature = Regex::new(r"\b(booking|booking_admin)\.([a-z_0-9]+)\(([^()`]*)\)").unwrap();
    let typed = Regex::new(
        r"^([a-z_][a-z0-9_]*|timestamp|\x22limit\x22) (uuid|text|date|timestamptz|jsonb|int|integer|int8|bigint|boolean|bool|interval|float8|numeric|inet|anyarray|regrole)(\[\])?( DEFAULT .*)?$",
    )
    .unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for m in signature.captures_iter(&docs) {
        let args: Vec<&str> = m[3].split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        if args.is_empty() || !args.iter().all(|a| typed.is_match(a)) {
            continue;
        }
        let names: Vec<String> =
            args.iter().map(|a| a.split(' ').next().unwrap_or_default().trim_matches('"').to_string()).collect();
        let (schema, function): (&str, &str) = (&m[1], &m[2]);
        let overloads: Vec<String> = c
            .query(
                "SELECT pg_get_function_identity_arguments(p.oid) FROM pg_proc p
                 WHERE p.pronamespace = $1::text::regnamespace AND p.proname = $2",
                &[&schema, &function],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let real = |identity: &str| -> Vec<String> {
            identity.split(", ").filter_map(|a| a.split(' ').next()).map(|n| n.trim_matches('"').to_string()).collect()
        };
        checked += 1;
        if !overloads.iter().any(|o| real(o) == names) {
            wrong.push(format!("{}.{}({}): the function has {:?}", &m[1], &m[2], &m[3], overloads));
        }
    }
    assert!(
        wrong.is_empty(),
        "signatures in docs/ with other parameter names than the functions':\n{}",
        wrong.join("\n")
    );
    assert!(checked >= 40, "the signatures are found ({checked})");
}
