//! What the KServe front says about the server and its models: server
//! metadata, model metadata and configuration, readiness. Models are
//! described from the project's own `ListModels` answer, which lists only
//! what the caller may call, so a tenant learns nothing of other tenants'
//! models; their tensors come from the table in `super::inputs`.

use mig_proto::inference::v1::{ModelInfo, ModelKind, WorkerHealth};
use mig_proto::kserve::model_metadata_response::TensorMetadata;
use mig_proto::kserve::{
    ModelConfig, ModelInput, ModelMetadataResponse, ModelOutput, ModelParameter,
    ModelTransactionPolicy, ServerMetadataResponse,
};

use super::error::KserveError;
use super::inputs::{Arity, InputSpec, EMBEDDING, EMBED_INPUTS, GENERATE_INPUTS, TEXT_OUTPUT};
use super::response::VERSION;
use super::tensors::Datatype;

/// What serves every model, as `ModelConfig.backend` and
/// `ModelMetadata.platform` say it.
pub const BACKEND: &str = "mig-worker";

/// The server's name in ServerMetadata.
pub const SERVER_NAME: &str = "mig-gateway";

/// The protocol extensions served: model configuration, and parameters on
/// requests and responses.
pub const EXTENSIONS: [&str; 2] = ["model_configuration", "parameters"];

pub fn server_metadata() -> ServerMetadataResponse {
    ServerMetadataResponse {
        name: SERVER_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: EXTENSIONS.map(String::from).to_vec(),
    }
}

/// A request's `version`: empty or the one served.
pub fn check_version(model: &str, version: &str) -> Result<(), KserveError> {
    if version.is_empty() || version == VERSION {
        Ok(())
    } else {
        Err(KserveError::Version {
            model: model.to_string(),
            version: version.to_string(),
        })
    }
}

/// Whether a worker of the model serves now.
pub fn is_ready(info: &ModelInfo) -> bool {
    info.workers
        .iter()
        .any(|w| w.health() == WorkerHealth::Serving)
}

/// Whether the model generates or embeds; unknown until one of its workers
/// answered.
pub fn kind(info: &ModelInfo) -> Result<ModelKind, KserveError> {
    match info.kind() {
        ModelKind::Unspecified => Err(KserveError::KindUnknown {
            model: info.name.clone(),
        }),
        kind => Ok(kind),
    }
}

/// A model kind's inputs, and its output's name, type and shape.
fn tensors(kind: ModelKind) -> (&'static [InputSpec], (&'static str, Datatype, Vec<i64>)) {
    match kind {
        ModelKind::Embed => (&EMBED_INPUTS, (EMBEDDING, Datatype::Fp32, vec![-1, -1])),
        _ => (&GENERATE_INPUTS, (TEXT_OUTPUT, Datatype::Bytes, vec![-1])),
    }
}

/// An input's shape as metadata says it (no batch dimension: a
/// generation's one text is `[1]`, an embedding call's texts `[-1]`).
fn shape(spec: &InputSpec, kind: ModelKind) -> Vec<i64> {
    match spec.arity {
        Arity::Texts if kind == ModelKind::Embed => vec![-1],
        Arity::Texts | Arity::One => vec![1],
        Arity::Many => vec![-1],
    }
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Embed => "embed",
        _ => "generate",
    }
}

pub fn model_metadata(info: &ModelInfo) -> Result<ModelMetadataResponse, KserveError> {
    let kind = kind(info)?;
    let (inputs, (output, datatype, output_shape)) = tensors(kind);
    Ok(ModelMetadataResponse {
        name: info.name.clone(),
        versions: vec![VERSION.into()],
        platform: BACKEND.into(),
        inputs: inputs
            .iter()
            .map(|spec| TensorMetadata {
                name: spec.name.into(),
                datatype: spec.datatypes[0].name().into(),
                shape: shape(spec, kind),
            })
            .collect(),
        outputs: vec![TensorMetadata {
            name: output.into(),
            datatype: datatype.name().into(),
            shape: output_shape,
        }],
    })
}

