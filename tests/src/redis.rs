//! A private redis-server for the exit-span tests: 127.0.0.1:<free port> and a unix socket in a
//! scratch directory, no persistence (`--save ''`, no AOF), in its own process group, stopped on
//! drop. Never the system service.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::gunicorn::file_tail;
use crate::tmp::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(5);

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
    child: Child,
    port: u16,
    log_path: PathBuf,
    socket_path: PathBuf,
    // Dropped last.
    dir: TempDir,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
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
        let log_path = dir.path().join("redis.log");
        let socket_path = dir.path().join("redis.sock");
        let log = File::create(&log_path)?;
        let bin = redis_server_bin();
        let child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--unixsocket")
            .arg(&socket_path)
            .args(["--unixsocketperm", "777", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--databases", "1", "--loglevel", "notice", "--logfile", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        Ok(Redis { child, port, log_path, socket_path, dir })
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
        self.child.id()
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
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
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

impl crate::server::Started for Redis {
    fn log(&self) -> String {
        Redis::log(self)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "redis-server exited during startup ({status}); log {}:\n{}",
                    self.log_path.display(),
                    file_tail(&self.log_path, 40)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.command(&["PING"]).is_ok_and(|r| r == b"+PONG\r\n")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "redis-server not ready after {START_TIMEOUT:?} on port {}; log {}:\n{}",
                    self.port,
                    self.log_path.display(),
                    file_tail(&self.log_path, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        crate::server::stop_group(&mut self.child, libc::SIGTERM, STOP_GRACE);
    }
}
