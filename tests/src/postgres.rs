//! A private PostgreSQL for the exit-span tests: a fresh cluster (`initdb`) in a scratch
//! directory, owned by the `postgres` user (PostgreSQL refuses to run as root), listening on
//! 127.0.0.1:<free port> and on a unix socket in the scratch directory, trust authentication,
//! with a database `app` holding `items(id int primary key, name text)`:
//!
//! | id | name   |
//! |----|--------|
//! | 1  | apple  |
//! | 2  | banana |
//! | 3  | cherry |
//!
//! Never the system service. The postmaster is this process's child, in its own process group,
//! stopped (fast shutdown, then SIGKILL to the group) on drop.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::server::{file_tail, free_port, tcp_accepts, Server, Started, Stop, MARGIN};
use crate::tmp::TempDir;

/// `pg_ctl`'s default wait for a start or a stop to complete (`--timeout`, PGCTLTIMEOUT: 60 s):
/// PostgreSQL's own tooling's bound on both, which the harness's waits follow.
const PG_CTL_TIMEOUT: Duration = Duration::from_mins(1);
/// The OS user that owns the cluster and runs the postmaster.
pub const PG_USER: &str = "postgres";
/// The database the test apps use.
pub const PG_DATABASE: &str = "app";

/// What `items` holds after start-up, in id order.
pub const ITEMS: &[(i32, &str)] = &[(1, "apple"), (2, "banana"), (3, "cherry")];

/// The directory with PostgreSQL's server binaries (`initdb`, `postgres`, `psql`):
/// `$PYTRACER_PG_BIN`, else the newest `/usr/lib/postgresql/<major>/bin` that has them.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("PYTRACER_PG_BIN").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

pub(crate) fn missing_postgres() -> Vec<String> {
    let mut missing = Vec::new();
    match postgres_bin_dir() {
        None => missing.push(
            "PostgreSQL not found: no /usr/lib/postgresql/*/bin/postgres (set PYTRACER_PG_BIN or run \
             `cargo xtask setup`, which installs Debian's postgresql)"
                .to_string(),
        ),
        Some(dir) => {
            for b in ["initdb", "postgres", "psql"] {
                if !dir.join(b).is_file() {
                    missing.push(format!("{} not found (run `cargo xtask setup`)", dir.join(b).display()));
                }
            }
        }
    }
    if user_ids(PG_USER).is_none() {
        missing.push(format!("no `{PG_USER}` user on this host (Debian's postgresql package creates it)"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("not root: the private cluster is run as the `postgres` user".into());
    }
    missing
}

/// (uid, gid) of a user, from the password database.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam with a valid NUL-terminated string; the result is read at once, before any
    // other getpw* call on this thread could overwrite it.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null pointer returned by getpwnam.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

/// A running private PostgreSQL; stopped on drop.
pub struct Postgres {
    server: Server,
    port: u16,
    bin: PathBuf,
    uid: u32,
    gid: u32,
    socket_dir: PathBuf,
    // Dropped last: the cluster lives in it.
    dir: TempDir,
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))
}

impl Postgres {
    /// Start PostgreSQL and create the `app` database; panics with the log tail on failure.
    pub fn start() -> Postgres {
        match Self::try_start() {
            Ok(p) => p,
            Err(e) => panic!("{e:#}"),
        }
    }

    pub fn try_start() -> Result<Postgres> {
        let missing = missing_postgres();
        if !missing.is_empty() {
            bail!("cannot start PostgreSQL: {}", missing.join("; "));
        }
        let bin = postgres_bin_dir().expect("checked above");
        let (uid, gid) = user_ids(PG_USER).expect("checked above");
        let dir = TempDir::new("postgres")?;
        // The scratch dir is root's; the cluster's own directories belong to postgres.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("sock");
        for d in [&data, &socket_dir] {
            std::fs::create_dir_all(d)?;
            chown(d, uid, gid)?;
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        let initdb_log = dir.path().join("initdb.log");
        let log = File::create(&initdb_log)?;
        let status = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .uid(uid)
            .gid(gid)
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running {}", bin.join("initdb").display()))?;
        if !status.success() {
            bail!("initdb failed ({status}); log {}:\n{}", initdb_log.display(), file_tail(&initdb_log, 40));
        }
        let started = crate::server::start_retrying(|| Self::spawn(&bin, uid, gid, &dir, &data, &socket_dir))?;
        let pg = Postgres { server: started.server, port: started.port, bin, uid, gid, socket_dir, dir };
        pg.create_app_db()
            .with_context(|| format!("creating the `{PG_DATABASE}` database; {}", pg.server.log_tail()))?;
        Ok(pg)
    }

    /// Spawns a postmaster on a fresh port. Borrowing the scratch dir: it is moved into the
    /// result only once, by `try_start`, after the retries.
    fn spawn(bin: &Path, uid: u32, gid: u32, dir: &TempDir, data: &Path, socket_dir: &Path) -> Result<PgStarting> {
        let port = free_port()?;
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=50", "-c", "shared_buffers=16MB"])
            // Every statement in the log: handy when a test's expectations and the server disagree.
            .args(["-c", "log_statement=all", "-c", "logging_collector=off"])
            .uid(uid)
            .gid(gid)
            .env("HOME", dir.path())
            .current_dir(dir.path());
        // SIGINT: fast shutdown (abort transactions, disconnect clients, exit).
        let stop = Stop { signal: libc::SIGINT, grace: PG_CTL_TIMEOUT + MARGIN };
        let server = Server::spawn("postgres", &mut cmd, dir.path().join(format!("postgres-{port}.log")), stop)?;
        Ok(PgStarting { server, port, socket_dir: socket_dir.to_path_buf() })
    }

    fn create_app_db(&self) -> Result<()> {
        self.psql("postgres", &format!("CREATE DATABASE {PG_DATABASE}"))?;
        let rows: Vec<String> = ITEMS.iter().map(|(id, name)| format!("({id}, '{name}')")).collect();
        self.psql(
            PG_DATABASE,
            &format!(
                "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL); INSERT INTO items VALUES {};",
                rows.join(", ")
            ),
        )?;
        Ok(())
    }

    /// Runs SQL with `psql` over the unix socket, as `postgres`; returns its unaligned, tuples-only
    /// output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", PG_USER, "-d", db, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .uid(self.uid)
            .gid(self.gid)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql -c {sql:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The postmaster's pid (also its process group id); backends are its children.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The unix socket's path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// A libpq connection string for the `app` database over TCP.
    pub fn dsn(&self) -> String {
        format!("host=127.0.0.1 port={} user={PG_USER} dbname={PG_DATABASE}", self.port)
    }

    /// A libpq connection string for the `app` database over the unix socket.
    pub fn unix_dsn(&self) -> String {
        format!("host={} port={} user={PG_USER} dbname={PG_DATABASE}", self.socket_dir.display(), self.port)
    }

    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// The server's log so far (every statement, with `log_statement=all`).
    pub fn log(&self) -> String {
        self.server.log()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A postmaster being started, before the scratch directory is handed over.
struct PgStarting {
    server: Server,
    port: u16,
    socket_dir: PathBuf,
}

impl Started for PgStarting {
    fn server(&self) -> &Server {
        &self.server
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    fn ready_timeout(&self) -> Duration {
        PG_CTL_TIMEOUT + MARGIN
    }

    fn is_ready(&mut self) -> bool {
        self.server.log().contains("database system is ready to accept connections")
            && self.socket_dir.join(format!(".s.PGSQL.{}", self.port)).exists()
            && tcp_accepts(self.port)
    }

    fn progress(&self) -> String {
        format!("port {}", self.port)
    }
}
