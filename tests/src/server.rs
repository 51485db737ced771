//! What starting a server under test has in common: the port is picked free, but another process
//! may take it before the server binds it, so a start that failed on "Address already in use" is
//! tried again on another port.
use anyhow::Result;

pub(crate) trait Started: Sized {
    fn log(&self) -> String;
    fn wait_ready(&mut self) -> Result<()>;
}

pub(crate) fn start_retrying<S: Started>(mut spawn: impl FnMut() -> Result<S>) -> Result<S> {
    let mut last_err = None;
    for _ in 0..3 {
        let mut s = spawn()?;
        match s.wait_ready() {
            Ok(()) => return Ok(s),
            Err(e) => {
                let collided = s.log().contains("Address already in use");
                last_err = Some(e);
                if !collided {
                    break;
                }
                // Dropping `s` stops what is left of it.
            }
        }
    }
    Err(last_err.expect("at least one attempt"))
}

/// Stops a server started in its own process group: `signal` to the master, up to `grace` for it
/// to exit, then SIGKILL to the whole group, which also takes workers orphaned by a master that
/// died first.
pub(crate) fn stop_group(child: &mut std::process::Child, signal: libc::c_int, grace: std::time::Duration) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on a child we spawned and have not reaped, and on its process group.
    unsafe { libc::kill(pid, signal) };
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}
