//! What is known of Redis commands: which take a subcommand, where their keys are, and the
//! name a call is given.

/// Elements kept of each command as it is read: the name, a container's subcommand, and EVAL's
/// numkeys.
pub(super) const KEPT: usize = 3;

/// Commands whose first argument is a subcommand: `CLIENT SETINFO`, `CONFIG GET`, ...
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY", "MODULE", "OBJECT",
    "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Where a command's keys are, counted in arguments after the command name.
#[derive(Clone, Copy)]
enum Keys {
    /// No key.
    None,
    /// Exactly one key (the first argument).
    One,
    /// Every argument is a key.
    All,
    /// Every argument but the last (a timeout, or a destination).
    AllButLast,
    /// Every other argument, from the first (key value key value ...).
    Pairs,
    /// `n` arguments are keys.
    Fixed(usize),
    /// A numkeys argument at this index (0-based among the arguments) says how many keys follow.
    NumKeysAt(usize),
}

/// Key positions of common commands. Unknown commands have no key count.
const KEY_TABLE: &[(&str, Keys)] = &[
    ("GET", Keys::One),
    ("SET", Keys::One),
    ("SETNX", Keys::One),
    ("SETEX", Keys::One),
    ("PSETEX", Keys::One),
    ("GETSET", Keys::One),
    ("GETDEL", Keys::One),
    ("GETEX", Keys::One),
    ("APPEND", Keys::One),
    ("STRLEN", Keys::One),
    ("INCR", Keys::One),
    ("INCRBY", Keys::One),
    ("INCRBYFLOAT", Keys::One),
    ("DECR", Keys::One),
    ("DECRBY", Keys::One),
    ("DEL", Keys::All),
    ("UNLINK", Keys::All),
    ("EXISTS", Keys::All),
    ("TOUCH", Keys::All),
    ("WATCH", Keys::All),
    ("MGET", Keys::All),
    ("MSET", Keys::Pairs),
    ("MSETNX", Keys::Pairs),
    ("EXPIRE", Keys::One),
    ("PEXPIRE", Keys::One),
    ("EXPIREAT", Keys::One),
    ("PEXPIREAT", Keys::One),
    ("PERSIST", Keys::One),
    ("TTL", Keys::One),
    ("PTTL", Keys::One),
    ("TYPE", Keys::One),
    ("RENAME", Keys::Fixed(2)),
    ("RENAMENX", Keys::Fixed(2)),
    ("COPY", Keys::Fixed(2)),
    ("HGET", Keys::One),
    ("HSET", Keys::One),
    ("HSETNX", Keys::One),
    ("HMSET", Keys::One),
    ("HMGET", Keys::One),
    ("HDEL", Keys::One),
    ("HGETALL", Keys::One),
    ("HEXISTS", Keys::One),
    ("HINCRBY", Keys::One),
    ("HKEYS", Keys::One),
    ("HVALS", Keys::One),
    ("HLEN", Keys::One),
    ("LPUSH", Keys::One),
    ("RPUSH", Keys::One),
    ("LPOP", Keys::One),
    ("RPOP", Keys::One),
    ("LRANGE", Keys::One),
    ("LLEN", Keys::One),
    ("LINDEX", Keys::One),
    ("LREM", Keys::One),
    ("LTRIM", Keys::One),
    ("BLPOP", Keys::AllButLast),
    ("BRPOP", Keys::AllButLast),
    ("RPOPLPUSH", Keys::Fixed(2)),
    ("LMOVE", Keys::Fixed(2)),
    ("SADD", Keys::One),
    ("SREM", Keys::One),
    ("SMEMBERS", Keys::One),
    ("SISMEMBER", Keys::One),
    ("SCARD", Keys::One),
    ("SPOP", Keys::One),
    ("SINTER", Keys::All),
    ("SUNION", Keys::All),
    ("SDIFF", Keys::All),
    ("ZADD", Keys::One),
    ("ZREM", Keys::One),
    ("ZSCORE", Keys::One),
    ("ZINCRBY", Keys::One),
    ("ZCARD", Keys::One),
    ("ZRANGE", Keys::One),
    ("ZRANGEBYSCORE", Keys::One),
    ("ZREVRANGE", Keys::One),
    ("ZRANK", Keys::One),
    ("XADD", Keys::One),
    ("XLEN", Keys::One),
    ("XRANGE", Keys::One),
    ("PFADD", Keys::One),
    ("PFCOUNT", Keys::All),
    ("EVAL", Keys::NumKeysAt(1)),
    ("EVALSHA", Keys::NumKeysAt(1)),
    ("FCALL", Keys::NumKeysAt(1)),
    ("PING", Keys::None),
    ("ECHO", Keys::None),
    ("HELLO", Keys::None),
    ("AUTH", Keys::None),
    ("SELECT", Keys::None),
    ("INFO", Keys::None),
    ("DBSIZE", Keys::None),
    ("FLUSHDB", Keys::None),
    ("FLUSHALL", Keys::None),
    ("MULTI", Keys::None),
    ("EXEC", Keys::None),
    ("DISCARD", Keys::None),
    ("UNWATCH", Keys::None),
    ("QUIT", Keys::None),
    ("PUBLISH", Keys::None),
];

/// How many keys a command with `argc` elements (name included) names; None when unknown.
pub fn key_count(command: &str, argc: usize, numkeys: Option<u64>) -> Option<u64> {
    let (_, keys) = KEY_TABLE.iter().find(|(name, _)| *name == command)?;
    let n_args = argc.saturating_sub(1) as u64;
    Some(match *keys {
        Keys::None => 0,
        Keys::One => n_args.min(1),
        Keys::All => n_args,
        Keys::AllButLast => n_args.saturating_sub(1),
        Keys::Pairs => n_args / 2,
        Keys::Fixed(n) => n_args.min(n as u64),
        Keys::NumKeysAt(_) => numkeys?.min(n_args),
    })
}

/// A command as written: its name, subcommand for containers, and argument count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Command {
    /// Upper-case; `CLIENT SETINFO` for container commands.
    pub(super) name: String,
    pub(super) argc: usize,
    pub(super) keys: Option<u64>,
    pub(super) start_ns: u64,
}

impl Command {
    /// The command whose first elements (at most [`KEPT`], each cut to the bytes kept) are
    /// `elems`, of `argc` elements in all.
    pub(super) fn new(elems: &[Vec<u8>], argc: usize, start_ns: u64) -> Command {
        let word = |i: usize| elems.get(i).map(|e| String::from_utf8_lossy(e).to_ascii_uppercase());
        let mut name = word(0).unwrap_or_default();
        if CONTAINERS.contains(&name.as_str()) {
            if let Some(sub) = word(1).filter(|s| !s.is_empty()) {
                name = format!("{name} {sub}");
            }
        }
        let numkeys = KEY_TABLE.iter().find(|(n, _)| *n == name).and_then(|(_, k)| match k {
            Keys::NumKeysAt(i) => word(*i + 1).and_then(|w| w.parse().ok()),
            _ => None,
        });
        let keys = key_count(&name, argc, numkeys);
        Command { name, argc, keys, start_ns }
    }
}
