//! Shared by the integration tests: a connection to the cluster the test command started, and a
//! small salon with fresh ids so tests never see each other's rows.

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use postgres::{Client, GenericClient, NoTls};
use uuid::Uuid;

pub fn dsn() -> String {
    std::env::var("BOOKING_ENGINE_TEST_DSN").expect(
        "BOOKING_ENGINE_TEST_DSN is not set: run the integration tests through `make test`, which starts a cluster",
    )
}

/// Calls `f` every 200 ms until it returns a value, for at most `timeout`.
pub fn poll<T>(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The test cluster's connection string, for another database.
pub fn with_db(db: &str) -> String {
    let rest: Vec<String> =
        dsn().split_whitespace().filter(|kv| !kv.starts_with("dbname=")).map(str::to_string).collect();
    format!("{} dbname={db}", rest.join(" "))
}

pub fn connect() -> Client {
    let mut c = Client::connect(&dsn(), NoTls).expect("connect to the test cluster");
    c.batch_execute("SET booking_engine.now = '2026-03-01 00:00+01'; SET timezone = 'Europe/Zurich'").unwrap();
    c
}

#[derive(Clone)]
pub struct Salon {
    pub tenant: Uuid,
    pub staff: Vec<Uuid>,
    pub service: Uuid,
    pub customer: Uuid,
}

/// A tenant in Europe/Zurich with `staff` people working 09:00-17:00 Monday to Friday, one
/// 60-minute service with a 15-minute after-buffer, and one customer.
pub fn salon(c: &mut Client, staff: usize) -> Salon {
    let tenant = Uuid::new_v4();
    let service = Uuid::new_v4();
    let customer = Uuid::new_v4();
    c.execute(
        "INSERT INTO booking.tenants (id, name, timezone, slot_interval_minutes) VALUES ($1, 'it salon', 'Europe/Zurich', 15)",
        &[&tenant],
    )
    .unwrap();
    c.execute(
        "INSERT INTO booking.services (id, tenant_id, name, duration_minutes, buffer_after_minutes) VALUES ($1, $2, 'Cut', 60, 15)",
        &[&service, &tenant],
    )
    .unwrap();
    c.execute("INSERT INTO booking.customers (id, tenant_id, name) VALUES ($1, $2, 'Client')", &[&customer, &tenant])
        .unwrap();
    let ids: Vec<Uuid> = (0..staff).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        c.execute("INSERT INTO booking.staff (id, tenant_id, name) VALUES ($1, $2, 'Staff')", &[id, &tenant]).unwrap();
        c.execute("INSERT INTO booking.staff_services (staff_id, service_id) VALUES ($1, $2)", &[id, &service])
            .unwrap();
        c.execute(
            "INSERT INTO booking.staff_schedules (staff_id, day_of_week, start_time, end_time)
             SELECT $1, d, '09:00', '17:00' FROM generate_series(1, 5) d",
            &[id],
        )
        .unwrap();
    }
    Salon { tenant, staff: ids, service, customer }
}

/// Books the salon's first staff member for its customer through create_booking_idempotent, on a
/// connection or inside a transaction, and returns the function's JSON answer.
pub fn book(c: &mut impl GenericClient, s: &Salon, key: &str, starts_at: &str) -> serde_json::Value {
    c.query_one(
        "SELECT booking.create_booking_idempotent($1, jsonb_build_object('customer_id', $2::uuid, 'staff_id', $3::uuid,
             'service_id', $4::uuid, 'starts_at', $5::text))",
        &[&key, &s.customer, &s.staff[0], &s.service, &starts_at],
    )
    .unwrap()
    .get(0)
}

/// Where another session's backend is parked, as the server itself reports it.
pub enum Parked {
    /// Waiting on a lock another session holds (`pg_blocking_pids`).
    OnLock,
    /// Waiting on its latch inside the extension (`wait_event_type = 'Extension'`).
    InExtension,
}

