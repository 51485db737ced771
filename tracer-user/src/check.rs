//! `pytracer check`: the preflight a user runs first. One line per check, `ok` or what to do;
//! the programs and ring buffer are loaded for real, with the agent's own loader.
use std::fmt;
use std::io::Write;

use pytracer_config::Discovery;

use crate::discovery;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    /// Tracing works, with less: said, but the exit status stays 0.
    Warn(String),
    /// What to do about it.
    Fail(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Ok(d) if d.is_empty() => write!(f, "{}: ok", self.name),
            Outcome::Ok(d) => write!(f, "{}: ok ({d})", self.name),
            Outcome::Warn(d) => write!(f, "{}: warning: {d}", self.name),
            Outcome::Fail(d) => write!(f, "{}: FAILED: {d}", self.name),
        }
    }
}

fn check(name: impl Into<String>, outcome: Outcome) -> Check {
    Check { name: name.into(), outcome }
}

/// The newest kernel feature the object needs: `bpf_loop` (5.17), which the Python stack walks
/// run in. The others are older: `bpf_task_pt_regs` (5.15, the exit-only reads and accepts),
/// `bpf_get_current_task_btf` (5.11), BPF ring buffers (5.8). Every program is loaded at start,
/// so an older kernel fails the whole load.
const MIN_KERNEL: (u32, u32) = (5, 17);

