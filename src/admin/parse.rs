//! Postgres's own parse trees and catalog, for the sandbox and the query analysis: the raw
//! statements of `crate::pg::parser` turned into the pure descriptions of `policy` and `rules`,
//! and the facts about the objects a statement names.

use std::ffi::{c_char, c_void, CStr, CString};

use pgrx::pg_sys;
use pgrx::pg_sys::submodules::ffi::pg_guard_ffi_boundary;
use pgrx::prelude::*;
use pgrx::PgList;

use super::policy::{FuncFacts, ReindexTarget, RelFacts, RelName, Statement};
use super::rules::{ColumnUse, FilterOp, QueryFacts, QueryKind, RelRef};
use crate::errors::DomainResult;

unsafe fn cstr(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
}

unsafe fn range_var(rv: *mut pg_sys::RangeVar) -> Option<RelName> {
    let rv = rv.as_ref()?;
    Some(RelName { schema: cstr(rv.schemaname), name: cstr(rv.relname)? })
}

/// A qualified name given as a List of String nodes (DROP's objects): the last two parts.
unsafe fn name_list(list: *mut pg_sys::List) -> RelName {
    let parts: Vec<String> =
        PgList::<pg_sys::String>::from_pg(list).iter_ptr().filter_map(|s| cstr((*s).sval)).collect();
    let n = parts.len();
    RelName { schema: (n > 1).then(|| parts[n - 2].clone()), name: parts.last().cloned().unwrap_or_default() }
}

/// The names of an option list's DefElems, and whether the one called `flag` is on (`FULL`,
/// `(FULL)`, `(FULL true)`; `(FULL false)` is off). Only that one is read as a boolean: other
/// options (TABLESPACE x) have other values.
unsafe fn options(list: *mut pg_sys::List, flag: &str) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    let mut on = false;
    for d in PgList::<pg_sys::DefElem>::from_pg(list).iter_ptr() {
        let name = cstr((*d).defname).unwrap_or_default();
        if name == flag {
            on = (*d).arg.is_null() || pg_sys::defGetBoolean(d);
        }
        names.push(name);
    }
    (names, on)
}

/// The command tag of any statement, for refusals ("DROP TABLE", "SELECT", ...).
/// # Safety
/// `node` must be a valid parse or plan tree node.
pub unsafe fn command_tag(node: *mut pg_sys::Node) -> String {
    cstr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(node))).unwrap_or_else(|| "this statement".into())
}

/// The sandbox's view of one raw statement.
///
/// # Safety
/// `node` must be a raw parse tree from `parse`, alive for the call; each cast follows its tag.
pub unsafe fn describe(node: *mut pg_sys::Node) -> Statement {
    // SAFETY: the caller's contract above.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_IndexStmt => {
                let s = &*(node as *mut pg_sys::IndexStmt);
                match range_var(s.relation) {
                    Some(table) => Statement::CreateIndex { table, concurrent: s.concurrent },
                    None => Statement::Other(command_tag(node)),
                }
            }
            pg_sys::NodeTag::T_DropStmt => {
                let s = &*(node as *mut pg_sys::DropStmt);
                if s.removeType != pg_sys::ObjectType::OBJECT_INDEX {
                    return Statement::Other(command_tag(node));
                }
                Statement::DropIndex {
                    indexes: PgList::<pg_sys::List>::from_pg(s.objects).iter_ptr().map(|l| name_list(l)).collect(),
                    concurrent: s.concurrent,
                    missing_ok: s.missing_ok,
                    cascade: s.behavior == pg_sys::DropBehavior::DROP_CASCADE,
                }
            }
            pg_sys::NodeTag::T_VacuumStmt => {
                let s = &*(node as *mut pg_sys::VacuumStmt);
                let tables = PgList::<pg_sys::VacuumRelation>::from_pg(s.rels)
                    .iter_ptr()
                    .filter_map(|r| range_var((*r).relation))
                    .collect();
                if s.is_vacuumcmd {
                    Statement::Vacuum { tables, full: options(s.options, "full").1 }
                } else {
                    Statement::Analyze { tables }
                }
            }
            pg_sys::NodeTag::T_ReindexStmt => {
                let s = &*(node as *mut pg_sys::ReindexStmt);
                let target = match s.kind {
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_INDEX => ReindexTarget::Index,
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_TABLE => ReindexTarget::Table,
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_SCHEMA => ReindexTarget::Wide("SCHEMA"),
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_SYSTEM => ReindexTarget::Wide("SYSTEM"),
                    _ => ReindexTarget::Wide("DATABASE"),
                };
                let (names, concurrent) = options(s.params, "concurrently");
                Statement::Reindex {
                    target,
                    relation: range_var(s.relation),
                    concurrent,
                    other_options: names.into_iter().filter(|n| n != "concurrently" && n != "verbose").collect(),
                }
            }
            _ => Statement::Other(command_tag(node)),
        }
    }
}

