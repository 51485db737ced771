//! What the fuzz targets share: arbitrary bytes read as a client connection's two directions.
use pytracer::calls::{Call, ClientProtocol};
use pytracer::piece::Piece;

/// Feeds `data` to `client` as a connection's syscalls, cut into pieces of which only a prefix
/// is "captured", as the kernel side delivers them, then closes it; every call it reported.
///
/// Each piece is a control byte (bit 0: a read, else a write; bit 7: only half the bytes
/// captured; bit 6: the syscall moved `(ctl & 0x3e) * 1000` bytes more than the piece holds),
/// a length byte (the piece holds one more byte than it says), then the bytes.
pub fn drive_client(client: &mut dyn ClientProtocol, mut data: &[u8]) -> Vec<Call> {
    let mut t = 0u64;
    let mut calls = Vec::new();
    while data.len() >= 2 {
        let (ctl, len) = (data[0], usize::from(data[1]) + 1);
        data = &data[2..];
        let (bytes, tail) = data.split_at(len.min(data.len()));
        data = tail;
        let captured = if ctl & 0x80 != 0 { &bytes[..bytes.len() / 2] } else { bytes };
        let extra = if ctl & 0x40 != 0 { u64::from(ctl & 0x3e) * 1000 } else { 0 };
        let piece = Piece { data: captured, len: bytes.len() as u64 + extra, start_ns: t, end_ns: t + 1 };
        t += 2;
        let write = ctl & 1 == 0;
        calls.extend(if write { client.on_write(&piece) } else { client.on_read(&piece) });
    }
    calls.extend(client.on_close());
    calls
}

/// Every call ends no earlier than it started.
pub fn assert_calls_ordered(calls: &[Call]) {
    for c in calls {
        assert!(c.end_ns() >= c.start_ns(), "{c:?}");
    }
}
