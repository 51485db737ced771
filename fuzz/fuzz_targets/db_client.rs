//! Arbitrary bytes as a database client connection's two directions (what the app wrote to
//! PostgreSQL or Redis, what it read back), cut into syscall-sized pieces of which only a prefix
//! is "captured", as the kernel side delivers them. The parsers must never panic, and every call
//! they report must end no earlier than it started.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pytracer::calls::{Call, ClientProtocol};
use pytracer::db::{PgConnection, RedisConnection};
use pytracer::piece::Piece;

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut rest)) = data.split_first() else { return };
    // The first byte picks the parser: odd Redis, even PostgreSQL, followed from its start or,
    // with bit 1 set, from the middle of its life (a connection adopted at attach).
    let mut client: Box<dyn ClientProtocol> = match (which & 1, which & 2) {
        (1, _) => Box::new(RedisConnection::new()),
        (_, 0) => Box::new(PgConnection::new()),
        _ => Box::new(PgConnection::mid_stream()),
    };
    let mut t = 0u64;
    let mut calls: Vec<Call> = Vec::new();
    // Each piece: a control byte (direction, capture cut, extra length), a length byte, the bytes.
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], rest[1] as usize + 1);
        rest = &rest[2..];
        let (bytes, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let captured = if ctl & 0x80 != 0 { &bytes[..bytes.len() / 2] } else { bytes };
        let extra = if ctl & 0x40 != 0 { (ctl & 0x3e) as u64 * 1000 } else { 0 };
        let piece = Piece { data: captured, len: bytes.len() as u64 + extra, start_ns: t, end_ns: t + 1 };
        t += 2;
        let write = ctl & 1 == 0;
        calls.extend(if write { client.on_write(&piece) } else { client.on_read(&piece) });
    }
    calls.extend(client.on_close());
    for c in calls {
        assert!(c.end_ns() >= c.start_ns(), "{c:?}");
    }
});
