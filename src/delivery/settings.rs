//! What the delivery worker makes of its settings (declared in `crate::gucs`): the host rules,
//! the retry schedule and the SMTP relay, read at the worker's start and again after each
//! reload (SIGHUP, `Live::reload`).

use std::sync::{Arc, RwLock};

use super::hosts::HostRules;
use super::send::Smtp;
use crate::gucs;

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
    let (allowed, denied) = gucs::delivery_host_lists();
    HostRules::parse(&allowed, &denied)
        .map_err(|e| format!("booking_engine.delivery_allowed_hosts / delivery_denied_hosts: {e}"))
}

/// The retry schedule now in force; a malformed one falls back to the default with a warning.
fn schedule() -> Vec<u64> {
    super::policy::parse_schedule(&gucs::delivery_retry_schedule()).unwrap_or_else(|e| {
        let default = gucs::DELIVERY_RETRY_SCHEDULE_DEFAULT.to_str().expect("ASCII");
        pgrx::warning!("booking_engine.delivery_retry_schedule: {e}; using the default {default}");
        super::policy::parse_schedule(default).expect("the default schedule parses")
    })
}

fn smtp() -> Smtp {
    Smtp {
        host: gucs::smtp_host(),
        port: gucs::smtp_port(),
        security: gucs::smtp_security(),
        user: gucs::smtp_user(),
        password: gucs::smtp_password(),
        from: gucs::smtp_from(),
    }
}
