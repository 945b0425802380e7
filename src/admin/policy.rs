//! The admin SQL sandbox's rules, on a description of the parsed statement and on what the
//! catalog says about the objects it names. Parsing (Postgres's own parser) and the catalog
//! reads live in `parse.rs`; nothing here touches Postgres.
//!
//! Refusals are of two kinds: 0A000 (`Unsupported`) for a statement, option or statement count
//! the sandbox does not accept at all, 42501 (`Forbidden`) for an accepted kind of statement
//! aimed at an object the caller may not touch this way.

use std::fmt;

use serde_json::{json, Value};

use crate::errors::{DomainError, DomainResult};

/// A possibly schema-qualified relation name as written in the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelName {
    pub schema: Option<String>,
    pub name: String,
}

impl fmt::Display for RelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReindexTarget {
    Index,
    Table,
    /// SCHEMA, SYSTEM or DATABASE: never accepted.
    Wide(&'static str),
}

/// What one parsed statement asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    CreateIndex {
        table: RelName,
        concurrent: bool,
    },
    DropIndex {
        indexes: Vec<RelName>,
        concurrent: bool,
        missing_ok: bool,
        cascade: bool,
    },
    Analyze {
        tables: Vec<RelName>,
    },
    Vacuum {
        tables: Vec<RelName>,
        full: bool,
    },
    Reindex {
        target: ReindexTarget,
        relation: Option<RelName>,
        concurrent: bool,
        other_options: Vec<String>,
    },
    /// Anything else, named by its command tag ("DROP TABLE", "SELECT", ...).
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs inside the caller's transaction, now.
    Immediate,
    /// Cannot run inside a transaction block: handed to the job runner as a top-level statement.
    Queued,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Immediate => "immediate",
            Mode::Queued => "queued",
        }
    }
}

impl Statement {
    pub fn kind(&self) -> &'static str {
        match self {
            Statement::CreateIndex { .. } => "create_index",
            Statement::DropIndex { .. } => "drop_index",
            Statement::Analyze { .. } => "analyze",
            Statement::Vacuum { .. } => "vacuum",
            Statement::Reindex { .. } => "reindex",
            Statement::Other(_) => "other",
        }
    }

    /// Whether the freeze calendar holds the statement back: changes to indexes (CREATE, DROP,
    /// REINDEX, concurrently or not: a risky change is what a freeze is for) and VACUUM FULL
    /// (an exclusive lock for as long as it rewrites). ANALYZE and plain VACUUM go on: they
    /// block nobody.
    pub fn frozen_by_calendar(&self) -> bool {
        match self {
            Statement::CreateIndex { .. } | Statement::DropIndex { .. } | Statement::Reindex { .. } => true,
            Statement::Vacuum { full, .. } => *full,
            Statement::Analyze { .. } | Statement::Other(_) => false,
        }
    }

    /// The relations the statement names, in order.
    pub fn relations(&self) -> Vec<&RelName> {
        match self {
            Statement::CreateIndex { table, .. } => vec![table],
            Statement::DropIndex { indexes, .. } => indexes.iter().collect(),
            Statement::Analyze { tables } | Statement::Vacuum { tables, .. } => tables.iter().collect(),
            Statement::Reindex { relation, .. } => relation.iter().collect(),
            Statement::Other(_) => vec![],
        }
    }

    /// The relkinds each named relation must have, and what to call it in a refusal.
    fn expected_relkinds(&self) -> (&'static str, &'static str) {
        match self {
            Statement::DropIndex { .. } | Statement::Reindex { target: ReindexTarget::Index, .. } => ("iI", "an index"),
            Statement::CreateIndex { .. } => ("rmp", "a table or materialized view"),
            _ => ("rmpt", "a table or materialized view"),
        }
    }
}

/// How many statements the text held: exactly one is accepted.
pub fn check_count(n: usize) -> DomainResult<()> {
    match n {
        1 => Ok(()),
        0 => Err(DomainError::Unsupported("the text holds no statement".into())),
        n => Err(DomainError::Unsupported(format!("exactly one statement is allowed, the text holds {n}"))),
    }
}

