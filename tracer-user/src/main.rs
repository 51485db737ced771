use clap::Parser;

fn main() {
    let cli = pytracer::cli::Cli::parse();
    if let Err(e) = pytracer::cli::run(cli) {
        eprintln!("pytracer: error: {e:#}");
        std::process::exit(1);
    }
}
