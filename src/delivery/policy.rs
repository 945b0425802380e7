//! What happens after an attempt: delivered, retried (when), given up, or the endpoint
//! disabled. Pure: times are Unix milliseconds, randomness is passed in.

/// Parses a schedule such as `"5s, 5min, 30min, 2h"` into milliseconds.
pub fn parse_schedule(text: &str) -> Result<Vec<u64>, String> {
    let waits = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_duration_ms)
        .collect::<Result<Vec<_>, _>>()?;
    if waits.is_empty() {
        return Err("a retry schedule names at least one wait, e.g. '5s, 5min, 30min'".into());
    }
    Ok(waits)
}

/// `250ms`, `5s`, `5min`, `2h`, `3d` in milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?} is not a duration such as 5s, 5min, 2h or 3d"))?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?} is not a duration such as 5s, 5min, 2h or 3d")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long"))
}

/// The wait before attempt `failed + 1` after `failed` failures (1-based), spread by `jitter`
/// in [-1, 1] times 20%: receivers that failed together are not all retried in the same second.
pub fn retry_wait_ms(schedule: &[u64], failed: u32, jitter: f64) -> u64 {
    let base = schedule[(failed.max(1) as usize - 1).min(schedule.len() - 1)];
    let spread = base as f64 * 0.2 * jitter.clamp(-1.0, 1.0);
    (base as f64 + spread).max(0.0) as u64
}

/// What one attempt came to, as the sender saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Sent {
    /// An HTTP answer (for email: 250 from the relay counts as 200).
    Status { code: u16, retry_after: Option<String> },
    /// No answer: refused, reset, timed out, a TLS or SMTP failure.
    Failed { error: String, permanent: bool },
}

/// What to do with the delivery after an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    Delivered,
    /// Try again at this instant (Unix ms).
    RetryAt(u64),
    /// Never again (`replay_delivery` can): the reason.
    Dead(String),
    /// 410 Gone: the receiver asked never to be called again; the endpoint is disabled.
    EndpointGone,
}

/// What an attempt tells its endpoint's circuit breaker: a 2xx closes it, a message that can
/// never be sent (no recipient, a refused address) says nothing about the receiver, anything
/// else (an error status, throttling, no answer) is a failure of the receiver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Breaker {
    Ok,
    Fail,
    Neutral,
}

pub fn breaker(sent: &Sent) -> Breaker {
    match sent {
        Sent::Status { code: 200..=299, .. } => Breaker::Ok,
        Sent::Failed { permanent: true, .. } => Breaker::Neutral,
        _ => Breaker::Fail,
    }
}

impl Breaker {
    /// As the record query reads it (sql/queries/delivery_record.sql).
    pub fn as_str(self) -> &'static str {
        match self {
            Breaker::Ok => "ok",
            Breaker::Fail => "fail",
            Breaker::Neutral => "none",
        }
    }
}

/// Settings that shape the decision.
pub struct Rules<'a> {
    pub schedule: &'a [u64],
    /// Attempts stop once this instant (Unix ms) has passed: the first attempt's (or the last
    /// replay's) time plus the retry horizon.
    pub give_up_at_ms: u64,
}

/// Decides what follows attempt number `attempt` (1-based) finished at `now_ms`.
pub fn next(rules: &Rules, attempt: u32, sent: &Sent, now_ms: u64, jitter: f64) -> Next {
    let retry_at = match sent {
        Sent::Status { code: 200..=299, .. } => return Next::Delivered,
        Sent::Status { code: 410, .. } => return Next::EndpointGone,
        Sent::Failed { error, permanent: true } => return Next::Dead(error.clone()),
        // Throttled: the receiver says when; without a usable Retry-After, the schedule.
        Sent::Status { code: 429 | 503, retry_after: Some(ra) } => match retry_after_ms(ra, now_ms) {
            Some(wait) => now_ms + wait,
            None => now_ms + retry_wait_ms(rules.schedule, attempt, jitter),
        },
        _ => now_ms + retry_wait_ms(rules.schedule, attempt, jitter),
    };
    if retry_at > rules.give_up_at_ms {
        Next::Dead(format!("gave up after {attempt} attempt(s): the retry horizon ends before the next one"))
    } else {
        Next::RetryAt(retry_at)
    }
}

/// Retry-After as a wait in ms: delta-seconds, or an HTTP-date (RFC 9110).
pub fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return s.checked_mul(1000);
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?.timestamp_millis();
    Some((at.max(0) as u64).saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(schedule: &[u64]) -> Rules<'_> {
        Rules { schedule, give_up_at_ms: 10_000_000 }
    }

    #[test]
    fn the_default_schedule_is_svix_and_durations_parse() {
        let s = parse_schedule(crate::gucs::DELIVERY_RETRY_SCHEDULE_DEFAULT.to_str().unwrap()).unwrap();
        assert_eq!(s, vec![5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
        assert_eq!(parse_duration_ms("3d"), Ok(259_200_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("5 parsecs").is_err());
        assert!(parse_duration_ms("99999999999999999999d").is_err());
    }

    #[test]
    fn waits_follow_the_schedule_with_bounded_jitter_and_repeat_the_last() {
        let s = [1_000, 10_000];
        assert_eq!(retry_wait_ms(&s, 1, 0.0), 1_000);
        assert_eq!(retry_wait_ms(&s, 2, 1.0), 12_000);
        assert_eq!(retry_wait_ms(&s, 9, -1.0), 8_000);
    }

    #[test]
    fn success_410_and_permanent_failures_end_the_delivery() {
        let r = rules(&[1_000]);
        assert_eq!(next(&r, 1, &Sent::Status { code: 204, retry_after: None }, 0, 0.0), Next::Delivered);
        assert_eq!(next(&r, 1, &Sent::Status { code: 410, retry_after: None }, 0, 0.0), Next::EndpointGone);
        let bad = Sent::Failed { error: "no recipient".into(), permanent: true };
        assert_eq!(next(&r, 1, &bad, 0, 0.0), Next::Dead("no recipient".into()));
    }

    #[test]
    fn errors_retry_on_the_schedule_and_throttling_honours_retry_after() {
        let r = rules(&[1_000, 60_000]);
        assert_eq!(next(&r, 1, &Sent::Status { code: 500, retry_after: None }, 100, 0.0), Next::RetryAt(1_100));
        let timeout = Sent::Failed { error: "timed out".into(), permanent: false };
        assert_eq!(next(&r, 2, &timeout, 100, 0.0), Next::RetryAt(60_100));
        let throttled = Sent::Status { code: 429, retry_after: Some("7".into()) };
        assert_eq!(next(&r, 1, &throttled, 100, 0.0), Next::RetryAt(7_100));
        let date = Sent::Status { code: 503, retry_after: Some("Thu, 01 Jan 1970 00:00:30 GMT".into()) };
        assert_eq!(next(&r, 1, &date, 10_000, 0.0), Next::RetryAt(30_000));
        // An unusable Retry-After falls back to the schedule.
        let junk = Sent::Status { code: 429, retry_after: Some("soon".into()) };
        assert_eq!(next(&r, 1, &junk, 0, 0.0), Next::RetryAt(1_000));
    }

    #[test]
    fn past_the_horizon_the_delivery_is_dead() {
        let r = Rules { schedule: &[1_000], give_up_at_ms: 1_500 };
        let e = Sent::Status { code: 500, retry_after: None };
        assert_eq!(next(&r, 1, &e, 0, 0.0), Next::RetryAt(1_000));
        assert!(matches!(next(&r, 2, &e, 1_000, 0.0), Next::Dead(_)));
    }
}