/// The relations a statement names, resolved with the caller's search_path and locked
/// (AccessShareLock until the end of the transaction, so what was checked is what runs).
/// `None` for a name that resolves to nothing.
pub fn resolve(names: &[&RelName]) -> Vec<Option<pg_sys::Oid>> {
    names
        .iter()
        .map(|n| {
            let schema = n.schema.as_deref().map(|s| CString::new(s).unwrap_or_default());
            let rel = CString::new(n.name.as_str()).unwrap_or_default();
            // SAFETY: makeRangeVar copies nothing but keeps the pointers, which live until the
            // lookup returns; RVR_MISSING_OK turns "does not exist" into InvalidOid.
            let oid = unsafe {
                let rv = pg_sys::makeRangeVar(
                    schema.as_ref().map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut c_char),
                    rel.as_ptr() as *mut c_char,
                    -1,
                );
                pg_sys::RangeVarGetRelidExtended(
                    rv,
                    pg_sys::AccessShareLock as pg_sys::LOCKMODE,
                    pg_sys::RVROption::RVR_MISSING_OK,
                    None,
                    std::ptr::null_mut(),
                )
            };
            (oid != pg_sys::InvalidOid).then_some(oid)
        })
        .collect()
}

const REL_FACTS_SQL: &str = include_str!("../../sql/queries/admin_relation_facts.sql");

/// Catalog facts for resolved relations, in one read.
pub fn rel_facts(oids: &[Option<pg_sys::Oid>]) -> DomainResult<Vec<Option<RelFacts>>> {
    let present: Vec<pg_sys::Oid> = oids.iter().flatten().copied().collect();
    let mut found = Spi::connect(|client| -> DomainResult<Vec<RelFacts>> {
        let rows = client.select(REL_FACTS_SQL, None, &[present.into()])?;
        let mut out = Vec::new();
        for row in rows {
            out.push(RelFacts {
                qualified: row.get::<String>(1)?.unwrap_or_default(),
                relkind: row.get::<String>(2)?.and_then(|k| k.chars().next()).unwrap_or('?'),
                schema: row.get::<String>(3)?.unwrap_or_default(),
                system: row.get::<bool>(4)?.unwrap_or(true),
                owned: row.get::<bool>(5)?.unwrap_or(false),
                foreign_partition: row.get::<String>(6)?,
            });
        }
        Ok(out)
    })?
    .into_iter();
    Ok(oids.iter().map(|o| o.and_then(|_| found.next())).collect())
}

unsafe extern "C-unwind" {
    fn transformIndexStmt(
        relid: pg_sys::Oid,
        stmt: *mut pg_sys::IndexStmt,
        query: *const c_char,
    ) -> *mut pg_sys::IndexStmt;
}

/// What an analysed index expression can call: functions (operators and casts included) and
/// domains, whose CHECK constraints run on every coercion and may call anything.
#[derive(Default)]
struct Calls {
    functions: Vec<pg_sys::Oid>,
    domains: Vec<pg_sys::Oid>,
}

unsafe extern "C-unwind" fn record_function(func: pg_sys::Oid, ctx: *mut c_void) -> bool {
    (*(ctx as *mut Calls)).functions.push(func);
    false
}

