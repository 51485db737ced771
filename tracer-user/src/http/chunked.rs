//! Chunked transfer coding (RFC 9112 section 7.1) over captured pieces: size lines and trailers
//! need captured bytes, chunk data is skipped by count.
use crate::piece::Piece;

#[derive(Debug)]
pub enum ChunkStep {
    /// Consumed the piece; n data bytes so far in it.
    More(u64),
    /// The last chunk and trailers ended; n data bytes in this piece.
    Done(u64),
    /// Framing bytes were not captured.
    Lost,
}

#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

impl ChunkedDecoder {
    pub fn feed(&mut self, piece: &Piece, pos: &mut u64) -> ChunkStep {
        let mut data_bytes = 0;
        while *pos < piece.len {
            if let ChunkState::Data(left) = self.state {
                let take = left.min(piece.len - *pos);
                *pos += take;
                data_bytes += take;
                self.state = if left == take { ChunkState::DataEnd } else { ChunkState::Data(left - take) };
                continue;
            }
            let Some(&b) = piece.data.get(*pos as usize) else { return ChunkStep::Lost };
            *pos += 1;
            if b != b'\n' {
                if self.line.len() < 1024 {
                    self.line.push(b);
                }
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            match self.state {
                ChunkState::Size => {
                    let hex = line.split(|&c| c == b';').next().unwrap_or_default();
                    let Some(size) = std::str::from_utf8(hex).ok().and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                    else {
                        return ChunkStep::Lost;
                    };
                    self.state = if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                }
                ChunkState::DataEnd => self.state = ChunkState::Size,
                ChunkState::Trailer => {
                    if line.is_empty() {
                        return ChunkStep::Done(data_bytes);
                    }
                }
                ChunkState::Data(_) => unreachable!(),
            }
        }
        ChunkStep::More(data_bytes)
    }
}
