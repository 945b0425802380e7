//! Observability over real connections: counts at commit (a rolled-back booking is not
//! counted), the metrics worker's HTTP endpoints, `promtool check metrics`, a real Prometheus
//! scraping the worker, and the dashboard rendered by headless Chromium.
//!
//! Other tests book at the same time, so the checks read the per-tenant series of a salon of
//! their own (`booking_engine.metrics_tenant_labels` on for the test's sessions).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postgres::Client;
use uuid::Uuid;

use crate::common::{book, connect, poll, salon, Salon};

/// The metrics worker's port (scripts/test.sh sets booking_engine.metrics_port to it).
fn metrics_port() -> u16 {
    std::env::var("BOOKING_ENGINE_TEST_METRICS_PORT")
        .expect("BOOKING_ENGINE_TEST_METRICS_PORT is not set: run through `make test`")
        .parse()
        .unwrap()
}

fn artefacts() -> PathBuf {
    let dir = PathBuf::from(std::env::var("BOOKING_ENGINE_TEST_ARTEFACTS").unwrap_or_else(|_| "/tmp".into()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One HTTP/1.1 GET on loopback: status, headers, body.
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn tenant_session() -> Client {
    let mut c = connect();
    c.batch_execute("SET booking_engine.metrics_tenant_labels = on").unwrap();
    c
}

/// The per-tenant count of `operation` with `outcome`, as booking_admin.metrics() reads it.
fn tenant_count(c: &mut Client, s: &Salon, operation: &str, outcome: &str) -> f64 {
    c.query_opt(
        "SELECT value FROM booking_admin.metrics() WHERE metric = 'booking_tenant_operations_total'
           AND labels = jsonb_build_object('tenant', $1::text, 'operation', $2::text, 'outcome', $3::text)",
        &[&s.tenant.to_string(), &operation, &outcome],
    )
    .unwrap()
    .map_or(0.0, |r| r.get(0))
}

/// Books the salon's Monday at these hours (75 minutes apart at least: a booking takes an hour
/// and its buffer), one committed transaction each.
fn book_committed(c: &mut Client, s: &Salon, hours: &[u32]) {
    for h in hours {
        let r = book(c, s, &format!("obs-{}", Uuid::new_v4()), &format!("2026-03-23 {h:02}:00+01"));
        assert_eq!(r["success"], true, "{r}");
    }
}

#[test]
fn bookings_are_counted_at_commit_and_rollbacks_are_not() {
    let mut c = tenant_session();
    let s = salon(&mut c, 1);
    book_committed(&mut c, &s, &[9, 11]);
    // Rolled back as a whole.
    let mut tx = c.transaction().unwrap();
    assert_eq!(book(&mut tx, &s, "obs-rolled-back", "2026-03-23 13:00+01")["success"], true);
    tx.rollback().unwrap();
    // Rolled back to a savepoint, the transaction itself committed.
    let mut tx = c.transaction().unwrap();
    let mut sp = tx.savepoint("sp").unwrap();
    assert_eq!(book(&mut sp, &s, "obs-savepoint", "2026-03-23 14:00+01")["success"], true);
    sp.rollback().unwrap();
    tx.commit().unwrap();
    // Refused: the 09:00 slot is taken.
    assert_eq!(book(&mut c, &s, &format!("obs-{}", Uuid::new_v4()), "2026-03-23 09:00+01")["success"], false);
    assert_eq!(tenant_count(&mut c, &s, "create", "succeeded"), 2.0);
    assert_eq!(tenant_count(&mut c, &s, "create", "refused"), 1.0);
    // The domain-wide series carries the refusal's code.
    let conflicts: f64 = c
        .query_one(
            "SELECT coalesce(sum(value), 0) FROM booking_admin.metrics() WHERE metric = 'booking_operations_total'
               AND labels ->> 'outcome' = 'refused' AND labels ->> 'code' = 'conflict'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(conflicts >= 1.0);
}

/// Worker starts by kind and the writer's queue, read from shared memory at each scrape.
#[test]
fn worker_starts_and_the_writer_queue_are_in_the_metrics() {
    let mut c = connect();
    let value = |c: &mut Client, metric: &str, labels: serde_json::Value| -> Option<f64> {
        c.query_opt("SELECT value FROM booking_admin.metrics() WHERE metric = $1 AND labels = $2", &[&metric, &labels])
            .unwrap()
            .map(|r| r.get(0))
    };
    for worker in ["scheduler", "runner"] {
        let starts = value(&mut c, "booking_worker_starts_total", serde_json::json!({"worker": worker}));
        assert!(starts.is_some_and(|n| n >= 1.0), "{worker}: {starts:?}");
    }
    // 512 small and 16 large slots.
    assert_eq!(value(&mut c, "booking_writer_queue", serde_json::json!({"state": "capacity"})), Some(528.0));
    assert!(value(&mut c, "booking_writer_queue", serde_json::json!({"state": "pending"})).is_some());
    assert!(value(&mut c, "booking_writer_records_dropped", serde_json::json!({})).is_some());
}

#[test]
fn tenant_series_are_capped_and_overflow_is_counted() {
    let mut c = tenant_session();
    // A cap already reached by the other tests' tenants: a new tenant's series is dropped.
    c.batch_execute("SET booking_engine.metrics_max_tenant_series = 0").unwrap();
    let s = salon(&mut c, 1);
    let dropped_before = dropped(&mut c);
    book_committed(&mut c, &s, &[10]);
    assert_eq!(tenant_count(&mut c, &s, "create", "succeeded"), 0.0);
    assert!(dropped(&mut c) > dropped_before);
}

fn dropped(c: &mut Client) -> f64 {
    c.query_one(
        "SELECT coalesce(sum(value), 0) FROM booking_admin.metrics() WHERE metric = 'booking_metrics_dropped_total'
           AND labels ->> 'metric' = 'booking_tenant_operations'",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn the_worker_serves_both_formats_health_and_ready() {
    let port = metrics_port();
    let (status, head, body) = get(port, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("# TYPE booking_operations_total counter"));
    assert!(body.contains("booking_metrics_sql_up 1\n"), "the SQL gauges answered");
    assert!(!body.contains("# EOF"));
    let (_, head, body) = get(port, "/metrics", &[("Accept", "application/openmetrics-text; version=1.0.0")]);
    assert!(head.contains("Content-Type: application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"));
    let (status, _, body) = get(port, "/health", &[]);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["components"]["job_queue"]["status"].is_string(), "{doc}");
    assert_eq!(status == 200, doc["status"] != "critical");
    assert_eq!(get(port, "/ready", &[]).0, 200);
    assert_eq!(get(port, "/nope", &[]).0, 404);
    // The worker is visible as what it is.
    let mut c = connect();
    let n: i64 = c
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'booking_engine metrics'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// promtool reads the Prometheus text format (OpenMetrics is checked by the real Prometheus
/// below, which asks for it first).
#[test]
fn promtool_accepts_the_exposition() {
    let port = metrics_port();
    {
        let accept = "text/plain";
        let (_, _, body) = get(port, "/metrics", &[("Accept", accept)]);
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus)");
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{accept}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Kills the child when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_counts() {
    let port = metrics_port();
    let prom_port = port + 1;
    let mut c = tenant_session();
    let s = salon(&mut c, 1);
    book_committed(&mut c, &s, &[9, 11, 13]);
    let mut tx = c.transaction().unwrap();
    book(&mut tx, &s, "prom-rolled-back", "2026-03-23 15:00+01");
    tx.rollback().unwrap();

    let dir = artefacts().join(format!("prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: booking_engine\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let _prom = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package prometheus)"),
    );
    let query = format!("booking_tenant_operations_total{{tenant=\"{}\",operation=\"create\"}}", s.tenant);
    let path = format!("/api/v1/query?query={}", url_escape(&query));
    let value = poll("Prometheus to scrape the bookings", Duration::from_secs(60), || {
        let (status, _, body) = std::panic::catch_unwind(|| get(prom_port, &path, &[])).ok()?;
        if status != 200 {
            return None;
        }
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        let v = doc["data"]["result"][0]["value"][1].as_str()?.to_string();
        Some(v)
    });
    assert_eq!(value, "3", "three committed bookings, the rolled-back one not counted");
    // The scrape itself succeeded (Prometheus's own up series).
    let up = get(prom_port, "/api/v1/query?query=up", &[]).2;
    assert!(up.contains("\"value\":[") && up.contains(",\"1\"]"), "{up}");
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn bookings_today(c: &mut Client) -> i64 {
    c.query_one("SELECT (booking_admin.dashboard_data() ->> 'bookings_today')::bigint", &[]).unwrap().get(0)
}

/// Headless Chromium. (With scripts turned off in Blink, headless Chromium dumps and shoots
/// nothing at all; the page has no script, which the test checks on the server's HTML.)
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (Debian package chromium)")
}
/// One history capture. A capture reads every relation's size, so it can lose a deadlock
/// (40P01) to a concurrent test's partition or remediation DDL in this shared database; like the
/// scheduler, which runs the next capture, it is tried again.
fn capture(c: &mut Client) {
    for attempt in 1.. {
        match c.batch_execute("SELECT booking_admin.capture_history('0 seconds')") {
            Ok(()) => return,
            Err(e) if attempt < 5 && e.code() == Some(&postgres::error::SqlState::T_R_DEADLOCK_DETECTED) => {}
            Err(e) => panic!("capture_history: {e}"),
        }
    }
}

/// History for the charts: two snapshots of the extension's rates with bookings, a refusal and
/// slot queries between them, and two captures of the database's statistics with queries
/// between them.
fn history_for_the_charts(c: &mut Client, s: &Salon) {
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").unwrap();
    let run = |c: &mut Client, op: &str| {
        let ok: bool =
            c.query_one("SELECT (booking_admin.run_maintenance($1) ->> 'success')::boolean", &[&op]).unwrap().get(0);
        assert!(ok, "{op}");
    };
    run(c, "metrics-snapshot");
    capture(c);
    book_committed(c, s, &[9, 11, 13]);
    // A refusal: the 09:00 slot is taken.
    assert_eq!(book(c, s, &format!("obs-{}", Uuid::new_v4()), "2026-03-23 09:00+01")["success"], false);
    for _ in 0..3 {
        c.query(&format!("SELECT count(*) FROM booking.appointments WHERE tenant_id = '{}'", s.tenant), &[]).unwrap();
        c.query("SELECT count(*) FROM booking.get_available_slots($1, '2026-03-24', '2026-03-24')", &[&s.service])
            .unwrap();
    }
    run(c, "metrics-snapshot");
    capture(c);
}

#[test]
fn the_dashboard_renders_in_headless_chromium() {
    let port = metrics_port();
    let mut c = connect();
    let s = salon(&mut c, 1);
    history_for_the_charts(&mut c, &s);
    let (status, _, html) = get(port, "/dashboard", &[]);
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("://"), "the page loads nothing from elsewhere: {html}");
    // Readable without JavaScript: there is none, and the charts come drawn in the server's HTML.
    assert!(
        !html.contains("<script") && !regex::Regex::new(r"\son[a-z]+\s*=").unwrap().is_match(&html),
        "no script: {html}"
    );
    assert!(html.contains("<svg id=\"chart-bookings\""), "{html}");
    let before = bookings_today(&mut c);
    let url = format!("http://127.0.0.1:{port}/dashboard");
    let out = chromium(&["--dump-dom"], &url);
    let after = bookings_today(&mut c);
    let dom = String::from_utf8_lossy(&out.stdout);
    // Other tests book meanwhile: the figure shown lies between the two reads.
    let shown: i64 = regex::Regex::new(r#"<div class="v">(\d+)</div><div>bookings today"#)
        .unwrap()
        .captures(&dom)
        .unwrap_or_else(|| panic!("no bookings tile in {dom}"))[1]
        .parse()
        .unwrap();
    assert!(before >= 1 && (before..=after).contains(&shown), "{before} <= {shown} <= {after}");
    assert!(dom.contains("id=\"health\""), "{dom}");
    // Every chart is drawn by the server from the history above: bars for this hour's
    // bookings and refusals, latency points, the database's size, the queries just run.
    for id in [
        "chart-bookings",
        "chart-latency",
        "chart-jobs",
        "chart-deliveries",
        "chart-backlog",
        "chart-database-size",
        "chart-top-queries",
    ] {
        assert!(dom.contains(&format!("<svg id=\"{id}\"")), "{id} missing: {dom}");
    }
    let chart = |id: &str| -> String {
        let start = dom.find(&format!("<svg id=\"{id}\"")).unwrap();
        dom[start..start + dom[start..].find("</svg>").unwrap()].to_string()
    };
    assert!(
        regex::Regex::new(r"<rect [^>]*><title>[^<]* bookings: [1-9]").unwrap().is_match(&chart("chart-bookings")),
        "a bar of bookings: {}",
        chart("chart-bookings")
    );
    assert!(chart("chart-bookings").contains(" refusals: "), "a bar of refusals: {}", chart("chart-bookings"));
    assert!(chart("chart-latency").contains("<circle"), "{}", chart("chart-latency"));
    assert!(chart("chart-database-size").contains("<circle"), "{}", chart("chart-database-size"));
    assert!(chart("chart-top-queries").contains("<circle"), "{}", chart("chart-top-queries"));
    assert!(dom.contains("id=\"top-queries\""), "{dom}");
    // The week's view is one link away, and draws the same charts.
    let (status, _, week) = get(port, "/dashboard?range=week", &[]);
    assert_eq!(status, 200);
    assert!(week.contains("The last week") && week.contains("<svg id=\"chart-bookings\""), "{week}");
    assert_eq!(get(port, "/dashboard?range=decade", &[]).0, 400);
    // The screenshot is kept as an artefact: the whole page, charts included.
    let shot = artefacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let shot_run = chromium(&["--window-size=1500,2200", &format!("--screenshot={}", shot.display())], &url);
    assert!(shot_run.status.success() && shot.exists(), "{}", String::from_utf8_lossy(&shot_run.stderr));
}

/// The metrics worker reads the machine every 15 s: CPU (between two readings), memory and the
/// data directory's file system, as gauges a metric alert rule reads like any other.
#[test]
fn the_worker_reads_the_machine_for_the_cpu_memory_and_disk_alerts() {
    let port = metrics_port();
    let value = |body: &str, name: &str| -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    // The CPU share needs two readings, 15 s apart.
    let body = poll("booking_host_cpu_usage_ratio", Duration::from_secs(40), || {
        let (_, _, body) = get(port, "/metrics", &[]);
        value(&body, "booking_host_cpu_usage_ratio").map(|_| body)
    });
    for name in [
        "booking_host_cpu_usage_ratio",
        "booking_host_memory_used_ratio",
        "booking_host_disk_used_ratio{path=\"data_directory\"}",
    ] {
        let v = value(&body, name).unwrap_or_else(|| panic!("{name} in {body}"));
        assert!((0.0..=1.0).contains(&v), "{name} = {v}");
    }
    assert!(value(&body, "booking_host_memory_total_bytes").is_some_and(|v| v > 0.0));
    assert!(value(&body, "booking_host_disk_free_bytes{path=\"data_directory\"}").is_some_and(|v| v > 0.0));
    // A metric rule on them fires like any other (the defaults watch 80 % CPU, 90 % memory and
    // disk; this one fires whenever memory is in use at all).
    let mut c = connect();
    let rule = format!("it_host_{}", Uuid::new_v4().simple());
    c.execute(
        "INSERT INTO booking_admin.alert_rules (name, severity, metric, operator, threshold) VALUES ($1, 'low', 'booking_host_memory_used_ratio', '>', 0)",
        &[&rule],
    )
    .unwrap();
    c.query_one("SELECT booking_admin.evaluate_alert_rules()", &[]).unwrap();
    let state: Option<String> = c
        .query_opt("SELECT state FROM booking_admin.alert_instances WHERE rule_name = $1", &[&rule])
        .unwrap()
        .map(|r| r.get(0));
    c.execute("DELETE FROM booking_admin.alert_rules WHERE name = $1", &[&rule]).unwrap();
    assert_eq!(state.as_deref(), Some("firing"), "a rule on the memory gauge fires");
    // The default rules name these gauges; each is a known metric.
    for metric in ["booking_host_cpu_usage_ratio", "booking_host_memory_used_ratio", "booking_host_disk_used_ratio"] {
        c.query_one("SELECT booking_admin.check_alert_rule(NULL, $1)", &[&metric])
            .unwrap_or_else(|e| panic!("{metric}: {e}"));
    }
}

/// Whether a socket listens on `addr:port` (IPv4, /proc/net/tcp: state 0A is LISTEN).
fn listening(ip: [u8; 4], port: u16) -> bool {
    let want = format!("{:02X}{:02X}{:02X}{:02X}:{port:04X}", ip[3], ip[2], ip[1], ip[0]);
    std::fs::read_to_string("/proc/net/tcp").unwrap().lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
    })
}

/// Sets booking_engine.metrics_listen_address and reloads; then, for three seconds, the port
/// answers on loopback at every poll (never two polls in a row refused) and the worker ends up
/// listening on the new address. Before the fix, binding the wildcard beside the loopback
/// socket failed with "Address already in use" and nothing listened for 10 s.
fn move_listener(c: &mut Client, port: u16, address: &str, ip: [u8; 4]) {
    // One statement each: ALTER SYSTEM refuses to run in the implicit transaction of a batch.
    c.batch_execute(&format!("ALTER SYSTEM SET booking_engine.metrics_listen_address = '{address}'")).unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    let start = Instant::now();
    let mut refused_in_a_row = 0;
    while start.elapsed() < Duration::from_secs(3) {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => refused_in_a_row = 0,
            Err(e) => {
                refused_in_a_row += 1;
                assert!(refused_in_a_row < 2, "nothing listens on 127.0.0.1:{port} while moving to {address}: {e}");
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(listening(ip, port), "the worker listens on {address}:{port}");
}

#[test]
#[ignore = "changes server settings; run alone by scripts/test.sh"]
fn a_new_listen_address_is_served_without_a_gap() {
    let port = metrics_port();
    let mut c = connect();
    assert!(listening([127, 0, 0, 1], port));
    // The wildcard address overlaps the loopback one on the same port, both ways.
    move_listener(&mut c, port, "0.0.0.0", [0, 0, 0, 0]);
    assert!(!listening([127, 0, 0, 1], port), "the old socket is released");
    move_listener(&mut c, port, "127.0.0.1", [127, 0, 0, 1]);
    c.batch_execute("ALTER SYSTEM RESET booking_engine.metrics_listen_address").unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    assert_eq!(get(port, "/health", &[]).0, 200);
}

/// A probe table the rule's condition reads: the test sets what holds.
struct AlertProbe {
    table: String,
    rule: String,
}

impl AlertProbe {
    fn new(c: &mut Client, for_duration: &str, keep_firing_for: &str) -> AlertProbe {
        let id = Uuid::new_v4().simple().to_string();
        let p = AlertProbe { table: format!("public.alert_probe_{id}"), rule: format!("it_{id}") };
        c.batch_execute(&format!("CREATE TABLE {} (v int NOT NULL)", p.table)).unwrap();
        c.execute(
            "INSERT INTO booking_admin.alert_rules (name, severity, condition_sql, for_duration, keep_firing_for,
                 annotations) VALUES ($1, 'high', $2, $3::text::interval, $4::text::interval,
                 '{\"summary\": \"probe at {{ $value }}\"}')",
            &[&p.rule, &format!("SELECT v AS value FROM {} WHERE v > 0", p.table), &for_duration, &keep_firing_for],
        )
        .unwrap();
        p
    }

    fn set(&self, c: &mut Client, v: i32) {
        c.batch_execute(&format!("DELETE FROM {0}; INSERT INTO {0} VALUES ({v})", self.table)).unwrap();
    }

    fn evaluate(&self, c: &mut Client) -> Option<String> {
        c.execute("SELECT booking_admin.evaluate_alert_rules()", &[]).unwrap();
        self.state(c)
    }

    fn state(&self, c: &mut Client) -> Option<String> {
        c.query_opt("SELECT state FROM booking_admin.alert_instances WHERE rule_name = $1", &[&self.rule])
            .unwrap()
            .map(|r| r.get(0))
    }

    /// Evaluates until the instance is in one of `states` (None: gone).
    fn evaluate_until(&self, c: &mut Client, states: &[Option<&str>]) {
        poll(&format!("alert {} to be one of {states:?}", self.rule), Duration::from_secs(30), || {
            states.contains(&self.evaluate(c).as_deref()).then_some(())
        });
    }

    fn events(&self, c: &mut Client, kind: &str) -> i64 {
        c.query_one(
            "SELECT count(*) FROM booking.events WHERE event_type = $1 AND payload ->> 'rule' = $2",
            &[&format!("alert.{kind}"), &self.rule],
        )
        .unwrap()
        .get(0)
    }
}

#[test]
fn alerts_go_pending_firing_resolved_with_one_notification_each() {
    let mut c = connect();
    let p = AlertProbe::new(&mut c, "2 seconds", "3 seconds");
    // Held shorter than `for`: pending, then inactive, never notified.
    p.set(&mut c, 1);
    assert_eq!(p.evaluate(&mut c).as_deref(), Some("pending"));
    p.set(&mut c, 0);
    assert_eq!(p.evaluate(&mut c), None);
    assert_eq!(p.events(&mut c, "firing"), 0);
    // Held longer: firing, notified once however often it is evaluated.
    p.set(&mut c, 7);
    assert_eq!(p.evaluate(&mut c).as_deref(), Some("pending"));
    p.evaluate_until(&mut c, &[Some("firing")]);
    p.evaluate(&mut c);
    assert_eq!(p.events(&mut c, "firing"), 1);
    let payload: serde_json::Value = c
        .query_one(
            "SELECT payload FROM booking.events WHERE event_type = 'alert.firing' AND payload ->> 'rule' = $1",
            &[&p.rule],
        )
        .unwrap()
        .get(0);
    assert_eq!(payload["severity"], "high");
    assert_eq!(payload["value"], 7.0);
    assert_eq!(payload["annotations"]["summary"], "probe at 7");
    assert_eq!(payload["labels"]["alertname"], p.rule.as_str());
    assert!(payload["started_at"].is_string() && payload["fingerprint"].is_string(), "{payload}");
    // Acknowledged: who, when and the note are kept.
    let fp = payload["fingerprint"].as_str().unwrap().to_string();
    c.execute("SELECT booking_admin.acknowledge_alert($1, 'looking into it')", &[&fp]).unwrap();
    let row = c
        .query_one("SELECT acknowledged_by, ack_note, acknowledged_at IS NOT NULL FROM booking_admin.alert_instances WHERE fingerprint = $1", &[&fp])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, bool>(2)),
        ("postgres".into(), "looking into it".into(), true)
    );
    // Flapping within keep_firing_for: still firing, no new notification.
    p.set(&mut c, 0);
    assert_eq!(p.evaluate(&mut c).as_deref(), Some("firing"));
    p.set(&mut c, 7);
    assert_eq!(p.evaluate(&mut c).as_deref(), Some("firing"));
    assert_eq!(p.events(&mut c, "firing"), 1);
    // Cleared for longer than keep_firing_for: resolved, notified once.
    // The scheduler's evaluate-alerts runs the same rules: when its pass resolves the instance and
    // the next one drops it, this session sees it gone; the history below says it was resolved.
    p.set(&mut c, 0);
    p.evaluate_until(&mut c, &[Some("resolved"), None]);
    p.evaluate(&mut c);
    assert_eq!(p.events(&mut c, "resolved"), 1);
    assert_eq!(p.events(&mut c, "firing"), 1);
    let history: Vec<String> = c
        .query("SELECT event FROM booking_admin.alert_history WHERE rule_name = $1 ORDER BY id", &[&p.rule])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        history,
        [
            "pending",
            "inactive",
            "pending",
            "firing",
            "notified_firing",
            "acknowledged",
            "resolved",
            "notified_resolved"
        ]
    );
}

#[test]
fn a_silence_suppresses_notifications_but_not_state() {
    let mut c = connect();
    let p = AlertProbe::new(&mut c, "0", "0");
    c.execute(
        "SELECT booking_admin.silence_alerts(jsonb_build_object('alertname', $1::text), clock_timestamp() + interval '1 hour', 'maintenance')",
        &[&p.rule],
    )
    .unwrap();
    p.set(&mut c, 1);
    assert_eq!(p.evaluate(&mut c).as_deref(), Some("firing"));
    p.set(&mut c, 0);
    assert_eq!(p.evaluate(&mut c).as_deref(), Some("resolved"));
    assert_eq!(p.events(&mut c, "firing") + p.events(&mut c, "resolved"), 0);
}

/// Resolved by hand: at once, one resolve notification, who and the note in the history; the
/// condition still holding, the next evaluation fires a new instance. The notifications reach
/// a real receiver through an endpoint subscribed to `alert.*` (the delivery worker).
#[test]
fn an_alert_resolved_by_hand_is_notified_and_fires_again_while_its_condition_holds() {
    let mut c = connect();
    let rx = crate::receiver::Receiver::start(vec![], crate::receiver::Answer::Status(200));
    let endpoint: serde_json::Value =
        c.query_one("SELECT booking_admin.create_endpoint($1, '{alert.*}')", &[&rx.url]).unwrap().get(0);
    let p = AlertProbe::new(&mut c, "0", "0");
    p.set(&mut c, 3);
    assert_eq!(p.evaluate(&mut c).as_deref(), Some("firing"));
    let fp: String = c
        .query_one("SELECT fingerprint FROM booking_admin.alert_instances WHERE rule_name = $1", &[&p.rule])
        .unwrap()
        .get(0);
    let r: serde_json::Value =
        c.query_one("SELECT booking_admin.resolve_alert($1, 'restarted the receiver')", &[&fp]).unwrap().get(0);
    assert_eq!(r["state"], "resolved");
    assert_eq!(p.events(&mut c, "resolved"), 1);
    let details: serde_json::Value = c
        .query_one(
            "SELECT details FROM booking_admin.alert_history WHERE fingerprint = $1 AND event = 'resolved'",
            &[&fp],
        )
        .unwrap()
        .get(0);
    assert_eq!(details["note"], "restarted the receiver");
    assert_eq!(details["manual"], true);
    // (Not this fingerprint again: the scheduler's own evaluation may have fired it anew.)
    let e = c.query_one("SELECT booking_admin.resolve_alert('no-such-fingerprint')", &[]).unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "P0002");
    // Still holding: a new instance fires and is notified again.
    assert_eq!(p.evaluate(&mut c).as_deref(), Some("firing"));
    assert_eq!(p.events(&mut c, "firing"), 2);
    // firing, resolved, firing arrive at the receiver (other tests' alerts may arrive too).
    poll("the three notifications at the receiver", Duration::from_secs(60), || {
        let mine: Vec<String> = rx
            .requests()
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .filter(|b| b["data"]["rule"] == p.rule.as_str())
            .map(|b| b["type"].as_str().unwrap_or_default().to_string())
            .collect();
        (mine.len() >= 3).then_some(mine)
    });
    c.execute("SELECT booking_admin.delete_endpoint(($1::jsonb ->> 'id')::uuid)", &[&endpoint]).unwrap();
}