/// The rules that need no catalog: the kind of statement and its options. Returns how it
/// must run.
pub fn check_statement(stmt: &Statement, allow_vacuum_full: bool) -> DomainResult<Mode> {
    let unsupported = |m: String| Err(DomainError::Unsupported(m));
    match stmt {
        Statement::Other(tag) => unsupported(format!(
            "{tag} is not allowed: only CREATE INDEX, DROP INDEX, ANALYZE, VACUUM and REINDEX INDEX/TABLE are"
        )),
        Statement::DropIndex { cascade: true, .. } => unsupported("DROP INDEX ... CASCADE is not allowed".into()),
        Statement::Vacuum { full: true, .. } if !allow_vacuum_full => unsupported(
            "VACUUM FULL is not allowed unless allow_vacuum_full is true (it locks the table exclusively while it rewrites it)"
                .into(),
        ),
        Statement::Analyze { tables } | Statement::Vacuum { tables, .. } if tables.is_empty() => unsupported(format!(
            "{} without a table list is not allowed: name the tables",
            if stmt.kind() == "vacuum" { "VACUUM" } else { "ANALYZE" }
        )),
        Statement::Reindex { target: ReindexTarget::Wide(what), .. } => {
            unsupported(format!("REINDEX {what} is not allowed: only REINDEX INDEX and REINDEX TABLE are"))
        }
        Statement::Reindex { other_options, .. } if !other_options.is_empty() => {
            unsupported(format!("REINDEX option {} is not allowed", other_options.join(", ")))
        }
        Statement::Vacuum { .. } => Ok(Mode::Queued),
        Statement::CreateIndex { concurrent, .. }
        | Statement::DropIndex { concurrent, .. }
        | Statement::Reindex { concurrent, .. } => Ok(if *concurrent { Mode::Queued } else { Mode::Immediate }),
        Statement::Analyze { .. } => Ok(Mode::Immediate),
    }
}

/// What the catalog says about one named relation (`None`: it does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelFacts {
    pub qualified: String,
    pub relkind: char,
    pub schema: String,
    /// In pg_catalog, information_schema or a toast schema, or created by initdb.
    pub system: bool,
    /// The caller owns it or is a member of its owner role.
    pub owned: bool,
    /// For a partitioned table or index: a partition (at any depth) the caller does not own.
    /// CREATE INDEX, DROP INDEX, REINDEX, VACUUM and ANALYZE of the parent act on it too.
    pub foreign_partition: Option<String>,
}

/// A function an index expression or predicate would call, or a domain it coerces to (whose
/// constraints are calls too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncFacts {
    pub signature: String,
    /// Created by initdb or by an extension (both installed by a superuser).
    pub trusted: bool,
    pub immutable: bool,
}

/// The rules on the named objects. `rels` is parallel to `stmt.relations()`.
pub fn check_objects(stmt: &Statement, rels: &[Option<RelFacts>], funcs: &[FuncFacts]) -> DomainResult<()> {
    let missing_ok = matches!(stmt, Statement::DropIndex { missing_ok: true, .. });
    let (kinds, kind_name) = stmt.expected_relkinds();
    for (name, facts) in stmt.relations().into_iter().zip(rels) {
        let Some(f) = facts else {
            if missing_ok {
                continue;
            }
            return Err(DomainError::Forbidden(format!("relation {name} does not exist")));
        };
        if f.system {
            return Err(DomainError::Forbidden(format!(
                "{} is in system schema {}: the sandbox never touches system objects",
                f.qualified, f.schema
            )));
        }
        if !f.owned {
            return Err(DomainError::Forbidden(format!("you do not own {}", f.qualified)));
        }
        if let Some(p) = &f.foreign_partition {
            return Err(DomainError::Forbidden(format!(
                "you do not own {p}, a partition of {}: the statement would act on it too",
                f.qualified
            )));
        }
        if !kinds.contains(f.relkind) {
            return Err(DomainError::Unsupported(format!("{} is not {kind_name}", f.qualified)));
        }
    }
    for f in funcs {
        if !f.trusted {
            return Err(DomainError::Forbidden(format!(
                "index expressions and predicates may only call built-in or extension functions; {} is user-defined",
                f.signature
            )));
        }
        if !f.immutable {
            return Err(DomainError::Forbidden(format!(
                "index expressions and predicates may only call immutable functions; {} is not",
                f.signature
            )));
        }
    }
    Ok(())
}

