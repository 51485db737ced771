//! Arbitrary bytes as a MySQL client connection's two directions (what the app wrote, what the
//! server sent back, its greeting first), cut into syscall-sized pieces of which only a prefix is
//! "captured", as the kernel side delivers them. The parser must never panic, and every call it
//! reports must end no earlier than it started.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pytracer::calls::{Call, ClientProtocol};
use pytracer::db::MysqlConnection;
use pytracer::piece::Piece;

fuzz_target!(|data: &[u8]| {
    let mut client = MysqlConnection::new();
    let mut rest = data;
    let mut t = 0u64;
    let mut calls: Vec<Call> = Vec::new();
    // Each piece: a control byte (direction, capture cut, extra length), a length byte, the bytes.
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], rest[1] as usize + 1);
        rest = &rest[2..];
        let (bytes, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let captured = if ctl & 0x80 != 0 { &bytes[..bytes.len() / 2] } else { bytes };
        let extra = if ctl & 0x40 != 0 { u64::from(ctl & 0x3e) * 1000 } else { 0 };
        let piece = Piece { data: captured, len: bytes.len() as u64 + extra, start_ns: t, end_ns: t + 1 };
        t += 2;
        let write = ctl & 1 == 0;
        calls.extend(if write {
            ClientProtocol::on_write(&mut client, &piece)
        } else {
            ClientProtocol::on_read(&mut client, &piece)
        });
    }
    calls.extend(ClientProtocol::on_close(&mut client));
    for c in calls {
        assert!(c.end_ns() >= c.start_ns(), "{c:?}");
    }
});
