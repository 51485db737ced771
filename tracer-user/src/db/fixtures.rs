//! Bytes captured from real servers: psycopg 3.3.9 (libpq) against PostgreSQL 15, and redis-py
//! 8.1.0 against Debian's redis-server 7.0.15, with
//! `strace -f -e trace=connect,sendto,recvfrom,write,read,close -s 70000 -xx`; one constant per
//! syscall, in the order they happened on the connection. `W` constants are client writes, `R`
//! reads. Syscalls that moved more than the kernel side captures (4096 bytes) keep only that
//! prefix, with the real length in a `_LEN` constant, as the agent would see them.
#![allow(dead_code)]

use super::{Call, PgConnection, Piece, RedisConnection};

/// Which way a syscall moved bytes: a client write or read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    W,
    R,
}
pub use Dir::{R, W};

/// One syscall: direction, captured bytes, bytes moved.
pub type Sys = (Dir, &'static [u8], u64);

pub fn full(d: Dir, b: &'static [u8]) -> Sys {
    (d, b, b.len() as u64)
}

/// A small deterministic generator: the tests' cut points and junk bytes repeat run to run.
pub fn lcg(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

/// The two connection parsers, as the tests drive them.
pub trait Client {
    fn write(&mut self, p: &Piece) -> Vec<Call>;
    fn read(&mut self, p: &Piece) -> Vec<Call>;
    fn close(&mut self) -> Vec<Call>;
    fn feed(&mut self, d: Dir, p: &Piece) -> Vec<Call> {
        match d {
            W => self.write(p),
            R => self.read(p),
        }
    }
}

impl Client for PgConnection {
    fn write(&mut self, p: &Piece) -> Vec<Call> {
        self.on_write(p)
    }
    fn read(&mut self, p: &Piece) -> Vec<Call> {
        self.on_read(p)
    }
    fn close(&mut self) -> Vec<Call> {
        self.on_close()
    }
}

impl Client for RedisConnection {
    fn write(&mut self, p: &Piece) -> Vec<Call> {
        self.on_write(p)
    }
    fn read(&mut self, p: &Piece) -> Vec<Call> {
        self.on_read(p)
    }
    fn close(&mut self) -> Vec<Call> {
        self.on_close()
    }
}

/// Every syscall of `session` cut into pieces at random places (a piece that starts past the
/// capture has no data), then the close: the calls that came out.
pub fn replay_with_random_cuts(c: &mut impl Client, session: &[Sys], seed: u64) -> Vec<Call> {
    let mut rng = seed;
    let mut calls = Vec::new();
    let mut t = 0;
    for &(d, data, len) in session {
        let mut off = 0u64;
        while off < len {
            let end = (off + 1 + lcg(&mut rng) % 700).min(len);
            let (a, b) = ((off as usize).min(data.len()), (end as usize).min(data.len()));
            t += 10;
            calls.extend(c.feed(d, &Piece { data: &data[a..b], len: end - off, start_ns: t, end_ns: t + 5 }));
            off = end;
        }
    }
    calls.extend(c.close());
    calls
}

/// `start` whole, then arbitrary bytes in both directions (now and then starting with one of
/// `type_bytes`, or claiming more bytes than captured), then the close: must not panic.
pub fn feed_garbage(c: &mut impl Client, start: &[Sys], seed: u64) {
    let mut rng = seed;
    for &(d, data, len) in start {
        c.feed(d, &Piece { data, len, start_ns: 0, end_ns: 1 });
    }
    for _ in 0..20 {
        let n = (lcg(&mut rng) % 64) as usize;
        let mut junk: Vec<u8> = (0..n).map(|_| lcg(&mut rng) as u8).collect();
        if lcg(&mut rng).is_multiple_of(3) && !junk.is_empty() {
            // Plausible-looking type bytes now and then.
            let types = b"QPBSXZCE*$+-:1";
            junk[0] = types[(lcg(&mut rng) % types.len() as u64) as usize];
        }
        let extra = if lcg(&mut rng).is_multiple_of(4) { lcg(&mut rng) % 100_000 } else { 0 };
        let p = Piece { data: &junk, len: junk.len() as u64 + extra, start_ns: 0, end_ns: 1 };
        let d = if lcg(&mut rng).is_multiple_of(2) { W } else { R };
        c.feed(d, &p);
    }
    c.close();
}

pub const CAPTURE: usize = 4096;

/// W 8 bytes: SSLRequest (libpq's sslmode=prefer over TCP).
pub const PG_SSL_REQUEST: &[u8] = b"\0\0\0\x08\x04\xd2\x16/";

/// R 1 bytes: the server's one-byte answer: no TLS.
pub const PG_SSL_NO: &[u8] = b"N";

/// W 36 bytes: StartupMessage: user=postgres database=app.
pub const PG_STARTUP: &[u8] = b"\0\0\0$\0\x03\0\0user\0postgres\0database\0app\0\0";

/// R 410 bytes: AuthenticationOk, ParameterStatus x N, BackendKeyData, ReadyForQuery.
pub const PG_STARTUP_REPLY: &[u8] = b"R\0\0\0\x08\0\0\0\0S\0\0\0\x16application_name\0\0S\0\0\0\x19client_encoding\0UTF8\0S\0\0\0\x17DateStyle\0ISO, MDY\0S\0\0\0&default_transaction_read_only\0off\0S\0\0\0\x17in_hot_standby\0off\0S\0\0\0\x19integer_datetimes\0on\0S\0\0\0\x1bIntervalStyle\0postgres\0S\0\0\0\x14is_superuser\0on\0S\0\0\0\x19server_encoding\0UTF8\0S\0\0\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\0S\0\0\0#session_authorization\0postgres\0S\0\0\0#standard_conforming_strings\0on\0S\0\0\0\x15TimeZone\0Etc/UTC\0K\0\0\0\x0c\0\x006\x1cL\x0f\x9b\x85Z\0\0\0\x05I";

/// W 53 bytes: conn.execute("SELECT count(*) FROM items WHERE name <> 'gone'", prepare=False): Query.
pub const PG_SIMPLE_QUERY: &[u8] = b"Q\0\0\x004SELECT count(*) FROM items WHERE name <> 'gone'\0";

/// R 63 bytes: RowDescription, DataRow, CommandComplete SELECT 1, ReadyForQuery.
pub const PG_SIMPLE_REPLY: &[u8] = b"T\0\0\0\x1e\0\x01count\0\0\0\0\0\0\0\0\0\0\x14\0\x08\xff\xff\xff\xff\0\0D\0\0\0\x0b\0\x01\0\0\0\x013C\0\0\0\rSELECT 1\0Z\0\0\0\x05I";

/// W 94 bytes: cur.execute("SELECT name FROM items WHERE id = %s", (1,)): Parse, Bind, Describe, Execute, Sync in one write.
pub const PG_EXTENDED: &[u8] = b"P\0\0\x000\0SELECT name FROM items WHERE id = $1\0\0\x01\0\0\0\x15B\0\0\0\x16\0\0\0\x01\0\x01\0\x01\0\0\0\x02\0\x01\0\x01\0\0D\0\0\0\x06P\0E\0\0\0\x09\0\0\0\0\0S\0\0\0\x04";

/// R 76 bytes: ParseComplete, BindComplete, RowDescription, DataRow apple, CommandComplete, ReadyForQuery.
pub const PG_EXTENDED_REPLY: &[u8] = b"1\0\0\0\x042\0\0\0\x04T\0\0\0\x1d\0\x01name\0\0\0@\x01\0\x02\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0D\0\0\0\x0f\0\x01\0\0\0\x05appleC\0\0\0\rSELECT 1\0Z\0\0\0\x05I";

/// W 27 bytes: cur.execute("SELEC name FROM items"): Query (no parameters: simple protocol).
pub const PG_BAD_QUERY: &[u8] = b"Q\0\0\0\x1aSELEC name FROM items\0";

/// R 100 bytes: ErrorResponse 42601 syntax error, ReadyForQuery.
pub const PG_BAD_QUERY_REPLY: &[u8] = b"E\0\0\0]SERROR\0VERROR\0C42601\0Msyntax error at or near \"SELEC\"\0P1\0Fscan.l\0L1188\0Rscanner_yyerror\0\0Z\0\0\0\x05I";

/// W 79 bytes: prepare=True: Parse of statement _pg3_0, Sync.
pub const PG_PREPARE: &[u8] =
    b"P\0\0\0I_pg3_0\0SELECT name FROM items WHERE id = $1 AND name <> $2\0\0\x02\0\0\0\x15\0\0\0\0S\0\0\0\x04";

/// R 11 bytes: ParseComplete, ReadyForQuery.
pub const PG_PREPARE_REPLY: &[u8] = b"1\0\0\0\x04Z\0\0\0\x05I";

/// W 58 bytes: Bind _pg3_0 (2, 'x'), Describe, Execute, Sync: no Parse.
pub const PG_BIND_PREPARED: &[u8] = b"B\0\0\0#\0_pg3_0\0\0\x02\0\x01\0\0\0\x02\0\0\0\x02\0\x02\0\0\0\x01x\0\x01\0\0D\0\0\0\x06P\0E\0\0\0\x09\0\0\0\0\0S\0\0\0\x04";

/// R 72 bytes: BindComplete, RowDescription, DataRow banana, CommandComplete, ReadyForQuery.
pub const PG_BIND_PREPARED_REPLY: &[u8] = b"2\0\0\0\x04T\0\0\0\x1d\0\x01name\0\0\0@\x01\0\x02\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0D\0\0\0\x10\0\x01\0\0\0\x06bananaC\0\0\0\rSELECT 1\0Z\0\0\0\x05I";

/// W 58 bytes: Bind _pg3_0 (3, 'y'), Describe, Execute, Sync.
pub const PG_BIND_PREPARED_2: &[u8] = b"B\0\0\0#\0_pg3_0\0\0\x02\0\x01\0\0\0\x02\0\0\0\x02\0\x03\0\0\0\x01y\0\x01\0\0D\0\0\0\x06P\0E\0\0\0\x09\0\0\0\0\0S\0\0\0\x04";

/// R 72 bytes: BindComplete, RowDescription, DataRow cherry, CommandComplete, ReadyForQuery.
pub const PG_BIND_PREPARED_2_REPLY: &[u8] = b"2\0\0\0\x04T\0\0\0\x1d\0\x01name\0\0\0@\x01\0\x02\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0D\0\0\0\x10\0\x01\0\0\0\x06cherryC\0\0\0\rSELECT 1\0Z\0\0\0\x05I";

/// W 20079 bytes: INSERT INTO items VALUES ($1, $2) with a 20000-byte text: Parse and a Bind larger than the capture.
pub const PG_LARGE_INSERT_LEN: u64 = 20079;
pub const PG_LARGE_INSERT: &[u8] = b"P\0\0\x001\0INSERT INTO items VALUES ($1, $2)\0\0\x02\0\0\0\x15\0\0\0\0B\0\0N<\0\0\0\x02\0\x01\0\0\0\x02\0\0\0\x02\0\n\0\0N xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// W 22 bytes: the same call's second write: Describe, Execute, Sync.
pub const PG_LARGE_INSERT_TAIL: &[u8] = b"D\0\0\0\x06P\0E\0\0\0\x09\0\0\0\0\0S\0\0\0\x04";

/// R 37 bytes: ParseComplete, BindComplete, NoData, CommandComplete INSERT 0 1, ReadyForQuery.
pub const PG_LARGE_INSERT_REPLY: &[u8] = b"1\0\0\0\x042\0\0\0\x04n\0\0\0\x04C\0\0\0\x0fINSERT 0 1\0Z\0\0\0\x05I";

/// W 50 bytes: Query SELECT length(name) FROM items WHERE id = 10.
pub const PG_LENGTH_QUERY: &[u8] = b"Q\0\0\x001SELECT length(name) FROM items WHERE id = 10\0";

/// R 68 bytes: RowDescription, DataRow 20000, CommandComplete, ReadyForQuery.
pub const PG_LENGTH_REPLY: &[u8] = b"T\0\0\0\x1f\0\x01length\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0D\0\0\0\x0f\0\x01\0\0\0\x0520000C\0\0\0\rSELECT 1\0Z\0\0\0\x05I";

/// W 5 bytes: Terminate.
pub const PG_TERMINATE: &[u8] = b"X\0\0\0\x04";

/// W 22 bytes: HELLO 3 (redis-py 8 speaks RESP3).
pub const REDIS_HELLO: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";

/// R 145 bytes: a RESP3 map.
pub const REDIS_HELLO_REPLY: &[u8] = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:4\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";

/// W 95 bytes: CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type internal-ip.
pub const REDIS_MAINT: &[u8] = b"*5\r\n$6\r\nCLIENT\r\n$19\r\nMAINT_NOTIFICATIONS\r\n$2\r\nON\r\n$20\r\nmoving-endpoint-type\r\n$11\r\ninternal-ip\r\n";

/// R 65 bytes: -ERR unknown subcommand.
pub const REDIS_MAINT_REPLY: &[u8] = b"-ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.\r\n";

/// W 57 bytes: CLIENT SETINFO LIB-NAME redis-py.
pub const REDIS_SETINFO_NAME: &[u8] = b"*4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$8\r\nLIB-NAME\r\n$8\r\nredis-py\r\n";

/// R 53 bytes: -ERR (Redis 7.0 has no SETINFO).
pub const REDIS_SETINFO_NAME_REPLY: &[u8] = b"-ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.\r\n";

/// W 53 bytes: CLIENT SETINFO LIB-VER 8.1.0.
pub const REDIS_SETINFO_VER: &[u8] = b"*4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$7\r\nLIB-VER\r\n$5\r\n8.1.0\r\n";

/// R 53 bytes: -ERR.
pub const REDIS_SETINFO_VER_REPLY: &[u8] = b"-ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.\r\n";

/// W 52 bytes: SET item:1 apple EX 60.
pub const REDIS_SET: &[u8] = b"*5\r\n$3\r\nSET\r\n$6\r\nitem:1\r\n$5\r\napple\r\n$2\r\nEX\r\n$2\r\n60\r\n";

/// R 5 bytes: +OK.
pub const REDIS_SET_REPLY: &[u8] = b"+OK\r\n";

/// W 25 bytes: GET item:1.
pub const REDIS_GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$6\r\nitem:1\r\n";

/// R 11 bytes: bulk string apple.
pub const REDIS_GET_REPLY: &[u8] = b"$5\r\napple\r\n";

/// W 26 bytes: GET missing.
pub const REDIS_GET_MISSING: &[u8] = b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n";

/// R 3 bytes: RESP3 null.
pub const REDIS_GET_MISSING_REPLY: &[u8] = b"_\r\n";

/// W 71 bytes: pipeline(transaction=False): INCRBY hits:1 1, EXPIRE hits:1 60 in one write.
pub const REDIS_PIPELINE: &[u8] =
    b"*3\r\n$6\r\nINCRBY\r\n$6\r\nhits:1\r\n$1\r\n1\r\n*3\r\n$6\r\nEXPIRE\r\n$6\r\nhits:1\r\n$2\r\n60\r\n";

/// R 8 bytes: two integers in one read.
pub const REDIS_PIPELINE_REPLY: &[u8] = b":1\r\n:1\r\n";

/// W 49 bytes: HSET h a 1 b 2.
pub const REDIS_HSET: &[u8] = b"*6\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n";

/// R 4 bytes: :2.
pub const REDIS_HSET_REPLY: &[u8] = b":2\r\n";

/// W 51 bytes: MGET item:1 missing hits:1.
pub const REDIS_MGET: &[u8] = b"*4\r\n$4\r\nMGET\r\n$6\r\nitem:1\r\n$7\r\nmissing\r\n$6\r\nhits:1\r\n";

/// R 25 bytes: array of bulk, null, bulk.
pub const REDIS_MGET_REPLY: &[u8] = b"*3\r\n$5\r\napple\r\n_\r\n$1\r\n1\r\n";

/// W 34 bytes: LPUSH item:1 z (a string key).
pub const REDIS_LPUSH: &[u8] = b"*3\r\n$5\r\nLPUSH\r\n$6\r\nitem:1\r\n$1\r\nz\r\n";

/// R 68 bytes: -WRONGTYPE.
pub const REDIS_LPUSH_REPLY: &[u8] = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

/// W 30 bytes: SET big <10000 bytes>: the array and bulk headers.
pub const REDIS_SET_BIG_HEAD: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$10000\r\n";

/// W 10000 bytes: the value, larger than the capture.
pub const REDIS_SET_BIG_VALUE_LEN: u64 = 10000;
pub const REDIS_SET_BIG_VALUE: &[u8] = b"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy";

/// W 2 bytes: the bulk's CRLF.
pub const REDIS_SET_BIG_CRLF: &[u8] = b"\r\n";

/// R 5 bytes: +OK.
pub const REDIS_SET_BIG_REPLY: &[u8] = b"+OK\r\n";

/// W 22 bytes: GET big.
pub const REDIS_GET_BIG: &[u8] = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";

/// R 10010 bytes: a 10000-byte bulk string, larger than the capture.
pub const REDIS_GET_BIG_REPLY_LEN: u64 = 10010;
pub const REDIS_GET_BIG_REPLY: &[u8] = b"$10000\r\nyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy";

/// W 29 bytes: DEL big h.
pub const REDIS_DEL: &[u8] = b"*3\r\n$3\r\nDEL\r\n$3\r\nbig\r\n$1\r\nh\r\n";

/// R 4 bytes: :2.
pub const REDIS_DEL_REPLY: &[u8] = b":2\r\n";
