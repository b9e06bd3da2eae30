//! The admin listener (`up --admin-listen`, loopback only): `mig.admin.v1.Admin`
//! behind its token. A reshape runs to its end even when the caller goes
//! away: half a reshape would leave slices without workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mig_proto::admin::v1::admin_server::{Admin, AdminServer};
use mig_proto::admin::v1::{ReshapeEvent, ReshapeRequest};
use mig_serve::connections::ConnectionLimits;
use mig_serve::secret::Secret;
use mig_slices::reshape::steps::Target;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use super::run::{ReshapeError, Reshaper};

/// The largest plan.json taken: a plan for hundreds of GPUs is far less.
pub const MAX_PLAN_BYTES: usize = 1 << 20;
/// Drain timeout when the request gives none.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);
/// The longest drain timeout taken.
pub const MAX_DRAIN_SECONDS: u32 = 3600;

pub struct AdminService {
    reshaper: Arc<Reshaper>,
    token: Secret,
}

impl AdminService {
    pub fn new(reshaper: Arc<Reshaper>, token: Secret) -> AdminService {
        AdminService { reshaper, token }
    }
}

impl From<ReshapeError> for Status {
    fn from(e: ReshapeError) -> Status {
        let message = e.to_string();
        match e {
            ReshapeError::Busy => Status::aborted(message),
            ReshapeError::Plan(_) => Status::invalid_argument(message),
            ReshapeError::UnknownModel { .. } | ReshapeError::Device(_) => {
                Status::failed_precondition(message)
            }
            ReshapeError::Start { .. } => Status::internal(message),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    type ReshapeStream = ReceiverStream<Result<ReshapeEvent, Status>>;

    async fn reshape(
        &self,
        request: Request<ReshapeRequest>,
    ) -> Result<Response<Self::ReshapeStream>, Status> {
        if !self.token.authorizes(request.metadata()) {
            return Err(Status::unauthenticated(
                "the admin token (`authorization: Bearer`, `--admin-token-file`) is missing or wrong",
            ));
        }
        let request = request.into_inner();
        if request.plan_json.len() > MAX_PLAN_BYTES {
            return Err(Status::invalid_argument(format!(
                "`plan_json` is {} bytes; the limit is {MAX_PLAN_BYTES}",
                request.plan_json.len()
            )));
        }
        if request.drain_timeout_seconds > MAX_DRAIN_SECONDS {
            return Err(Status::invalid_argument(format!(
                "`drain_timeout_seconds` is {}; the limit is {MAX_DRAIN_SECONDS}",
                request.drain_timeout_seconds
            )));
        }
        let target = Target::from_json(&request.plan_json)
            .map_err(|e| Status::invalid_argument(format!("`plan_json`: {e}")))?;
        let drain = match request.drain_timeout_seconds {
            0 => DEFAULT_DRAIN,
            s => Duration::from_secs(u64::from(s)),
        };
        let (events, stream) = mpsc::channel(64);
        let reshaper = self.reshaper.clone();
        tokio::spawn(async move {
            let end = match reshaper
                .reshape(&target, request.dry_run, drain, &events)
                .await
            {
                Ok(summary) => Ok(ReshapeEvent {
                    line: String::new(),
                    summary: Some(summary),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "reshape failed");
                    Err(Status::from(e))
                }
            };
            let _ = events.send(end).await;
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

/// Binds `--admin-listen`: a loopback address only (the admin service
/// re-partitions GPUs; run `reshape` on the gateway's machine).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "`--admin-listen {addr}` is not a loopback address: the admin port is reachable \
             from this machine only (e.g. `127.0.0.1:50053`)"
        ));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding `--admin-listen {addr}`: {e}"))
}

/// Serves the admin service on `listener` until the task is aborted.
pub fn serve(
    listener: TcpListener,
    service: AdminService,
) -> tokio::task::JoinHandle<std::io::Result<mig_serve::http2::Drained>> {
    let mut routes = Routes::builder();
    routes.add_service(AdminServer::new(service));
    tokio::spawn(mig_serve::http2::serve_with(
        listener,
        None,
        routes.routes(),
        ConnectionLimits::default(),
        std::future::pending(),
        Duration::ZERO,
    ))
}