/// Waits until backend `pid` is parked as `how` says. Race tests order their steps on this
/// state, as PostgreSQL's isolation tester does, instead of sleeping and hoping.
pub fn await_parked(c: &mut Client, pid: i32, how: Parked) {
    let sql = match how {
        Parked::OnLock => "SELECT cardinality(pg_blocking_pids($1)) > 0",
        Parked::InExtension => {
            "SELECT coalesce(bool_or(wait_event_type = 'Extension' AND state = 'active'), false)
             FROM pg_stat_activity WHERE pid = $1"
        }
    };
    let start = std::time::Instant::now();
    while !c.query_one(sql, &[&pid]).unwrap().get::<_, bool>(0) {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "backend {pid} never got parked");
    }
}

/// The first pid `query` (one `int4` column, or NULL, with `params`) finds, polled with a
/// fresh statistics snapshot each time, for up to 20 s; `what` says what is waited for.
pub fn await_pid(c: &mut Client, what: &str, query: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(pid) = c.query_one(query, params).unwrap().get::<_, Option<i32>>(0) {
            return pid;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "waited in vain for {what}");
        c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
        sleep(Duration::from_millis(20));
    }
}

/// Terminates a server process and waits until it is gone.
pub fn terminate(c: &mut Client, pid: i32) {
    assert!(c.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get::<_, bool>(0));
    await_pid(
        c,
        &format!("process {pid} to exit"),
        "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1) THEN $1 END",
        &[&pid],
    );
}

/// The backend pid of a connection.
pub fn backend_pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// Supabase's roles, as on a Supabase database: `anon` and `authenticated` (NOLOGIN NOINHERIT),
/// `service_role` (NOLOGIN NOINHERIT BYPASSRLS), and the `authenticator` PostgREST logs in as
/// (LOGIN NOINHERIT, granted the three). Created once per test process if missing (and made
/// NOINHERIT, as Supabase has them, if an older run made them otherwise), then the extension's
/// grants for them are applied (they did not exist at CREATE EXTENSION).
pub fn ensure_supabase_roles() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| supabase_roles(&mut connect()));
}

/// Supabase's roles and the extension's grants for them, in the database of `c`.
pub fn supabase_roles(c: &mut Client) {
    c.batch_execute(
        "SELECT pg_advisory_lock(8291);
             DO $$ BEGIN
                 IF to_regrole('anon') IS NULL THEN CREATE ROLE anon NOLOGIN NOINHERIT; END IF;
                 IF to_regrole('authenticated') IS NULL THEN CREATE ROLE authenticated NOLOGIN NOINHERIT; END IF;
                 IF to_regrole('service_role') IS NULL THEN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; END IF;
                 IF to_regrole('authenticator') IS NULL THEN CREATE ROLE authenticator LOGIN NOINHERIT; END IF;
             END $$;
             ALTER ROLE anon NOINHERIT;
             ALTER ROLE authenticated NOINHERIT;
             ALTER ROLE service_role NOINHERIT;
             GRANT anon, authenticated, service_role TO authenticator;
             SELECT booking_admin.grant_api_roles();
             SELECT pg_advisory_unlock(8291);",
    )
    .unwrap();
}

/// Who a request comes from, as PostgREST sees it: the role it switches to and the JWT claims.
#[derive(Clone, Debug)]
pub enum Caller {
    Anon,
    /// A signed-in user (`sub`).
    User(Uuid),
    /// A signed-in user whose JWT carries their (confirmed) e-mail address, as Supabase Auth's do.
    UserWithEmail(Uuid, String),
    /// Supabase's back end: the service key.
    Service,
}

impl Caller {
    fn role(&self) -> &'static str {
        match self {
            Caller::Anon => "anon",
            Caller::User(_) | Caller::UserWithEmail(..) => "authenticated",
            Caller::Service => "service_role",
        }
    }

    fn claims(&self) -> serde_json::Value {
        match self {
            Caller::Anon => serde_json::json!({"role": "anon"}),
            Caller::User(sub) => {
                serde_json::json!({"role": "authenticated", "sub": sub, "aal": "aal1"})
            }
            Caller::UserWithEmail(sub, email) => {
                serde_json::json!({"role": "authenticated", "sub": sub, "email": email, "aal": "aal1"})
            }
            Caller::Service => serde_json::json!({"role": "service_role"}),
        }
    }
}

