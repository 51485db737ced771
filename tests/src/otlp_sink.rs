//! bench/otlp_sink.py as a test fixture: an OTLP/HTTP receiver that decodes with the official
//! OpenTelemetry protobuf definitions (opentelemetry-proto from PyPI) and shows what it got.
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::env::{venv_dir, workspace_root};
use crate::http::get;
use crate::wait::wait_until;

pub struct OtlpSink {
    child: Child,
    pub port: u16,
}

impl OtlpSink {
    /// The receiver refuses its first `fail_first` exports with 503, to exercise retries.
    pub fn start(fail_first: u32) -> OtlpSink {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(venv_dir().join("bin/python"))
            .arg(workspace_root().join("bench/otlp_sink.py"))
            .args(["--port", &port.to_string()])
            .env("OTLP_SINK_KEEP_SPANS", "1")
            .env("OTLP_SINK_FAIL_FIRST", fail_first.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting bench/otlp_sink.py");
        assert!(
            wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "the OTLP receiver did not start"
        );
        OtlpSink { child, port }
    }

    /// `/count` or `/spans`, decoded.
    pub fn json(&self, path: &str) -> Value {
        serde_json::from_slice(&get(self.port, path).body).unwrap()
    }

    /// The `otlp:` section of a pytracer config that exports here.
    pub fn config_yaml(&self) -> String {
        format!("otlp:\n  endpoint: http://127.0.0.1:{}/v1/traces\n", self.port)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line CPython reports for function `name` in `file` (co_firstlineno): its first
/// decorator's line when decorated, else its `def` line. Read from the source, not hardcoded.
pub fn first_line_of(file: &std::path::Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let def = lines
        .iter()
        .position(|l| l.starts_with(&format!("def {name}(")))
        .unwrap_or_else(|| panic!("no def {name} in {}", file.display()));
    let mut first = def;
    while first > 0 && lines[first - 1].starts_with('@') {
        first -= 1;
    }
    first as u64 + 1
}
