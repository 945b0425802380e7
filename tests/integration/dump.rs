//! pg_dump and pg_restore keep a booking_engine database: every user-data table registered with
//! pg_extension_config_dump comes back once, the extension's own seeded rows are not doubled,
//! and the restored database answers availability questions exactly as the original.

use std::process::Command;
use std::time::Duration;

use postgres::{Client, NoTls};
use uuid::Uuid;

use crate::common::{book, connect, salon, with_db};

fn open(db: &str) -> Client {
    let mut c = Client::connect(&with_db(db), NoTls).expect("connect");
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'").unwrap();
    c
}

fn tool(name: &str, args: &[&str]) {
    let bin = std::env::var("BOOKING_ENGINE_TEST_PG_BIN").expect("BOOKING_ENGINE_TEST_PG_BIN (set by scripts/test.sh)");
    let out = Command::new(format!("{bin}/{name}")).args(args).output().expect(name);
    assert!(out.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

const COUNTED: [&str; 13] = [
    "booking.tenants",
    "booking.staff",
    "booking.services",
    "booking.staff_schedules",
    "booking.customers",
    "booking.appointments",
    "booking.booking_operations",
    "booking.booking_policies",
    "booking.global_policies",
    "booking.events",
    "booking_admin.scheduler_job_info",
    "booking_admin.job_handlers",
    "booking_admin.security_rules",
];

fn counts(c: &mut Client) -> Vec<(String, i64)> {
    COUNTED
        .iter()
        .map(|t| (t.to_string(), c.query_one(&format!("SELECT count(*) FROM {t}"), &[]).unwrap().get(0)))
        .collect()
}

fn month(c: &mut Client, service: Uuid) -> Vec<(Uuid, chrono::DateTime<chrono::Utc>)> {
    c.query("SELECT staff_id, starts_at FROM booking.get_available_slots($1, '2026-03-23', '2026-03-27')", &[&service])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn a_dump_restores_every_users_row_once() {
    let suffix = Uuid::new_v4().simple().to_string();
    let (src, dst) = (format!("it_dump_src_{suffix}"), format!("it_dump_dst_{suffix}"));
    let mut admin = connect();
    for db in [&src, &dst] {
        admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    }

    let mut c = open(&src);
    c.batch_execute("CREATE EXTENSION booking_engine CASCADE").unwrap();
    let s = salon(&mut c, 2);
    let booked = book(&mut c, &s, "dump-1", "2026-03-23 10:00+01");
    assert_eq!(booked["success"], true);
    c.batch_execute(
        "INSERT INTO booking.global_policies (policy_key, policy_value) VALUES ('max_reschedules', '5');
         CREATE FUNCTION public.noop_op(jsonb) RETURNS int LANGUAGE sql AS 'SELECT 0';
         INSERT INTO booking_admin.scheduler_job_info (job_name, description, function, delay_ms)
             VALUES ('app-noop', 'An operator''s own operation', 'public.noop_op', 60000);
         SELECT booking_admin.init_default_security_rules();
         SELECT booking_admin.configure_scheduler_job('activate-due', 45000);
         UPDATE booking_admin.auto_tuner_config SET aggressiveness = 'moderate', monitoring_interval_minutes = 15;",
    )
    .unwrap();
    // Partitions of the history, made by partition-maintenance (tables of the database, not of
    // the extension): pg_dump keeps them, attached, with their rows; an event of a month without
    // a partition waits in the default partition, which pg_dump keeps as the extension's.
    // (The scheduler's own runs are turned off so that nothing moves between the two reads.)
    // A pass that meets the scheduler's first one, still running in this new database, gives up
    // on a table after its lock timeout (and reports it); the next pass does that table's work.
    // A pass already running would go on after the switch: the operation's advisory lock (the
    // one run_maintenance tries), taken first and on its own (the pass ends by updating the row
    // the switch locks), waits for it, and held by this session keeps any other from starting.
    c.batch_execute(
        "SELECT pg_advisory_lock(hashtext('booking_engine.maintenance'), hashtext('partition-maintenance'))",
    )
    .unwrap();
    c.batch_execute("SELECT booking_admin.configure_scheduler_job('partition-maintenance', p_enabled => false)")
        .unwrap();
    let clean = |pass: &serde_json::Value| pass["tables"].as_array().unwrap().iter().all(|t| t.get("error").is_none());
    let mut pass = serde_json::Value::Null;
    for _ in 0..30 {
        pass = c.query_one("SELECT booking_admin.maintain_partitions()", &[]).unwrap().get(0);
        if clean(&pass) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(clean(&pass), "every table maintained: {pass}");
    c.execute(
        "INSERT INTO booking.events (tenant_id, event_type, created_at) VALUES ($1, 'booking.created', '2020-01-15')",
        &[&s.tenant],
    )
    .unwrap();
    let partitions = |c: &mut Client| -> (Vec<String>, i64) {
        let names = c
            .query("SELECT partition_name FROM booking_admin.partitions() ORDER BY 1", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        (names, c.query_one("SELECT count(*) FROM booking.events_default", &[]).unwrap().get(0))
    };
    let partitions_before = partitions(&mut c);
    assert!(partitions_before.0.iter().any(|p| p.starts_with("booking.events_p")), "{partitions_before:?}");
    assert_eq!(partitions_before.1, 1, "the 2020 event waits in the default partition");
    let before = counts(&mut c);
    let slots_before = month(&mut c, s.service);

    let file = std::env::temp_dir().join(format!("{src}.dump"));
    let file = file.to_str().unwrap();
    tool("pg_dump", &["-Fc", "-f", file, "-d", &with_db(&src)]);
    tool("pg_restore", &["--exit-on-error", "-d", &with_db(&dst), file]);
    std::fs::remove_file(file).ok();

    let mut r = open(&dst);
    assert_eq!(counts(&mut r), before, "every table has the same rows after the restore");
    // The restored database's own scheduler may already have made the next partitions ahead.
    let (names, in_default) = partitions(&mut r);
    let missing: Vec<&String> = partitions_before.0.iter().filter(|p| !names.contains(p)).collect();
    assert!(missing.is_empty(), "partitions lost by the dump: {missing:?}");
    assert_eq!(in_default, partitions_before.1, "the same rows in the default partition");
    assert_eq!(month(&mut r, s.service), slots_before, "the restored database offers the same slots");
    let replay = book(&mut r, &s, "dump-1", "2026-03-23 10:00+01");
    assert_eq!(replay["replayed"], true, "idempotency keys survive the restore");
    assert_eq!(replay["appointment"]["id"], booked["appointment"]["id"]);
    let kept: (i32, String, i32) = {
        let row = r
            .query_one(
                "SELECT (SELECT delay_ms FROM booking_admin.scheduler_job_info WHERE job_name = 'activate-due'),
                        aggressiveness, monitoring_interval_minutes FROM booking_admin.auto_tuner_config",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(kept, (45000, "moderate".to_string(), 15), "operator settings of seeded rows survive");

    drop((c, r));
    for db in [&src, &dst] {
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}
