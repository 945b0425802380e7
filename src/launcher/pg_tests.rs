//! In-database tests of the launcher: the kinds of worker the features registered, the worker
//! status built from them, queued work's verdict in the test cluster (workers idle: enabled =
//! off), and the ProcessUtility observer reading statements' option lists.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;

    use crate::launcher::kinds::{kind_of_slot, kinds, Need};
    use crate::launcher::registry::NotRunning;
    use crate::launcher::{defines, option_string, parse_worker_arg, will_run, worker_arg};
    use crate::pg::parser;

    #[pg_test]
    fn the_features_kinds_have_their_slots_in_registration_order() {
        let found: Vec<(&str, std::ops::Range<usize>)> = kinds().iter().map(|k| (k.name, k.slots())).collect();
        assert_eq!(
            found,
            [("booking_engine scheduler", 0..1), ("booking_engine runner", 1..33), ("booking_engine delivery", 33..34)]
        );
        assert!(matches!(kinds()[0].need, Need::Probe), "the scheduler is the probe");
        let (runner, n) = kind_of_slot(5).unwrap();
        assert_eq!((runner.instance_name(n), runner.label), ("booking_engine runner 5".to_string(), "runner"));
        assert_eq!(kind_of_slot(33).unwrap().0.instance_name(1), "booking_engine delivery");
        assert_eq!(parse_worker_arg(worker_arg(16_384, 33)), (16_384, 33));
    }

    #[pg_test]
    fn worker_status_names_each_kind_by_its_label() {
        let status = Spi::get_one::<JsonB>("SELECT booking_admin.worker_status()").unwrap().unwrap().0;
        assert!(status["runner_pids"].is_array(), "{status}");
        assert!(status.get("scheduler_pid").is_some() && status.get("delivery_pid").is_some(), "{status}");
        assert!(status["delivery_pid"].is_null(), "no endpoint is enabled here: {status}");
    }

    #[pg_test]
    fn queued_work_here_will_not_run_while_the_workers_are_disabled() {
        assert_eq!(will_run(), Err(NotRunning::Disabled));
        // The warning says so instead of accepting the work silently (01000, not an error).
        Spi::run("SELECT booking_admin.wake_workers_at_commit()").unwrap();
    }

    fn options(sql: &str) -> *mut pg_sys::List {
        let node = parser::parse(sql, "sql").unwrap()[0].node;
        // SAFETY: the raw parse trees of these statements, just built; each cast follows its tag.
        unsafe {
            match (*node).type_ {
                pg_sys::NodeTag::T_CreatedbStmt => (*node.cast::<pg_sys::CreatedbStmt>()).options,
                pg_sys::NodeTag::T_AlterDatabaseStmt => (*node.cast::<pg_sys::AlterDatabaseStmt>()).options,
                other => panic!("{other:?}"),
            }
        }
    }

    #[pg_test]
    fn the_utility_observer_reads_option_lists() {
        let template = option_string(options("CREATE DATABASE copy TEMPLATE served"), "template");
        // SAFETY: a NUL-terminated string of the parse tree, read while it lives.
        let name = template.map(|p| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned());
        assert_eq!(name.as_deref(), Some("served"));
        assert!(option_string(options("CREATE DATABASE fresh"), "template").is_none());
        assert!(defines(options("ALTER DATABASE served SET TABLESPACE elsewhere"), "tablespace"));
        assert!(!defines(options("ALTER DATABASE served CONNECTION LIMIT 3"), "tablespace"));
    }
}
