//! Reading an agent's kernel maps from outside it, by the ids in its descriptors' fdinfo: how
//! many entries a hash map holds, and a per-CPU counter summed over CPUs. bpf(2) directly: the
//! fault suite reads them while the agent is stopped, and a full map's dump by bpftool would be
//! tens of megabytes of JSON.
use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::raw::c_long;

use crate::BpfObjects;

const BPF_MAP_LOOKUP_ELEM: c_long = 1;
const BPF_MAP_GET_NEXT_KEY: c_long = 4;
const BPF_MAP_GET_FD_BY_ID: c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: c_long = 15;

/// One map: its descriptor and the sizes `struct bpf_map_info` gives.
pub struct Map {
    fd: OwnedFd,
    pub key_size: usize,
    pub value_size: usize,
    pub max_entries: u32,
}

/// The maps one agent holds, by their (kernel-truncated) names: `CONNS`, `TRACKED`, `DROPS`...
pub struct AgentMaps {
    pub by_name: BTreeMap<String, Map>,
}

fn bpf(cmd: c_long, attr: &mut [u64]) -> std::io::Result<i64> {
    // SAFETY: bpf(2) reads and writes within `attr`, whose size is passed; pointers inside it are
    // to live buffers of the sizes the map declares.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Map {
    fn open(id: u32) -> Option<(String, Map)> {
        let mut attr = [u64::from(id), 0];
        let fd = bpf(BPF_MAP_GET_FD_BY_ID, &mut attr).ok()?;
        // SAFETY: a descriptor the call just opened for us, owned from here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut info = [0u8; 128];
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd) as u32;
        let mut attr = [u64::from(raw) | ((info.len() as u64) << 32), info.as_mut_ptr() as u64];
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).ok()?;
        // struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags, name[16].
        let u32_at = |o: usize| u32::from_ne_bytes(info[o..o + 4].try_into().unwrap());
        let name = info[24..40].iter().take_while(|b| **b != 0).map(|b| *b as char).collect();
        Some((name, Map { key_size: u32_at(8) as usize, value_size: u32_at(12) as usize, max_entries: u32_at(16), fd }))
    }

    fn raw_fd(&self) -> u64 {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd) as u64
    }

    /// Entries now, by walking the keys (read while the map is not changing: a key deleted under
    /// the walk restarts it).
    pub fn entries(&self) -> usize {
        let (mut key, mut next) = (vec![0u8; self.key_size], vec![0u8; self.key_size]);
        let mut n = 0;
        let mut first = true;
        loop {
            let key_ptr = if first { 0 } else { key.as_ptr() as u64 };
            let mut attr = [self.raw_fd(), key_ptr, next.as_mut_ptr() as u64];
            if bpf(BPF_MAP_GET_NEXT_KEY, &mut attr).is_err() {
                return n;
            }
            first = false;
            n += 1;
            std::mem::swap(&mut key, &mut next);
        }
    }

    /// A per-CPU array's u64 at `index`, summed over the possible CPUs.
    pub fn percpu_sum(&self, index: u32) -> u64 {
        let cpus = possible_cpus();
        let stride = self.value_size.div_ceil(8) * 8;
        let mut values = vec![0u8; stride * cpus];
        let key = index.to_ne_bytes();
        let mut attr = [self.raw_fd(), key.as_ptr() as u64, values.as_mut_ptr() as u64, 0];
        if bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).is_err() {
            return 0;
        }
        values.chunks(stride).map(|c| u64::from_ne_bytes(c[..8].try_into().unwrap())).sum()
    }
}

/// CPUs the kernel sizes per-CPU values for (/sys/devices/system/cpu/possible, e.g. `0-1`).
fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    text.trim()
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap_or(0) - a.parse::<usize>().unwrap_or(0) + 1,
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

impl AgentMaps {
    /// The maps process `pid` holds.
    pub fn of(pid: u32) -> AgentMaps {
        AgentMaps { by_name: BpfObjects::of(pid).maps.into_iter().filter_map(Map::open).collect() }
    }

    pub fn get(&self, name: &str) -> &Map {
        self.by_name
            .get(name)
            .unwrap_or_else(|| panic!("the agent holds no map {name}; it has {:?}", self.by_name.keys()))
    }
}
