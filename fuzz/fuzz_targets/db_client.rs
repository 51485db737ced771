//! Arbitrary bytes as a database client connection's two directions (what the app wrote to
//! PostgreSQL or Redis, what it read back), cut into syscall-sized pieces of which only a prefix
//! is "captured", as the kernel side delivers them ([`drive_client`]). The parsers must never
//! panic, and every call they report must end no earlier than it started.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pytracer::calls::ClientProtocol;
use pytracer::db::{PgConnection, RedisConnection};
use pytracer_fuzz::{assert_calls_ordered, drive_client};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    // The first byte picks the parser: odd Redis, even PostgreSQL, followed from its start or,
    // with bit 1 set, from the middle of its life (a connection adopted at attach).
    let mut client: Box<dyn ClientProtocol> = match (which & 1, which & 2) {
        (1, _) => Box::new(RedisConnection::new()),
        (_, 0) => Box::new(PgConnection::new()),
        _ => Box::new(PgConnection::mid_stream()),
    };
    let calls = drive_client(client.as_mut(), rest);
    assert_calls_ordered(&calls);
});
