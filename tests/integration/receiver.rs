//! Real receivers on 127.0.0.1 for the delivery tests: an HTTP server whose answers a test
//! scripts (status, Retry-After, hang, close, an SMS provider's acceptance), and an SMTP sink.
//! Both record what arrives.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the receiver does with one request.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// 200 after this many milliseconds.
    Delay(u64),
    /// 429 or 503 with this Retry-After.
    Throttle(u16, String),
    /// Reads the request and answers nothing until `release()` (or 60 s).
    Hang,
    /// Closes the connection without an answer.
    Close,
    /// 201 with `{"sid": "SM<n>"}`, n the request's number (1-based): an SMS provider that
    /// accepted the message.
    Accepted,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    otherwise: Option<Answer>,
    requests: Vec<Request>,
    hanging: usize,
    released: bool,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if stream.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        stream.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    stream.read_exact(&mut body).ok()?;
    Some(Request { headers, body: String::from_utf8_lossy(&body).into_owned(), at: Instant::now() })
}

impl Receiver {
    /// Answers `script` in order, then `otherwise` for every further request.
    pub fn start(script: Vec<Answer>, otherwise: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = Arc::new((
            Mutex::new(State { script: script.into(), otherwise: Some(otherwise), ..State::default() }),
            Condvar::new(),
        ));
        let r = Receiver { url, state };
        let server = r.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let me = server.clone();
                std::thread::spawn(move || me.serve(conn));
            }
        });
        r
    }

    fn serve(&self, conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut out = conn;
        while let Some(req) = read_request(&mut reader) {
            let (lock, cv) = &*self.state;
            let (answer, n) = {
                let mut s = lock.lock().unwrap();
                s.requests.push(req);
                let a = s.script.pop_front().or(s.otherwise.clone()).unwrap();
                cv.notify_all();
                (a, s.requests.len())
            };
            let mut body = "ok".to_string();
            let (code, extra) = match answer {
                Answer::Status(code) => (code, String::new()),
                Answer::Accepted => {
                    body = format!("{{\"sid\": \"SM{n}\"}}");
                    (201, "content-type: application/json\r\n".to_string())
                }
                Answer::Delay(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    (200, String::new())
                }
                Answer::Throttle(code, after) => (code, format!("retry-after: {after}\r\n")),
                Answer::Close => return,
                Answer::Hang => {
                    let mut s = lock.lock().unwrap();
                    s.hanging += 1;
                    cv.notify_all();
                    let (mut s, _) = cv.wait_timeout_while(s, Duration::from_secs(60), |s| !s.released).unwrap();
                    s.hanging -= 1;
                    return;
                }
            };
            let head = format!("HTTP/1.1 {code} X\r\ncontent-length: {}\r\n{extra}\r\n{body}", body.len());
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// How many requests are being held by `Answer::Hang` right now.
    pub fn hanging(&self) -> usize {
        self.state.0.lock().unwrap().hanging
    }

    /// Ends every hang (the connections close without an answer).
    pub fn release(&self) {
        self.state.0.lock().unwrap().released = true;
        self.state.1.notify_all();
    }

    /// Waits (up to 60 s) until `n` requests arrived; returns them.
    pub fn await_requests(&self, n: usize) -> Vec<Request> {
        let (lock, cv) = &*self.state;
        let s = lock.lock().unwrap();
        let (s, _) = cv.wait_timeout_while(s, Duration::from_secs(60), |s| s.requests.len() < n).unwrap();
        assert!(s.requests.len() >= n, "{} of {n} requests arrived", s.requests.len());
        s.requests.clone()
    }
}

/// One message the SMTP sink accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

/// An SMTP sink on 127.0.0.1:`port` shared by the tests of this process (the cluster's
/// booking_engine.smtp_port names it); tests tell their messages apart by recipient.
pub struct SmtpSink {
    mails: Mutex<Vec<Mail>>,
    arrived: Condvar,
}

pub fn smtp_sink() -> &'static SmtpSink {
    static SINK: OnceLock<&'static SmtpSink> = OnceLock::new();
    SINK.get_or_init(|| {
        let port: u16 = std::env::var("BOOKING_ENGINE_TEST_SMTP_PORT")
            .expect("BOOKING_ENGINE_TEST_SMTP_PORT (set by scripts/test.sh)")
            .parse()
            .unwrap();
        let sink: &'static SmtpSink =
            Box::leak(Box::new(SmtpSink { mails: Mutex::new(Vec::new()), arrived: Condvar::new() }));
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the SMTP sink's port");
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || sink.session(conn));
            }
        });
        sink
    })
}

impl SmtpSink {
    fn session(&self, conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut out = conn;
        let mut say = |s: &str| out.write_all(format!("{s}\r\n").as_bytes()).is_ok();
        if !say("220 sink ESMTP") {
            return;
        }
        let mut to = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let cmd = line.trim_end().to_ascii_uppercase();
            let ok = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                say("250 sink")
            } else if cmd.starts_with("RCPT TO:") {
                to.push(line.trim_end()[8..].trim_matches(|c| c == '<' || c == '>' || c == ' ').to_string());
                say("250 ok")
            } else if cmd == "DATA" {
                say("354 go");
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                        break;
                    }
                    data.push_str(&l);
                }
                self.mails.lock().unwrap().push(Mail { to: std::mem::take(&mut to), data });
                self.arrived.notify_all();
                say("250 queued")
            } else if cmd == "QUIT" {
                say("221 bye");
                return;
            } else {
                say("250 ok")
            };
            if !ok {
                return;
            }
        }
    }

    /// Waits (up to 60 s) for a message to `to`.
    pub fn await_mail(&self, to: &str) -> Mail {
        let m = self.mails.lock().unwrap();
        let (m, _) = self
            .arrived
            .wait_timeout_while(m, Duration::from_secs(60), |m| !m.iter().any(|x| x.to.iter().any(|t| t == to)))
            .unwrap();
        m.iter().find(|x| x.to.iter().any(|t| t == to)).cloned().unwrap_or_else(|| panic!("no mail to {to}"))
    }

    /// Every message to `to` so far.
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails.lock().unwrap().iter().filter(|x| x.to.iter().any(|t| t == to)).cloned().collect()
    }
}
