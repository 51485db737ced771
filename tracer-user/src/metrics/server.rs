//! The `/metrics` scrape endpoint: OpenMetrics text from the registry, one request per connection;
//! and the probes a DaemonSet's kubelet asks: `/healthz` (the agent's event loop answers) and
//! `/readyz` (the programs are loaded and the first scan is done).
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::process::ProcessSampler;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot serve metrics on {addr}: {e}; pick another address with --metrics-addr or metrics.listen"
        )
    })
}

/// What each scrape asks of the agent before it is encoded: its counters synced, then its
/// procfs figures sampled.
#[derive(Clone)]
pub struct BeforeScrape {
    /// The agent's event loop syncs its counters and answers on the channel sent.
    pub sync: mpsc::Sender<oneshot::Sender<()>>,
    pub procfs: Arc<Mutex<ProcessSampler>>,
}

impl BeforeScrape {
    async fn run(&self) {
        let (done, synced) = oneshot::channel();
        // An agent that is exiting no longer answers: the scrape gets what is there.
        if self.sync.send(done).await.is_ok() {
            let _ = synced.await;
        }
        // The agent runs on one thread: the lock is never waited for, and no await holds it.
        self.procfs.lock().unwrap_or_else(PoisonError::into_inner).sample();
    }
}

/// `ready` turns true once the agent has loaded its programs and finished its first scan.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, ready: Arc<AtomicBool>, before: BeforeScrape) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let registry = registry.clone();
        let before = before.clone();
        let ready = ready.load(Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = answer(stream, &registry, ready, &before).await;
        });
    }
}

/// What a path other than `/metrics` gets: status, body.
fn probe(path: &str, ready: bool) -> (&'static str, &'static str) {
    match path {
        // The agent runs on one thread: this answer means its event loop is turning.
        "/healthz" => ("200 OK", "ok\n"),
        "/readyz" if ready => ("200 OK", "ready\n"),
        "/readyz" => ("503 Service Unavailable", "not ready: loading programs or first scan\n"),
        _ => ("404 Not Found", "pytracer serves /metrics, /healthz and /readyz\n"),
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry, ready: bool, before: &BeforeScrape) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let path = loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => break req.path.unwrap_or("/").to_string(),
            Ok(httparse::Status::Partial) if len < buf.len() => {}
            _ => return respond(&mut stream, "400 Bad Request", "text/plain", "bad request\n").await,
        }
    };
    let path = path.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        let (status, body) = probe(path, ready);
        return respond(&mut stream, status, "text/plain", body).await;
    }
    before.run().await;
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
        return respond(&mut stream, "500 Internal Server Error", "text/plain", "encoding failed\n").await;
    }
    respond(&mut stream, "200 OK", CONTENT_TYPE, &body).await
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::probe;

    #[test]
    fn probes() {
        assert_eq!(probe("/healthz", false), ("200 OK", "ok\n"));
        assert_eq!(probe("/readyz", true), ("200 OK", "ready\n"));
        assert_eq!(probe("/readyz", false).0, "503 Service Unavailable");
        assert_eq!(probe("/", true).0, "404 Not Found");
    }
}
