//! When a failed job runs again (pure).

/// Delay before retry number `retry_count + 1`: `base_ms * multiplier^retry_count`, capped at
/// `max_ms`. With `jitter` (a uniform draw in [0, 1)), "full jitter": a uniform delay between 0
/// and that capped value, so that jobs failing together do not retry together.
pub fn retry_delay_ms(base_ms: i64, multiplier: f64, retry_count: i32, max_ms: i64, jitter: Option<f64>) -> i64 {
    let base = base_ms.max(0) as f64;
    let cap = max_ms.max(0) as f64;
    // powi saturates to infinity for large exponents; min() then yields the cap.
    let exponential = (base * multiplier.max(1.0).powi(retry_count.max(0))).min(cap);
    let delay = match jitter {
        Some(u) => exponential * u.clamp(0.0, 1.0),
        None => exponential,
    };
    delay.round() as i64
}

#[cfg(test)]
mod tests {
    use super::retry_delay_ms;

    #[test]
    fn grows_by_the_multiplier_per_retry() {
        let delays: Vec<i64> = (0..5).map(|n| retry_delay_ms(1000, 2.0, n, 1_000_000, None)).collect();
        assert_eq!(delays, vec![1000, 2000, 4000, 8000, 16000]);
        assert_eq!(retry_delay_ms(500, 1.5, 2, 1_000_000, None), 1125);
    }

    #[test]
    fn is_capped_at_the_maximum_even_for_huge_retry_counts() {
        assert_eq!(retry_delay_ms(1000, 2.0, 10, 300_000, None), 300_000);
        assert_eq!(retry_delay_ms(1000, 10.0, i32::MAX, 300_000, None), 300_000);
    }

    #[test]
    fn full_jitter_scales_the_capped_delay() {
        assert_eq!(retry_delay_ms(1000, 2.0, 3, 300_000, Some(0.0)), 0);
        assert_eq!(retry_delay_ms(1000, 2.0, 3, 300_000, Some(0.5)), 4000);
        assert_eq!(retry_delay_ms(1000, 2.0, 20, 300_000, Some(0.25)), 75_000);
        assert_eq!(retry_delay_ms(1000, 2.0, 0, 300_000, Some(7.0)), 1000, "a draw outside [0, 1] is clamped");
    }

    #[test]
    fn nonsense_inputs_never_give_a_negative_delay() {
        assert_eq!(retry_delay_ms(-5, 2.0, 1, 100, None), 0);
        assert_eq!(retry_delay_ms(1000, 0.5, 3, 100_000, None), 1000, "a multiplier below 1 never shrinks the delay");
        assert_eq!(retry_delay_ms(1000, 2.0, -3, 100_000, None), 1000);
    }
}
