//! The reference external worker (examples/job-worker, Node) against the test cluster: batches
//! of outcomes recorded through complete_and_claim_jobs, failures retried as the queue says, and
//! a SIGTERM that lets the batch in hand finish and be recorded before the worker exits.
//! scripts/test.sh installs its node_modules; without `node` on the machine the test says so
//! and does nothing.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use postgres::types::Json;
use postgres::Client;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{connect, dsn};

const LIMIT: Duration = Duration::from_secs(60);

fn worker_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/job-worker"))
}

/// The worker, connected through the PG* variables taken from the tests' key=value DSN.
fn spawn_worker(worker_id: &str) -> Child {
    let mut cmd = Command::new("node");
    cmd.arg(worker_dir().join("worker.mjs"))
        .args([&format!("--worker-id={worker_id}"), "--batch-size=7", "--poll-interval-ms=50"])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped());
    for pair in dsn().split_whitespace() {
        let (key, value) = pair.split_once('=').expect("key=value");
        let var = match key {
            "host" => "PGHOST",
            "port" => "PGPORT",
            "user" => "PGUSER",
            "dbname" => "PGDATABASE",
            "password" => "PGPASSWORD",
            other => panic!("unexpected DSN key {other}"),
        };
        cmd.env(var, value);
    }
    cmd.spawn().expect("start node examples/job-worker/worker.mjs")
}

fn enqueue(c: &mut Client, jobs: Value) -> Vec<Uuid> {
    c.query_one("SELECT booking_admin.enqueue_jobs($1)", &[&Json(jobs)]).unwrap().get(0)
}

fn count(c: &mut Client, ids: &[Uuid], status: &str) -> i64 {
    c.query_one("SELECT count(*) FROM booking_admin.jobs WHERE id = ANY($1) AND status = $2", &[&ids, &status])
        .unwrap()
        .get(0)
}

/// Polls until `n` of the jobs are in `status`, or panics after LIMIT.
fn wait_for(c: &mut Client, ids: &[Uuid], status: &str, n: i64) {
    let start = Instant::now();
    while count(c, ids, status) != n {
        assert!(start.elapsed() < LIMIT, "not {n} jobs {status} after {LIMIT:?}");
        sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then the worker's summary line once it has exited with success.
fn terminate(mut worker: Child) -> Value {
    let pid = worker.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < LIMIT, "the worker did not exit after SIGTERM");
        sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the worker exited with {status}");
    let mut out = String::new();
    worker.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    serde_json::from_str(out.trim()).expect("one JSON summary line")
}

#[test]
fn the_reference_worker_records_batches_and_finishes_its_batch_on_sigterm() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("node is not installed: the reference external worker is not tested here");
        return;
    }
    let mut c = connect();
    let tag = Uuid::new_v4().simple().to_string();
    let mut jobs: Vec<Value> =
        (0..30).map(|n| json!({"name": "it", "handler": "echo", "payload": {"n": n, "tag": tag}})).collect();
    jobs.push(json!({"name": "it", "handler": "echo", "payload": {"error": "boom", "tag": tag}, "max_retries": 0}));
    let ids = enqueue(&mut c, Value::Array(jobs));

    let worker = spawn_worker(&format!("it-{tag}"));
    wait_for(&mut c, &ids[..30], "completed", 30);
    wait_for(&mut c, &ids[30..], "dead", 1);
    // Each result is the handler's return value (its payload); the failure is the handler's error.
    let rows = c
        .query("SELECT result, payload, error_message, locked_by FROM booking_admin.jobs WHERE id = ANY($1)", &[&ids])
        .unwrap();
    for row in rows {
        let (result, payload): (Option<Json<Value>>, Json<Value>) = (row.get(0), row.get(1));
        let locked_by: Option<String> = row.get(3);
        assert_eq!(locked_by, None);
        if payload.0.get("error").is_some() {
            assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("boom"));
        } else {
            assert_eq!(result.map(|r| r.0), Some(payload.0));
        }
    }

    // A job in hand when SIGTERM arrives is finished and recorded before the worker exits.
    let slow = enqueue(&mut c, json!([{"name": "it", "handler": "echo", "payload": {"delay_ms": 1500, "tag": tag}}]));
    wait_for(&mut c, &slow, "running", 1);
    let summary = terminate(worker);
    assert_eq!(count(&mut c, &slow, "completed"), 1, "the batch in hand was not recorded");
    assert_eq!(summary["completed"], json!(31));
    assert_eq!(summary["failed"], json!(1));
}
