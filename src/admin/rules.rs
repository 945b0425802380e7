//! Query analysis rules on facts taken from Postgres's parse tree (never from the text), and
//! the complexity grade. `parse::query_facts` fills `QueryFacts`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryKind {
    #[default]
    Select,
    Insert,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `=`, `IN (...)`: an index can seek to these.
    Eq,
    /// `<`, `>`, `BETWEEN`, `LIKE 'abc%'`: an index can scan a range.
    Range,
    /// `LIKE '%abc%'`, `ILIKE`, `~`: no b-tree helps; a trigram GIN index (pg_trgm) does.
    Trigram,
    /// `@>`, `<@`, `&&` on arrays, `@>`, `?`, `?|`, `?&` on jsonb: a GIN index does.
    Contains,
}

impl FilterOp {
    /// Whether a b-tree index can serve it.
    pub fn btree(self) -> bool {
        matches!(self, FilterOp::Eq | FilterOp::Range)
    }
}

/// A column a query filters or joins on, with the table alias or name it was written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnUse {
    pub qualifier: Option<String>,
    pub column: String,
    pub op: FilterOp,
}

/// A relation in FROM (or the target of UPDATE/DELETE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelRef {
    pub schema: Option<String>,
    pub name: String,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryFacts {
    pub kind: QueryKind,
    pub relations: Vec<RelRef>,
    /// Explicit JOINs plus extra comma-separated FROM items.
    pub joins: usize,
    pub subqueries: usize,
    pub ctes: usize,
    pub set_operations: usize,
    pub select_star: bool,
    /// Tables a SELECT reads with no WHERE and no LIMIT.
    pub unfiltered_selects: Vec<String>,
    /// The UPDATE or DELETE has no WHERE.
    pub unfiltered_write: Option<String>,
    pub leading_wildcard_likes: Vec<String>,
    /// `lower(email) = ...`: a function wrapped around a filtered column.
    pub functions_on_columns: Vec<String>,
    pub not_in_subqueries: usize,
    pub or_in_where: bool,
    pub order_by_random: bool,
    pub large_offset: Option<i64>,
    pub filters: Vec<ColumnUse>,
    pub join_columns: Vec<ColumnUse>,
    /// The highest `$n` the statement uses (0: none), so it can be planned generically.
    pub params: i32,
    /// A data-modifying statement anywhere (a CTE, SELECT INTO): never run by EXPLAIN ANALYZE.
    pub modifies: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: &'static str,
    pub description: String,
    pub suggestion: String,
}

fn finding(rule: &'static str, severity: &'static str, description: String, suggestion: &str) -> Finding {
    Finding { rule, severity, description, suggestion: suggestion.to_string() }
}

/// An OFFSET above this reads and throws away that many rows on every page.
pub const LARGE_OFFSET: i64 = 1000;

