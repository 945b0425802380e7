//! Reading an EXPLAIN (FORMAT JSON) plan: bottlenecks, the sequential scans an index could
//! replace, and how much a recommendation is worth. Pure: the plan is a serde_json value.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::rules::{ColumnUse, FilterOp, QueryFacts};

/// A sequential scan of a table with at least this many rows is worth a look.
pub const LARGE_TABLE_ROWS: f64 = 10_000.0;
/// A nested loop whose outer side yields more rows than this repeats its inner side that often.
pub const NESTED_LOOP_ROWS: f64 = 1_000.0;
/// Estimated and actual rows differing by this factor mislead the planner.
pub const MISESTIMATE_FACTOR: f64 = 10.0;
/// The most improvement a recommendation promises: estimates beyond it are not credible.
pub const MAX_IMPROVEMENT_PCT: f64 = 90.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bottleneck {
    pub kind: &'static str,
    pub node: String,
    pub relation: Option<String>,
    pub detail: String,
}

/// A sequential scan in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqScan {
    pub schema: Option<String>,
    pub relation: String,
    pub alias: Option<String>,
}

fn num(node: &Value, key: &str) -> Option<f64> {
    node.get(key).and_then(Value::as_f64)
}

fn text(node: &Value, key: &str) -> Option<String> {
    node.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Rows a node produced in total (ANALYZE) or is expected to produce per loop.
fn rows(node: &Value) -> f64 {
    match (num(node, "Actual Rows"), num(node, "Actual Loops")) {
        (Some(r), Some(l)) => r * l,
        _ => num(node, "Plan Rows").unwrap_or(0.0),
    }
}

fn walk<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for child in node.get("Plans").and_then(Value::as_array).into_iter().flatten() {
        walk(child, out);
    }
}

/// Every plan node, root first. `explain` is EXPLAIN's document (`{"Plan": ...}`).
pub fn nodes(explain: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    if let Some(plan) = explain.get("Plan") {
        walk(plan, &mut out);
    }
    out
}

pub fn total_cost(explain: &Value) -> Option<f64> {
    explain.get("Plan").and_then(|p| num(p, "Total Cost"))
}

pub fn seq_scans(explain: &Value) -> Vec<SeqScan> {
    nodes(explain)
        .into_iter()
        .filter(|n| text(n, "Node Type").as_deref() == Some("Seq Scan"))
        .filter_map(|n| {
            Some(SeqScan { schema: text(n, "Schema"), relation: text(n, "Relation Name")?, alias: text(n, "Alias") })
        })
        .collect()
}

/// `table_rows`: estimated rows of each relation the plan scans (by name); `work_mem_bytes`
/// decides whether an un-analysed sort is likely to spill.
pub fn bottlenecks(explain: &Value, table_rows: &HashMap<String, f64>, work_mem_bytes: f64) -> Vec<Bottleneck> {
    let mut out = Vec::new();
    for n in nodes(explain) {
        let node_type = text(n, "Node Type").unwrap_or_default();
        let relation = text(n, "Relation Name");
        let mut push = |kind: &'static str, detail: String| {
            out.push(Bottleneck { kind, node: node_type.clone(), relation: relation.clone(), detail })
        };
        if node_type == "Seq Scan" {
            let table = relation.as_ref().and_then(|r| table_rows.get(r)).copied().unwrap_or(0.0);
            if table >= LARGE_TABLE_ROWS {
                push("seq_scan_large_table", format!("sequential scan of about {table:.0} rows"));
            }
        }
        if node_type == "Sort" {
            let spilled = text(n, "Sort Space Type").as_deref() == Some("Disk");
            let estimated = rows(n) * num(n, "Plan Width").unwrap_or(0.0);
            if spilled || (n.get("Sort Space Type").is_none() && estimated > work_mem_bytes) {
                let how = if spilled { "spilled" } else { "is estimated to spill" };
                push("sort_spills_to_disk", format!("sort of {:.0} rows {how} to disk (work_mem too small)", rows(n)));
            }
        }
        if num(n, "Hash Batches").is_some_and(|b| b > 1.0) {
            push("hash_spills_to_disk", "hash table split into batches on disk".into());
        }
        if node_type == "Nested Loop" {
            let outer = n.get("Plans").and_then(Value::as_array).and_then(|p| p.first()).map(rows).unwrap_or(0.0);
            if outer > NESTED_LOOP_ROWS {
                push("nested_loop_many_rows", format!("nested loop repeats its inner side for {outer:.0} outer rows"));
            }
        }
        if let (Some(actual), Some(planned)) = (num(n, "Actual Rows"), num(n, "Plan Rows")) {
            let ratio = actual.max(1.0) / planned.max(1.0);
            if !(1.0 / MISESTIMATE_FACTOR..=MISESTIMATE_FACTOR).contains(&ratio) {
                push(
                    "row_misestimate",
                    format!("estimated {planned:.0} rows, got {actual:.0}: run ANALYZE or add extended statistics"),
                );
            }
        }
    }
    out
}

