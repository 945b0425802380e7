//! The network side of the delivery worker: a fixed pool of threads that send HTTP requests
//! (ureq) and emails (lettre) and hand back what happened. The threads never call Postgres:
//! the worker's main thread claims and records, and learns of finished sends through a socket
//! its latch wait watches, so it sleeps until there is something to do; the threads take the
//! next send themselves, endpoint by endpoint within each one's limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::dispatch::Dispatcher;
use super::hosts::HostRules;
use super::policy::{breaker, Sent};
use super::signature::signature_header;
use crate::clock::epoch_ms;

/// How much of a response body the attempts ledger keeps.
pub const EXCERPT_BYTES: usize = 1024;

/// Standard Webhooks signing of one request: the message id stays the same on every attempt;
/// the timestamp and signature are made when the attempt starts.
pub struct Signing {
    pub msg_id: String,
    pub keys: Vec<Vec<u8>>,
}

pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

pub enum Payload {
    /// A POST: a webhook (signed), a Slack message, or an SMS provider's API call (its own
    /// content type and `Authorization`).
    Http {
        url: String,
        body: Vec<u8>,
        content_type: &'static str,
        auth: Option<String>,
        signing: Option<Signing>,
    },
    Email(Email),
}

/// One attempt to send.
pub struct Outgoing {
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempt: u32,
    pub timeout: Duration,
    pub payload: Payload,
    /// The W3C `traceparent` and `tracestate` an HTTP request carries, so that the receiver
    /// continues the trace.
    pub trace: Option<(String, Option<String>)>,
}

/// One attempt, finished.
pub struct Finished {
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempt: u32,
    pub started_ms: u64,
    pub duration_ms: f64,
    pub sent: Sent,
    pub excerpt: Option<String>,
}

/// The operator's SMTP relay.
#[derive(Clone, Debug, Default)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    /// `starttls`, `tls` or `none`.
    pub security: String,
    pub user: String,
    pub password: String,
    pub from: String,
}

/// Resolves names and drops every address on the deny list, so a name that resolves to an
/// internal address is never connected to (however the URL was checked when it was saved).
struct GuardedResolver(Arc<RwLock<HostRules>>);

impl ureq::Resolver for GuardedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h);
        let all: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        let rules = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut refused = None;
        let ok: Vec<SocketAddr> = all
            .into_iter()
            .filter(|a| match rules.check_address(host, a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    refused = Some(e);
                    false
                }
            })
            .collect();
        match (ok.is_empty(), refused) {
            (true, Some(e)) => Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, e)),
            _ => Ok(ok),
        }
    }
}

fn excerpt(r: ureq::Response) -> String {
    let mut buf = Vec::new();
    let _ = r.into_reader().take(EXCERPT_BYTES as u64).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// One POST of a request as `Payload::Http` describes it, with the trace context it continues
/// (traceparent, tracestate).
struct Post<'a> {
    url: &'a str,
    body: &'a [u8],
    content_type: &'a str,
    auth: Option<&'a str>,
    signing: Option<&'a Signing>,
    trace: Option<&'a (String, Option<String>)>,
}

fn send_http(agent: &ureq::Agent, post: &Post, timeout: Duration) -> (Sent, Option<String>) {
    let Post { url, body, content_type, auth, signing, trace } = *post;
    let mut req = agent.post(url).timeout(timeout).set("content-type", content_type);
    req = req.set("user-agent", concat!("booking_engine/", env!("CARGO_PKG_VERSION")));
    if let Some(a) = auth {
        req = req.set("authorization", a);
    }
    if let Some((traceparent, tracestate)) = trace {
        req = req.set("traceparent", traceparent);
        if let Some(state) = tracestate {
            req = req.set("tracestate", state);
        }
    }
    if let Some(s) = signing {
        let ts = (epoch_ms() / 1000) as i64;
        req = req
            .set("webhook-id", &s.msg_id)
            .set("webhook-timestamp", &ts.to_string())
            .set("webhook-signature", &signature_header(&s.keys, &s.msg_id, ts, body));
    }
    match req.send_bytes(body) {
        Ok(r) => {
            let code = r.status();
            (Sent::Status { code, retry_after: None }, Some(excerpt(r)))
        }
        Err(ureq::Error::Status(code, r)) => {
            let retry_after = r.header("retry-after").map(str::to_string);
            (Sent::Status { code, retry_after }, Some(excerpt(r)))
        }
        Err(ureq::Error::Transport(t)) => {
            let text = t.to_string();
            let error = if text.contains("timed out") || text.contains("Timeout") {
                format!("timed out after {} ms", timeout.as_millis())
            } else {
                text
            };
            (Sent::Failed { error, permanent: false }, None)
        }
    }
}