pub fn findings(f: &QueryFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(table) = &f.unfiltered_write {
        out.push(finding(
            "missing_where_clause",
            "high",
            format!(
                "{} of {table} without a WHERE clause changes every row",
                if f.kind == QueryKind::Update { "UPDATE" } else { "DELETE" }
            ),
            "Add a WHERE clause, or use TRUNCATE if emptying the table is the intent",
        ));
    }
    for table in &f.unfiltered_selects {
        out.push(finding(
            "missing_where_clause",
            "high",
            format!("SELECT from {table} without a WHERE clause or LIMIT reads the entire table"),
            "Add a WHERE clause to filter results and improve performance",
        ));
    }
    for pattern in &f.leading_wildcard_likes {
        out.push(finding(
            "inefficient_like",
            "medium",
            format!("LIKE with leading wildcard ({pattern}) cannot use a b-tree index"),
            "Consider full-text search or a pg_trgm GIN index, or anchor the pattern at the start",
        ));
    }
    if f.select_star {
        out.push(finding(
            "select_star",
            "low",
            "SELECT * reads and sends every column, and prevents index-only scans".into(),
            "List only the columns the caller needs",
        ));
    }
    for call in &f.functions_on_columns {
        out.push(finding(
            "function_on_column",
            "medium",
            format!("{call} in a condition hides the column from plain indexes"),
            "Compare the bare column, or create an expression index on exactly that expression",
        ));
    }
    if f.not_in_subqueries > 0 {
        out.push(finding(
            "not_in_subquery",
            "medium",
            "NOT IN (subquery) cannot be planned as an anti-join and is wrong when the subquery yields NULL".into(),
            "Use NOT EXISTS (...) instead",
        ));
    }
    if f.or_in_where {
        out.push(finding(
            "or_condition",
            "low",
            "OR between conditions often prevents a single index scan".into(),
            "Consider IN (...) for one column, or UNION ALL of indexed branches",
        ));
    }
    if f.order_by_random {
        out.push(finding(
            "order_by_random",
            "medium",
            "ORDER BY random() sorts every row to pick a few".into(),
            "Use TABLESAMPLE or pick random keys instead",
        ));
    }
    if let Some(offset) = f.large_offset {
        out.push(finding(
            "large_offset",
            "medium",
            format!("OFFSET {offset} reads and discards {offset} rows on every call"),
            "Use keyset pagination (WHERE key > last_seen ORDER BY key LIMIT n)",
        ));
    }
    out
}

pub fn complexity(f: &QueryFacts) -> &'static str {
    let nesting = f.subqueries + f.ctes + f.set_operations;
    if f.relations.len() <= 1 && nesting == 0 {
        "simple"
    } else if f.relations.len() <= 4 && nesting <= 1 {
        "moderate"
    } else {
        "complex"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str) -> RelRef {
        RelRef { schema: None, name: name.into(), alias: None }
    }

    #[test]
    fn a_clean_query_has_no_findings() {
        let f = QueryFacts { relations: vec![rel("t")], ..Default::default() };
        assert!(findings(&f).is_empty());
        assert_eq!(complexity(&f), "simple");
    }

    #[test]
    fn each_fact_has_its_rule() {
        let f = QueryFacts {
            kind: QueryKind::Delete,
            unfiltered_write: Some("t".into()),
            unfiltered_selects: vec!["u".into()],
            leading_wildcard_likes: vec!["'%x'".into()],
            select_star: true,
            functions_on_columns: vec!["lower(email)".into()],
            not_in_subqueries: 1,
            or_in_where: true,
            order_by_random: true,
            large_offset: Some(5000),
            ..Default::default()
        };
        let rules: Vec<(&str, &str)> = findings(&f).iter().map(|x| (x.rule, x.severity)).collect();
        assert_eq!(
            rules,
            [
                ("missing_where_clause", "high"),
                ("missing_where_clause", "high"),
                ("inefficient_like", "medium"),
                ("select_star", "low"),
                ("function_on_column", "medium"),
                ("not_in_subquery", "medium"),
                ("or_condition", "low"),
                ("order_by_random", "medium"),
                ("large_offset", "medium"),
            ]
        );
        assert!(findings(&f)[0].description.starts_with("DELETE of t"));
    }

    #[test]
    fn complexity_grows_with_relations_and_nesting() {
        let two = QueryFacts { relations: vec![rel("a"), rel("b")], joins: 1, ..Default::default() };
        assert_eq!(complexity(&two), "moderate");
        let nested = QueryFacts { relations: vec![rel("a"), rel("b")], subqueries: 1, ctes: 1, ..Default::default() };
        assert_eq!(complexity(&nested), "complex");
        let many = QueryFacts { relations: (0..5).map(|i| rel(&format!("t{i}"))).collect(), ..Default::default() };
        assert_eq!(complexity(&many), "complex");
        let one_sub = QueryFacts { relations: vec![rel("a")], subqueries: 1, ..Default::default() };
        assert_eq!(complexity(&one_sub), "moderate");
    }
}
