//! The delivery settings (`booking_engine.delivery_*`, `booking_engine.smtp_*`), registered by
//! `crate::gucs::register`. All are read by the delivery worker and take effect at a reload
//! (SIGHUP, `Live::reload`), except `delivery_concurrency`, read when the worker starts.

use std::ffi::CString;
use std::sync::{Arc, RwLock};

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use super::hosts::{HostRules, DEFAULT_DENIED};
use super::policy::DEFAULT_SCHEDULE;
use super::send::Smtp;

pub static CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(16);
pub static RETRY_SCHEDULE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(DEFAULT_SCHEDULE));
pub static RETRY_HORIZON_S: GucSetting<i32> = GucSetting::<i32>::new(3 * 86_400);
pub static BREAKER_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static DISABLE_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(5 * 86_400);
pub static POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static ALLOWED_HOSTS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static DENIED_HOSTS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(DEFAULT_DENIED));
pub static SMTP_HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static SMTP_PORT: GucSetting<i32> = GucSetting::<i32>::new(587);
pub static SMTP_SECURITY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"starttls"));
pub static SMTP_USER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static SMTP_PASSWORD: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static SMTP_FROM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

fn text(s: &GucSetting<Option<CString>>) -> String {
    s.get().and_then(|c| c.into_string().ok()).unwrap_or_default()
}

/// What the delivery worker reads from its settings, read again after each reload: the
/// sending threads share the host rules (their resolver) and the SMTP relay, so a reload that
/// denies a host or changes the relay applies to the next send.
pub struct Live {
    pub rules: Arc<RwLock<HostRules>>,
    pub smtp: Arc<RwLock<Smtp>>,
    pub schedule: Vec<u64>,
}

impl Live {
    /// The settings at the worker's start; an error for malformed host lists.
    pub fn load() -> Result<Live, String> {
        Ok(Live {
            rules: Arc::new(RwLock::new(host_rules()?)),
            smtp: Arc::new(RwLock::new(smtp())),
            schedule: schedule(),
        })
    }

    /// After a reload. Malformed host lists keep the rules in force, with a warning.
    pub fn reload(&mut self) {
        match host_rules() {
            Ok(r) => *self.rules.write().unwrap_or_else(|e| e.into_inner()) = r,
            Err(e) => pgrx::warning!("booking_engine delivery: {e}; the previous host lists stay in force"),
        }
        *self.smtp.write().unwrap_or_else(|e| e.into_inner()) = smtp();
        self.schedule = schedule();
    }
}

/// The host rules now in force; a malformed list is an error naming the setting.
pub fn host_rules() -> Result<HostRules, String> {
    HostRules::parse(&text(&ALLOWED_HOSTS), &text(&DENIED_HOSTS))
        .map_err(|e| format!("booking_engine.delivery_allowed_hosts / delivery_denied_hosts: {e}"))
}

/// The retry schedule now in force; a malformed one falls back to the default with a warning.
fn schedule() -> Vec<u64> {
    super::policy::parse_schedule(&text(&RETRY_SCHEDULE)).unwrap_or_else(|e| {
        let default = DEFAULT_SCHEDULE.to_str().expect("ASCII");
        pgrx::warning!("booking_engine.delivery_retry_schedule: {e}; using the default {default}");
        super::policy::parse_schedule(default).expect("the default schedule parses")
    })
}

fn smtp() -> Smtp {
    Smtp {
        host: text(&SMTP_HOST),
        port: SMTP_PORT.get().clamp(1, 65535) as u16,
        security: text(&SMTP_SECURITY),
        user: text(&SMTP_USER),
        password: text(&SMTP_PASSWORD),
        from: text(&SMTP_FROM),
    }
}

fn string(
    name: &'static std::ffi::CStr,
    short: &'static std::ffi::CStr,
    long: &'static std::ffi::CStr,
    s: &'static GucSetting<Option<CString>>,
    flags: GucFlags,
) {
    GucRegistry::define_string_guc(name, short, long, s, GucContext::Sighup, flags);
}

fn int(
    name: &'static std::ffi::CStr,
    short: &'static std::ffi::CStr,
    s: &'static GucSetting<i32>,
    range: (i32, i32),
    flags: GucFlags,
) {
    GucRegistry::define_int_guc(name, short, c"", s, range.0, range.1, GucContext::Sighup, flags);
}

pub fn register() {
    int(
        c"booking_engine.delivery_concurrency",
        c"Deliveries the delivery worker sends at once (read when it starts).",
        &CONCURRENCY,
        (1, 256),
        GucFlags::default(),
    );
    string(
        c"booking_engine.delivery_retry_schedule",
        c"Waits between delivery attempts, e.g. '5s, 5min, 30min, 2h'; the last repeats.",
        c"Each wait is spread by up to 20% either way.",
        &RETRY_SCHEDULE,
        GucFlags::default(),
    );
    int(
        c"booking_engine.delivery_retry_horizon",
        c"How long a delivery is retried before it is given up (dead).",
        &RETRY_HORIZON_S,
        (1, 30 * 86_400),
        GucFlags::UNIT_S,
    );
    int(
        c"booking_engine.delivery_breaker_threshold",
        c"Failures in a row that open an endpoint's circuit (0: never).",
        &BREAKER_THRESHOLD,
        (0, 1000),
        GucFlags::default(),
    );
    int(
        c"booking_engine.delivery_disable_after",
        c"An endpoint failing without a success for this long is disabled.",
        &DISABLE_AFTER_S,
        (60, 90 * 86_400),
        GucFlags::UNIT_S,
    );
    int(
        c"booking_engine.delivery_poll_interval",
        c"How often a Citus coordinator's delivery worker looks for new events (0: only when woken).",
        &POLL_INTERVAL_MS,
        (0, 60_000),
        GucFlags::UNIT_MS,
    );
    string(
        c"booking_engine.delivery_allowed_hosts",
        c"Hosts endpoints may call (names, *.suffix, CIDR); empty: any not denied.",
        c"",
        &ALLOWED_HOSTS,
        GucFlags::default(),
    );
    string(
        c"booking_engine.delivery_denied_hosts",
        c"Hosts endpoints may never call (names, *.suffix, CIDR); wins over the allow list.",
        c"Checked on the URL when an endpoint is saved and on every resolved address when it is called.",
        &DENIED_HOSTS,
        GucFlags::default(),
    );
    string(
        c"booking_engine.smtp_host",
        c"The SMTP relay for email deliveries (empty: email is not sent).",
        c"",
        &SMTP_HOST,
        GucFlags::default(),
    );
    int(c"booking_engine.smtp_port", c"The SMTP relay's port.", &SMTP_PORT, (1, 65535), GucFlags::default());
    string(c"booking_engine.smtp_security", c"starttls, tls or none.", c"", &SMTP_SECURITY, GucFlags::default());
    string(
        c"booking_engine.smtp_user",
        c"The SMTP user (empty: no authentication).",
        c"",
        &SMTP_USER,
        GucFlags::SUPERUSER_ONLY,
    );
    string(
        c"booking_engine.smtp_password",
        c"The SMTP password; readable by superusers only.",
        c"",
        &SMTP_PASSWORD,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    string(
        c"booking_engine.smtp_from",
        c"The sender address of delivery emails.",
        c"",
        &SMTP_FROM,
        GucFlags::default(),
    );
}
