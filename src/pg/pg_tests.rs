//! In-database tests of the shared Postgres layer: the subtransaction runner (kept, rolled back,
//! read-only, under a deadline, a foreign cancel raised again), the deadline guard, the error
//! conversion both ways, and the role switch. Each test runs inside one transaction that never
//! commits.

#[pgrx::pg_schema]
mod tests {
    use std::panic::AssertUnwindSafe;
    use std::time::{Duration, Instant};

    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::prelude::*;
    use pgrx::PgLogLevel;

    use crate::errors::DomainError;
    use crate::pg::deadline::Deadline;
    use crate::pg::role;
    use crate::pg::subxact::Subxact;

    fn rows() -> i64 {
        Spi::get_one("SELECT count(*) FROM pg_layer_rows").unwrap().unwrap_or(0)
    }

    fn table() {
        Spi::run("CREATE TABLE pg_layer_rows (v int)").unwrap();
    }

    #[pg_test]
    fn a_kept_subtransaction_keeps_its_work_a_rolled_back_one_never_does() {
        table();
        let kept = Subxact::kept().run(|| Spi::run("INSERT INTO pg_layer_rows VALUES (1)")).unwrap();
        assert!(kept.is_ok());
        assert_eq!(rows(), 1, "kept: the insert stays");
        Subxact::rolled_back().run(|| Spi::run("INSERT INTO pg_layer_rows VALUES (2)")).unwrap().unwrap();
        assert_eq!(rows(), 1, "rolled back even though it succeeded");
    }

    #[pg_test]
    fn an_error_rolls_back_only_the_subtransaction_and_comes_back_as_a_value() {
        table();
        let failed = Subxact::kept().run(|| {
            Spi::run("INSERT INTO pg_layer_rows VALUES (1)").unwrap();
            Spi::run("SELECT 1 / 0").unwrap();
        });
        let caught = failed.unwrap_err();
        assert_eq!(caught.sqlstate(), "22012");
        assert_eq!(caught.message, "division by zero");
        assert_eq!(rows(), 0, "the failed subtransaction's insert is gone");
        Spi::run("INSERT INTO pg_layer_rows VALUES (3)").unwrap();
        assert_eq!(rows(), 1, "the caller's transaction goes on");
    }

    #[pg_test]
    fn read_only_work_may_not_write() {
        table();
        let refused = Subxact::kept().read_only().run(|| Spi::run("INSERT INTO pg_layer_rows VALUES (1)"));
        assert_eq!(refused.unwrap_err().sqlstate(), "25006");
        Spi::run("INSERT INTO pg_layer_rows VALUES (1)").unwrap();
        assert_eq!(rows(), 1, "the caller may write again afterwards");
    }

    #[pg_test]
    fn its_own_deadline_cancels_the_work_and_the_caller_goes_on() {
        let started = Instant::now();
        let cancelled = Subxact::rolled_back().deadline_ms(50).run(|| Spi::run("SELECT pg_sleep(5)"));
        assert_eq!(cancelled.unwrap_err().sqlstate(), "57014");
        assert!(started.elapsed() < Duration::from_secs(4), "cancelled at its deadline, not after the sleep");
        // The deadline is gone: the caller's own statements run as long as they take.
        Spi::run("SELECT pg_sleep(0.1)").unwrap();
    }

    /// A cancel that is not the run's own deadline (pg_cancel_backend) must stop the caller too.
    #[pg_test(error = "canceling statement due to user request")]
    fn a_cancel_from_outside_is_raised_again() {
        let _ = Subxact::kept().deadline_ms(10_000).run(|| {
            // SAFETY: what the SIGINT handler does for pg_cancel_backend.
            unsafe {
                pg_sys::QueryCancelPending = 1;
                pg_sys::InterruptPending = 1;
            }
            pg_sys::check_for_interrupts!();
        });
        panic!("the cancel was swallowed");
    }

    /// The caller's sooner deadline is kept, and its cancel is the caller's, not swallowed.
    #[pg_test(error = "canceling statement due to statement timeout")]
    fn the_callers_sooner_deadline_is_kept_and_raised_again() {
        let _outer = Deadline::arm(100);
        let _ = Subxact::kept().deadline_ms(60_000).run(|| Spi::run("SELECT pg_sleep(5)"));
        panic!("the caller's deadline was swallowed or extended");
    }

    #[pg_test(error = "canceling statement due to statement timeout")]
    fn the_deadline_guard_cancels_a_statement_that_runs_past_it() {
        let _guard = Deadline::arm(30);
        Spi::run("SELECT pg_sleep(5)").unwrap();
    }

    #[pg_test]
    fn a_dropped_guard_leaves_no_timer_behind() {
        drop(Deadline::arm(20));
        Spi::run("SELECT pg_sleep(0.2)").unwrap();
    }

    /// A guard armed under a sooner one arms nothing, and the sooner one still fires.
    #[pg_test(error = "canceling statement due to statement timeout")]
    fn an_inner_guard_never_extends_a_sooner_outer_one() {
        let _outer = Deadline::arm(60);
        let inner = Deadline::arm(60_000);
        assert!(!inner.expired());
        Spi::run("SELECT pg_sleep(5)").unwrap();
    }