/// How an accepted statement runs, now that the catalog is known: REINDEX of a partitioned
/// table or index processes each partition in a transaction of its own, so it cannot run
/// inside the caller's transaction either and is queued like the CONCURRENTLY forms.
pub fn mode_for(stmt: &Statement, mode: Mode, rels: &[Option<RelFacts>]) -> Mode {
    let partitioned = rels.iter().flatten().any(|f| matches!(f.relkind, 'p' | 'I'));
    match stmt {
        Statement::Reindex { .. } if partitioned => Mode::Queued,
        _ => mode,
    }
}

/// What a queued statement needs to run later as the caller would have run it now: the
/// statement, the role to run it as, and the search_path its names were resolved with; and
/// whether the runner must hold it back while a freeze window is in force
/// (`Statement::frozen_by_calendar`).
pub fn queued_payload(statement: &str, role: &str, search_path: &str, respect_freeze: bool) -> Value {
    let mut p = json!({"sql": statement, "role": role, "search_path": search_path});
    if respect_freeze {
        p["respect_freeze"] = json!(true);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str) -> RelName {
        RelName { schema: None, name: name.into() }
    }

    fn facts(relkind: char, system: bool, owned: bool) -> Option<RelFacts> {
        Some(RelFacts {
            qualified: "public.t".into(),
            relkind,
            schema: "public".into(),
            system,
            owned,
            foreign_partition: None,
        })
    }

    #[test]
    fn exactly_one_statement() {
        assert!(check_count(1).is_ok());
        assert!(matches!(check_count(0), Err(DomainError::Unsupported(_))));
        assert!(matches!(check_count(2), Err(DomainError::Unsupported(m)) if m.contains("holds 2")));
    }

    #[test]
    fn modes_follow_the_kind_and_concurrently() {
        let ci = |concurrent| Statement::CreateIndex { table: rel("t"), concurrent };
        assert_eq!(check_statement(&ci(false), false).ok(), Some(Mode::Immediate));
        assert_eq!(check_statement(&ci(true), false).ok(), Some(Mode::Queued));
        let vac = Statement::Vacuum { tables: vec![rel("t")], full: false };
        assert_eq!(check_statement(&vac, false).ok(), Some(Mode::Queued));
        assert_eq!(check_statement(&Statement::Analyze { tables: vec![rel("t")] }, false).ok(), Some(Mode::Immediate));
        let reindex = Statement::Reindex {
            target: ReindexTarget::Table,
            relation: Some(rel("t")),
            concurrent: true,
            other_options: vec![],
        };
        assert_eq!(check_statement(&reindex, false).ok(), Some(Mode::Queued));
    }

    #[test]
    fn refused_kinds_and_options() {
        let cases = [
            Statement::Other("DROP TABLE".into()),
            Statement::DropIndex { indexes: vec![rel("i")], concurrent: false, missing_ok: false, cascade: true },
            Statement::Vacuum { tables: vec![rel("t")], full: true },
            Statement::Vacuum { tables: vec![], full: false },
            Statement::Analyze { tables: vec![] },
            Statement::Reindex {
                target: ReindexTarget::Wide("DATABASE"),
                relation: None,
                concurrent: false,
                other_options: vec![],
            },
            Statement::Reindex {
                target: ReindexTarget::Index,
                relation: Some(rel("i")),
                concurrent: false,
                other_options: vec!["tablespace".into()],
            },
        ];
        for stmt in cases {
            assert!(matches!(check_statement(&stmt, false), Err(DomainError::Unsupported(_))), "{stmt:?}");
        }
        let full = Statement::Vacuum { tables: vec![rel("t")], full: true };
        assert_eq!(check_statement(&full, true).ok(), Some(Mode::Queued));
    }

    #[test]
    fn objects_must_exist_be_owned_and_not_system() {
        let ci = Statement::CreateIndex { table: rel("t"), concurrent: false };
        assert!(check_objects(&ci, &[facts('r', false, true)], &[]).is_ok());
        for bad in [None, facts('r', true, true), facts('r', false, false)] {
            assert!(
                matches!(check_objects(&ci, std::slice::from_ref(&bad), &[]), Err(DomainError::Forbidden(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(check_objects(&ci, &[facts('v', false, true)], &[]), Err(DomainError::Unsupported(_))));
        let drop = |missing_ok| Statement::DropIndex {
            indexes: vec![rel("i")],
            concurrent: false,
            missing_ok,
            cascade: false,
        };
        assert!(check_objects(&drop(true), &[None], &[]).is_ok());
        assert!(check_objects(&drop(false), &[None], &[]).is_err());
        assert!(matches!(
            check_objects(&drop(false), &[facts('r', false, true)], &[]),
            Err(DomainError::Unsupported(_))
        ));
        assert!(check_objects(&drop(false), &[facts('i', false, true)], &[]).is_ok());
    }

    #[test]
    fn a_partition_of_another_role_is_refused() {
        let mut parent = facts('p', false, true);
        parent.as_mut().unwrap().foreign_partition = Some("public.t_2024".into());
        for stmt in [
            Statement::CreateIndex { table: rel("t"), concurrent: false },
            Statement::Analyze { tables: vec![rel("t")] },
            Statement::Vacuum { tables: vec![rel("t")], full: false },
        ] {
            let err = check_objects(&stmt, std::slice::from_ref(&parent), &[]).unwrap_err();
            assert!(matches!(&err, DomainError::Forbidden(m) if m.contains("public.t_2024")), "{stmt:?}: {err:?}");
        }
        assert!(check_objects(&Statement::Analyze { tables: vec![rel("t")] }, &[facts('p', false, true)], &[]).is_ok());
    }

    #[test]
    fn reindex_of_a_partitioned_relation_is_queued() {
        let reindex =
            |target| Statement::Reindex { target, relation: Some(rel("t")), concurrent: false, other_options: vec![] };
        let table = reindex(ReindexTarget::Table);
        assert_eq!(mode_for(&table, Mode::Immediate, &[facts('r', false, true)]), Mode::Immediate);
        assert_eq!(mode_for(&table, Mode::Immediate, &[facts('p', false, true)]), Mode::Queued);
        assert_eq!(mode_for(&reindex(ReindexTarget::Index), Mode::Immediate, &[facts('I', false, true)]), Mode::Queued);
        let analyze = Statement::Analyze { tables: vec![rel("t")] };
        assert_eq!(mode_for(&analyze, Mode::Immediate, &[facts('p', false, true)]), Mode::Immediate);
    }

    #[test]
    fn index_functions_must_be_trusted_and_immutable() {
        let ci = Statement::CreateIndex { table: rel("t"), concurrent: false };
        let f = |trusted, immutable| FuncFacts { signature: "f(integer)".into(), trusted, immutable };
        assert!(check_objects(&ci, &[facts('r', false, true)], &[f(true, true)]).is_ok());
        let err = check_objects(&ci, &[facts('r', false, true)], &[f(false, true)]).unwrap_err();
        assert!(matches!(&err, DomainError::Forbidden(m) if m.contains("user-defined")));
        assert!(matches!(
            check_objects(&ci, &[facts('r', false, true)], &[f(true, false)]),
            Err(DomainError::Forbidden(_))
        ));
    }

    #[test]
    fn queued_payload_carries_role_and_search_path() {
        let p = queued_payload("VACUUM t", "alice", "\"$user\", public", false);
        assert_eq!(p["sql"], "VACUUM t");
        assert_eq!(p["role"], "alice");
        assert_eq!(p["search_path"], "\"$user\", public");
        assert!(p.get("respect_freeze").is_none());
        assert_eq!(queued_payload("REINDEX INDEX i", "alice", "public", true)["respect_freeze"], true);
    }

    #[test]
    fn the_calendar_freezes_index_changes_and_vacuum_full_only() {
        let frozen = [
            Statement::CreateIndex { table: rel("t"), concurrent: true },
            Statement::DropIndex { indexes: vec![rel("i")], concurrent: false, missing_ok: false, cascade: false },
            Statement::Reindex {
                target: ReindexTarget::Index,
                relation: Some(rel("i")),
                concurrent: true,
                other_options: vec![],
            },
            Statement::Vacuum { tables: vec![rel("t")], full: true },
        ];
        assert!(frozen.iter().all(Statement::frozen_by_calendar));
        assert!(!Statement::Vacuum { tables: vec![rel("t")], full: false }.frozen_by_calendar());
        assert!(!Statement::Analyze { tables: vec![rel("t")] }.frozen_by_calendar());
    }
}
