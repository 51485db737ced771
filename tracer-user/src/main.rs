use clap::Parser;

fn main() {
    pytracer::heap::init();
    let cli = pytracer::cli::Cli::parse();
    pytracer::logging::init(cli.log_level);
    if let Err(e) = pytracer::cli::run(cli) {
        log::error!("{e:#}");
        std::process::exit(1);
    }
}