    /// A sooner inner guard, once dropped, puts the outer deadline back (not none at all).
    #[pg_test(error = "canceling statement due to statement timeout")]
    fn dropping_a_sooner_inner_guard_restores_the_outer_deadline() {
        let _outer = Deadline::arm(300);
        drop(Deadline::arm(50));
        Spi::run("SELECT pg_sleep(5)").unwrap();
    }

    #[pg_test]
    fn a_caught_error_keeps_its_code_message_detail_and_hint_and_is_raised_again_as_it_was() {
        let first = Subxact::rolled_back()
            .run(|| {
                Spi::run(
                    "DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '22023', DETAIL = 'the detail', HINT = 'the hint'; END $$",
                )
            })
            .unwrap_err();
        assert_eq!((first.sqlstate().as_str(), first.message.as_str()), ("22023", "boom"));
        // pgrx may append a Rust backtrace to the detail of an error that crossed a guarded
        // call (here the ProcessUtility hook around the DO); what was raised comes first.
        assert!(first.detail.as_deref().is_some_and(|d| d.starts_with("the detail")), "{:?}", first.detail);
        assert_eq!(first.hint.as_deref(), Some("the hint"));
        assert_eq!(first.level, PgLogLevel::ERROR);
        let again = Subxact::rolled_back().run(|| first.reraise().report(PgLogLevel::ERROR)).unwrap_err();
        assert_eq!(
            (again.sqlstate(), again.message, again.detail, again.hint),
            (first.sqlstate(), first.message, first.detail, first.hint),
            "raised again as it was, without a backtrace added to its detail"
        );
    }

    #[pg_test]
    fn domain_errors_reach_postgres_with_their_sqlstate_and_a_panic_is_xx000() {
        let raised = |e: DomainError| {
            Subxact::rolled_back().run(|| ErrorReport::from(e).report(PgLogLevel::ERROR)).unwrap_err().sqlstate()
        };
        assert_eq!(raised(DomainError::InvalidParameter("x".into())), "22023");
        assert_eq!(raised(DomainError::InvalidDatetimeFormat("x".into())), "22007");
        assert_eq!(raised(DomainError::DatetimeOverflow("x".into())), "22008");
        assert_eq!(raised(DomainError::NotFound("x".into())), "P0002");
        assert_eq!(raised(DomainError::ProhibitedStatement("x".into())), "2F003");
        assert_eq!(raised(DomainError::Forbidden("x".into())), "42501");
        assert_eq!(raised(DomainError::Unsupported("x".into())), "0A000");
        assert_eq!(raised(DomainError::NotReady("x".into())), "55000");
        assert_eq!(raised(DomainError::Internal("x".into())), "XX000");
        let panicked = Subxact::rolled_back().run::<()>(|| panic!("a bug")).unwrap_err();
        assert_eq!(panicked.sqlstate(), "XX000");
        assert!(panicked.message.contains("a bug"), "{}", panicked.message);
    }

    fn current_user() -> String {
        Spi::get_one("SELECT current_user::text").unwrap().unwrap()
    }

    fn test_role() -> pg_sys::Oid {
        Spi::run("CREATE ROLE layer_test_role NOLOGIN").unwrap();
        Spi::get_one("SELECT 'layer_test_role'::regrole::oid").unwrap().unwrap()
    }

    #[pg_test]
    fn run_as_acts_as_the_role_and_puts_the_caller_back_however_it_is_left() {
        let me = current_user();
        let role = test_role();
        assert_eq!(role::run_as(role, current_user), "layer_test_role");
        assert_eq!(current_user(), me);
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(|| role::run_as::<()>(role, || panic!("left early"))));
        assert!(unwound.is_err());
        assert_eq!(
            role::current_user(),
            Spi::get_one::<pg_sys::Oid>("SELECT current_user::regrole::oid").unwrap().unwrap()
        );
        assert_eq!(current_user(), me, "restored by the guard while unwinding");
    }

    #[pg_test]
    fn a_subtransaction_as_a_role_runs_with_its_rights_and_restores_the_caller() {
        let me = current_user();
        let role = test_role();
        let inside = Subxact::rolled_back().as_role(role).run(current_user).unwrap();
        assert_eq!(inside, "layer_test_role");
        let refused = Subxact::kept().as_role(role).run(|| Spi::run("CREATE TABLE pg_layer_denied (v int)"));
        assert_eq!(refused.unwrap_err().sqlstate(), "42501", "with the role's rights, not the caller's");
        assert_eq!(current_user(), me);
    }

    #[pg_test]
    fn the_extension_owner_is_the_role_that_owns_the_extension() {
        let owner: pg_sys::Oid =
            Spi::get_one("SELECT extowner FROM pg_extension WHERE extname = 'booking_engine'").unwrap().unwrap();
        assert_eq!(role::extension_owner().unwrap(), owner);
    }
}
