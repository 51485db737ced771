//! What one syscall costs a process pytracer does not trace, by what pytracer hooks on it. A
//! syscall tracepoint puts every task on the slow syscall path, hooked or not; a hooked syscall
//! also builds the tracepoint's record and runs the program, which returns early. So a syscall's
//! added cost depends only on its class: no program, an entry program, an exit program, or both.
//! One representative of each class is timed in a tight loop on the servers' CPU; times the
//! number of each class an untraced server makes per request (syscall_mix.rs), that is the share
//! every process pays, resolved far below what timing the server itself can see.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Instant;

use anyhow::{Context, Result};
use tracer_common::names::TRACEPOINTS;

use super::affinity::{pin, SERVER_CPU};

/// What pytracer attaches to a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Unhooked,
    Entry,
    Exit,
    Both,
}

impl Class {
    pub const ALL: [Class; 4] = [Class::Unhooked, Class::Entry, Class::Exit, Class::Both];

    /// The class of the syscall strace names `name`, from the agent's own table of tracepoints.
    pub fn of(name: &str) -> Class {
        // strace names the x86-64 sendfile by its libc name; its tracepoints keep the kernel's.
        let name = if name == "sendfile" { "sendfile64" } else { name };
        let hooked = |tp: String| {
            TRACEPOINTS.iter().any(|&(_, category, tps)| category == "syscalls" && tps.contains(&tp.as_str()))
        };
        match (hooked(format!("sys_enter_{name}")), hooked(format!("sys_exit_{name}"))) {
            (false, false) => Class::Unhooked,
            (true, false) => Class::Entry,
            (false, true) => Class::Exit,
            (true, true) => Class::Both,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The syscall timed for the class, as the report names it.
    pub fn representative(self) -> &'static str {
        match self {
            Class::Unhooked => "getppid()",
            Class::Entry => "close(-1)",
            Class::Exit => "read(/dev/zero, 1)",
            Class::Both => "write(/dev/null, 1)",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Class::Unhooked => "no program",
            Class::Entry => "entry program",
            Class::Exit => "exit program",
            Class::Both => "entry and exit programs",
        }
    }
}

/// ns per call of each class's representative, by [`Class::index`].
pub type Costs = [f64; 4];

/// Calls per timed slice, and slices per class: about half a second in all here untraced.
const CALLS: u32 = 10_000;
const SLICES: u32 = 50;

/// Each class's representative timed on [`SERVER_CPU`]: the fastest of [`SLICES`] slices of
/// [`CALLS`] calls each, interleaved, so that a slice the VM or an interrupt stole from is left
/// out and all four see the same moments.
pub fn measure() -> Result<Costs> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Costs> {
            pin(0, SERVER_CPU)?;
            let null = File::options().write(true).open("/dev/null").context("/dev/null")?;
            let zero = File::open("/dev/zero").context("/dev/zero")?;
            let (null, zero) = (null.as_raw_fd(), zero.as_raw_fd());
            let mut best = [f64::INFINITY; 4];
            let mut byte = [0u8; 1];
            for _ in 0..SLICES {
                for class in Class::ALL {
                    let start = Instant::now();
                    for _ in 0..CALLS {
                        // SAFETY: plain syscalls on descriptors this thread owns (or none: -1
                        // fails with EBADF), into and out of a live one-byte buffer.
                        unsafe {
                            match class {
                                Class::Unhooked => libc::syscall(libc::SYS_getppid),
                                Class::Entry => libc::close(-1).into(),
                                Class::Exit => libc::read(zero, byte.as_mut_ptr().cast(), 1) as libc::c_long,
                                Class::Both => libc::write(null, byte.as_ptr().cast(), 1) as libc::c_long,
                            };
                        }
                    }
                    let ns = start.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS);
                    best[class.index()] = best[class.index()].min(ns);
                }
            }
            Ok(best)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the syscall timing thread panicked"))?
    })
}

/// Class by class, the faster of two timings.
pub fn fastest(a: Costs, b: Costs) -> Costs {
    std::array::from_fn(|i| a[i].min(b[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_representative_is_of_its_class() {
        for (name, class) in
            [("getppid", Class::Unhooked), ("close", Class::Entry), ("read", Class::Exit), ("write", Class::Both)]
        {
            assert_eq!(Class::of(name), class, "{name}");
            assert!(class.representative().starts_with(name));
        }
    }

    #[test]
    fn a_servers_syscalls_fall_in_the_classes_the_agent_attaches() {
        assert_eq!(Class::of("accept4"), Class::Exit);
        assert_eq!(Class::of("recvfrom"), Class::Exit);
        assert_eq!(Class::of("sendto"), Class::Both);
        assert_eq!(Class::of("sendfile"), Class::Both);
        assert_eq!(Class::of("shutdown"), Class::Unhooked);
        assert_eq!(Class::of("epoll_wait"), Class::Unhooked);
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "exact: min picks one of its inputs")]
    fn fastest_is_taken_class_by_class() {
        assert_eq!(fastest([1.0, 5.0, 3.0, 8.0], [2.0, 4.0, 3.0, 7.0]), [1.0, 4.0, 3.0, 7.0]);
    }

    #[test]
    fn the_index_is_the_position_in_all() {
        for (i, class) in Class::ALL.into_iter().enumerate() {
            assert_eq!(class.index(), i);
        }
    }
}
