//! `mig-loadtest`: parse the command line, run the scenario, print its
//! tables and write the report.

use clap::Parser;
use mig_loadtest::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    // A folder that cannot be written is found now, not after the run.
    if let Some(dir) = mig_loadtest::out_dir(&cli.command) {
        if let Err(e) = mig_loadtest::report::check_writable(dir) {
            eprintln!("mig-loadtest: `--out`: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let report = match mig_loadtest::execute(&cli.command).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("mig-loadtest: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    print!("{}", report.to_text());
    if let Some(dir) = mig_loadtest::out_dir(&cli.command) {
        match report.write(dir) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("mig-loadtest: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