/// What the catalog says about a scanned table: its quoted name, its quoted columns (name ->
/// quoted) and the leading column of each existing index.
#[derive(Debug, Clone, Default)]
pub struct TableInfo {
    pub qualified: String,
    pub columns: HashMap<String, String>,
    pub index_leads: Vec<String>,
    /// Columns a GIN index leads with.
    pub gin_leads: Vec<String>,
}

/// An index to try: CREATE INDEX ON table [USING method] (columns), each column with its
/// operator class when it needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub table: String,
    /// None: a b-tree.
    pub method: Option<&'static str>,
    pub columns: Vec<String>,
    pub reason: String,
}

impl Candidate {
    /// The definition without a name: what the tuner remembers it by.
    pub fn sql(&self) -> String {
        self.statement("", false)
    }

    /// The statement creating it as `name` (empty: unnamed), concurrently or not.
    pub fn statement(&self, name: &str, concurrently: bool) -> String {
        let using = self.method.map(|m| format!(" USING {m}")).unwrap_or_default();
        let named = if name.is_empty() { String::new() } else { format!("{name} ") };
        let how = if concurrently { "CONCURRENTLY " } else { "" };
        format!("CREATE INDEX {how}{named}ON {}{using} ({})", self.table, self.columns.join(", "))
    }
}

fn belongs(u: &ColumnUse, scan: &SeqScan, info: &TableInfo) -> bool {
    let named = match &u.qualifier {
        Some(q) => Some(q) == scan.alias.as_ref() || *q == scan.relation,
        None => true,
    };
    named && info.columns.contains_key(&u.column)
}

/// The GIN index a filter no b-tree serves asks for: trigrams (pg_trgm's gin_trgm_ops) for
/// LIKE '%...%', ILIKE and regular expressions, the column's default GIN operator class for
/// array and jsonb containment and key tests. One per table, for the first such filter, unless
/// a GIN index already leads with its column.
fn gin_candidate(facts: &QueryFacts, scan: &SeqScan, info: &TableInfo) -> Option<Candidate> {
    let u = facts.filters.iter().find(|u| !u.op.btree() && belongs(u, scan, info))?;
    if info.gin_leads.contains(&u.column) {
        return None;
    }
    let quoted = &info.columns[&u.column];
    let (column, why) = match u.op {
        FilterOp::Trigram => (
            format!("{quoted} gin_trgm_ops"),
            "a pattern (LIKE with a leading wildcard, ILIKE or a regular expression) no b-tree serves; a trigram index needs the pg_trgm extension",
        ),
        _ => (quoted.clone(), "containment or key tests (@>, <@, &&, ?) no b-tree serves"),
    };
    Some(Candidate {
        table: info.qualified.clone(),
        method: Some("gin"),
        columns: vec![column],
        reason: format!("sequential scan of {} which the query filters with {why}: {}", info.qualified, u.column),
    })
}

