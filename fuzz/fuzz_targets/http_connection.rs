//! Arbitrary bytes as a connection's two directions, cut into syscall-sized pieces of which only
//! a prefix is "captured", as the kernel side delivers them. The parser must never panic, and
//! every exchange it reports must be consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pytracer::http::connection::Connection;
use pytracer::piece::Piece;

fuzz_target!(|data: &[u8]| {
    let mut c = Connection::default();
    let mut rest = data;
    let mut t = 0u64;
    // Each piece: a control byte (direction, capture cut), a length byte, then the bytes.
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], rest[1] as usize + 1);
        rest = &rest[2..];
        let take = len.min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        rest = tail;
        let captured = if ctl & 0x80 != 0 { &bytes[..bytes.len() / 2] } else { bytes };
        // Some pieces moved more bytes than were captured.
        let extra = if ctl & 0x40 != 0 { (ctl & 0x3f) as u64 * 1000 } else { 0 };
        let piece = Piece { data: captured, len: bytes.len() as u64 + extra, start_ns: t, end_ns: t + 1 };
        t += 2;
        let out = if ctl & 1 == 0 { c.on_read(&piece) } else { c.on_write(&piece) };
        for x in out.finished {
            assert!(x.end_ns >= x.start_ns || x.incomplete.is_some());
        }
    }
    for x in c.on_close().finished {
        assert!(x.incomplete.is_some() || x.response.is_some());
    }
});