fn send_email(smtp: &Smtp, e: &Email, timeout: Duration) -> Sent {
    use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{SmtpTransport, Transport};
    let fail = |error: String, permanent: bool| Sent::Failed { error, permanent };
    if smtp.host.is_empty() {
        return fail("no SMTP relay is set (booking_engine.smtp_host)".into(), false);
    }
    let parse = |a: &str, what: &str| a.parse::<Mailbox>().map_err(|err| format!("{what} address {a:?}: {err}"));
    let (from, to) = match (parse(&smtp.from, "sender"), parse(&e.to, "recipient")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(err), _) => return fail(err, false),
        (_, Err(err)) => return fail(err, true),
    };
    let builder = lettre::Message::builder().from(from).to(to).subject(&e.subject);
    let text = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(e.text.clone());
    let message = match &e.html {
        Some(html) => builder.multipart(
            MultiPart::alternative()
                .singlepart(text)
                .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html.clone())),
        ),
        None => builder.singlepart(text),
    };
    let message = match message {
        Ok(m) => m,
        Err(err) => return fail(format!("the message could not be built: {err}"), true),
    };
    let transport = match smtp.security.as_str() {
        "tls" => SmtpTransport::relay(&smtp.host),
        "starttls" => SmtpTransport::starttls_relay(&smtp.host),
        _ => Ok(SmtpTransport::builder_dangerous(&smtp.host)),
    };
    let mut transport = match transport {
        Ok(t) => t.port(smtp.port).timeout(Some(timeout)),
        Err(err) => return fail(format!("SMTP relay {}: {err}", smtp.host), false),
    };
    if !smtp.user.is_empty() {
        transport = transport.credentials(Credentials::new(smtp.user.clone(), smtp.password.clone()));
    }
    match transport.build().send(&message) {
        // The relay took it: for the ledger, the HTTP success code.
        Ok(_) => Sent::Status { code: 200, retry_after: None },
        Err(err) => fail(format!("SMTP: {err}"), err.is_permanent()),
    }
}

/// Sends one attempt and says what happened.
pub fn send(agent: &ureq::Agent, smtp: &Smtp, o: &Outgoing) -> Finished {
    let started_ms = epoch_ms();
    let clock = Instant::now();
    let (sent, excerpt) = match &o.payload {
        Payload::Http { url, body, content_type, auth, signing } => {
            let post = Post {
                url,
                body,
                content_type,
                auth: auth.as_deref(),
                signing: signing.as_ref(),
                trace: o.trace.as_ref(),
            };
            send_http(agent, &post, o.timeout)
        }
        Payload::Email(e) => (send_email(smtp, e, o.timeout), None),
    };
    Finished {
        delivery_id: o.delivery_id,
        endpoint_id: o.endpoint_id,
        attempt: o.attempt,
        started_ms,
        duration_ms: clock.elapsed().as_secs_f64() * 1000.0,
        sent,
        excerpt,
    }
}

/// The HTTP client: no redirects (a redirect could lead anywhere the deny list forbids), the
/// guarded resolver, and at most `per_host` idle connections kept per host.
fn agent(rules: Arc<RwLock<HostRules>>, per_host: usize) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .max_idle_connections_per_host(per_host)
        .resolver(GuardedResolver(rules))
        .build()
}

/// The sending threads. They take work themselves from the per-endpoint queues
/// (`Dispatcher`) as soon as they finish a send, so the network is kept busy while the
/// worker's main thread is in a transaction.
pub struct Pool {
    work: Arc<(Mutex<Dispatcher<Outgoing>>, Condvar)>,
    /// Finished attempts with their sequence numbers, in that order.
    results: mpsc::Receiver<(u64, Finished)>,
    wake: UnixStream,
    /// The HTTP client the threads use, replaced by `renew_client` after a reload.
    client: Arc<RwLock<ureq::Agent>>,
    rules: Arc<RwLock<HostRules>>,
    per_host: usize,
}