unsafe extern "C-unwind" fn collect_calls(node: *mut pg_sys::Node, ctx: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    if pgrx::is_a(node, pg_sys::NodeTag::T_CoerceToDomain) {
        (*(ctx as *mut Calls)).domains.push((*(node as *mut pg_sys::CoerceToDomain)).resulttype);
    }
    pg_sys::check_functions_in_node(node, Some(record_function), ctx);
    pg_sys::expression_tree_walker(node, Some(collect_calls), ctx)
}

/// A CREATE INDEX analysed against its (locked) table, the way Postgres itself does before
/// building: functions, operators and casts resolved to the exact functions that will run, and
/// the table named by its schema. Running this tree (`run_index_statement`), not the text, is
/// what makes the check hold: nothing is looked up by name again.
pub struct AnalysedIndex {
    stmt: *mut pg_sys::IndexStmt,
    pub functions: Vec<pg_sys::Oid>,
    pub domains: Vec<pg_sys::Oid>,
}

pub fn analyse_index(node: *mut pg_sys::Node, table: pg_sys::Oid, text: &str) -> AnalysedIndex {
    let query = CString::new(text).unwrap_or_default();
    let mut calls = Calls::default();
    // SAFETY: node is an IndexStmt (checked by the caller through `describe`); the copy is
    // analysed in place, in the current memory context, which outlives the call.
    let stmt = unsafe {
        let copy = pg_sys::copyObjectImpl(node as *const c_void) as *mut pg_sys::IndexStmt;
        (*(*copy).relation).schemaname = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(table));
        let stmt = pg_guard_ffi_boundary(|| transformIndexStmt(table, copy, query.as_ptr()));
        let ctx = &mut calls as *mut Calls as *mut c_void;
        collect_calls((*stmt).whereClause, ctx);
        for elem in PgList::<pg_sys::IndexElem>::from_pg((*stmt).indexParams).iter_ptr() {
            collect_calls((*elem).expr, ctx);
        }
        stmt
    };
    for list in [&mut calls.functions, &mut calls.domains] {
        list.sort_unstable_by_key(|o| o.to_u32());
        list.dedup();
    }
    AnalysedIndex { stmt, functions: calls.functions, domains: calls.domains }
}

/// Build the index from the analysed tree, as a statement of the current transaction.
pub fn run_index_statement(index: &AnalysedIndex, text: &str) {
    let query = CString::new(text).unwrap_or_default();
    // SAFETY: a PlannedStmt wrapping a transformed IndexStmt is what ProcessUtility receives
    // for CREATE INDEX; PROCESS_UTILITY_QUERY is the context SPI uses for a non-top-level query.
    unsafe {
        let mut planned = pgrx::PgBox::<pg_sys::PlannedStmt>::alloc_node(pg_sys::NodeTag::T_PlannedStmt);
        planned.commandType = pg_sys::CmdType::CMD_UTILITY;
        planned.canSetTag = true;
        planned.utilityStmt = index.stmt as *mut pg_sys::Node;
        planned.stmt_location = -1;
        pg_sys::ProcessUtility(
            planned.into_pg(),
            query.as_ptr(),
            false,
            pg_sys::ProcessUtilityContext::PROCESS_UTILITY_QUERY,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            pg_sys::None_Receiver,
            std::ptr::null_mut(),
        );
        pg_sys::CommandCounterIncrement();
    }
}

/// Functions as `name(args)` and domains as `domain name`: trusted when created by initdb or
/// by an extension (both installed by a superuser); domains count as immutable, their
/// constraints being what the trust is about.
const CALL_FACTS_SQL: &str = include_str!("../../sql/queries/admin_call_facts.sql");

pub fn call_facts(index: &AnalysedIndex) -> DomainResult<Vec<FuncFacts>> {
    if index.functions.is_empty() && index.domains.is_empty() {
        return Ok(vec![]);
    }
    Spi::connect(|client| {
        let mut out = Vec::new();
        let args = [index.functions.clone().into(), index.domains.clone().into()];
        for row in client.select(CALL_FACTS_SQL, None, &args)? {
            out.push(FuncFacts {
                signature: row.get::<String>(1)?.unwrap_or_default(),
                trusted: row.get::<bool>(2)?.unwrap_or(false),
                immutable: row.get::<bool>(3)?.unwrap_or(false),
            });
        }
        Ok(out)
    })
}