/// An error as PostgREST would turn it into an HTTP answer: the SQLSTATE and the message.
#[derive(Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: String,
    pub message: String,
}

/// One pooled connection logged in as `authenticator`, used the way PostgREST uses it: every
/// request is BEGIN; SET LOCAL role; set_config('request.jwt.claims', ..., true);
/// set_config('request.headers', ..., true); SELECT booking.fn(arg := ...); COMMIT (ROLLBACK on
/// error). Arguments are named and typed as PostgREST's schema cache would pass them.
pub struct PostgRest {
    client: Client,
    /// Headers every request carries (a test sets x-forwarded-for or x-request-id here).
    pub headers: serde_json::Value,
}

impl PostgRest {
    pub fn connect() -> PostgRest {
        Self::connect_as("authenticator")
    }

    /// PostgREST logging in as another authenticator role (one with settings of its own).
    pub fn connect_as(login: &str) -> PostgRest {
        ensure_supabase_roles();
        Self::login(&dsn(), login)
    }

    /// The same, in another database (`dsn` logs in as a superuser, who creates the roles).
    pub fn connect_to(dsn: &str) -> PostgRest {
        supabase_roles(&mut Client::connect(dsn, NoTls).expect("connect"));
        Self::login(dsn, "authenticator")
    }

    fn login(dsn: &str, login: &str) -> PostgRest {
        let client = Client::connect(&format!("{dsn} user={login}"), NoTls).expect("connect as the authenticator");
        PostgRest { client, headers: serde_json::json!({"user-agent": "it-postgrest"}) }
    }

    fn request(&mut self, who: &Caller, sql: &str, args: &serde_json::Value) -> Result<serde_json::Value, RpcError> {
        let mut tx = self.client.transaction().unwrap();
        tx.batch_execute(&format!("SET LOCAL role {}", who.role())).unwrap();
        tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&who.claims().to_string()]).unwrap();
        tx.execute("SELECT set_config('request.headers', $1, true)", &[&self.headers.to_string()]).unwrap();
        match tx.query_one(sql, &[&args.to_string()]) {
            Ok(row) => {
                let text: Option<String> = row.get(0);
                tx.commit().unwrap();
                Ok(text.map(|t| serde_json::from_str(&t).unwrap()).unwrap_or(serde_json::Value::Null))
            }
            Err(e) => {
                let db = e.as_db_error().unwrap_or_else(|| panic!("not a database error: {e}"));
                let err = RpcError { code: db.code().code().to_string(), message: db.message().to_string() };
                drop(tx);
                Err(err)
            }
        }
    }

    /// `args`: (name, SQL type, value) per argument; `function` is in schema booking unless it
    /// names its schema.
    fn call_sql(function: &str, args: &[(&str, &str, serde_json::Value)]) -> (String, serde_json::Value) {
        let named: Vec<String> =
            args.iter().map(|(name, ty, _)| format!("{name} := (_args ->> '{name}')::{ty}")).collect();
        let body: serde_json::Map<String, serde_json::Value> =
            args.iter().map(|(name, _, v)| (name.to_string(), text_of(v))).collect();
        // Schema booking unless the name says another (PostgREST's Content-Profile).
        let qualified = if function.contains('.') { function.to_string() } else { format!("booking.{function}") };
        (format!("{qualified}({})", named.join(", ")), serde_json::Value::Object(body))
    }

    /// POST /rpc/{function} of a function returning one value: its JSON.
    pub fn rpc(
        &mut self,
        who: &Caller,
        function: &str,
        args: &[(&str, &str, serde_json::Value)],
    ) -> Result<serde_json::Value, RpcError> {
        let (call, body) = Self::call_sql(function, args);
        let sql = format!("SELECT to_jsonb({call})::text FROM (SELECT $1::text::jsonb AS _args) _p");
        self.request(who, &sql, &body)
    }

    /// GET /rpc/{function} of a set-returning function: its rows as a JSON array.
    pub fn rpc_rows(
        &mut self,
        who: &Caller,
        function: &str,
        args: &[(&str, &str, serde_json::Value)],
    ) -> Result<serde_json::Value, RpcError> {
        let (call, body) = Self::call_sql(function, args);
        let sql = format!(
            "SELECT coalesce(jsonb_agg(_r), '[]')::text FROM (SELECT $1::text::jsonb AS _args) _p, LATERAL {call} _r"
        );
        self.request(who, &sql, &body)
    }
}

