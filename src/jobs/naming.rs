//! Names, payload shapes and waits shared by the workers and the SQL API (pure).

/// bgw_name and bgw_type of the scheduler; operators see it as pg_stat_activity.backend_type.
pub const SCHEDULER_NAME: &str = "booking_engine scheduler";

/// The runners' name; runner `n` (1-based) is "booking_engine runner n".
pub const RUNNER_NAME: &str = "booking_engine runner";

/// Runner `n`'s name, as pg_stat_activity shows it and claim_jobs records it as `locked_by`.
pub fn runner_name(n: i32) -> String {
    format!("{RUNNER_NAME} {n}")
}

/// The one statement a `top_level` handler runs: the payload's non-blank `"sql"` string.
pub fn top_level_sql(payload: &serde_json::Value) -> Result<&str, String> {
    match payload.get("sql") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err("payload \"sql\" must be a non-empty string".into()),
        None => Err("payload must be an object with an \"sql\" string".into()),
    }
}

/// The search_path a `top_level` statement's names are resolved with: the payload's optional
/// `"search_path"` string (the enqueuer's, so that `VACUUM t` means the table it meant).
pub fn top_level_search_path(payload: &serde_json::Value) -> Result<Option<&str>, String> {
    match payload.get("search_path") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("payload \"search_path\" must be a string".into()),
    }
}

/// How long an idle worker may sleep: until its next piece of work is due (a retry, an
/// operation), but never longer than the poll interval, so that changes made without a wake-up
/// (configuration, jobs inserted by hand) are still seen.
pub fn idle_wait_ms(poll_interval_ms: i32, next_due_in_ms: Option<i64>) -> i64 {
    let poll = i64::from(poll_interval_ms.max(1));
    match next_due_in_ms {
        Some(due) => due.clamp(1, poll),
        None => poll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runner_names_are_numbered_from_one() {
        assert_eq!(runner_name(1), "booking_engine runner 1");
        assert_eq!(runner_name(12), "booking_engine runner 12");
    }

    #[test]
    fn top_level_payload_needs_a_non_blank_sql_string() {
        assert_eq!(top_level_sql(&json!({"sql": "VACUUM booking.events"})), Ok("VACUUM booking.events"));
        assert!(top_level_sql(&json!({"sql": "  "})).is_err());
        assert!(top_level_sql(&json!({"sql": 5})).is_err());
    }

    #[test]
    fn top_level_search_path_is_optional_text() {
        assert_eq!(top_level_search_path(&json!({"sql": "VACUUM t"})), Ok(None));
        assert_eq!(
            top_level_search_path(&json!({"sql": "VACUUM t", "search_path": "app, public"})),
            Ok(Some("app, public"))
        );
        assert!(top_level_search_path(&json!({"sql": "VACUUM t", "search_path": 1})).is_err());
        assert!(top_level_sql(&json!({"statement": "VACUUM"})).is_err());
        assert!(top_level_sql(&json!("VACUUM")).is_err());
    }

    #[test]
    fn idle_workers_sleep_until_due_but_at_most_one_poll_interval() {
        assert_eq!(idle_wait_ms(1000, None), 1000);
        assert_eq!(idle_wait_ms(1000, Some(250)), 250);
        assert_eq!(idle_wait_ms(1000, Some(60_000)), 1000);
        assert_eq!(idle_wait_ms(1000, Some(-40)), 1, "overdue work runs at once");
    }
}
