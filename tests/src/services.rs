//! The two-service test app: a private PostgreSQL and Redis, the "backend" Flask service
//! (`tests/apps/backend.py`) that queries them, and the "frontend" (`tests/apps/frontend.py`) that
//! calls the backend over HTTP, each on its own Gunicorn.
//!
//! ```no_run
//! use pytracer_tests::*;
//! if !require_two_services() { return; }
//! let s = TwoServices::start(&GunicornOpts::sync(1));
//! let r = get(s.frontend.port(), "/order/1");
//! assert_eq!(r.status, 200);
//! ```

use crate::env::{gate, require_privileged, require_venv};
use crate::gunicorn::{Gunicorn, GunicornOpts};
use crate::postgres::{missing_postgres, Postgres};
use crate::redis::{missing_redis, Redis};

fn missing_databases() -> Vec<String> {
    let mut m = missing_postgres();
    m.extend(missing_redis());
    m
}

/// For tests of the harness and the apps, without the agent: the venv, PostgreSQL (and root, to
/// run it as `postgres`) and redis-server. Skips, or fails under PYTRACER_REQUIRE_PRIVILEGED=1.
pub fn require_two_services() -> bool {
    require_venv() && gate(&missing_databases())
}

/// [`crate::require_privileged`] (root, agent, venv) plus PostgreSQL and redis-server.
pub fn require_privileged_two_services() -> bool {
    require_privileged() && gate(&missing_databases())
}

/// `base` (worker class, counts, venv) serving the backend app against `pg` and `redis`.
pub fn backend_opts(base: &GunicornOpts, pg: &Postgres, redis: &Redis) -> GunicornOpts {
    GunicornOpts { app: "backend:app".into(), ..base.clone() }
        .env("PYTRACER_PG_DSN", pg.dsn())
        .env("PYTRACER_REDIS_URL", redis.url())
}

/// `base` serving the frontend app, calling the backend on 127.0.0.1:`backend_port`.
pub fn frontend_opts(base: &GunicornOpts, backend_port: u16) -> GunicornOpts {
    GunicornOpts { app: "frontend:app".into(), ..base.clone() }
        .env("PYTRACER_BACKEND_URL", format!("http://127.0.0.1:{backend_port}"))
}

/// Everything running; dropped front to back (frontend, backend, Redis, PostgreSQL).
pub struct TwoServices {
    pub frontend: Gunicorn,
    pub backend: Gunicorn,
    pub redis: Redis,
    pub pg: Postgres,
}

impl TwoServices {
    /// Starts PostgreSQL, Redis, the backend and the frontend, each Gunicorn with `base`'s
    /// worker class, counts, extra arguments and environment; panics on failure.
    pub fn start(base: &GunicornOpts) -> TwoServices {
        let pg = Postgres::start();
        let redis = Redis::start();
        let backend = Gunicorn::start(backend_opts(base, &pg, &redis));
        let frontend = Gunicorn::start(frontend_opts(base, backend.port()));
        TwoServices { frontend, backend, redis, pg }
    }

    /// Pids of the two Gunicorn masters (frontend, backend): what a tracer attaches to.
    pub fn app_pids(&self) -> [u32; 2] {
        [self.frontend.pid(), self.backend.pid()]
    }
}
