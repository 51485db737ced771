//! Project chores, run as `cargo xtask <task>` (alias in .cargo/config.toml).
mod bench;
mod chroot;
mod cmd;
mod demo;
mod ebpf_object;
mod faults;
mod fuzz;
mod image;
mod lint;
mod paths;
mod podman;
mod setup;
mod soak;
mod supervised;
mod test;
mod traffic;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "pytracer project chores: set-up, tests, lint, demo, benchmark, fuzzing")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything the project needs on this machine; steps already done are skipped
    Setup,
    /// Set up, build in release mode, then run every test (privileged end-to-end tests included)
    Test {
        /// Extra arguments for the test binaries, after `--`, e.g. a test name filter
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, then build the agent's container image localhost/pytracer:latest from
    /// deploy/Containerfile (offline: its base is the set-up's imported image)
    Image,
    /// Check that the committed eBPF object is current, formatting, and clippy with warnings
    /// denied, as CI does before the tests
    Lint,
    /// Build the eBPF object from source (needs the set-up's toolchain) and rewrite the committed
    /// tracer-ebpf/prebuilt/tracer-ebpf.o and its stamp, which machines without the toolchain build with
    EbpfObject,
    /// Set up, build, start the demo app under Gunicorn, trace it and print spans until Ctrl-C
    Demo {
        /// Port for the demo app on 127.0.0.1
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Stop after this many seconds instead of waiting for Ctrl-C
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
    },
    /// Fuzz the HTTP and uwsgi parsers (cargo-fuzz) for a bounded time per target
    Fuzz {
        /// Seconds per target
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Mixed load against traced Gunicorns for a while (keep-alive, slow clients, large bodies,
    /// errors, outgoing calls, recycled workers, processes that come and go): every request one
    /// span, and the agent's memory, fd and kernel-map slopes; writes bench/out/soak.md
    Soak {
        /// How long the load runs
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
    },
    /// The fault suite: killed and crashing workers, exec, forks, idle and slow connections, the
    /// agent stopped, its maps and ring buffer filled, concurrent scrapes; writes bench/faults.md
    Faults,
    /// Benchmark pytracer's cost on a Gunicorn+Flask app against in-process agents; writes
    /// bench/results.md and bench/latency.png
    Bench {
        /// Rounds; in each, every configuration runs once beside a fresh untraced twin
        #[arg(long, default_value_t = 11)]
        rounds: u32,
        /// Seconds of load per route and configuration
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// wrk connections (fixed concurrency)
        #[arg(long, default_value_t = 8)]
        connections: u32,
        /// Configurations to run, from A B C D E F G (`--quick`: A,C unless given)
        #[arg(long, value_delimiter = ',')]
        configs: Vec<String>,
        /// The same side-by-side design, A beside C, 7 short rounds, CPU per request and `/`'s
        /// throughput (about 3 minutes); printed, bench/results.md left as it is
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test { args } => test::run(&args),
        Task::Lint => lint::run(),
        Task::EbpfObject => ebpf_object::run(),
        Task::Image => image::run(),
        Task::Demo { port, duration } => demo::run(port, duration.map(std::time::Duration::from_secs)),
        Task::Fuzz { seconds } => fuzz::run(seconds),
        Task::Soak { minutes } => soak::run(minutes),
        Task::Faults => faults::run(),
        Task::Bench { rounds, seconds, connections, configs, quick } => {
            let default = if quick { "A,C" } else { "A,B,C,D,E,F,G" };
            let configs = if configs.is_empty() { default.split(',').map(String::from).collect() } else { configs };
            let configs = configs
                .iter()
                .map(|c| {
                    bench::Config::ALL
                        .into_iter()
                        .find(|k| k.key().eq_ignore_ascii_case(c.trim()))
                        .ok_or_else(|| anyhow::anyhow!("unknown configuration `{c}`; choose from A, B, C, D, E, F, G"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if quick {
                return bench::quick(configs);
            }
            bench::run(&bench::Options { rounds, seconds, connections, configs })
        }
    }
}
