//! The kernel stamps events with CLOCK_MONOTONIC (bpf_ktime_get_ns); spans need Unix time.

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix time minus monotonic time, in nanoseconds, measured once at start.
    offset_ns: i128,
}

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// CLOCK_MONOTONIC now, the kernel records' clock.
pub fn monotonic_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC) as u64
}

impl Clock {
    pub fn new() -> Clock {
        let mono = now_ns(libc::CLOCK_MONOTONIC);
        let real = now_ns(libc::CLOCK_REALTIME);
        Clock { offset_ns: real - mono }
    }

    pub fn to_unix_ns(&self, monotonic_ns: u64) -> u64 {
        (i128::from(monotonic_ns) + self.offset_ns).max(0) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_now_to_now() {
        let c = Clock::new();
        let unix = c.to_unix_ns(now_ns(libc::CLOCK_MONOTONIC) as u64);
        let real = now_ns(libc::CLOCK_REALTIME) as u64;
        assert!(real.abs_diff(unix) < 50_000_000, "{real} vs {unix}");
    }
}
