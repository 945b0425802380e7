//! W3C Trace Context (level 1, with level 2's reading of unknown versions): the `traceparent`
//! and `tracestate` values, where a caller's context is found (PostgREST's `request.headers`,
//! a setting, a sqlcommenter comment), new ids, and the parent-based ratio sampler. Pure: no
//! Postgres, unit-tested with `cargo test --lib`.

use serde_json::Value;

/// The sampled bit of the trace flags.
pub const SAMPLED: u8 = 0x01;
/// Longest `tracestate` kept: the W3C limit is 32 list members, which a propagator may cut at
/// 512 characters (it must pass at least that much on).
pub const MAX_TRACESTATE: usize = 512;

/// A span's identity as it crosses a process boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The span this context names: the caller's span for a context read from outside, or our
    /// own span when we hand the context on.
    pub span_id: [u8; 8],
    pub flags: u8,
    /// The vendors' list, kept as received (validated, never interpreted).
    pub tracestate: Option<String>,
}

impl TraceContext {
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` header value: version 00, lower-case hex.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), self.flags)
    }

    /// The trace id as the logs and the backends show it (32 hex digits).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Lower-case hex only: the W3C grammar (`HEXDIGLC`) refuses upper case.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
    }
    Some(out)
}

/// Why a `traceparent` was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    Shape,
    Version,
    ZeroTraceId,
    ZeroSpanId,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Invalid::Shape => "a traceparent is 00-<32 hex digits>-<16 hex digits>-<2 hex digits>, lower case",
            Invalid::Version => "version ff is forbidden, and version 00 has exactly four fields",
            Invalid::ZeroTraceId => "the trace id must not be all zeros",
            Invalid::ZeroSpanId => "the parent id must not be all zeros",
        })
    }
}

/// Reads a `traceparent` header value. Version 00 must be exactly
/// `00-{trace-id}-{parent-id}-{flags}`; a higher version (not ff) is read by its first four
/// fields and may carry more after a dash, as the specification asks of a version-00 parser.
/// All-zero ids are invalid. Surrounding blanks are allowed (HTTP optional whitespace).
pub fn parse_traceparent(value: &str) -> Result<TraceContext, Invalid> {
    let v = value.trim_matches([' ', '\t']);
    let (version, rest) = v.split_once('-').ok_or(Invalid::Shape)?;
    let version: [u8; 1] = unhex(version).ok_or(Invalid::Shape)?;
    if version[0] == 0xff {
        return Err(Invalid::Version);
    }
    // trace-id (32) - parent-id (16) - flags (2) = 52 characters.
    if rest.len() < 52 || !rest.is_char_boundary(52) {
        return Err(Invalid::Shape);
    }
    let (fields, tail) = rest.split_at(52);
    if version[0] == 0 && !tail.is_empty() {
        return Err(Invalid::Version);
    }
    if !tail.is_empty() && !tail.starts_with('-') {
        return Err(Invalid::Shape);
    }
    let mut parts = fields.split('-');
    let (Some(t), Some(p), Some(f), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Invalid::Shape);
    };
    let trace_id: [u8; 16] = unhex(t).ok_or(Invalid::Shape)?;
    let span_id: [u8; 8] = unhex(p).ok_or(Invalid::Shape)?;
    let [flags] = unhex::<1>(f).ok_or(Invalid::Shape)?;
    if trace_id == [0; 16] {
        return Err(Invalid::ZeroTraceId);
    }
    if span_id == [0; 8] {
        return Err(Invalid::ZeroSpanId);
    }
    // Of a version we do not know only the bits we know are kept (level 2: unknown flags are
    // not passed on).
    let flags = if version[0] == 0 { flags } else { flags & SAMPLED };
    Ok(TraceContext { trace_id, span_id, flags, tracestate: None })
}

/// Validates a `tracestate` value: at most 32 comma-separated `key=value` members, keys and
/// values of the W3C grammar. Empty members (`a=1,,b=2`) are allowed and dropped. An invalid
/// list is discarded as a whole, as the specification asks. Longer than `MAX_TRACESTATE`:
/// members are dropped from the end until it fits.
pub fn parse_tracestate(value: &str) -> Option<String> {
    let mut members = Vec::new();
    for m in value.split(',') {
        let m = m.trim_matches([' ', '\t']);
        if m.is_empty() {
            continue;
        }
        let (k, v) = m.split_once('=')?;
        if !valid_key(k) || !valid_value(v) {
            return None;
        }
        members.push(m);
    }
    if members.is_empty() || members.len() > 32 {
        return None;
    }
    let mut out = members.join(",");
    while out.len() > MAX_TRACESTATE {
        let cut = out.rfind(',')?;
        out.truncate(cut);
    }
    Some(out)
}

fn valid_key(k: &str) -> bool {
    let simple = |s: &str, max: usize| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= max
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(c))
    };
    match k.split_once('@') {
        // A multi-tenant key: tenant-id@system-id.
        Some((tenant, system)) => {
            simple(tenant, 241) && simple(system, 14) && system.as_bytes()[0].is_ascii_lowercase()
        }
        None => simple(k, 256),
    }
}

fn valid_value(v: &str) -> bool {
    let b = v.as_bytes();
    // Printable ASCII except ',' and '=', no trailing blank, 1..256 characters.
    !b.is_empty()
        && b.len() <= 256
        && b.iter().all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
        && b[b.len() - 1] != b' '
}

/// Reads a `traceparent` and its `tracestate` together; the state is dropped when the parent
/// is invalid (nothing to attach it to) or it is malformed itself.
pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
    let mut ctx = parse_traceparent(traceparent).ok()?;
    ctx.tracestate = tracestate.and_then(parse_tracestate);
    Some(ctx)
}

/// The context in PostgREST's `request.headers` (a JSON object of the request's headers, names
/// in lower case as PostgREST writes them; the lookup ignores case all the same). Several
/// `tracestate` headers would be joined with commas by HTTP; PostgREST hands us one string.
pub fn from_headers(headers_json: &str) -> Option<TraceContext> {
    // Most requests carry no trace: a byte search skips the JSON parse for them.
    if !contains_ignore_case(headers_json, "traceparent") {
        return None;
    }
    let Value::Object(headers) = serde_json::from_str(headers_json).ok()? else { return None };
    let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str());
    parse(get("traceparent")?, get("tracestate"))
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The context of a sqlcommenter comment in a query: `/*traceparent='00-…',tracestate='…'*/`
/// (keys and values URL-encoded, `\'` for a quote inside a value). The last comment that names
/// a traceparent wins: sqlcommenter appends its comment at the end of the statement.
pub fn from_sql_comment(query: &str) -> Option<TraceContext> {
    let at = query.rfind("traceparent=")?;
    let open = query[..at].rfind("/*")?;
    let close = open + query[open..].find("*/")?;
    if close < at {
        return None;
    }
    let mut traceparent = None;
    let mut tracestate = None;
    for (k, v) in comment_pairs(&query[open + 2..close]) {
        match k.as_str() {
            "traceparent" => traceparent = Some(v),
            "tracestate" => tracestate = Some(v),
            _ => {}
        }
    }
    parse(&traceparent?, tracestate.as_deref())
}

/// The `key='value'` pairs of a sqlcommenter comment, decoded.
fn comment_pairs(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = url_decode(rest[..eq].trim());
        let after = rest[eq + 1..].trim_start();
        let Some(quoted) = after.strip_prefix('\'') else { break };
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '\'' => {
                    end = Some(i);
                    break;
                }
                _ => value.push(c),
            }
        }
        let Some(end) = end else { break };
        out.push((key, url_decode(&value)));
        rest = quoted[end + 1..].trim_start().trim_start_matches(',').trim_start();
    }
    out
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (digit(b[i + 1]), digit(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A small, fast generator for ids (splitmix64): ids must be unique, not unpredictable, and a
/// system call per span would cost more than the span. Seeded from the operating system once
/// per process.
pub struct Ids(u64);

impl Ids {
    pub fn seeded(seed: u64) -> Ids {
        Ids(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A span id: 8 random bytes, never all zero.
    pub fn span_id(&mut self) -> [u8; 8] {
        loop {
            let id = self.next();
            if id != 0 {
                return id.to_be_bytes();
            }
        }
    }

    /// A trace id: 16 random bytes, never all zero.
    pub fn trace_id(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_be_bytes());
        out[8..].copy_from_slice(&self.span_id());
        out
    }
}

/// The head sampler for a new span: parent-based (a span follows its parent's decision, local
/// or remote), and a root span is sampled when its trace id falls under `ratio`
/// (OpenTelemetry's TraceIdRatioBased: the trace id's last 7 bytes, which W3C level 2 says are
/// random, against ratio × 2^56). Every process deciding on the same trace id agrees.
pub fn sample(parent: Option<&TraceContext>, trace_id: &[u8; 16], ratio: f64) -> bool {
    match parent {
        Some(p) => p.sampled(),
        None => {
            if ratio >= 1.0 {
                return true;
            }
            if ratio.is_nan() || ratio <= 0.0 {
                return false;
            }
            let mut low = [0u8; 8];
            low[1..].copy_from_slice(&trace_id[9..]);
            let r = u64::from_be_bytes(low);
            (r as f64) < ratio * (1u64 << 56) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read_and_written_back_unchanged() {
        let c = parse_traceparent(TP).unwrap();
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&c.span_id), "00f067aa0ba902b7");
        assert!(c.sampled());
        assert_eq!(c.traceparent(), TP);
        let unsampled = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled());
        assert!(parse_traceparent(&format!("  {TP}\t")).is_ok(), "optional whitespace");
    }

    #[test]
    fn the_specifications_invalid_values_are_refused() {
        let bad = [
            ("", Invalid::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", Invalid::Shape),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", Invalid::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", Invalid::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01", Invalid::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", Invalid::Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", Invalid::Shape),
            ("0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Invalid::Shape),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", Invalid::Shape),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Invalid::Version),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", Invalid::Version),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", Invalid::ZeroTraceId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", Invalid::ZeroSpanId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é", Invalid::Version),
        ];
        for (value, why) in bad {
            assert_eq!(parse_traceparent(value), Err(why), "{value:?}");
        }
    }

    #[test]
    fn a_future_version_is_read_by_its_known_fields() {
        let c = parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-ever").unwrap();
        assert_eq!(c.flags, SAMPLED, "unknown flag bits of an unknown version are dropped");
        assert_eq!(c.traceparent(), TP, "and we answer in version 00");
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_err());
        // Version 00 keeps its other flag bits (the random flag of level 2, for one).
        assert_eq!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap().flags, 3);
    }

    #[test]
    fn tracestate_is_validated_as_a_whole() {
        assert_eq!(
            parse_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7").as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert_eq!(parse_tracestate("a=1,,b=2").as_deref(), Some("a=1,b=2"));
        assert_eq!(parse_tracestate("fw529a3039@dt=ss").as_deref(), Some("fw529a3039@dt=ss"));
        assert_eq!(parse_tracestate("Upper=1"), None);
        assert_eq!(parse_tracestate("a=1,novalue"), None);
        assert_eq!(parse_tracestate("a=x=y"), None);
        assert_eq!(parse_tracestate(""), None);
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_tracestate(&many.join(",")), None, "more than 32 members");
        let long: Vec<String> = (0..30).map(|i| format!("k{i}={}", "v".repeat(40))).collect();
        let cut = parse_tracestate(&long.join(",")).unwrap();
        assert!(cut.len() <= MAX_TRACESTATE && cut.starts_with("k0=") && !cut.ends_with(','));
    }

    #[test]
    fn postgrest_headers_carry_the_context() {
        let h = format!(r#"{{"accept":"*/*","traceparent":"{TP}","tracestate":"congo=t61rcWkgMzE"}}"#);
        let c = from_headers(&h).unwrap();
        assert_eq!(c.traceparent(), TP);
        assert_eq!(c.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(from_headers(&format!(r#"{{"TraceParent":"{TP}"}}"#)).unwrap().traceparent(), TP);
        assert_eq!(from_headers(r#"{"accept":"*/*"}"#), None);
        assert_eq!(from_headers(r#"{"traceparent":"junk"}"#), None);
        assert_eq!(from_headers("not json, traceparent"), None);
        let bad_state = from_headers(&format!(r#"{{"traceparent":"{TP}","tracestate":"BAD"}}"#)).unwrap();
        assert_eq!(bad_state.tracestate, None, "a bad tracestate is dropped, the parent kept");
    }

    #[test]
    fn sqlcommenter_comments_carry_the_context() {
        let q = format!("SELECT booking.create_booking_idempotent('k', '{{}}') /*action='book',traceparent='{TP}',tracestate='congo%3Dt61rcWkgMzE'*/");
        let c = from_sql_comment(&q).unwrap();
        assert_eq!(c.traceparent(), TP);
        assert_eq!(c.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        // URL-encoded dashes, a quote escaped in another value, blanks around the separators.
        let q = "SELECT 1 /* route='/a\\'b' , traceparent='00%2D4bf92f3577b34da6a3ce929d0e0e4736%2D00f067aa0ba902b7%2D01' */";
        assert_eq!(from_sql_comment(q).unwrap().traceparent(), TP);
        assert_eq!(from_sql_comment("SELECT 'traceparent=' /* nothing */"), None);
        assert_eq!(from_sql_comment("SELECT 1 /*traceparent='nope'*/"), None);
        assert_eq!(from_sql_comment("SELECT 1 /*traceparent='00-4bf9"), None, "an unterminated comment");
        assert_eq!(from_sql_comment("SELECT 1"), None);
    }

    #[test]
    fn ids_are_never_zero_and_do_not_repeat() {
        let mut ids = Ids::seeded(0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let s = ids.span_id();
            assert_ne!(s, [0; 8]);
            assert!(seen.insert(s));
        }
        assert_ne!(ids.trace_id(), [0; 16]);
    }

    #[test]
    fn sampling_follows_the_parent_and_the_ratio_for_roots() {
        let parent = parse_traceparent(TP).unwrap();
        let id = [0xff; 16];
        assert!(sample(Some(&parent), &id, 0.0), "a sampled parent wins over ratio 0");
        let unsampled = TraceContext { flags: 0, ..parent };
        assert!(!sample(Some(&unsampled), &id, 1.0), "an unsampled parent wins over ratio 1");
        assert!(sample(None, &id, 1.0));
        assert!(!sample(None, &id, 0.0));
        assert!(!sample(None, &[0xff; 16], 0.5));
        assert!(sample(None, &[0; 16], 0.5));
        let mut ids = Ids::seeded(42);
        let hits = (0..20_000).filter(|_| sample(None, &ids.trace_id(), 0.25)).count();
        assert!((4_000..6_000).contains(&hits), "about a quarter: {hits}");
    }
}
