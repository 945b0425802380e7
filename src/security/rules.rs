//! What the rule engine decides without a database: which offending object a violation row
//! names (for the one-open-violation-per-object rule), and whether an instant in a tenant's
//! local time is within its opening hours (the off-hours rule).

use serde_json::Value;

use crate::availability::facade::DayHours;

/// The object a violation row is about: its `object` column when the rule returns one, else
/// the whole row. Rules should return `object` whenever other columns (counts, timestamps)
/// change between runs, or each run would look like a new violation.
pub fn violation_key(row: &Value) -> String {
    match row.get("object") {
        Some(Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => row.to_string(),
    }
}

/// Whether local weekday `dow` (0 = Sunday) at `seconds` after local midnight falls within
/// the week's opening hours.
pub fn within_opening_hours(week: &[Option<DayHours>; 7], dow: usize, seconds: u32) -> bool {
    week[dow % 7].is_some_and(|h| h.start <= seconds && seconds < h.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_object_column_names_the_violation() {
        assert_eq!(violation_key(&json!({"object": "booking.customers", "rows": 3})), "booking.customers");
        assert_eq!(violation_key(&json!({"object": 42})), "42");
        let whole = json!({"a": 1});
        assert_eq!(violation_key(&whole), whole.to_string());
        assert_eq!(violation_key(&json!({"object": null, "a": 1})), json!({"object": null, "a": 1}).to_string());
    }

    #[test]
    fn opening_hours_are_half_open() {
        let doc = json!({"1": {"is_open": true, "start_time": "09:00", "end_time": "18:00"}});
        let week = crate::availability::facade::parse_opening_hours(&doc).unwrap();
        assert!(within_opening_hours(&week, 1, 9 * 3600));
        assert!(within_opening_hours(&week, 1, 18 * 3600 - 1));
        assert!(!within_opening_hours(&week, 1, 18 * 3600));
        assert!(!within_opening_hours(&week, 1, 8 * 3600));
        assert!(!within_opening_hours(&week, 0, 12 * 3600), "a missing day is closed");
    }
}
