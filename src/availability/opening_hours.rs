//! The tenant's `opening_hours` document: weekday "0" (Sunday) .. "6" ->
//! `{"is_open": bool, "start_time": "HH:MM", "end_time": "HH:MM"}`. A day that is missing is
//! closed; "24:00" may end a day.

use serde_json::Value;

use super::engine::DayHours;

/// Reads "HH:MM" or "HH:MM:SS" as seconds since midnight; 24:00 is allowed only as an end.
pub fn parse_time(text: &str, allow_24: bool) -> Result<u32, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let field = |s: &str| -> Option<u32> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (field(h), field(m), Some(0)),
        [h, m, s] => (field(h), field(m), field(s)),
        _ => (None, None, None),
    };
    match (h, m, s) {
        (Some(24), Some(0), Some(0)) if allow_24 => Ok(24 * 3600),
        (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s < 60 => Ok(h * 3600 + m * 60 + s),
        _ => Err(format!("\"{text}\" is not a time of day (HH:MM)")),
    }
}

pub fn parse(doc: &Value) -> Result<[Option<DayHours>; 7], String> {
    let obj = doc.as_object().ok_or("opening_hours must be a JSON object keyed by weekday \"0\"..\"6\"")?;
    let mut week = [None; 7];
    for (key, day) in obj {
        let dow = match key.as_str() {
            "0" | "1" | "2" | "3" | "4" | "5" | "6" => key.parse::<usize>().expect("digit"),
            _ => return Err(format!("opening_hours key \"{key}\" is not a weekday \"0\"..\"6\" (0 = Sunday)")),
        };
        let day = day.as_object().ok_or_else(|| format!("opening_hours[\"{key}\"] must be an object"))?;
        let is_open = match day.get("is_open") {
            Some(Value::Bool(b)) => *b,
            None => true,
            Some(_) => return Err(format!("opening_hours[\"{key}\"].is_open must be a boolean")),
        };
        if !is_open {
            continue;
        }
        let time = |name: &str, allow_24: bool| -> Result<u32, String> {
            let text = day
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("opening_hours[\"{key}\"].{name} must be a string \"HH:MM\""))?;
            parse_time(text, allow_24).map_err(|e| format!("opening_hours[\"{key}\"].{name}: {e}"))
        };
        let (start, end) = (time("start_time", false)?, time("end_time", true)?);
        if start >= end {
            return Err(format!("opening_hours[\"{key}\"]: start_time must be before end_time"));
        }
        week[dow] = Some(DayHours { start, end });
    }
    Ok(week)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_seed_format() {
        let week = parse(&json!({
            "0": {"is_open": false, "start_time": "10:00", "end_time": "14:00"},
            "1": {"is_open": true, "start_time": "09:00", "end_time": "18:00"},
            "6": {"is_open": true, "start_time": "08:00", "end_time": "24:00"}
        }))
        .unwrap();
        assert_eq!(week[0], None);
        assert_eq!(week[1], Some(DayHours { start: 9 * 3600, end: 18 * 3600 }));
        assert_eq!(week[2], None);
        assert_eq!(week[6], Some(DayHours { start: 8 * 3600, end: 24 * 3600 }));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse(&json!([])).is_err());
        assert!(parse(&json!({"7": {"is_open": true, "start_time": "09:00", "end_time": "10:00"}})).is_err());
        assert!(parse(&json!({"1": {"is_open": true, "start_time": "10:00", "end_time": "09:00"}})).is_err());
        assert!(parse(&json!({"1": {"is_open": true, "start_time": "9:00", "end_time": "10:00"}})).is_err());
        assert!(parse(&json!({"1": {"is_open": true, "start_time": "24:00", "end_time": "24:00"}})).is_err());
        assert!(parse(&json!({"1": {"is_open": "yes", "start_time": "09:00", "end_time": "10:00"}})).is_err());
        assert!(parse(&json!({"1": {"is_open": true, "start_time": "09:60", "end_time": "10:00"}})).is_err());
    }

    #[test]
    fn time_strings() {
        assert_eq!(parse_time("00:00", false), Ok(0));
        assert_eq!(parse_time("23:59:59", false), Ok(86_399));
        assert_eq!(parse_time("24:00", true), Ok(86_400));
        assert!(parse_time("24:00", false).is_err());
        assert!(parse_time("24:01", true).is_err());
    }
}