/// (major, minor) of a release such as `6.1.0-28-cloud-amd64`.
pub fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn kernel(release: &str) -> Outcome {
    let release = release.trim();
    match parse_kernel_release(release) {
        Some(v) if v >= MIN_KERNEL => Outcome::Ok(release.to_string()),
        Some(_) => Outcome::Fail(format!(
            "kernel {release} is older than {}.{} (bpf_loop, which the Python stack walks need): run on a newer kernel",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        None => Outcome::Warn(format!("cannot read the kernel version from `{release}`")),
    }
}

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The effective capability set of a `/proc/PID/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Why each capability is needed, for the line that says it is missing.
pub fn capability(cap_eff: u64, bit: u32) -> Outcome {
    if cap_eff & (1 << bit) != 0 {
        return Outcome::Ok(String::new());
    }
    let why = match bit {
        CAP_BPF => "loading programs and maps",
        CAP_PERFMON => "attaching tracepoints and reading memory from programs",
        _ => "uprobes on the interpreter (and bpf() under a container's default seccomp profile)",
    };
    Outcome::Fail(format!(
        "missing, needed for {why}: run as root, or add it (Kubernetes: securityContext.capabilities.add)"
    ))
}

/// `/sys/kernel/security/lockdown` reads `[none] integrity confidentiality`, the mode bracketed.
pub fn lockdown(text: Option<&str>) -> Outcome {
    let Some(text) = text else { return Outcome::Ok("no lockdown support in this kernel".into()) };
    let mode = text.split_whitespace().find_map(|w| w.strip_prefix('[')?.strip_suffix(']')).unwrap_or("unknown");
    match mode {
        "none" => Outcome::Ok("none".into()),
        "integrity" => Outcome::Ok("integrity: reading memory from programs is allowed".into()),
        "confidentiality" => Outcome::Fail(
            "confidentiality mode refuses reading memory from eBPF programs: boot with lockdown=integrity or none"
                .into(),
        ),
        other => Outcome::Warn(format!("unknown mode `{other}`")),
    }
}

/// Above 1, only CAP_PERFMON (or CAP_SYS_ADMIN) may open the perf events tracepoints attach with.
pub fn perf_event_paranoid(value: Option<&str>, cap_eff: u64) -> Outcome {
    let Some(v) = value.and_then(|v| v.trim().parse::<i32>().ok()) else {
        return Outcome::Warn("cannot read /proc/sys/kernel/perf_event_paranoid".into());
    };
    let privileged = cap_eff & (1 << CAP_PERFMON | 1 << CAP_SYS_ADMIN) != 0;
    if v <= 1 {
        Outcome::Ok(v.to_string())
    } else if privileged {
        Outcome::Ok(format!("{v}; CAP_PERFMON overrides it"))
    } else {
        Outcome::Fail(format!("{v} without CAP_PERFMON: run as root, or `sysctl kernel.perf_event_paranoid=1`"))
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// tracefs where the loader looks: the tracefs mount or debugfs's tracing directory. Where
/// neither is there (a fresh machine without systemd's mount), the loader mounts tracefs itself,
/// which takes CAP_SYS_ADMIN: with it the check passes, since the agent will find tracefs.
fn tracefs(cap_eff: u64) -> Outcome {
    match crate::bpf::probes::tracefs_dir() {
        Some(dir) => Outcome::Ok(dir.into()),
        None if cap_eff & (1 << CAP_SYS_ADMIN) != 0 => {
            Outcome::Ok("not mounted yet: the agent mounts it at /sys/kernel/tracing".into())
        }
        None => Outcome::Fail(
            "not mounted, and mounting it takes CAP_SYS_ADMIN: `mount -t tracefs tracefs /sys/kernel/tracing` (in a container, mount the host's in)"
                .into(),
        ),
    }
}

fn btf() -> Outcome {
    match std::fs::File::open("/sys/kernel/btf/vmlinux") {
        Ok(_) => Outcome::Ok("/sys/kernel/btf/vmlinux".into()),
        Err(e) => Outcome::Fail(format!(
            "/sys/kernel/btf/vmlinux: {e}: use a kernel built with CONFIG_DEBUG_INFO_BTF (in a container, mount /sys/kernel/btf in)"
        )),
    }
}

/// The agent's programs, loaded and attached, and its ring buffer created; all dropped again.
fn programs() -> Outcome {
    match crate::bpf::probes::Probes::load() {
        Ok((probes, events)) => {
            drop(events);
            drop(probes);
            Outcome::Ok("tracepoint and uprobe programs loaded, tracepoints attached, ring buffer created".into())
        }
        Err(e) => Outcome::Fail(format!("{e}")),
    }
}

/// Each traced candidate: its interpreter supported (offsets known, memory readable) or why not.
fn processes(rules: &Discovery) -> Vec<Check> {
    let mut out = Vec::new();
    let traced: Vec<_> = discovery::scan(rules, false).into_iter().filter(|c| c.decision.is_traced()).collect();
    for c in &traced {
        // Masters only: a worker runs its master's interpreter, and would repeat its line.
        if traced.iter().any(|p| p.pid == c.ppid) {
            continue;
        }
        let name = format!("process {}", c.pid);
        let what: String = c.cmdline.chars().take(60).collect();
        let place = crate::container::read(c.pid, &[])
            .map(|i| format!(", container {}", &i.container_id[..12]))
            .unwrap_or_default();
        let outcome = match crate::cpython::inspect(c.pid) {
            crate::cpython::Support::Supported { build, .. } => {
                Outcome::Ok(format!("CPython {} {what}{place}", build.version))
            }
            crate::cpython::Support::Unsupported { reason, .. } => {
                if !std::path::Path::new(&format!("/proc/{}", c.pid)).exists() {
                    continue;
                }
                Outcome::Warn(format!("traced without Python code (wire only): {reason}; {what}{place}"))
            }
        };
        out.push(check(name, outcome));
    }
    if out.is_empty() {
        out.push(check("processes", Outcome::Ok("no candidate process runs now".into())));
    }
    out
}

/// Every check, in order.
pub fn run_all(rules: &Discovery) -> Vec<Check> {
    let status = read("/proc/self/status").unwrap_or_default();
    let cap_eff = parse_cap_eff(&status).unwrap_or(0);
    let mut checks = vec![
        check("kernel", kernel(&read("/proc/sys/kernel/osrelease").unwrap_or_default())),
        check("btf", btf()),
        check("tracefs", tracefs(cap_eff)),
        check("capability CAP_BPF", capability(cap_eff, CAP_BPF)),
        check("capability CAP_PERFMON", capability(cap_eff, CAP_PERFMON)),
        check("capability CAP_SYS_ADMIN", capability(cap_eff, CAP_SYS_ADMIN)),
        check("lockdown", lockdown(read("/sys/kernel/security/lockdown").as_deref())),
        check(
            "perf_event_paranoid",
            perf_event_paranoid(read("/proc/sys/kernel/perf_event_paranoid").as_deref(), cap_eff),
        ),
        check("bpf programs", programs()),
    ];
    checks.extend(processes(rules));
    checks
}

/// Prints every check; true when none failed.
pub fn print(checks: &[Check], out: &mut impl Write) -> std::io::Result<bool> {
    for c in checks {
        writeln!(out, "{c}")?;
    }
    Ok(!checks.iter().any(|c| matches!(c.outcome, Outcome::Fail(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_release("6.1.0-28-cloud-amd64\n"), Some((6, 1)));
        assert_eq!(parse_kernel_release("5.15.167+"), Some((5, 15)));
        assert_eq!(parse_kernel_release("4.19.0"), Some((4, 19)));
        assert_eq!(kernel("6.1.0-28-cloud-amd64\n"), Outcome::Ok("6.1.0-28-cloud-amd64".into()));
        assert_eq!(kernel("5.17.0"), Outcome::Ok("5.17.0".into()));
        assert!(matches!(kernel("5.15.0-125-generic"), Outcome::Fail(_)));
        assert!(matches!(kernel("5.4.0-150-generic"), Outcome::Fail(_)));
        assert!(matches!(kernel("garbage"), Outcome::Warn(_)));
    }

    #[test]
    fn capabilities() {
        let root = parse_cap_eff("Name:\tx\nCapEff:\t000001ffffffffff\n").unwrap();
        for bit in [CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN] {
            assert_eq!(capability(root, bit), Outcome::Ok(String::new()));
        }
        // CAP_BPF and CAP_PERFMON only (as a DaemonSet might try).
        let some = (1 << CAP_BPF) | (1 << CAP_PERFMON);
        assert_eq!(capability(some, CAP_BPF), Outcome::Ok(String::new()));
        assert!(matches!(capability(some, CAP_SYS_ADMIN), Outcome::Fail(m) if m.contains("uprobes")));
        assert_eq!(parse_cap_eff("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
    }

    #[test]
    fn lockdown_modes() {
        assert_eq!(lockdown(Some("[none] integrity confidentiality\n")), Outcome::Ok("none".into()));
        assert!(matches!(lockdown(Some("none [integrity] confidentiality\n")), Outcome::Ok(_)));
        assert!(matches!(lockdown(Some("none integrity [confidentiality]\n")), Outcome::Fail(_)));
        assert!(matches!(lockdown(None), Outcome::Ok(_)));
    }

    #[test]
    fn paranoid_levels() {
        assert_eq!(perf_event_paranoid(Some("1\n"), 0), Outcome::Ok("1".into()));
        assert_eq!(
            perf_event_paranoid(Some("3\n"), 1 << CAP_PERFMON),
            Outcome::Ok("3; CAP_PERFMON overrides it".into())
        );
        assert!(matches!(perf_event_paranoid(Some("2"), 0), Outcome::Fail(_)));
        assert!(matches!(perf_event_paranoid(None, 0), Outcome::Warn(_)));
    }

    #[test]
    fn lines_and_status() {
        let checks = [
            check("kernel", Outcome::Ok("6.1.0".into())),
            check("capability CAP_BPF", Outcome::Ok(String::new())),
            check("process 7", Outcome::Warn("wire only".into())),
        ];
        let mut out = Vec::new();
        assert!(print(&checks, &mut out).unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "kernel: ok (6.1.0)\ncapability CAP_BPF: ok\nprocess 7: warning: wire only\n"
        );
        let mut out = Vec::new();
        assert!(!print(&[check("btf", Outcome::Fail("no".into()))], &mut out).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), "btf: FAILED: no\n");
    }
}
