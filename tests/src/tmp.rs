//! Per-test scratch directories, without a tempfile dependency.
//!
//! A directory is kept when the test is panicking, so the Gunicorn log, the agent's stderr and
//! the span file are still there to read after a failure; its path is in the panic messages.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    /// A scratch directory under `parent` (a chroot's /tmp, say, for files its processes read).
    pub fn new_in(parent: &Path, prefix: &str) -> std::io::Result<TempDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!(
            "pytracer-tests-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("pytracer-tests: keeping {} for diagnosis", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
