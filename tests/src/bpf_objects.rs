//! The kernel's BPF objects a process holds (programs, maps, links), read from the fdinfo of its
//! descriptors, and whether the kernel still has an object by id: what an agent leaves behind.

use std::collections::BTreeSet;

/// The ids of the BPF objects one process holds descriptors of.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BpfObjects {
    pub programs: BTreeSet<u32>,
    pub maps: BTreeSet<u32>,
    pub links: BTreeSet<u32>,
}

impl BpfObjects {
    /// What process `pid` holds now (empty when it is gone).
    pub fn of(pid: u32) -> BpfObjects {
        let mut out = BpfObjects::default();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return out };
        for entry in dir.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u32>().ok());
            // A link's fdinfo names its program too: the link id decides.
            if let Some(id) = field("link_id:") {
                out.links.insert(id);
            } else if let Some(id) = field("prog_id:") {
                out.programs.insert(id);
            } else if let Some(id) = field("map_id:") {
                out.maps.insert(id);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.programs.is_empty() && self.maps.is_empty() && self.links.is_empty()
    }

    /// Those of these objects the kernel still has, whoever holds them.
    #[must_use]
    pub fn still_in_kernel(&self) -> BpfObjects {
        let keep = |ids: &BTreeSet<u32>, cmd| ids.iter().copied().filter(|&id| exists(cmd, id)).collect();
        BpfObjects {
            programs: keep(&self.programs, BPF_PROG_GET_FD_BY_ID),
            maps: keep(&self.maps, BPF_MAP_GET_FD_BY_ID),
            links: keep(&self.links, BPF_LINK_GET_FD_BY_ID),
        }
    }
}

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

/// Whether the kernel has object `id` of the kind `cmd` opens (what `bpftool prog show id N`
/// asks): ENOENT once it is freed.
fn exists(cmd: libc::c_long, id: u32) -> bool {
    // union bpf_attr for the *_GET_FD_BY_ID commands: the id, next_id, open_flags.
    let attr: [u32; 4] = [id, 0, 0, 0];
    // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of a local array.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), size_of_val(&attr)) };
    if fd >= 0 {
        // SAFETY: a descriptor the call just opened for us.
        unsafe { libc::close(fd as libc::c_int) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}