impl Pool {
    /// Starts `threads` senders, with the circuit breaker's `threshold` (src/delivery/dispatch.rs).
    /// They block every signal, so Postgres's handlers keep running on the main thread.
    pub fn start(
        threads: usize,
        threshold: u32,
        rules: Arc<RwLock<HostRules>>,
        smtp: Arc<RwLock<Smtp>>,
    ) -> std::io::Result<Pool> {
        let client = Arc::new(RwLock::new(agent(rules.clone(), threads)));
        let work = Arc::new((Mutex::new(Dispatcher::new(threads, threshold)), Condvar::new()));
        let (done, results) = mpsc::channel::<(u64, Finished)>();
        let (wake, notify) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        for i in 0..threads.max(1) {
            let (work, done, client, smtp) = (work.clone(), done.clone(), client.clone(), smtp.clone());
            let notify = notify.try_clone()?;
            std::thread::Builder::new().name(format!("delivery-{i}")).spawn(move || {
                block_signals();
                let (lock, ready) = &*work;
                loop {
                    let Ok(guard) = lock.lock() else { return };
                    let Ok(mut queue) = ready.wait_while(guard, |q| !q.has_ready()) else { return };
                    let Some(job) = queue.next_ready() else { continue };
                    drop(queue);
                    let relay = smtp.read().map(|s| s.clone()).unwrap_or_default();
                    let agent = client.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let finished = send(&agent, &relay, &job);
                    let endpoint = job.endpoint_id;
                    let Ok(mut q) = lock.lock() else { return };
                    let seq = q.done(endpoint, breaker(&finished.sent));
                    // Sent under the lock: the results arrive in their sequence's order, so the
                    // worker knows which trips its records cover (Dispatcher::recorded).
                    let sent = done.send((seq, finished));
                    drop(q);
                    // A finished send may let another of the endpoint's go.
                    ready.notify_all();
                    if sent.is_err() {
                        return;
                    }
                    // A full socket buffer means a wake-up is pending already.
                    let _ = (&notify).write(&[1]);
                }
            })?;
        }
        Ok(Pool { work, results, wake, client, rules, per_host: threads })
    }

    /// A new HTTP client after the host rules changed: the old one's pooled connections were
    /// opened under the old rules (a kept-alive connection is reused without resolving its host
    /// again), so they go with it.
    pub fn renew_client(&self) {
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = agent(self.rules.clone(), self.per_host);
    }

    /// Queues a send for `endpoint`, whose in-flight limit is now `limit` and whose failures in
    /// a row were `fails` when it was claimed (held at once if the endpoint's lane is tripped).
    pub fn push(&self, endpoint: Uuid, limit: usize, fails: u32, o: Outgoing) {
        let (lock, ready) = &*self.work;
        // The threads never panic while holding the lock; a poisoned one means they are gone.
        if let Ok(mut q) = lock.lock() {
            q.push(endpoint, limit, fails, o);
            ready.notify_all();
        }
    }

    /// Sends handed back unsent by the breaker since the last call.
    pub fn take_held(&self) -> Vec<Outgoing> {
        self.work.0.lock().map_or_else(|_| Vec::new(), |mut q| q.take_held())
    }

    /// The attempts up to sequence number `upto` are recorded.
    pub fn recorded(&self, upto: u64) {
        let (lock, ready) = &*self.work;
        if let Ok(mut q) = lock.lock() {
            q.recorded(upto);
            ready.notify_all();
        }
    }

    /// A reloaded breaker threshold.
    pub fn set_threshold(&self, threshold: u32) {
        if let Ok(mut q) = self.work.0.lock() {
            q.set_threshold(threshold);
        }
    }

    /// Sends queued or in flight, in all.
    pub fn backlog(&self) -> usize {
        self.work.0.lock().map_or(0, |q| q.backlog())
    }

