//! An nginx in front of a `--socket` uWSGI (`uwsgi_pass`), on a free loopback port.
//!
//! Runs in the foreground (`-g 'daemon off;'`) with its config, prefix, logs, pid file and
//! temp paths in a scratch directory: never the system service, never port 80.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::env::{gate, venv_dir};
use crate::procfs;
use crate::server::{file_tail, free_port, tcp_accepts, Server, Started, Stop, MARGIN};
use crate::tmp::TempDir;
use crate::uwsgi::{uwsgi_bin, Upstream};

/// nginx bounds no part of its start-up (reading the config, binding, forking the worker), so
/// this is the harness's own choice.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// `worker_shutdown_timeout`, set in the config: on a graceful stop (SIGQUIT) nginx closes the
/// connections still open after it. Unset, nginx would wait for them without limit.
const WORKER_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// nginx's standard `uwsgi_params` (as shipped in /etc/nginx), written into the scratch dir so
/// the test does not depend on the system's copy.
const UWSGI_PARAMS: &str = "\
uwsgi_param  QUERY_STRING       $query_string;
uwsgi_param  REQUEST_METHOD     $request_method;
uwsgi_param  CONTENT_TYPE       $content_type;
uwsgi_param  CONTENT_LENGTH     $content_length;

uwsgi_param  REQUEST_URI        $request_uri;
uwsgi_param  PATH_INFO          $document_uri;
uwsgi_param  DOCUMENT_ROOT      $document_root;
uwsgi_param  SERVER_PROTOCOL    $server_protocol;
uwsgi_param  REQUEST_SCHEME     $scheme;
uwsgi_param  HTTPS              $https if_not_empty;

uwsgi_param  REMOTE_ADDR        $remote_addr;
uwsgi_param  REMOTE_PORT        $remote_port;
uwsgi_param  SERVER_PORT        $server_port;
uwsgi_param  SERVER_NAME        $server_name;
";

/// The nginx binary: `$PYTRACER_NGINX`, else `nginx` in PATH, else /usr/sbin/nginx.
pub fn nginx_bin() -> PathBuf {
    if let Some(v) = std::env::var_os("PYTRACER_NGINX").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let in_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("nginx")).find(|p| p.is_file()));
    in_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

fn missing_uwsgi() -> Vec<String> {
    let u = uwsgi_bin();
    if u.is_file() {
        vec![]
    } else {
        vec![format!(
            "{} not found (set PYTRACER_VENV or run `cargo xtask setup`; venv {})",
            u.display(),
            venv_dir().display()
        )]
    }
}

fn missing_nginx() -> Vec<String> {
    let n = nginx_bin();
    if n.is_file() {
        vec![]
    } else {
        vec![format!("{} not found (set PYTRACER_NGINX or run `cargo xtask setup`)", n.display())]
    }
}

/// Like [`crate::require_venv`], for uWSGI tests without the agent: the venv's uwsgi exists.
pub fn require_uwsgi() -> bool {
    gate(&missing_uwsgi())
}

/// [`crate::require_privileged`] plus the nginx binary: the agent's tests of nginx in front of
/// Gunicorn.
pub fn require_privileged_nginx() -> bool {
    crate::require_privileged() && gate(&missing_nginx())
}

/// [`require_uwsgi`] plus the nginx binary.
pub fn require_uwsgi_nginx() -> bool {
    let mut missing = missing_uwsgi();
    missing.extend(missing_nginx());
    gate(&missing)
}

/// A running nginx master (and its one worker) in its own process group; stopped on drop.
pub struct Nginx {
    /// Its log is nginx's stderr; the error log is separate.
    server: Server,
    port: u16,
    conf_path: PathBuf,
    error_log: PathBuf,
    access_log: PathBuf,
    // Dropped last: nginx writes its logs and temp files into it.
    dir: TempDir,
}

impl Nginx {
    /// nginx on 127.0.0.1:<free port> passing every request to `target` (a TCP port or unix
    /// socket path of a `UwsgiSocket` uWSGI, e.g. `u.upstream()`); panics on failure.
    pub fn start_uwsgi_pass(target: impl Into<Upstream>) -> Nginx {
        match Self::try_start_uwsgi_pass(target) {
            Ok(n) => n,
            Err(e) => panic!("{e:#}"),
        }
    }

