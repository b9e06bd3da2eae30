//! `mig-gateway reshape`: asks a running gateway's admin listener to
//! re-partition its GPUs to a plan, printing each step as it happens.

use std::path::PathBuf;

use clap::Args;
use mig_proto::admin::v1::admin_client::AdminClient;
use mig_proto::admin::v1::{ReshapeRequest, ReshapeSummary};
use mig_serve::secret::{Secret, SendBearer};

use super::admin::{MAX_DRAIN_SECONDS, MAX_PLAN_BYTES};

#[derive(Debug, Clone, Args)]
pub struct ReshapeArgs {
    /// The target layout: plan.json from `mig-gateway plan --out DIR`.
    #[arg(long)]
    pub to: PathBuf,

    /// The gateway's admin listener (`up --admin-listen`).
    #[arg(
        long,
        env = "MIG_GATEWAY_ADMIN",
        default_value = "http://127.0.0.1:50053"
    )]
    pub admin: String,

    /// File holding the admin token (the gateway's `--admin-token-file`).
    #[arg(long, env = "MIG_GATEWAY_ADMIN_TOKEN_FILE")]
    pub admin_token_file: PathBuf,

    /// Print the steps from the current layout; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Seconds an affected slice's streams may run before it is taken
    /// anyway (1 to 3600).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=MAX_DRAIN_SECONDS as i64))]
    pub drain_timeout: u32,
}

/// Runs the command; an error is printed by the caller, exit status 1.
pub async fn run(args: ReshapeArgs) -> anyhow::Result<()> {
    let plan_json = std::fs::read_to_string(&args.to)
        .map_err(|e| anyhow::anyhow!("cannot read `--to {}`: {e}", args.to.display()))?;
    if plan_json.len() > MAX_PLAN_BYTES {
        anyhow::bail!(
            "`--to {}` is {} bytes; the limit is {MAX_PLAN_BYTES}",
            args.to.display(),
            plan_json.len()
        );
    }
    let token = Secret::from_file(&args.admin_token_file)
        .map_err(|e| anyhow::anyhow!("`--admin-token-file`: {e}"))?;
    let channel = tonic::transport::Endpoint::from_shared(args.admin.clone())
        .map_err(|e| anyhow::anyhow!("`--admin {}`: {e}", args.admin))?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the admin listener `{}`: {e}", args.admin))?;
    let mut client = AdminClient::with_interceptor(channel, SendBearer(Some(token)));
    let mut events = client
        .reshape(ReshapeRequest {
            plan_json,
            dry_run: args.dry_run,
            drain_timeout_seconds: args.drain_timeout,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(event) = events.message().await.map_err(status_error)? {
        if !event.line.is_empty() {
            println!("{}", event.line);
        }
        if let Some(summary) = event.summary {
            print!("{}", summary_text(&summary));
        }
    }
    Ok(())
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: {}",
        crate::call_cmd::code_name(status.code()),
        status.message()
    )
}

/// The closing lines: counts, then each slice's time out.
fn summary_text(s: &ReshapeSummary) -> String {
    let mut text = format!(
        "{}{} kept, {} destroyed, {} created, {} workers replaced\n",
        if s.dry_run { "would be: " } else { "" },
        s.kept,
        s.destroyed,
        s.created,
        s.workers_replaced
    );
    for out in &s.outages {
        let model = if out.model.is_empty() {
            String::new()
        } else {
            format!(" (`{}`)", out.model)
        };
        text.push_str(&format!(
            "  GPU {} {}{model}: out {:.2} s\n",
            out.gpu, out.slice, out.seconds
        ));
    }
    text
}
