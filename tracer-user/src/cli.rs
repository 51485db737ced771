//! The command line. Status goes to stderr; spans (and `discover --json`) go to stdout.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pytracer_config::Config;

use crate::agent::{self, Options, Targets};
use crate::discovery;
use crate::export::otlp;

#[derive(Debug, Parser)]
#[command(name = "pytracer", version, about = "Zero-touch tracing of Python web servers (Gunicorn, uWSGI) with eBPF", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How much the agent says on standard error: off, error, warn, info (the default), debug or
    /// trace. Wins over RUST_LOG, which may also name modules (RUST_LOG=pytracer::agent=debug).
    #[arg(long, global = true, value_name = "LEVEL", value_parser = crate::logging::parse_level)]
    pub log_level: Option<log::LevelFilter>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace the given processes and every process they fork, printing one JSON span per request.
    #[command(after_help = "Examples:\n  \
        sudo pytracer trace --pid $(pgrep -o gunicorn)\n  \
        sudo pytracer trace --pid 4242 --duration 30 --output spans.jsonl --metrics-addr 127.0.0.1:9464\n  \
        sudo pytracer trace --pid 4242 --format pretty\n  \
        sudo pytracer trace --pid 4242 --frame-eval always --log-level debug")]
    Trace {
        /// A process to trace (typically a Gunicorn or uWSGI master); repeat for several.
        #[arg(long = "pid", required = true, value_name = "PID")]
        pids: Vec<u32>,
        /// Stop after this many seconds (default: until SIGINT or SIGTERM).
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        duration: Option<Duration>,
        /// Write spans to this file instead of standard output.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// How spans are written: json (one object per line, the default) or pretty (one short
        /// line per span, each trace as a tree, for a terminal).
        #[arg(long, value_name = "FORMAT", value_parser = parse_format, default_value = "json")]
        format: crate::export::sink::Format,
        /// Configuration file (service name, redaction); see config/pytracer.yaml.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics (off unless given).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
        /// When to walk Python stacks for the handler's code: off, sampled (short windows, the
        /// default) or always (every request, at ~+150 µs each). Overrides cpython.frame_eval.mode.
        #[arg(long, value_name = "MODE", value_parser = parse_frame_eval)]
        frame_eval: Option<pytracer_config::FrameEvalMode>,
    },
    /// Sample the CPU of processes and their children, each sample joined to the request it
    /// served: folded stacks rooted at routes, an SVG flame graph and pprof, plus the spans.
    #[command(after_help = "Examples:\n  \
        sudo pytracer profile --pid 1234 --duration 30\n  \
        sudo pytracer profile --pid 1234 --duration 60 --output /tmp/prof --rate 49\n\n\
        Writes DIR/profile.folded, DIR/profile.svg, DIR/profile.pb.gz (pprof; samples labelled \
        span_id, trace_id, http.route) and DIR/spans.jsonl.")]
    Profile {
        /// A process to profile (typically a Gunicorn or uWSGI master); repeat for several.
        #[arg(long = "pid", required = true, value_name = "PID")]
        pids: Vec<u32>,
        /// How long to sample.
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        duration: Duration,
        /// Directory for the files (made if missing).
        #[arg(long, value_name = "DIR", default_value = "pytracer-profile")]
        output: PathBuf,
        /// Samples per second per CPU (19 keeps the sampler near 1% of a CPU).
        #[arg(long, value_name = "HZ", default_value_t = crate::profile::DEFAULT_RATE_HZ,
              value_parser = clap::value_parser!(u64).range(1..=1000))]
        rate: u64,
        /// Serve Prometheus metrics at http://ADDR/metrics while sampling (off unless given).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
        /// Configuration file (service name, redaction); see config/pytracer.yaml.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Find processes per the configuration's discovery rules, continuously, and trace them.
    #[command(after_help = "Examples:\n  \
        sudo pytracer run\n  \
        sudo pytracer run --config /etc/pytracer.yaml --metrics-addr 0.0.0.0:9464\n  \
        sudo pytracer run --duration 60 --output /var/log/pytracer/spans.jsonl\n  \
        sudo PYTRACER_DISCOVERY_WHITELIST=gunicorn PYTRACER_SERVICE_NAME=shop pytracer run\n\n\
        Every configuration field can also be set by PYTRACER_<SECTION>_<FIELD> (see config/pytracer.yaml);\n\
        the variables apply over the file, and this command's flags over both.")]
    Run {
        /// Configuration file; the shipped defaults when absent.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Stop after this many seconds (default: until SIGINT or SIGTERM).
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        duration: Option<Duration>,
        /// Write spans to this file instead of the configured output or standard output.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// How spans are written: json (one object per line, the default) or pretty (one short
        /// line per span, each trace as a tree, for a terminal).
        #[arg(long, value_name = "FORMAT", value_parser = parse_format, default_value = "json")]
        format: crate::export::sink::Format,
        /// Serve Prometheus metrics here instead of the configured metrics.listen.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
    },
    /// A live view of everything traced: per service and route, requests per second, errors,
    /// p50/p95/p99 and the handler; per worker CPU, RSS and GC. `q` quits, `s` sorts.
    #[command(after_help = "Examples:\n  \
        sudo pytracer top\n  \
        sudo pytracer top --pid $(pgrep -o gunicorn) --sort p99\n  \
        sudo pytracer top --once --duration 10 > snapshot.txt")]
    Top {
        /// A process to trace (a Gunicorn or uWSGI master); repeat for several. None: every
        /// process the configuration's discovery rules find.
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Trace for --duration seconds, print one plain table, exit (for scripts).
        #[arg(long)]
        once: bool,
        /// Also write the spans to this file, as JSON lines.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// With --once: how long to trace.
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, default_value = "5")]
        duration: Duration,
        /// Sort the routes by requests, errors, p50, p95, p99 or route.
        #[arg(long, value_name = "COLUMN", value_parser = crate::top::SortBy::parse, default_value = "requests")]
        sort: crate::top::SortBy,
        /// Configuration file; the shipped defaults when absent.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Print a running application's routes, read from its memory: methods, route, view, file:line.
    #[command(after_help = "Examples:\n  \
        sudo pytracer routes --pid 20149\n  \
        sudo pytracer routes --pid 20149 --json | jq -r '.routes[].route'")]
    Routes {
        /// The worker process (a Gunicorn or uWSGI worker, or any process serving the app).
        #[arg(long, value_name = "PID")]
        pid: u32,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check that this machine can run the agent: kernel, BTF, tracefs, capabilities, lockdown,
    /// perf_event_paranoid, the programs and ring buffer loaded for real, and each candidate
    /// process's interpreter. One line per check, `ok` or what to do; exit status 1 when any failed.
    #[command(after_help = "Examples:\n  \
        sudo pytracer check\n  \
        sudo pytracer check --config /etc/pytracer.yaml\n  \
        sudo pytracer check | grep -v ': ok'")]
    Check {
        /// Configuration file (which processes are candidates); the shipped defaults when absent.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// List every candidate process with its decision (traced or ignored) and the reason.
    #[command(after_help = "Examples:\n  \
        sudo pytracer discover\n  \
        sudo pytracer discover --json | jq 'select(.decision == \"traced\")'\n  \
        sudo pytracer discover --config /etc/pytracer.yaml")]
    Discover {
        /// One JSON object per process instead of a table.
        #[arg(long)]
        json: bool,
        /// Configuration file; the shipped defaults when absent.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{s}` must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_format(s: &str) -> Result<crate::export::sink::Format, String> {
    match s {
        "json" => Ok(crate::export::sink::Format::Json),
        "pretty" => Ok(crate::export::sink::Format::Pretty),
        _ => Err(format!("`{s}` is not a format: use json or pretty")),
    }
}

fn parse_frame_eval(s: &str) -> Result<pytracer_config::FrameEvalMode, String> {
    use pytracer_config::FrameEvalMode::{Always, Off, Sampled};
    match s {
        "off" => Ok(Off),
        "sampled" => Ok(Sampled),
        "always" => Ok(Always),
        _ => Err(format!("`{s}` is not a mode: use off, sampled or always")),
    }
}

/// The file (or the defaults), then the `PYTRACER_*` variables over it; each command's flags are
/// applied over what this returns.
fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    // A variable whose name or value is not Unicode cannot be one of ours.
    let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    Ok(Config::load_with_env(path.map(PathBuf::as_path), vars)?)
}

/// Span files are appended to: a restarted agent keeps what the last one wrote.
fn open_append(p: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .with_context(|| format!("cannot open output file {}", p.display()))
}

/// What `trace` and `run` share: the output (the command line's, else the configuration's,
/// else standard output) and OTLP from the configuration and the environment.
fn agent_options(
    targets: Targets,
    duration: Option<Duration>,
    config: Config,
    output: Option<&PathBuf>,
    format: crate::export::sink::Format,
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<Options> {
    let output: Box<dyn std::io::Write> = match output.or(config.output.path.as_ref()) {
        Some(p) => Box::new(open_append(p)?),
        None => Box::new(std::io::stdout()),
    };
    let otlp = otlp::Settings::resolve(&config.otlp, |k| std::env::var(k).ok());
    Ok(Options { targets, duration, config, output, format, metrics_addr, otlp, extra: None, profile: None })
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Trace { pids, duration, output, format, config, metrics_addr, frame_eval } => {
            let mut config = load_config(config.as_ref())?;
            if let Some(mode) = frame_eval {
                config.cpython.frame_eval.mode = mode;
            }
            block_on(agent::run(agent_options(
                Targets::Pids(pids),
                duration,
                config,
                output.as_ref(),
                format,
                metrics_addr,
            )?))
        }
        Command::Run { config, duration, output, format, metrics_addr } => {
            let config = load_config(config.as_ref())?;
            // Validated when the config was loaded.
            let metrics_addr = metrics_addr.or_else(|| config.metrics.listen.as_ref().and_then(|a| a.parse().ok()));
            block_on(agent::run(agent_options(
                Targets::Discover,
                duration,
                config,
                output.as_ref(),
                format,
                metrics_addr,
            )?))
        }
        Command::Profile { pids, duration, output, rate, config, metrics_addr } => {
            let config = load_config(config.as_ref())?;
            std::fs::create_dir_all(&output).with_context(|| format!("cannot make {}", output.display()))?;
            let spans = output.join("spans.jsonl");
            let mut opts = agent_options(
                Targets::Pids(pids),
                Some(duration),
                config,
                Some(&spans),
                crate::export::sink::Format::Json,
                metrics_addr,
            )?;
            opts.profile = Some(crate::profile::Settings { rate_hz: rate, dir: output });
            block_on(agent::run(opts))
        }
        Command::Routes { pid, json } => print_routes(pid, json),
        Command::Top { pids, once, duration, sort, config, output } => {
            for &pid in &pids {
                agent::read_target(pid)?;
            }
            let config = load_config(config.as_ref())?;
            let output: Option<Box<dyn std::io::Write + Send>> = match &output {
                Some(p) => Some(Box::new(open_append(p)?)),
                None => None,
            };
            crate::top::run(crate::top::TopOptions { pids, once: once.then_some(duration), sort, config, output })
        }
        Command::Check { config } => {
            let config = load_config(config.as_ref())?;
            let checks = crate::check::run_all(&config.discovery);
            let ok = crate::check::print(&checks, &mut std::io::stdout().lock())?;
            let failed = checks.iter().filter(|c| matches!(c.outcome, crate::check::Outcome::Fail(_))).count();
            anyhow::ensure!(ok, "{failed} check(s) failed");
            Ok(())
        }
        Command::Discover { json, config } => {
            let config = load_config(config.as_ref())?;
            print_candidates(&discovery::scan(&config.discovery, true), json)
        }
    }
}

fn print_routes(pid: u32, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    agent::read_target(pid)?;
    let (table, _) = crate::routes::read::read(pid).with_context(|| format!("no routes for pid {pid}"))?;
    let listing = crate::routes::listing::listing(pid, &table);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &listing)?;
        writeln!(out)?;
    } else {
        crate::routes::listing::write_text(&mut out, &listing)?;
    }
    Ok(())
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

