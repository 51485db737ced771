//! Arbitrary bytes as a uwsgi request packet, complete or cut: never a panic, and a parsed
//! packet never claims more bytes than it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pytracer::http::uwsgi;

fuzz_target!(|data: &[u8]| {
    for partial in [false, true] {
        if let Ok(Some((_, n))) = uwsgi::parse(data, partial) {
            assert!(n <= data.len());
        }
    }
});
