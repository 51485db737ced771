//! The agent's own messages, through the `log` facade, on standard error. Spans go to standard
//! output or a file, so status lines never mix with them. What a user must see (ready, what is
//! traced, attach errors, the exit summary) is at `info` and above, the default level; `debug`
//! and `trace` add the reasoning behind each decision. `--log-level` wins over `RUST_LOG`, which
//! wins over the default and may name modules (`RUST_LOG=pytracer::agent=debug`).
use std::io::Write;

use log::{Level, LevelFilter};

/// Installs the logger; call once, before anything logs.
pub fn init(level: Option<LevelFilter>) {
    let mut b = env_logger::Builder::new();
    b.filter_level(LevelFilter::Info);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    if let Some(l) = level {
        b.filter_level(l);
    }
    b.target(env_logger::Target::Stderr).format(|out, r| match r.level() {
        Level::Info => writeln!(out, "pytracer: {}", r.args()),
        Level::Warn => writeln!(out, "pytracer: warning: {}", r.args()),
        Level::Error => writeln!(out, "pytracer: error: {}", r.args()),
        Level::Debug | Level::Trace => {
            writeln!(out, "pytracer: {}: {}: {}", r.level().as_str().to_ascii_lowercase(), r.target(), r.args())
        }
    });
    // A second init (tests) keeps the first logger.
    let _ = b.try_init();
}

/// `--log-level`'s values.
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse().map_err(|_| format!("`{s}` is not a log level: use off, error, warn, info, debug or trace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_bad_ones_say_which_exist() {
        assert_eq!(parse_level("debug"), Ok(LevelFilter::Debug));
        assert_eq!(parse_level("WARN"), Ok(LevelFilter::Warn));
        assert!(parse_level("loud").unwrap_err().contains("use off, error, warn, info, debug or trace"));
    }
}