/// The configuration Triton would have for such a model: no batch
/// dimension (`max_batch_size` 0), a generation model decoupled (many
/// responses per request, through ModelStreamInfer), its optional inputs
/// marked optional; `parameters` say its kind and context length.
pub fn model_config(info: &ModelInfo) -> Result<ModelConfig, KserveError> {
    let kind = kind(info)?;
    let (inputs, (output, datatype, output_shape)) = tensors(kind);
    let mut parameters = std::collections::HashMap::new();
    parameters.insert(
        "kind".to_string(),
        ModelParameter {
            string_value: kind_name(kind).into(),
        },
    );
    if info.context_length > 0 {
        parameters.insert(
            "context_length".to_string(),
            ModelParameter {
                string_value: info.context_length.to_string(),
            },
        );
    }
    Ok(ModelConfig {
        name: info.name.clone(),
        platform: String::new(),
        backend: BACKEND.into(),
        max_batch_size: 0,
        input: inputs
            .iter()
            .map(|spec| ModelInput {
                name: spec.name.into(),
                data_type: spec.datatypes[0].config_type() as i32,
                dims: shape(spec, kind),
                optional: !spec.required,
            })
            .collect(),
        output: vec![ModelOutput {
            name: output.into(),
            data_type: datatype.config_type() as i32,
            dims: output_shape,
        }],
        parameters,
        model_transaction_policy: Some(ModelTransactionPolicy {
            decoupled: kind == ModelKind::Generate,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_proto::inference::v1::WorkerStatus;
    use mig_proto::kserve::DataType;

    fn info(kind: ModelKind, health: WorkerHealth) -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            kind: kind as i32,
            context_length: 2048,
            workers: vec![WorkerStatus {
                health: health as i32,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_generation_model_is_decoupled_and_unbatched() {
        let config = model_config(&info(ModelKind::Generate, WorkerHealth::Serving)).unwrap();
        assert_eq!(config.max_batch_size, 0);
        assert!(config.model_transaction_policy.unwrap().decoupled);
        assert_eq!(config.input[0].name, "text_input");
        assert_eq!(config.input[0].data_type, DataType::TypeString as i32);
        assert!(!config.input[0].optional);
        assert!(config.input[1..].iter().all(|i| i.optional));
        assert_eq!(config.output[0].name, "text_output");
        assert_eq!(config.parameters["context_length"].string_value, "2048");

        let metadata = model_metadata(&info(ModelKind::Generate, WorkerHealth::Serving)).unwrap();
        assert_eq!(metadata.versions, ["1"]);
        let max_tokens = &metadata.inputs[1];
        assert_eq!(
            (max_tokens.name.as_str(), max_tokens.datatype.as_str()),
            ("max_tokens", "INT32")
        );
    }

    #[test]
    fn an_embedding_model_takes_n_texts() {
        let m = model_metadata(&info(ModelKind::Embed, WorkerHealth::Serving)).unwrap();
        assert_eq!(m.inputs[0].shape, [-1]);
        assert_eq!(m.outputs[0].name, "embedding");
        assert_eq!(m.outputs[0].shape, [-1, -1]);
        let config = model_config(&info(ModelKind::Embed, WorkerHealth::Serving)).unwrap();
        assert!(!config.model_transaction_policy.unwrap().decoupled);
    }

    #[test]
    fn readiness_and_versions() {
        assert!(is_ready(&info(ModelKind::Generate, WorkerHealth::Serving)));
        assert!(!is_ready(&info(
            ModelKind::Generate,
            WorkerHealth::NotServing
        )));
        assert!(model_metadata(&info(ModelKind::Unspecified, WorkerHealth::NotServing)).is_err());
        assert!(check_version("m", "").is_ok() && check_version("m", "1").is_ok());
        assert_eq!(
            check_version("m", "2").unwrap_err().to_string(),
            "model `m` has one version, `1`; version `2` is not served"
        );
    }
}