fn print_candidates(cands: &[discovery::Candidate], json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        for c in cands {
            serde_json::to_writer(&mut out, c)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    writeln!(out, "{:>8} {:>8} {:<8} {:<48} {:<28} COMMAND", "PID", "PPID", "DECISION", "REASON", "PYTHON")?;
    for c in cands {
        let (d, reason) = match &c.decision {
            discovery::Decision::Traced { reason } => ("traced", reason),
            discovery::Decision::Ignored { reason } => ("ignored", reason),
        };
        let cmd: String = c.cmdline.chars().take(100).collect();
        let py = c.python.as_ref().map_or("-".to_string(), discovery::PythonSummary::short);
        writeln!(out, "{:>8} {:>8} {:<8} {:<48} {:<28} {}", c.pid, c.ppid, d, reason, py, cmd)?;
    }
    // Why a traced process stays wire-only, in full (the table only has room for a word), and
    // the routes each traced process serves.
    for c in cands {
        match &c.python {
            Some(discovery::PythonSummary::Unsupported { unsupported }) => {
                writeln!(out, "pid {}: {unsupported}", c.pid)?;
            }
            Some(discovery::PythonSummary::Supported { routes, .. }) => {
                writeln!(out, "pid {}: routes: {routes}", c.pid)?;
            }
            None => {}
        }
    }
    if cands.is_empty() {
        writeln!(out, "(no candidate processes: nothing matches the whitelist, and no Python process runs)")?;
    }
    Ok(())
}
