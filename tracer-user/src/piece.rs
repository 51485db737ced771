//! The unit every parser consumes: one read or write of a traced socket, as the kernel reported it.
//! Neutral ground between the kernel records, the HTTP parsers and the client protocols.

/// One read or write as the kernel reported it.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    /// The captured prefix of the bytes moved.
    pub data: &'a [u8],
    /// How many bytes the syscall really moved (>= data.len()).
    pub len: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}