    /// Endpoints with at least `n` sends queued or in flight.
    pub fn saturated(&self, n: usize) -> Vec<Uuid> {
        self.work.0.lock().map_or_else(|_| Vec::new(), |q| q.saturated(n))
    }

    /// The attempts finished since the last call, and the sequence number of the last one (0:
    /// none).
    pub fn finished(&self) -> (Vec<Finished>, u64) {
        let mut sink = [0u8; 256];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        let mut upto = 0;
        let finished = self
            .results
            .try_iter()
            .map(|(seq, f)| {
                upto = seq;
                f
            })
            .collect();
        (finished, upto)
    }

    /// The descriptor that becomes readable when an attempt finishes.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }
}

fn block_signals() {
    // SAFETY: plain libc calls on a local signal set, for the calling thread only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // The headers and the whole (small) body arrive before the answer is written.
            let complete = |got: &[u8]| {
                let text = String::from_utf8_lossy(got).to_ascii_lowercase();
                text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    body.len() >= len
                })
            };
            while !complete(&got) {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, h)
    }

    fn loopback_agent() -> ureq::Agent {
        agent(Arc::new(RwLock::new(HostRules::default())), 4)
    }

    fn json_post(url: &str) -> Post<'_> {
        Post { url, body: b"{}", content_type: "application/json", auth: None, signing: None, trace: None }
    }

    #[test]
    fn an_sms_provider_call_carries_its_content_type_and_authorization() {
        let (url, h) = serve_once("HTTP/1.1 201 Created\r\ncontent-length: 14\r\n\r\n{\"sid\":\"SM1\"}");
        let post = Post {
            url: &url,
            body: b"To=%2B41791234567&From=Salon&Body=Hi",
            content_type: "application/x-www-form-urlencoded",
            auth: Some("Basic QUMxOnRvaw=="),
            signing: None,
            trace: None,
        };
        let (sent, body) = send_http(&loopback_agent(), &post, Duration::from_secs(5));
        assert_eq!(sent, Sent::Status { code: 201, retry_after: None });
        assert_eq!(body.as_deref(), Some("{\"sid\":\"SM1\"}"));
        let request = h.join().unwrap().to_ascii_lowercase();
        assert!(request.contains("content-type: application/x-www-form-urlencoded"), "{request}");
        assert!(request.contains("authorization: basic qumxonrvaw=="), "{request}");
    }

    #[test]
    fn a_signed_post_carries_the_standard_webhooks_headers() {
        let (url, h) = serve_once("HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
        let key = vec![7u8; 24];
        let signing = Signing { msg_id: "msg_1".into(), keys: vec![key] };
        let trace = ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(), Some("a=1".to_string()));
        let post = Post {
            url: &url,
            body: b"{\"a\":1}",
            content_type: "application/json",
            auth: None,
            signing: Some(&signing),
            trace: Some(&trace),
        };
        let (sent, _) = send_http(&loopback_agent(), &post, Duration::from_secs(5));
        assert_eq!(sent, Sent::Status { code: 204, retry_after: None });
        let request = h.join().unwrap().to_ascii_lowercase();
        for header in [
            "webhook-id: msg_1",
            "webhook-timestamp: ",
            "webhook-signature: v1,",
            "content-type: application/json",
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate: a=1",
        ] {
            assert!(request.contains(header), "{header} in {request}");
        }
    }

    #[test]
    fn throttling_keeps_retry_after_and_the_body_excerpt() {
        let (url, h) = serve_once("HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\nslow");
        let (sent, body) = send_http(&loopback_agent(), &json_post(&url), Duration::from_secs(5));
        h.join().unwrap();
        assert_eq!(sent, Sent::Status { code: 429, retry_after: Some("7".into()) });
        assert_eq!(body.as_deref(), Some("slow"));
    }

    #[test]
    fn denied_addresses_are_never_connected_to() {
        let rules = Arc::new(RwLock::new(HostRules::parse("", "127.0.0.0/8").unwrap()));
        let (sent, _) = send_http(&agent(rules, 1), &json_post("http://localhost:9/x"), Duration::from_secs(2));
        assert!(matches!(&sent, Sent::Failed { error, .. } if error.contains("deny list")), "{sent:?}");
    }
}
