//! Project chores, run as `cargo xtask <task>` (alias in .cargo/config.toml).
mod cmd;
mod demo;
mod paths;
mod setup;
mod supervised;
mod test;
mod traffic;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "pytracer project chores: set-up, tests, demo"
)]
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
    /// Set up, build, start the demo app under Gunicorn, trace it and print spans until Ctrl-C
    Demo {
        /// Port for the demo app on 127.0.0.1
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Stop after this many seconds instead of waiting for Ctrl-C
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test { args } => test::run(&args),
        Task::Demo { port, duration } => {
            demo::run(port, duration.map(std::time::Duration::from_secs))
        }
    }
}