/// The last name of a qualified-name List of String nodes ("pg_catalog.lower" -> "lower").
unsafe fn last_name(list: *mut pg_sys::List) -> String {
    name_list(list).name
}

/// A column reference as (qualifier, column); `None` for `*` or anything that is not one.
unsafe fn column_ref(node: *mut pg_sys::Node) -> Option<(Option<String>, String)> {
    if !pgrx::is_a(node, pg_sys::NodeTag::T_ColumnRef) {
        return None;
    }
    let fields: Vec<*mut pg_sys::Node> =
        PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::ColumnRef)).fields).iter_ptr().collect();
    let name = |n: *mut pg_sys::Node| {
        pgrx::is_a(n, pg_sys::NodeTag::T_String).then(|| cstr((*(n as *mut pg_sys::String)).sval)).flatten()
    };
    let column = name(*fields.last()?)?;
    let qualifier = (fields.len() >= 2).then(|| name(fields[fields.len() - 2])).flatten();
    Some((qualifier, column))
}

unsafe fn is_star(node: *mut pg_sys::Node) -> bool {
    pgrx::is_a(node, pg_sys::NodeTag::T_ColumnRef)
        && PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::ColumnRef)).fields)
            .iter_ptr()
            .last()
            .is_some_and(|n| pgrx::is_a(n, pg_sys::NodeTag::T_A_Star))
}

/// A constant, a parameter, or a cast of one: what an index can compare a column with.
unsafe fn is_value(node: *mut pg_sys::Node) -> bool {
    if pgrx::is_a(node, pg_sys::NodeTag::T_TypeCast) {
        return is_value((*(node as *mut pg_sys::TypeCast)).arg);
    }
    pgrx::is_a(node, pg_sys::NodeTag::T_A_Const) || pgrx::is_a(node, pg_sys::NodeTag::T_ParamRef)
}

unsafe fn string_const(node: *mut pg_sys::Node) -> Option<String> {
    if pgrx::is_a(node, pg_sys::NodeTag::T_TypeCast) {
        return string_const((*(node as *mut pg_sys::TypeCast)).arg);
    }
    if !pgrx::is_a(node, pg_sys::NodeTag::T_A_Const) {
        return None;
    }
    let c = &*(node as *mut pg_sys::A_Const);
    (!c.isnull && c.val.node.type_ == pg_sys::NodeTag::T_String).then(|| cstr(c.val.sval.sval)).flatten()
}

/// `f(col)`: the call as text when a function wraps a column.
unsafe fn function_on_column(node: *mut pg_sys::Node) -> Option<String> {
    if !pgrx::is_a(node, pg_sys::NodeTag::T_FuncCall) {
        return None;
    }
    let call = &*(node as *mut pg_sys::FuncCall);
    let column = PgList::<pg_sys::Node>::from_pg(call.args).iter_ptr().find_map(|a| column_ref(a))?;
    Some(format!("{}({})", last_name(call.funcname), column.1))
}

