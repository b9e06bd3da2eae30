//! A gateway served inside the test process on `127.0.0.1:0`, its clients,
//! and the fixture the gateway's tests share: real workers on the demo
//! models and a gateway in front of them, started once per test binary on a
//! runtime of their own so that every test can use them.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use mig_gateway::fleet::placement::Inventory;
use mig_gateway::fleet::registration::{HeartbeatPolicy, RegistrationAccess};
use mig_gateway::fleet::start::start_fleet;
use mig_gateway::fleet::{Fleet, ModelPlan};
use mig_gateway::server::Registrations;
use mig_gateway::ServerOptions;
use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{ChatMessage, GenerateRequest};
use mig_proto::worker::v1::worker_client::WorkerClient;
use mig_serve::secret::Secret;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// A one-turn greedy chat request.
pub fn chat(model: &str, text: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: text.into(),
        }],
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

/// A worker of `model` from the file or folder at `path`, pinned to `slice`,
/// served in-process on `127.0.0.1:0`; returns its `http://` address.
pub async fn start_worker(model: &str, path: &Path, slice: &str) -> String {
    crate::in_process::start_worker(&[
        "--model-name",
        model,
        "--model-path",
        path.to_str().unwrap(),
        "--slice",
        slice,
    ])
    .await
}

/// A gateway served in-process on `127.0.0.1:0` for the given fleet file text.
pub async fn start_gateway(fleet_toml: &str) -> String {
    let models = Fleet::parse(fleet_toml, Path::new("test-fleet.toml")).unwrap();
    serve_gateway(&models, None, None).await
}

/// The token the test gateways take registrations with.
pub const REGISTRATION_TOKEN: &str = "test-registration-token-0123456789";

/// A gateway that takes worker registrations on its internal listener.
pub struct Registering {
    /// The public address, `http://...`.
    pub gateway: String,
    /// The internal listener, `http://...`: where workers register.
    pub internal: String,
    /// A file holding [`REGISTRATION_TOKEN`], for a worker's
    /// `--registration-token-file`.
    pub token_file: std::path::PathBuf,
}

/// A gateway for `models` (possibly none: registered workers only) that
/// accepts registrations with the given heartbeat policy.
pub async fn start_gateway_with(models: &[ModelPlan], heartbeat: HeartbeatPolicy) -> Registering {
    let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_addr = internal.local_addr().unwrap();
    let token_file = std::env::temp_dir().join(format!(
        "mig-test-registration-token-{}-{}",
        std::process::id(),
        internal_addr.port()
    ));
    std::fs::write(&token_file, REGISTRATION_TOKEN).unwrap();
    let registrations = Registrations {
        listener: internal,
        access: RegistrationAccess {
            token: Some(Secret::new(REGISTRATION_TOKEN).unwrap()),
            client_certificate: false,
        },
        heartbeat,
        tls: None,
    };
    let gateway = serve_gateway(models, Some(registrations), None).await;
    Registering {
        gateway,
        internal: format!("http://{internal_addr}"),
        token_file,
    }
}

/// A gateway for the fleet text that also serves `/metrics` on
/// `127.0.0.1:0`; returns its gRPC address and its metrics address.
pub async fn start_gateway_with_metrics(fleet_toml: &str) -> (String, std::net::SocketAddr) {
    let models = Fleet::parse(fleet_toml, Path::new("test-fleet.toml")).unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let gateway = serve_gateway(&models, None, Some(metrics)).await;
    (gateway, metrics_addr)
}

async fn serve_gateway(
    models: &[ModelPlan],
    registrations: Option<Registrations>,
    metrics_listener: Option<TcpListener>,
) -> String {
    let registry = start_fleet(models, &Inventory::default(), None)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mig_gateway::run(
        registry,
        listener,
        ServerOptions {
            health_interval: Duration::from_millis(200),
            drain: Duration::from_secs(1),
            registrations,
            metrics_listener,
            http_listener: None,
            tenants: None,
            tls: None,
            queue: Default::default(),
            connections: Default::default(),
            stall_timeout: Duration::from_secs(30),
        },
        std::future::pending(),
    ));
    format!("http://{addr}")
}

pub struct Fixture {
    pub gateway: String,
    pub smollm2_worker: String,
    pub minilm_worker: String,
}

/// Name of a model whose only worker is down (nothing listens there).
pub const DEAD_MODEL: &str = "dead-model";

/// One SmolLM2 worker, one MiniLM worker and a gateway in front of them (plus
/// a model whose worker address answers nothing).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let smollm2_worker = start_worker("smollm2-135m", &crate::smollm2(), "cpu:0").await;
                let minilm_worker = start_worker("minilm-l6", &crate::minilm(), "cpu:1").await;
                // A port that was free a moment ago and is closed now.
                let dead = TcpListener::bind("127.0.0.1:0")
                    .await
                    .unwrap()
                    .local_addr()
                    .unwrap();
                let fleet = format!(
                    "[[model]]\nname = \"smollm2-135m\"\naddresses = [\"{smollm2_worker}\"]\n\
                     [[model]]\nname = \"minilm-l6\"\naddresses = [\"{minilm_worker}\"]\n\
                     [[model]]\nname = \"{DEAD_MODEL}\"\naddresses = [\"http://{dead}\"]\n"
                );
                let gateway = start_gateway(&fleet).await;
                tx.send(Fixture {
                    gateway,
                    smollm2_worker,
                    minilm_worker,
                })
                .unwrap();
                std::future::pending::<()>().await
            });
        });
        rx.recv_timeout(Duration::from_secs(300))
            .expect("test servers start")
    })
}

pub async fn gateway_client(addr: &str) -> InferenceClient<Channel> {
    InferenceClient::connect(addr.to_string()).await.unwrap()
}

/// The workers a gateway lists for `model` (none if it does not know it).
pub async fn list_workers(
    gateway: &str,
    model: &str,
) -> Vec<mig_proto::inference::v1::WorkerStatus> {
    let mut client = gateway_client(gateway).await;
    let models = client
        .list_models(mig_proto::inference::v1::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    models
        .into_iter()
        .find(|m| m.name == model)
        .map(|m| m.workers)
        .unwrap_or_default()
}

pub async fn worker_client(addr: &str) -> WorkerClient<Channel> {
    WorkerClient::connect(addr.to_string()).await.unwrap()
}

/// A client on a bare HTTP/2 connection. tonic's `Channel` enforces a
/// request's `grpc-timeout` itself and reports CANCELLED ("Timeout
/// expired") before the server can answer; this one leaves the deadline to
/// the server, as grpc-go or grpcurl clients do.
pub fn bare_gateway_client(
    addr: &str,
) -> InferenceClient<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic::body::Body,
    >,
> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    InferenceClient::with_origin(client, addr.parse().unwrap())
}