    pub fn try_start_uwsgi_pass(target: impl Into<Upstream>) -> Result<Nginx> {
        let target = target.into();
        let pass = match &target {
            Upstream::Tcp(p) => format!("127.0.0.1:{p}"),
            Upstream::Unix(p) => format!("unix:{}", p.display()),
        };
        let location = format!("uwsgi_pass {pass};\n            include uwsgi_params;");
        crate::server::start_retrying(|| Self::spawn(&location, ""))
    }

    /// nginx on 127.0.0.1:<free port> proxying every request over HTTP/1.1 to 127.0.0.1:`port`,
    /// keeping up to 8 idle upstream connections open between requests (`keepalive`): the
    /// long-lived connections a Gunicorn behind nginx serves. Panics on failure.
    pub fn start_proxy_keepalive(port: u16) -> Nginx {
        // nginx closes a keep-alive connection after 1,000 requests by default, on both sides.
        let upstream = format!(
            "keepalive_requests 1000000;\n    upstream app {{ server 127.0.0.1:{port}; keepalive 8; keepalive_requests 1000000; }}"
        );
        let location = "proxy_pass http://app;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";";
        crate::server::start_retrying(|| Self::spawn(location, &upstream)).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `http_extra`: more directives of the `http` block (an `upstream`).
    fn spawn(location: &str, http_extra: &str) -> Result<Nginx> {
        let dir = TempDir::new("nginx")?;
        let d = dir.path();
        let port = free_port()?;
        let conf_path = d.join("nginx.conf");
        let error_log = d.join("error.log");
        let access_log = d.join("access.log");
        std::fs::write(d.join("uwsgi_params"), UWSGI_PARAMS)?;
        // As root, nginx's workers would switch to an unprivileged user that can neither
        // connect to a root-owned unix socket nor write temp files here: keep them as we are.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = if unsafe { libc::geteuid() } == 0 { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes 1;
worker_shutdown_timeout {shutdown}s;
pid {pid};
error_log {error_log} info;
events {{ worker_connections 256; }}
http {{
    access_log {access_log};
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            {location}
        }}
    }}
}}
",
            shutdown = WORKER_SHUTDOWN_TIMEOUT.as_secs(),
            pid = d.join("nginx.pid").display(),
            error_log = error_log.display(),
            access_log = access_log.display(),
            d = d.display(),
        );
        std::fs::write(&conf_path, conf)?;
        let mut cmd = Command::new(nginx_bin());
        cmd.arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&conf_path)
            // Before reading the config nginx opens its compiled-in error log; point it here.
            .arg("-e")
            .arg(&error_log)
            .arg("-g")
            .arg("daemon off;");
        // SIGQUIT: graceful shutdown (SIGTERM/SIGINT are nginx's fast shutdown).
        let stop = Stop { signal: libc::SIGQUIT, grace: WORKER_SHUTDOWN_TIMEOUT + MARGIN };
        let server = Server::spawn("nginx", &mut cmd, d.join("stderr.log"), stop)?;
        Ok(Nginx { server, port, conf_path, error_log, access_log, dir })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The nginx master's pid (also the process group id).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The worker process(es): children of the master.
    pub fn worker_pids(&self) -> Vec<u32> {
        procfs::children(self.pid())
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// The tails of the error log and of nginx's stderr, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {} ---\n{}\n--- {} ---\n{}",
            self.error_log.display(),
            file_tail(&self.error_log, 30),
            self.server.log_path().display(),
            file_tail(self.server.log_path(), 10)
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Started for Nginx {
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
        tcp_accepts(self.port) && !self.worker_pids().is_empty()
    }

    fn progress(&self) -> String {
        format!("127.0.0.1:{} {}", self.port, if tcp_accepts(self.port) { "open" } else { "not accepting" })
    }

    fn diagnostics(&self) -> String {
        format!("config {}:\n{}", self.conf_path.display(), self.logs())
    }

    fn output(&self) -> String {
        self.logs()
    }
}
