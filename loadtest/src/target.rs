//! What a load test talks to: a gateway (`mig.inference.v1.Inference`) or
//! one worker straight (`mig.worker.v1.Worker`). Both stream the same
//! messages, so the rest of the tool does not care which; running the same
//! workload against both measures the gateway's own overhead.

use std::time::Duration;

use clap::ValueEnum;
use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{
    GenerateRequest, GenerateStreamResponse, ListModelsRequest, ModelKind, WorkerHealth,
};
use mig_proto::worker::v1::worker_client::WorkerClient;
use mig_proto::worker::v1::InfoRequest;
use mig_serve::secret::Secret;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::error::LoadtestError;

/// What sits at a target address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Ask the target: a worker answers `Info`, a gateway `ListModels`.
    Auto,
    Gateway,
    Worker,
}

/// One connection (HTTP/2, multiplexed) to a gateway or a worker.
#[derive(Clone)]
pub struct Target {
    pub address: String,
    /// `Gateway` or `Worker`, never `Auto` once connected.
    pub kind: TargetKind,
    channel: Channel,
    credentials: Credentials,
}

/// What a target may ask of its caller.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The caller token a worker started by a gateway asks for
    /// (`--worker-token-file`), sent on calls to a worker.
    pub worker_token: Option<Secret>,
    /// A tenant's API key (`--api-key`), sent on calls to a gateway.
    pub api_key: Option<Secret>,
    /// The CA to trust for TLS (`--tls-ca`); plain HTTP/2 without one.
    pub tls_ca: Option<std::path::PathBuf>,
}

/// The slices a target serves, per model: what the report calls the slice
/// inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub target: String,
    pub kind: TargetKind,
    pub models: Vec<ModelSlices>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelSlices {
    pub name: String,
    /// `generate` or `embed`.
    pub kind: String,
    pub context_length: u32,
    pub workers: Vec<SliceInfo>,
}

/// One worker and the slice it is pinned to.
#[derive(Debug, Clone, Serialize)]
pub struct SliceInfo {
    pub worker_id: String,
    pub address: String,
    pub slice: String,
    pub profile: String,
    pub gpu: String,
    pub memory_bytes: u64,
    /// What computes (`llama gguf q8_0`, `identity (echo, no model)`).
    pub engine: String,
    pub healthy: bool,
    /// GPU-instance slices of a MIG profile or cores of a CPU slice.
    pub compute_units: Option<f64>,
}

impl ModelSlices {
    /// The workers that answer their health probe.
    pub fn healthy(&self) -> Vec<SliceInfo> {
        self.workers.iter().filter(|w| w.healthy).cloned().collect()
    }
}

impl Inventory {
    pub fn model(&self, name: &str) -> Result<&ModelSlices, LoadtestError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| LoadtestError::UnknownModel {
                model: name.to_string(),
                target: self.target.clone(),
                known: self.models.iter().map(|m| m.name.clone()).collect(),
            })
    }
}

