//! A private redis-server for the exit-span tests: 127.0.0.1:<free port> and a unix socket in a
//! scratch directory, no persistence (`--save ''`, no AOF), in its own process group, stopped on
//! drop. Never the system service.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::server::{free_port, tcp_accepts, Server, Started, Stop, MARGIN};
use crate::tmp::TempDir;

/// redis-server bounds no part of its start-up (there is no dataset to load: `--save ''`, no
/// AOF), so this is the harness's own choice.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// `shutdown-timeout` default (redis.conf, Redis 7): on SIGTERM the server waits up to this for
/// replicas to catch up before exiting.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The redis-server binary: `$PYTRACER_REDIS_SERVER`, else `redis-server` in PATH, else
/// /usr/bin/redis-server.
pub fn redis_server_bin() -> PathBuf {
    if let Some(v) = std::env::var_os("PYTRACER_REDIS_SERVER").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let in_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file()));
    in_path.unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

pub(crate) fn missing_redis() -> Vec<String> {
    let b = redis_server_bin();
    if b.is_file() {
        vec![]
    } else {
        vec![format!(
            "{} not found (set PYTRACER_REDIS_SERVER or run `cargo xtask setup`, which installs \
             Debian's redis-server)",
            b.display()
        )]
    }
}

/// A running private redis-server; stopped on drop.
pub struct Redis {
    server: Server,
    port: u16,
    socket_path: PathBuf,
    // Dropped last.
    dir: TempDir,
}

impl Redis {
    /// Start redis-server and wait until it answers PING; panics with the log tail on failure.
    pub fn start() -> Redis {
        match Self::try_start() {
            Ok(r) => r,
            Err(e) => panic!("{e:#}"),
        }
    }

    pub fn try_start() -> Result<Redis> {
        let missing = missing_redis();
        if !missing.is_empty() {
            bail!("cannot start redis-server: {}", missing.join("; "));
        }
        crate::server::start_retrying(Self::spawn)
    }

    fn spawn() -> Result<Redis> {
        let dir = TempDir::new("redis")?;
        let port = free_port()?;
        let socket_path = dir.path().join("redis.sock");
        let mut cmd = Command::new(redis_server_bin());
        cmd.args(["--bind", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--unixsocket")
            .arg(&socket_path)
            .args(["--unixsocketperm", "777", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--databases", "1", "--loglevel", "notice", "--logfile", ""])
            .arg("--dir")
            .arg(dir.path());
        let stop = Stop { signal: libc::SIGTERM, grace: DEFAULT_SHUTDOWN_TIMEOUT + MARGIN };
        let server = Server::spawn("redis-server", &mut cmd, dir.path().join("redis.log"), stop)?;
        Ok(Redis { server, port, socket_path, dir })
    }

    /// Sends one command (as a RESP array of bulk strings) over a fresh TCP connection and
    /// returns the raw reply bytes (one read; fine for short replies).
    pub fn command(&self, args: &[&str]) -> Result<Vec<u8>> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port))?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(&resp_command(args))?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = c.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// redis-server's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// A redis-py URL for database 0 over TCP.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn log(&self) -> String {
        self.server.log()
    }

    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The RESP encoding of a command: an array of bulk strings.
pub fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Started for Redis {
    fn server(&self) -> &Server {
        &self.server
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    fn ready_timeout(&self) -> Duration {
        START_TIMEOUT
    }

    fn is_ready(&mut self) -> bool {
        tcp_accepts(self.port) && self.command(&["PING"]).is_ok_and(|r| r == b"+PONG\r\n")
    }

    fn progress(&self) -> String {
        format!("no PONG on port {}", self.port)
    }
}
