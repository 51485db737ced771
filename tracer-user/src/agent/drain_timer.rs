//! The drain timer: a timerfd the event loop waits on with its other files. Tokio's own timer
//! cost an idle agent more than its drains did: each re-armed sleep earlier than the runtime's
//! next wake-up woke the runtime through its eventfd at once, and a deadline past the timer
//! wheel's 64 ms slot boundary took two waits, so one 80 ms drain was four system calls and
//! three turns of the loop. The kernel's periodic timer is one wait and one read, and it is
//! re-armed only when the gap changes.
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::time::{timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags};
use tokio::io::unix::AsyncFd;

pub(super) struct DrainTimer {
    fd: AsyncFd<OwnedFd>,
    /// The period it was last armed with.
    armed: Option<Duration>,
}

impl DrainTimer {
    pub(super) fn new() -> io::Result<DrainTimer> {
        let fd = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)?;
        // SAFETY: the AsyncFd owns the timerfd, which stays open as long as it is registered.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(DrainTimer { fd, armed: None })
    }

    /// Fires at `due` (at most `gap` from now) and every `gap` after it; a system call only
    /// when that differs from what the timer does already.
    pub(super) fn set(&mut self, due: Instant, gap: Duration) -> io::Result<()> {
        let first = due.saturating_duration_since(Instant::now());
        // A periodic timer that just fired fires again one gap on: nothing to change unless the
        // gap changes or the next drain is due sooner (a sampled window closing).
        let sooner = first + Duration::from_millis(1) < gap;
        if self.armed == Some(gap) && !sooner {
            return Ok(());
        }
        let spec = Itimerspec {
            it_interval: timespec(gap),
            // Zero would disarm it.
            it_value: timespec(first.max(Duration::from_micros(1))),
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        self.armed = Some(gap);
        Ok(())
    }

    /// Until the timer fires.
    pub(super) async fn wait(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
                Ok(r) => {
                    // One read takes every expiration: the next wait goes to epoll without a
                    // read that would only say EAGAIN.
                    guard.clear_ready();
                    return r.map(|_| ());
                }
                // Readiness seen before a read that found nothing: wait again.
                Err(_would_block) => {}
            }
        }
    }
}

fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rearmed_only_when_the_gap_changes_or_a_drain_is_due_sooner() {
        let mut t = DrainTimer::new().unwrap();
        let gap = Duration::from_millis(20);
        t.set(Instant::now() + Duration::from_millis(5), gap).unwrap();
        assert_eq!(t.armed, Some(gap));
        t.wait().await.unwrap();
        // Periodic from its first expiry on: a wait without re-arming still ends.
        t.set(Instant::now() + gap, gap).unwrap();
        t.wait().await.unwrap();
        t.set(Instant::now() + gap * 2, gap * 2).unwrap();
        assert_eq!(t.armed, Some(gap * 2));
        t.wait().await.unwrap();
    }
}