/// For each sequentially scanned table the query filters (or else joins) on: an index on the
/// equality columns, then one range column, at most three, unless an index already leads with
/// the first of them; and a GIN index for the filters a b-tree cannot serve.
pub fn candidates(facts: &QueryFacts, scans: &[SeqScan], tables: &HashMap<String, TableInfo>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for scan in scans {
        let Some(info) = tables.get(&scan.relation) else { continue };
        if let Some(gin) = gin_candidate(facts, scan, info) {
            if !out.contains(&gin) {
                out.push(gin);
            }
        }
        let pick = |uses: &[ColumnUse]| -> Vec<String> {
            let mut cols: Vec<String> = Vec::new();
            let mut ordered: Vec<&ColumnUse> = uses.iter().filter(|u| u.op.btree() && belongs(u, scan, info)).collect();
            ordered.sort_by_key(|u| u.op == FilterOp::Range);
            let mut range_taken = false;
            for u in ordered {
                if cols.len() == 3 || cols.contains(&u.column) || (u.op == FilterOp::Range && range_taken) {
                    continue;
                }
                range_taken |= u.op == FilterOp::Range;
                cols.push(u.column.clone());
            }
            cols
        };
        let (cols, why) = match pick(&facts.filters) {
            c if !c.is_empty() => (c, "filters on"),
            _ => (pick(&facts.join_columns), "joins on"),
        };
        if cols.is_empty() || info.index_leads.contains(&cols[0]) {
            continue;
        }
        let candidate = Candidate {
            table: info.qualified.clone(),
            method: None,
            columns: cols.iter().map(|c| info.columns[c].clone()).collect(),
            reason: format!("sequential scan of {} which the query {why} {}", info.qualified, cols.join(", ")),
        };
        if !out.iter().any(|c| c.sql() == candidate.sql()) {
            out.push(candidate);
        }
    }
    out
}

/// Percent of the plan's cost an index saves, never more than `MAX_IMPROVEMENT_PCT`.
pub fn improvement_pct(before: f64, after: f64) -> f64 {
    if before <= 0.0 {
        return 0.0;
    }
    (((before - after) / before) * 100.0).clamp(0.0, MAX_IMPROVEMENT_PCT).round()
}

