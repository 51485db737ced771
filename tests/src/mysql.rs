//! A private MariaDB for the MySQL exit-span tests: a fresh data directory
//! (`mariadb-install-db`) in a scratch directory, `mariadbd` run as root (`--user=root`) on
//! 127.0.0.1:<free port> and a unix socket in the scratch directory, no TLS offered
//! (`--skip-ssl`), with a database `app`, a user `app` (password `secret`, any host, the
//! `mysql_native_password` exchange) and `items(id int primary key, name varchar)`:
//!
//! | id | name   |
//! |----|--------|
//! | 1  | apple  |
//! | 2  | banana |
//! | 3  | cherry |
//!
//! Never the system service. The server is this process's child, in its own process group,
//! stopped (SIGTERM: a normal shutdown, then SIGKILL to the group) on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::env::{gate, require_privileged};
use crate::gunicorn::GunicornOpts;
use crate::server::{file_tail, free_port, tcp_accepts, Server, Started, Stop, MARGIN};
use crate::tmp::TempDir;

/// MariaDB bounds neither its start nor its shutdown on its own (InnoDB's recovery and buffer
/// pool dump take as long as they take); a fresh 10 MB data directory starts in about a second
/// here, so this is the harness's own bound on each.
const START_TIMEOUT: Duration = Duration::from_mins(1);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_mins(1);

/// The database, user and password the test app connects with.
pub const MYSQL_DATABASE: &str = "app";
pub const MYSQL_USER: &str = "app";
pub const MYSQL_PASSWORD: &str = "secret";

/// What `items` holds after start-up, in id order.
pub const MYSQL_ITEMS: &[(i32, &str)] = &[(1, "apple"), (2, "banana"), (3, "cherry")];

/// A MariaDB program: `$PYTRACER_MARIADB_BIN/<name>` when set, else the first of PATH,
/// /usr/sbin and /usr/bin that has it.
pub fn mariadb_program(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PYTRACER_MARIADB_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join(name);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin").join(name))
}

pub(crate) fn missing_mariadb() -> Vec<String> {
    let mut missing = Vec::new();
    for b in ["mariadbd", "mariadb-install-db", "mariadb"] {
        let p = mariadb_program(b);
        if !p.is_file() {
            missing.push(format!(
                "{} not found (set PYTRACER_MARIADB_BIN or run `cargo xtask setup`, which installs Debian's \
                 mariadb-server)",
                p.display()
            ));
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("not root: the private MariaDB runs as root".into());
    }
    missing
}

/// [`crate::require_privileged`] (root, agent, venv) plus MariaDB's server and tools.
pub fn require_privileged_mariadb() -> bool {
    require_privileged() && gate(&missing_mariadb())
}

/// A running private MariaDB; stopped on drop.
pub struct Mariadb {
    server: Server,
    port: u16,
    socket: PathBuf,
    // Dropped last: the data directory lives in it.
    dir: TempDir,
}

impl Mariadb {
    /// Starts MariaDB and creates the `app` database, user and table; panics with the log tail
    /// on failure.
    pub fn start() -> Mariadb {
        match Self::try_start() {
            Ok(m) => m,
            Err(e) => panic!("{e:#}"),
        }
    }

    pub fn try_start() -> Result<Mariadb> {
        let missing = missing_mariadb();
        if !missing.is_empty() {
            bail!("cannot start MariaDB: {}", missing.join("; "));
        }
        let dir = TempDir::new("mariadb")?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let install_log = dir.path().join("install-db.log");
        let log = File::create(&install_log)?;
        let status = Command::new(mariadb_program("mariadb-install-db"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("running mariadb-install-db")?;
        if !status.success() {
            bail!(
                "mariadb-install-db failed ({status}); log {}:\n{}",
                install_log.display(),
                file_tail(&install_log, 40)
            );
        }
        let started = crate::server::start_retrying(|| Self::spawn(&dir, &data))?;
        let m = Mariadb { server: started.server, port: started.port, socket: started.socket, dir };
        m.create_app().with_context(|| format!("creating the `{MYSQL_DATABASE}` database; {}", m.server.log_tail()))?;
        Ok(m)
    }

    fn spawn(dir: &TempDir, data: &Path) -> Result<Starting> {
        let port = free_port()?;
        let socket = dir.path().join(format!("mysqld-{port}.sock"));
        let mut cmd = Command::new(mariadb_program("mariadbd"));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.path().join("mariadbd.pid").display()))
            .args(["--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve", "--skip-ssl"])
            .args(["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M", "--max-connections=50"])
            // Every statement in a log of its own: handy when a test's expectations and the
            // server disagree.
            .arg("--general-log=1")
            .arg(format!("--general-log-file={}", dir.path().join("general.log").display()))
            .current_dir(dir.path());
        let stop = Stop { signal: libc::SIGTERM, grace: SHUTDOWN_TIMEOUT + MARGIN };
        let server = Server::spawn("mariadbd", &mut cmd, dir.path().join(format!("mariadbd-{port}.log")), stop)?;
        Ok(Starting { server, port, socket })
    }

    fn create_app(&self) -> Result<()> {
        let rows: Vec<String> = MYSQL_ITEMS.iter().map(|(id, name)| format!("({id}, '{name}')")).collect();
        self.sql(&format!(
            "CREATE DATABASE {MYSQL_DATABASE}; \
             CREATE USER '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PASSWORD}'; \
             GRANT ALL ON {MYSQL_DATABASE}.* TO '{MYSQL_USER}'@'%'; \
             CREATE TABLE {MYSQL_DATABASE}.items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL); \
             INSERT INTO {MYSQL_DATABASE}.items VALUES {};",
            rows.join(", ")
        ))?;
        Ok(())
    }

    /// Runs SQL with the `mariadb` client over the unix socket, as root; returns its batch output.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = Command::new(mariadb_program("mariadb"))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-u", "root", "--batch", "--skip-column-names", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .context("running mariadb")?;
        if !out.status.success() {
            bail!("mariadb -e {sql:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The server's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The server's error log so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Every statement the server ran (`--general-log`).
    pub fn general_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("general.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `base` serving tests/apps/mysqlapp.py against this server, over TCP on 127.0.0.1.
    pub fn app_opts(&self, base: &GunicornOpts) -> GunicornOpts {
        GunicornOpts { app: "mysqlapp:app".into(), ..base.clone() }
            .env("PYTRACER_MYSQL_HOST", "127.0.0.1")
            .env("PYTRACER_MYSQL_PORT", self.port.to_string())
            .env("PYTRACER_MYSQL_USER", MYSQL_USER)
            .env("PYTRACER_MYSQL_PASSWORD", MYSQL_PASSWORD)
            .env("PYTRACER_MYSQL_DATABASE", MYSQL_DATABASE)
    }
}

/// A server being started, before the scratch directory is handed over.
struct Starting {
    server: Server,
    port: u16,
    socket: PathBuf,
}

impl Started for Starting {
    fn server(&self) -> &Server {
        &self.server
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    fn ready_timeout(&self) -> Duration {
        START_TIMEOUT + MARGIN
    }

    fn is_ready(&mut self) -> bool {
        self.server.log().contains("ready for connections") && self.socket.exists() && tcp_accepts(self.port)
    }

    fn progress(&self) -> String {
        format!("port {}", self.port)
    }
}