/// The conditions of a WHERE or JOIN ... ON, down through AND.
unsafe fn predicates(node: *mut pg_sys::Node, f: &mut QueryFacts) {
    if node.is_null() {
        return;
    }
    match (*node).type_ {
        pg_sys::NodeTag::T_BoolExpr => {
            let b = &*(node as *mut pg_sys::BoolExpr);
            let args: Vec<*mut pg_sys::Node> = PgList::<pg_sys::Node>::from_pg(b.args).iter_ptr().collect();
            match b.boolop {
                pg_sys::BoolExprType::AND_EXPR => args.into_iter().for_each(|a| predicates(a, f)),
                pg_sys::BoolExprType::OR_EXPR => f.or_in_where = true,
                _ => {
                    let sub = args.first().copied().unwrap_or(std::ptr::null_mut());
                    if pgrx::is_a(sub, pg_sys::NodeTag::T_SubLink)
                        && (*(sub as *mut pg_sys::SubLink)).subLinkType == pg_sys::SubLinkType::ANY_SUBLINK
                    {
                        f.not_in_subqueries += 1;
                    }
                }
            }
        }
        pg_sys::NodeTag::T_A_Expr => {
            let e = &*(node as *mut pg_sys::A_Expr);
            let op = last_name(e.name);
            let (l, r) = (e.lexpr, e.rexpr);
            for side in [l, r] {
                if let Some(call) = function_on_column(side) {
                    f.functions_on_columns.push(call);
                }
            }
            let use_of = |col: (Option<String>, String), op| ColumnUse { qualifier: col.0, column: col.1, op };
            match e.kind {
                pg_sys::A_Expr_Kind::AEXPR_LIKE | pg_sys::A_Expr_Kind::AEXPR_ILIKE => {
                    let pattern = string_const(r);
                    let leading = pattern.as_deref().is_some_and(|p| p.starts_with('%') || p.starts_with('_'));
                    if leading {
                        f.leading_wildcard_likes.push(format!("'{}'", pattern.clone().unwrap_or_default()));
                    }
                    // An anchored LIKE is a b-tree range; a leading wildcard or ILIKE needs trigrams
                    // (a pattern that is a parameter could be either: no guess).
                    let op = if leading || e.kind == pg_sys::A_Expr_Kind::AEXPR_ILIKE {
                        Some(FilterOp::Trigram)
                    } else {
                        pattern.is_some().then_some(FilterOp::Range)
                    };
                    if let (Some(col), Some(op), true) = (column_ref(l), op, is_value(r)) {
                        f.filters.push(use_of(col, op));
                    }
                }
                pg_sys::A_Expr_Kind::AEXPR_OP
                    if ["~", "~*", "@>", "<@", "&&", "?", "?|", "?&"].contains(&op.as_str()) =>
                {
                    let kind = if op.starts_with('~') { FilterOp::Trigram } else { FilterOp::Contains };
                    if let (Some(col), true) = (column_ref(l), is_value(r)) {
                        f.filters.push(use_of(col, kind));
                    }
                }
                pg_sys::A_Expr_Kind::AEXPR_IN if op == "=" => {
                    if let Some(col) = column_ref(l) {
                        f.filters.push(use_of(col, FilterOp::Eq));
                    }
                }
                pg_sys::A_Expr_Kind::AEXPR_BETWEEN => {
                    if let Some(col) = column_ref(l) {
                        f.filters.push(use_of(col, FilterOp::Range));
                    }
                }
                pg_sys::A_Expr_Kind::AEXPR_OP if ["=", "<", ">", "<=", ">="].contains(&op.as_str()) => {
                    let kind = if op == "=" { FilterOp::Eq } else { FilterOp::Range };
                    match (column_ref(l), column_ref(r)) {
                        (Some(a), Some(b)) if op == "=" => {
                            f.join_columns.push(use_of(a, FilterOp::Eq));
                            f.join_columns.push(use_of(b, FilterOp::Eq));
                        }
                        (Some(col), None) if is_value(r) => f.filters.push(use_of(col, kind)),
                        (None, Some(col)) if is_value(l) => f.filters.push(use_of(col, kind)),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

unsafe fn select_facts(s: &pg_sys::SelectStmt, f: &mut QueryFacts) {
    f.modifies |= !s.intoClause.is_null() || !s.lockingClause.is_null();
    if s.op != pg_sys::SetOperation::SETOP_NONE {
        f.set_operations += 1;
        return;
    }
    let from: Vec<*mut pg_sys::Node> = PgList::<pg_sys::Node>::from_pg(s.fromClause).iter_ptr().collect();
    f.joins += from.len().saturating_sub(1);
    if s.whereClause.is_null() && s.limitCount.is_null() && s.groupClause.is_null() {
        for item in &from {
            if pgrx::is_a(*item, pg_sys::NodeTag::T_RangeVar) {
                if let Some(r) = range_var(*item as *mut pg_sys::RangeVar) {
                    f.unfiltered_selects.push(r.to_string());
                }
            }
        }
    }
    predicates(s.whereClause, f);
    for sort in PgList::<pg_sys::SortBy>::from_pg(s.sortClause).iter_ptr() {
        let key = (*sort).node;
        if pgrx::is_a(key, pg_sys::NodeTag::T_FuncCall)
            && last_name((*(key as *mut pg_sys::FuncCall)).funcname) == "random"
        {
            f.order_by_random = true;
        }
    }
    if pgrx::is_a(s.limitOffset, pg_sys::NodeTag::T_A_Const) {
        let c = &*(s.limitOffset as *mut pg_sys::A_Const);
        if !c.isnull
            && c.val.node.type_ == pg_sys::NodeTag::T_Integer
            && i64::from(c.val.ival.ival) > super::rules::LARGE_OFFSET
        {
            f.large_offset = Some(i64::from(c.val.ival.ival));
        }
    }
}

unsafe extern "C-unwind" fn facts_walker(node: *mut pg_sys::Node, ctx: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    let f = &mut *(ctx as *mut QueryFacts);
    match (*node).type_ {
        pg_sys::NodeTag::T_SelectStmt => select_facts(&*(node as *mut pg_sys::SelectStmt), f),
        pg_sys::NodeTag::T_UpdateStmt | pg_sys::NodeTag::T_DeleteStmt => {
            let (relation, where_clause) = if (*node).type_ == pg_sys::NodeTag::T_UpdateStmt {
                let u = &*(node as *mut pg_sys::UpdateStmt);
                (u.relation, u.whereClause)
            } else {
                let d = &*(node as *mut pg_sys::DeleteStmt);
                (d.relation, d.whereClause)
            };
            f.modifies = true;
            if where_clause.is_null() {
                f.unfiltered_write = range_var(relation).map(|r| r.to_string());
            }
            predicates(where_clause, f);
        }
        pg_sys::NodeTag::T_JoinExpr => {
            f.joins += 1;
            predicates((*(node as *mut pg_sys::JoinExpr)).quals, f);
        }
        pg_sys::NodeTag::T_RangeVar => {
            let rv = &*(node as *mut pg_sys::RangeVar);
            if let Some(r) = range_var(node as *mut pg_sys::RangeVar) {
                let alias = rv.alias.as_ref().and_then(|a| cstr(a.aliasname));
                f.relations.push(RelRef { schema: r.schema, name: r.name, alias });
            }
        }
        pg_sys::NodeTag::T_RangeSubselect | pg_sys::NodeTag::T_SubLink => f.subqueries += 1,
        pg_sys::NodeTag::T_CommonTableExpr => f.ctes += 1,
        pg_sys::NodeTag::T_ColumnRef if is_star(node) => f.select_star = true,
        pg_sys::NodeTag::T_ParamRef => f.params = f.params.max((*(node as *mut pg_sys::ParamRef)).number),
        pg_sys::NodeTag::T_InsertStmt | pg_sys::NodeTag::T_MergeStmt => f.modifies = true,
        _ => {}
    }
    pg_sys::raw_expression_tree_walker(node, Some(facts_walker), ctx)
}

/// The facts the analysis rules read, from one raw DML statement.
///
/// # Safety
/// `node` must be a raw parse tree from `parse`, alive for the call; the walker only reads it.
pub unsafe fn query_facts(node: *mut pg_sys::Node) -> QueryFacts {
    let mut f = QueryFacts::default();
    // SAFETY: the caller's contract above.
    unsafe {
        f.kind = match (*node).type_ {
            pg_sys::NodeTag::T_InsertStmt => QueryKind::Insert,
            pg_sys::NodeTag::T_UpdateStmt => QueryKind::Update,
            pg_sys::NodeTag::T_DeleteStmt => QueryKind::Delete,
            _ => QueryKind::Select,
        };
        facts_walker(node, &mut f as *mut QueryFacts as *mut c_void);
    }
    f
}
