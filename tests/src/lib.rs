//! Test harness for pytracer's end-to-end tests: a Gunicorn serving `tests/apps/testapp.py`,
//! the agent attached to it, a byte-exact HTTP client, and helpers to read the spans.
//!
//! Typical use:
//! ```no_run
//! use pytracer_tests::*;
//! if !require_privileged() { return; }
//! let g = Gunicorn::start(GunicornOpts::sync(2));
//! let t = Tracer::start(&[g.pid()], &[]);
//! assert_eq!(request(g.port(), "GET", "/hello", &[], b"").status, 200);
//! let r = t.stop();
//! let s = one_span(&r.spans, "/hello");
//! ```

pub mod bpf_maps;
pub mod bpf_objects;
pub mod bpf_runs;
pub mod env;
pub mod expect;
pub mod gunicorn;
pub mod http;
pub mod mysql;
pub mod nginx;
pub mod otlp_sink;
pub mod podman;
pub mod postgres;
pub mod procfs;
pub mod prom;
pub mod prometheus;
pub mod redis;
mod server;
pub mod services;
pub mod span;
pub mod tmp;
pub mod tracer;
pub mod uwsgi;
pub mod wait;
pub mod wire;

pub use bpf_maps::{AgentMaps, Map};
pub use bpf_objects::BpfObjects;
pub use bpf_runs::{program_runs, RunStats};
pub use env::{
    apps_dir, debian_chroot, debian_venv_dir, gunicorn_bin, interpreter_venv_dir, pytracer_bin, require_chroot_venvs,
    require_interpreters, require_privileged, require_privileged_debian, require_venv, require_venvs, venv_dir,
    workspace_root, INTERPRETER_SERIES,
};
pub use expect::{
    check_spans, check_spans_of, expected_attributes, expected_testapp_attributes, mixed_sequence, now_ns, send,
    spans_of_client, template_of, testapp_span_name, testapp_view, Sent, MB,
};
pub use gunicorn::{Gunicorn, GunicornOpts};
pub use http::{build_request, get, request, Conn, Response};
pub use mysql::{require_privileged_mariadb, Mariadb, MYSQL_DATABASE, MYSQL_ITEMS, MYSQL_PASSWORD, MYSQL_USER};
pub use nginx::{nginx_bin, require_privileged_nginx, require_uwsgi, require_uwsgi_nginx, Nginx};
pub use otlp_sink::{first_line_of, OtlpSink};
pub use postgres::{postgres_bin_dir, Postgres, ITEMS, PG_DATABASE, PG_USER};
pub use prom::{free_port, scrape, sum, Line};
pub use prometheus::{Prometheus, Sample};
pub use redis::{redis_server_bin, resp_command, Redis};
pub use server::{file_tail, Server};
pub use services::{backend_opts, frontend_opts, require_privileged_two_services, require_two_services, TwoServices};
pub use span::{
    assert_code, attr, attr_str, attr_u64, children, connect_share, duration_ns, exit_attributes, one_span, span_path,
    spans_by_path, spans_with_attr, summarize,
};
pub use tmp::TempDir;
pub use tracer::{parse_jsonl, TraceResult, Tracer};
pub use uwsgi::{uwsgi_bin, Upstream, Uwsgi, UwsgiMode, UwsgiOpts};
pub use wait::{wait_for, wait_until};
