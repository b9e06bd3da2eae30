//! The admin listener (`up --admin-listen`, loopback only): `mig.admin.v1.Admin`
//! behind its token. A reshape runs to its end even when the caller goes
//! away: half a reshape would leave slices without workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mig_proto::admin::v1::admin_server::{self, AdminServer};
use mig_proto::admin::v1::{ReshapeEvent, ReshapeRequest};
use mig_serve::connections::ConnectionLimits;
use mig_serve::limits::values_cut;
use mig_serve::secret::Secret;
use mig_slices::reshape::steps::Target;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use super::device::{Device, SimulatedFile};
use super::run::{ReshapeError, Reshaper};
use crate::config::UpArgs;
use crate::fleet::supervisor::Supervisor;
use crate::fleet::ModelPlan;
use crate::registry::Registry;
use mig_slices::reshape::nvml::NvmlMig;

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
        // A plan's names are the caller's: quoted whole by the errors.
        let message = values_cut(&e.to_string());
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
impl admin_server::Admin for AdminService {
    type ReshapeStream = UnboundedReceiverStream<Result<ReshapeEvent, Status>>;

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
            .map_err(|e| Status::invalid_argument(values_cut(&format!("`plan_json`: {e}"))))?;
        let drain = match request.drain_timeout_seconds {
            0 => DEFAULT_DRAIN,
            s => Duration::from_secs(u64::from(s)),
        };
        let (events, stream) = mpsc::unbounded_channel();
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
                    let status = Status::from(e);
                    tracing::warn!(error = status.message(), "reshape failed");
                    Err(status)
                }
            };
            let _ = events.send(end);
        });
        Ok(Response::new(UnboundedReceiverStream::new(stream)))
    }
}

/// `up`'s admin listener, bound, with its token and the device it
/// re-partitions: the simulated one, else NVML's.
pub struct Admin {
    listener: TcpListener,
    token: Secret,
    device: Box<dyn Device + Send>,
}

impl Admin {
    /// `None` without `--admin-listen`. An error for a bad token file, an
    /// address that is not loopback, or no MIG device to drive.
    pub async fn bind(
        args: &UpArgs,
        simulated: Option<SimulatedFile>,
    ) -> Result<Option<Admin>, String> {
        let (Some(addr), Some(token)) = (&args.admin_listen, &args.admin_token_file) else {
            return Ok(None);
        };
        let token = Secret::from_file(token).map_err(|e| format!("`--admin-token-file`: {e}"))?;
        let listener = bind_loopback(*addr).await?;
        let device: Box<dyn Device + Send> = match simulated {
            Some(sim) => Box::new(sim),
            None => Box::new(NvmlMig::new().map_err(|e| {
                format!(
                    "`--admin-listen` re-partitions MIG GPUs, and NVML cannot: {e} \
                     (`--simulate-mig FILE` tries it without a GPU)"
                )
            })?),
        };
        Ok(Some(Admin {
            listener,
            token,
            device,
        }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves reshapes of the fleet `supervisor` runs and `registry`
    /// routes to, until the task is aborted.
    pub async fn serve(
        self,
        supervisor: Arc<tokio::sync::Mutex<Supervisor>>,
        registry: Arc<Registry>,
        models: Vec<ModelPlan>,
    ) -> tokio::task::JoinHandle<std::io::Result<mig_serve::http2::Drained>> {
        let reshaper = Reshaper::new(self.device, supervisor, registry, models);
        reshaper.adopt_running().await;
        serve(
            self.listener,
            AdminService::new(Arc::new(reshaper), self.token),
        )
    }
}

/// Binds `--admin-listen`: a loopback address only (the admin service
/// re-partitions GPUs; run `reshape` on the gateway's machine).
async fn bind_loopback(addr: SocketAddr) -> Result<TcpListener, String> {
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
fn serve(
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
