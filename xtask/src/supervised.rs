//! Child processes that xtask started in process groups of their own, stopped in a chosen order
//! with a chosen signal, and killed with their whole group if they do not stop in time.
use std::{
    io,
    process::{Child, ExitStatus},
    thread,
    time::{Duration, Instant},
};

const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Supervised {
    pub name: &'static str,
    pub child: Child,
    pub stop_signal: libc::c_int,
    pub stopped: bool,
}

impl Supervised {
    pub fn new(name: &'static str, child: Child, stop_signal: libc::c_int) -> Supervised {
        Supervised { name, child, stop_signal, stopped: false }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        self.stopped = true;
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(pid, self.stop_signal) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("[xtask] {} did not stop within {}s; killing its process group", self.name, STOP_GRACE.as_secs());
        // SAFETY: as above; the group id is the child's pid (process_group(0)).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        self.child.wait()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.stop();
        }
    }
}
