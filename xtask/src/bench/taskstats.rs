//! Threads' user and system time as the kernel sampled them, from taskstats (generic netlink).
//! /proc/PID/stat gives the same ticks only rescaled (`cputime_adjust`): split by the ratio of
//! the process's whole life, which for a server a few seconds old swings the split of a short
//! window by a third; taskstats' `ac_utime`/`ac_stime` are the raw samples, whose deltas split a
//! window by its own ticks.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const TASKSTATS_CMD_GET: u8 = 1;
const TASKSTATS_CMD_ATTR_PID: u16 = 1;
const TASKSTATS_TYPE_AGGR_PID: u16 = 4;
const TASKSTATS_TYPE_STATS: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLA_F_MASK: u16 = 0x3fff;
/// Offsets in `struct taskstats` (linux/taskstats.h), stable since version 1 of the struct.
const AC_PID: usize = 128;
const AC_UTIME: usize = 152;
const AC_STIME: usize = 160;

pub struct Taskstats {
    fd: OwnedFd,
    family: u16,
    seq: u32,
}

impl Taskstats {
    pub fn open() -> Result<Taskstats> {
        // SAFETY: socket has no memory preconditions; the fd is checked and then owned.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_GENERIC) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("opening a generic netlink socket");
        }
        // SAFETY: raw is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut t = Taskstats { fd, family: GENL_ID_CTRL, seq: 0 };
        let reply = t.ask(CTRL_CMD_GETFAMILY, 1, CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0")?;
        let id = attrs(&reply)
            .find(|(ty, _)| *ty == CTRL_ATTR_FAMILY_ID)
            .and_then(|(_, v)| v.get(..2))
            .context("the kernel named no TASKSTATS family (CONFIG_TASKSTATS?)")?;
        t.family = u16::from_ne_bytes([id[0], id[1]]);
        Ok(t)
    }

    /// The thread's raw user and system time, µs.
    pub fn cputime(&mut self, tid: u32) -> Result<(u64, u64)> {
        let reply = self.ask(TASKSTATS_CMD_GET, 1, TASKSTATS_CMD_ATTR_PID, &tid.to_ne_bytes())?;
        let aggr = attrs(&reply).find(|(ty, _)| *ty == TASKSTATS_TYPE_AGGR_PID).context("no AGGR_PID in the reply")?.1;
        let stats = attrs(aggr).find(|(ty, _)| *ty == TASKSTATS_TYPE_STATS).context("no STATS in the reply")?.1;
        let u32_at = |o: usize| stats.get(o..o + 4).map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
        let u64_at = |o: usize| stats.get(o..o + 8).map(|b| u64::from_ne_bytes(b.try_into().unwrap()));
        // The pid field checks the offsets against this kernel's struct.
        if u32_at(AC_PID) != Some(tid) {
            bail!("taskstats for {tid} names pid {:?}: unexpected struct layout", u32_at(AC_PID));
        }
        Ok((u64_at(AC_UTIME).unwrap_or(0), u64_at(AC_STIME).unwrap_or(0)))
    }

    /// One request with one attribute; the reply's attributes (after the genetlink header).
    fn ask(&mut self, cmd: u8, version: u8, attr: u16, value: &[u8]) -> Result<Vec<u8>> {
        self.seq += 1;
        let attr_len = 4 + value.len();
        let len = 16 + 4 + attr_len.next_multiple_of(4);
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&u32::try_from(len)?.to_ne_bytes());
        msg.extend_from_slice(&self.family.to_ne_bytes());
        msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[cmd, version, 0, 0]);
        msg.extend_from_slice(&u16::try_from(attr_len)?.to_ne_bytes());
        msg.extend_from_slice(&attr.to_ne_bytes());
        msg.extend_from_slice(value);
        msg.resize(len, 0);
        // SAFETY: a zeroed sockaddr_nl is valid; the kernel (nl_pid 0) is the destination.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msg and to are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error()).context("sending a taskstats request");
        }
        let mut buf = vec![0u8; 16 * 1024];
        // SAFETY: buf is valid for its length.
        let got = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if got < 0 {
            return Err(io::Error::last_os_error()).context("reading a taskstats reply");
        }
        buf.truncate(usize::try_from(got)?);
        if buf.len() < 20 {
            bail!("a taskstats reply of {} bytes", buf.len());
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        if ty == NLMSG_ERROR {
            let errno = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
            bail!("taskstats: {}", io::Error::from_raw_os_error(-errno));
        }
        let len = (u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize).min(buf.len());
        Ok(buf[20..len].to_vec())
    }
}

/// Netlink attributes: (type, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_F_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((ty, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_with_their_padding() {
        let b = [6, 0, 1, 0, 0xaa, 0xbb, 0, 0, 8, 0, 0x02, 0x80, 1, 2, 3, 4];
        let got: Vec<(u16, &[u8])> = attrs(&b).collect();
        assert_eq!(got, vec![(1, &[0xaa, 0xbb][..]), (2, &[1, 2, 3, 4][..])]);
    }

    /// This kernel's reply for this very thread: its pid field where the offsets say.
    #[test]
    fn this_kernels_struct_has_the_fields_where_expected() {
        // SAFETY: gettid has no preconditions.
        let tid = u32::try_from(unsafe { libc::gettid() }).unwrap();
        Taskstats::open().unwrap().cputime(tid).unwrap();
        let mut ts = Taskstats::open().unwrap();
        assert!(ts.cputime(u32::MAX).is_err(), "no such thread");
    }
}