/// A JSON argument as PostgREST hands it over: strings as they are, objects and arrays as
/// their JSON text.
fn text_of(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(_) | serde_json::Value::Null => v.clone(),
        other => serde_json::Value::String(other.to_string()),
    }
}

/// A connection whose commits are flushed before they return (the cluster runs with
/// synchronous_commit = off): what a crash test counts on having committed.
pub fn durable_connection() -> Client {
    let mut c = connect();
    c.batch_execute("SET synchronous_commit = on").unwrap();
    c
}

/// Reconnects until the server accepts connections again (after a crash or restart).
pub fn reconnect() -> Client {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = postgres::Client::connect(&dsn(), postgres::NoTls) {
            if c.batch_execute("SELECT 1").is_ok() {
                return c;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the server did not come back");
        sleep(Duration::from_millis(200));
    }
}

/// A connection to the server after one of its processes was killed with SIGKILL. The
/// postmaster ends every backend, `c`'s too, before it recovers: a connection made before that
/// point would be cut as well, so this waits for `c` to go and only then reconnects.
pub fn reconnect_after_crash(mut c: Client) -> Client {
    let start = Instant::now();
    while c.batch_execute("SELECT 1").is_ok() {
        assert!(start.elapsed() < Duration::from_secs(30), "the crash did not reset the server");
    }
    drop(c);
    reconnect()
}

/// The delivery worker's crash test, shared by the webhook and reminder tests: waits until the
/// worker is mid-way through `total` deliveries (`delivered` counts the delivered ones, and
/// fewer than `total - margin` are), kills it with SIGKILL, waits until its successor is
/// mid-way again, stops the server immediately, starts it, and waits until all are delivered.
/// Returns a connection to the restarted server.
pub fn crash_delivery_mid_way(c: Client, total: i64, margin: i64, delivered: &dyn Fn(&mut Client) -> i64) -> Client {
    let mid_way = |c: &mut Client, n: i64| {
        let start = Instant::now();
        loop {
            let done = delivered(c);
            if done > n {
                assert!(done < total - margin, "stopped too late to be mid-way ({done})");
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no progress past {n}");
            sleep(Duration::from_millis(5));
        }
    };
    let mut c = c;
    mid_way(&mut c, 0);
    let pid: i32 = c
        .query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'booking_engine delivery' AND datname = current_database()", &[])
        .unwrap()
        .get(0);
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let mut c = reconnect_after_crash(c);
    let after_kill = delivered(&mut c);
    mid_way(&mut c, after_kill);
    drop(c);
    pg_ctl(&["stop", "-m", "immediate"]);
    pg_ctl(&["start"]);
    let mut c = reconnect();
    let start = Instant::now();
    while delivered(&mut c) < total {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {} of {total} delivered after the restart",
            delivered(&mut c)
        );
        sleep(Duration::from_millis(50));
    }
    c
}

/// Runs pg_ctl on the test cluster as its owner.
pub fn pg_ctl(args: &[&str]) {
    let bin = std::env::var("BOOKING_ENGINE_TEST_PG_BIN").expect("BOOKING_ENGINE_TEST_PG_BIN (set by scripts/test.sh)");
    let data =
        std::env::var("BOOKING_ENGINE_TEST_PGDATA").expect("BOOKING_ENGINE_TEST_PGDATA (set by scripts/test.sh)");
    let log = format!("{data}/../log");
    let pg_ctl = format!("{bin}/pg_ctl");
    let mut full = vec!["-u", "postgres", "--", pg_ctl.as_str(), "-D", data.as_str(), "-l", log.as_str(), "-w"];
    full.extend_from_slice(args);
    let status = Command::new("runuser").args(&full).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "pg_ctl {args:?}");
}