/// Without a measurement: a rough figure from what was found (15 per plan bottleneck, 10 per
/// high and 5 per medium finding), under the same ceiling.
pub fn heuristic_improvement_pct(bottlenecks: usize, high: usize, medium: usize) -> f64 {
    ((15 * bottlenecks + 10 * high + 5 * medium) as f64).min(MAX_IMPROVEMENT_PCT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::rules::RelRef;
    use serde_json::json;

    fn plan() -> Value {
        json!({"Plan": {
        "Node Type": "Nested Loop", "Plan Rows": 5000, "Total Cost": 900.0,
        "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "orders", "Schema": "public", "Alias": "o",
             "Plan Rows": 4000, "Actual Rows": 4000, "Actual Loops": 1},
            {"Node Type": "Sort", "Plan Rows": 10, "Plan Width": 8, "Sort Space Type": "Disk",
             "Actual Rows": 500, "Actual Loops": 4000,
             "Plans": [{"Node Type": "Seq Scan", "Relation Name": "small", "Alias": "s", "Plan Rows": 10}]}
        ]}})
    }

    #[test]
    fn bottlenecks_found_in_the_plan() {
        let rows = HashMap::from([("orders".to_string(), 50_000.0), ("small".to_string(), 10.0)]);
        let kinds: Vec<&str> = bottlenecks(&plan(), &rows, 4.0 * 1024.0 * 1024.0).iter().map(|b| b.kind).collect();
        assert_eq!(kinds, ["nested_loop_many_rows", "seq_scan_large_table", "sort_spills_to_disk", "row_misestimate"]);
        assert_eq!(total_cost(&plan()), Some(900.0));
        assert_eq!(seq_scans(&plan()).len(), 2);
    }

    #[test]
    fn an_unanalysed_sort_is_judged_by_its_size() {
        let sort = |rows: f64| json!({"Plan": {"Node Type": "Sort", "Plan Rows": rows, "Plan Width": 100}});
        assert_eq!(bottlenecks(&sort(1000.0), &HashMap::new(), 1_000_000.0), vec![]);
        assert_eq!(bottlenecks(&sort(100_000.0), &HashMap::new(), 1_000_000.0)[0].kind, "sort_spills_to_disk");
    }

    fn orders() -> HashMap<String, TableInfo> {
        let columns = ["customer_id", "status", "created_at", "id", "notes", "tags", "extra"]
            .iter()
            .map(|c| (c.to_string(), c.to_string()))
            .collect();
        HashMap::from([(
            "orders".to_string(),
            TableInfo {
                qualified: "public.orders".into(),
                columns,
                index_leads: vec!["id".into()],
                gin_leads: vec!["tags".into()],
            },
        )])
    }

    fn uses(list: &[(&str, &str, FilterOp)]) -> Vec<ColumnUse> {
        list.iter()
            .map(|(q, c, op)| ColumnUse {
                qualifier: (!q.is_empty()).then(|| q.to_string()),
                column: c.to_string(),
                op: *op,
            })
            .collect()
    }

    #[test]
    fn candidates_put_equality_first_and_one_range() {
        let facts = QueryFacts {
            relations: vec![RelRef { schema: None, name: "orders".into(), alias: Some("o".into()) }],
            filters: uses(&[
                ("o", "created_at", FilterOp::Range),
                ("o", "customer_id", FilterOp::Eq),
                ("", "status", FilterOp::Eq),
                ("x", "status", FilterOp::Eq),
                ("o", "id", FilterOp::Range),
            ]),
            ..Default::default()
        };
        let scans = seq_scans(&plan());
        let c = candidates(&facts, &scans, &orders());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].sql(), "CREATE INDEX ON public.orders (customer_id, status, created_at)");
    }

    #[test]
    fn no_candidate_where_an_index_already_leads() {
        let facts = QueryFacts { filters: uses(&[("", "id", FilterOp::Eq)]), ..Default::default() };
        assert!(candidates(&facts, &seq_scans(&plan()), &orders()).is_empty());
        let joins = QueryFacts { join_columns: uses(&[("o", "customer_id", FilterOp::Eq)]), ..Default::default() };
        let c = candidates(&joins, &seq_scans(&plan()), &orders());
        assert_eq!(c[0].sql(), "CREATE INDEX ON public.orders (customer_id)");
        assert!(c[0].reason.contains("joins on"));
    }

    #[test]
    fn patterns_and_containment_get_a_gin_index_beside_the_btree_one() {
        let facts = QueryFacts {
            filters: uses(&[
                ("o", "notes", FilterOp::Trigram),
                ("o", "customer_id", FilterOp::Eq),
                ("o", "extra", FilterOp::Contains),
            ]),
            ..Default::default()
        };
        let c = candidates(&facts, &seq_scans(&plan()), &orders());
        let sql: Vec<String> = c.iter().map(Candidate::sql).collect();
        assert_eq!(
            sql,
            [
                "CREATE INDEX ON public.orders USING gin (notes gin_trgm_ops)",
                "CREATE INDEX ON public.orders (customer_id)"
            ]
        );
        assert!(c[0].reason.contains("pg_trgm"), "{}", c[0].reason);
        assert_eq!(
            c[0].statement("tuning_action_7_idx", true),
            "CREATE INDEX CONCURRENTLY tuning_action_7_idx ON public.orders USING gin (notes gin_trgm_ops)"
        );
        // Containment only: the column's default GIN operator class.
        let contains = QueryFacts { filters: uses(&[("", "extra", FilterOp::Contains)]), ..Default::default() };
        let c = candidates(&contains, &seq_scans(&plan()), &orders());
        assert_eq!(c[0].sql(), "CREATE INDEX ON public.orders USING gin (extra)");
        // A GIN index already leads with tags.
        let tags = QueryFacts { filters: uses(&[("", "tags", FilterOp::Contains)]), ..Default::default() };
        assert!(candidates(&tags, &seq_scans(&plan()), &orders()).is_empty());
    }

    #[test]
    fn improvement_is_capped_at_90() {
        assert_eq!(improvement_pct(100.0, 40.0), 60.0);
        assert_eq!(improvement_pct(1000.0, 1.0), 90.0);
        assert_eq!(improvement_pct(100.0, 120.0), 0.0);
        assert_eq!(improvement_pct(0.0, 0.0), 0.0);
        assert_eq!(heuristic_improvement_pct(1, 1, 1), 30.0);
        assert_eq!(heuristic_improvement_pct(10, 0, 0), 90.0);
    }
}
