//! mig-loadtest: drives a mig-gateway (or one mig-worker straight) with
//! closed-loop and open-loop load, compares slice sizes, measures isolation
//! between tenants, and writes reports and charts.
//!
//! # Layout
//! - [`cli`]: the command line; the flags every scenario shares and their checks.
//! - [`target`]: a gateway or a worker behind one client, and the slice
//!   inventory it reports (`ListModels` or `Info`).
//! - [`workload`]: prompts (built in or JSONL), length distributions, the
//!   seeded request `i` of a run.
//! - [`request`]: one streamed request timed from the client (TTFT,
//!   inter-token gaps, end-to-end, tokens, status, `served_by`).
//! - [`run`]: one load point: closed or open (Poisson) loop, warm-up, duration
//!   or request count, drain.
//! - [`live`]: live counters and the progress bar.
//! - [`stats`]: HDR-histogram percentiles, rates and errors of a load point.
//! - [`server_metrics`]: the server's `/metrics` before and after a point.
//! - [`scenario`]: `compare`, `isolation` and `sweep`, on a shared session.
//! - [`report`]: JSON, CSV, Markdown and the terminal tables; SVG charts in
//!   [`report::charts`].
//! - [`error`]: what stops the tool (failed requests are results, not errors).

pub mod cli;
pub mod error;
pub mod live;
pub mod report;
pub mod request;
pub mod run;
pub mod scenario;
pub mod server_metrics;
pub mod stats;
pub mod target;
pub mod workload;

pub use error::LoadtestError;

use cli::Command;
use report::Report;

/// Runs the scenario the command line names and returns its report.
pub async fn execute(command: &Command) -> Result<Report, LoadtestError> {
    match command {
        Command::Compare(args) => scenario::compare::run(args).await,
        Command::Isolation(args) => scenario::isolation::run(args).await,
        Command::Sweep(args) => scenario::sweep::run(args).await,
        Command::Overload(args) => scenario::overload::run(args).await,
    }
}

/// `--out` of the command, if any.
pub fn out_dir(command: &Command) -> Option<&std::path::Path> {
    command.load().out.as_deref()
}
