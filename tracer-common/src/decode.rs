//! The agent's half of the records in `events`: a ring-buffer record's bytes, decoded into an
//! [`Event`] that borrows its payload. Next to the layouts so that a record and its decoding
//! change together; built only with the `user` feature (it needs `std`).
use core::mem::{offset_of, size_of};

use crate::events::{
    AcceptEvent, EventHeader, EventKind, ProcEvent, PyFrame, AF_INET, AF_INET6, DATA_HEADER_LEN, MAX_STACK_FRAMES,
    STACK_HEADER_LEN,
};

#[derive(Debug)]
pub enum Event<'a> {
    Accept {
        h: EventHeader,
        listen_fd: i32,
        addr: &'a [u8],
    },
    /// The process connected socket `h.fd` to `addr`; `local` is the socket's own address as
    /// the kernel had it at the connect's exit (None when it could not be read there).
    Connect {
        h: EventHeader,
        addr: &'a [u8],
        local: Option<(core::net::IpAddr, u16)>,
    },
    Read {
        h: EventHeader,
        data: &'a [u8],
        flags: u32,
    },
    Write {
        h: EventHeader,
        data: &'a [u8],
        flags: u32,
    },
    Close {
        h: EventHeader,
    },
    /// An outgoing socket failed: `h.ret` is the negated errno, or 0 for the peer's end of stream.
    SockError {
        h: EventHeader,
    },
    Fork {
        h: EventHeader,
        child: u32,
    },
    Exit {
        h: EventHeader,
    },
    GcPause {
        h: EventHeader,
    },
    GilWait {
        h: EventHeader,
    },
    Exec {
        h: EventHeader,
    },
    /// A Python stack, innermost frame first.
    Stack {
        h: EventHeader,
        trigger: u32,
        flags: u32,
        frames: Vec<PyFrame>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; the types are plain #[repr(C)] data, read unaligned.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The `i`-th u32 after the header (the fixed fields of data and stack records).
fn word_after_header(bytes: &[u8], i: usize) -> u32 {
    let at = size_of::<EventHeader>() + 4 * i;
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn local_of(ev: &AcceptEvent) -> Option<(core::net::IpAddr, u16)> {
    let a = ev.local_addr;
    let ip = match ev.local_family {
        AF_INET => core::net::IpAddr::from([a[0], a[1], a[2], a[3]]),
        AF_INET6 => core::net::IpAddr::from(a),
        _ => return None,
    };
    (ev.local_port != 0).then_some((ip, ev.local_port))
}

pub fn decode(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    let h: EventHeader = read(bytes)?;
    let kind = EventKind::try_from(h.kind).map_err(DecodeError::UnknownKind)?;
    Ok(match kind {
        EventKind::Accept => {
            let ev: AcceptEvent = read(bytes)?;
            let off = offset_of!(AcceptEvent, addr);
            let len = (ev.addr_len as usize).min(ev.addr.len());
            Event::Accept { h, listen_fd: ev.listen_fd, addr: &bytes[off..off + len] }
        }
        EventKind::Connect => {
            let ev: AcceptEvent = read(bytes)?;
            let off = offset_of!(AcceptEvent, addr);
            let len = (ev.addr_len as usize).min(ev.addr.len());
            Event::Connect { h, addr: &bytes[off..off + len], local: local_of(&ev) }
        }
        EventKind::Read | EventKind::Write => {
            if bytes.len() < DATA_HEADER_LEN {
                return Err(DecodeError::Short(bytes.len()));
            }
            let captured = word_after_header(bytes, 0) as usize;
            let flags = word_after_header(bytes, 1);
            let end = (DATA_HEADER_LEN + captured).min(bytes.len());
            let data = &bytes[DATA_HEADER_LEN..end];
            if kind == EventKind::Read {
                Event::Read { h, data, flags }
            } else {
                Event::Write { h, data, flags }
            }
        }
        EventKind::Close => Event::Close { h },
        EventKind::SockError => Event::SockError { h },
        EventKind::Fork => Event::Fork { h, child: read::<ProcEvent>(bytes)?.child },
        EventKind::Exit => Event::Exit { h },
        EventKind::GcPause => Event::GcPause { h },
        EventKind::GilWait => Event::GilWait { h },
        EventKind::Exec => Event::Exec { h },
        EventKind::Stack => {
            if bytes.len() < STACK_HEADER_LEN {
                return Err(DecodeError::Short(bytes.len()));
            }
            let (trigger, depth, flags) =
                (word_after_header(bytes, 0), word_after_header(bytes, 1) as usize, word_after_header(bytes, 2));
            let frames = bytes[STACK_HEADER_LEN..]
                .chunks_exact(size_of::<PyFrame>())
                .take(depth.min(MAX_STACK_FRAMES))
                .map(read::<PyFrame>)
                .collect::<Result<Vec<_>, _>>()?;
            Event::Stack { h, trigger, flags, frames }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EventKind) -> EventHeader {
        EventHeader { kind: kind as u32, tgid: 10, tid: 11, fd: 5, start_ns: 1, end_ns: 2, ret: 3 }
    }

    fn bytes<T>(v: &T) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref::<T>(v).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn data_record_is_as_long_as_its_capture() {
        let mut rec = bytes(&header(EventKind::Write));
        rec.extend(3u32.to_ne_bytes());
        rec.extend(0u32.to_ne_bytes());
        rec.extend(b"abc");
        match decode(&rec).unwrap() {
            Event::Write { h, data, .. } => assert_eq!((h.tgid, h.fd, data), (10, 5, &b"abc"[..])),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(decode(&[1, 2, 3]).unwrap_err(), DecodeError::Short(3));
        let mut h = header(EventKind::Read);
        h.kind = 99;
        assert_eq!(decode(&bytes(&h)).unwrap_err(), DecodeError::UnknownKind(99));
        assert!(decode(&bytes(&header(EventKind::Read))).is_err());
    }

    #[test]
    fn stack_record_carries_its_depth_of_frames() {
        let mut rec = bytes(&header(EventKind::Stack));
        for w in [crate::STACK_TRIGGER_CLIENT_WRITE, 2, 0, 0] {
            rec.extend(w.to_ne_bytes());
        }
        for code in [7u64, 8] {
            rec.extend(bytes(&PyFrame { code, name: 1, first_line: 2, instr: 0 }));
        }
        match decode(&rec).unwrap() {
            Event::Stack { trigger, frames, .. } => {
                assert_eq!(trigger, crate::STACK_TRIGGER_CLIENT_WRITE);
                assert_eq!(frames.iter().map(|f| f.code).collect::<Vec<_>>(), [7, 8]);
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn enums_convert_from_their_numbers_and_back() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::try_from(k as u32), Ok(k));
        }
        assert_eq!(EventKind::try_from(0), Err(0));
        assert_eq!(crate::DropReason::try_from(4), Ok(crate::DropReason::StackThrottled));
        assert_eq!(crate::DropReason::StackThrottled.name(), "stack_throttled");
        assert_eq!(crate::DROP_REASONS, 7);
    }
}
