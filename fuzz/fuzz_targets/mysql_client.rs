//! Arbitrary bytes as a MySQL client connection's two directions (what the app wrote, what the
//! server sent back, its greeting first), cut into syscall-sized pieces of which only a prefix is
//! "captured", as the kernel side delivers them ([`drive_client`]). The parser must never panic,
//! and every call it reports must end no earlier than it started.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pytracer::db::MysqlConnection;
use pytracer_fuzz::{assert_calls_ordered, drive_client};

fuzz_target!(|data: &[u8]| {
    let calls = drive_client(&mut MysqlConnection::new(), data);
    assert_calls_ordered(&calls);
});