/// `host:port` is taken as `http://host:port`.
fn normalise(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

impl Target {
    /// Connects and, with `Auto`, finds out whether a gateway or a worker
    /// answers.
    pub async fn connect(
        address: &str,
        kind: TargetKind,
        credentials: Credentials,
    ) -> Result<Target, LoadtestError> {
        let mut address = normalise(address);
        if credentials.tls_ca.is_some() {
            if let Some(rest) = address.strip_prefix("http://") {
                address = format!("https://{rest}");
            }
        }
        let connect_err = |e: &dyn std::fmt::Display| LoadtestError::Connect {
            target: address.clone(),
            reason: e.to_string(),
        };
        let channel = mig_serve::tls::client_endpoint(&address, credentials.tls_ca.as_deref())
            .map_err(|e| connect_err(&e))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| connect_err(&e))?;
        let mut target = Target {
            address: address.clone(),
            kind,
            channel,
            credentials,
        };
        if kind == TargetKind::Auto {
            target.kind = match WorkerClient::new(target.channel.clone())
                .info(target.to_worker(InfoRequest {}))
                .await
            {
                Ok(_) => TargetKind::Worker,
                Err(s) if s.code() == Code::Unimplemented => TargetKind::Gateway,
                // A worker that takes calls with a token only.
                Err(s) if s.code() == Code::Unauthenticated => TargetKind::Worker,
                Err(s) => return Err(connect_err(&s.message())),
            };
        }
        Ok(target)
    }

    /// The models and slices behind the target.
    pub async fn inventory(&self) -> Result<Inventory, LoadtestError> {
        let rpc_err = |s: Status| LoadtestError::Connect {
            target: self.address.clone(),
            reason: format!(
                "{}: {}{}",
                mig_serve::status::code_name(s.code()),
                s.message(),
                if s.code() == Code::Unauthenticated && self.kind == TargetKind::Worker {
                    " (a worker started by `mig-gateway up` takes calls only with its \
                     token: give the same `--worker-token-file` to both)"
                } else {
                    ""
                }
            ),
        };
        let models = match self.kind {
            TargetKind::Worker => {
                let info = WorkerClient::new(self.channel.clone())
                    .info(self.to_worker(InfoRequest {}))
                    .await
                    .map_err(rpc_err)?
                    .into_inner();
                vec![ModelSlices {
                    name: info.model.clone(),
                    kind: kind_name(info.kind()),
                    context_length: info.context_length,
                    workers: vec![SliceInfo {
                        worker_id: info.worker_id,
                        address: self.address.clone(),
                        compute_units: mig_slices::compute_units(&info.profile),
                        slice: info.slice,
                        profile: info.profile,
                        gpu: info.gpu,
                        memory_bytes: info.memory_bytes,
                        engine: info.engine,
                        healthy: true,
                    }],
                }]
            }
            _ => InferenceClient::new(self.channel.clone())
                .list_models(self.to_gateway(ListModelsRequest {}))
                .await
                .map_err(rpc_err)?
                .into_inner()
                .models
                .into_iter()
                .map(|m| ModelSlices {
                    kind: kind_name(m.kind()),
                    name: m.name,
                    context_length: m.context_length,
                    workers: m
                        .workers
                        .into_iter()
                        .map(|w| SliceInfo {
                            healthy: w.health() == WorkerHealth::Serving,
                            compute_units: mig_slices::compute_units(&w.profile),
                            worker_id: w.worker_id,
                            address: w.address,
                            slice: w.slice,
                            profile: w.profile,
                            gpu: w.gpu,
                            memory_bytes: w.memory_bytes,
                            engine: w.engine,
                        })
                        .collect(),
                })
                .collect(),
        };
        Ok(Inventory {
            target: self.address.clone(),
            kind: self.kind,
            models,
        })
    }

    /// Starts one streamed generation with a gRPC deadline.
    pub async fn generate_stream(
        &self,
        request: GenerateRequest,
        timeout: Duration,
    ) -> Result<Streaming<GenerateStreamResponse>, Status> {
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout);
        let response = match self.kind {
            TargetKind::Worker => {
                if let Some(token) = &self.credentials.worker_token {
                    token.attach(request.metadata_mut());
                }
                WorkerClient::new(self.channel.clone())
                    .generate(request)
                    .await?
            }
            _ => {
                if let Some(key) = &self.credentials.api_key {
                    key.attach(request.metadata_mut());
                }
                InferenceClient::new(self.channel.clone())
                    .generate_stream(request)
                    .await?
            }
        };
        Ok(response.into_inner())
    }
}

impl Target {
    /// A request to a worker, with its caller token when one was given.
    fn to_worker<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.credentials.worker_token {
            token.attach(request.metadata_mut());
        }
        request
    }

    /// A request to a gateway, with the tenant's key when one was given.
    fn to_gateway<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(key) = &self.credentials.api_key {
            key.attach(request.metadata_mut());
        }
        request
    }
}

fn kind_name(kind: ModelKind) -> String {
    match kind {
        ModelKind::Generate => "generate",
        ModelKind::Embed => "embed",
        ModelKind::Unspecified => "unknown",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_http() {
        assert_eq!(normalise("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(normalise("http://[::1]:1"), "http://[::1]:1");
    }
}
