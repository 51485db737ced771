//! Mixed HTTP requests against the demo app, a few per second, so that pytracer has spans to print.
use std::fmt::Write as _;
use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

/// Pause after each request: with the app's own latencies, about 3 requests per second.
const PAUSE: Duration = Duration::from_millis(300);

struct Request {
    method: &'static str,
    target: String,
    body: Option<&'static str>,
}

/// One round of requests; the user ids change from round to round.
fn round(n: u32) -> Vec<Request> {
    let get = |target: String| Request { method: "GET", target, body: None };
    vec![
        get("/".into()),
        get(format!("/users/{}", n % 50 + 1)),
        Request { method: "POST", target: "/checkout".into(), body: Some(r#"{"items":[{"sku":"A-1","qty":2}]}"#) },
        get(format!("/users/{}?fields=name&api_key=demo-secret", n % 7 + 1)),
        get("/slow".into()),
        get("/error".into()),
        get("/no-such-page".into()),
    ]
}

/// Sends requests until `stop` is set. Failures are ignored: the app may be stopping.
pub fn start(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        for n in 0.. {
            for request in round(n) {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let _ = send(addr, &request);
                // Sleep in slices so that stopping is quick.
                for _ in 0..6 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    thread::sleep(PAUSE / 6);
                }
            }
        }
    })
}

fn send(addr: SocketAddr, request: &Request) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: pytracer-demo/1.0\r\nAccept: */*\r\nConnection: close\r\n",
        request.method, request.target
    );
    let body = request.body.unwrap_or("");
    if request.body.is_some() {
        let _ = write!(head, "Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    // Read the whole response so that the worker finishes the request normally.
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(())
}
