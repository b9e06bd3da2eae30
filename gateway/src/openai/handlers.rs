//! The endpoints. Each authenticates the caller with the same check the
//! gRPC front runs (the `authorization: Bearer` header, the same tenants),
//! turns the body into the project's own message and calls the shared
//! `Inference` service with the caller, the arrival and
//! [`Protocol::OpenAi`] in the request's extensions: admission, quotas,
//! routing and metrics are the gRPC path's own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mig_proto::inference::v1::inference_server::Inference;
use mig_proto::inference::v1::{FinishReason, GenerateRequest, ListModelsRequest, ModelKind};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::answer::{self, Head, Kind};
use super::convert::{self, Answer, Encoding};
use super::error::{json_response, ApiError};
use super::stream;
use super::wire::Sampling;
use crate::request::layers::Stamp;
use crate::request::protocol::Protocol;
use crate::request::service::InferenceService;
use crate::tenancy::Tenancy;

/// Largest request body, in bytes: above every field limit the request
/// path checks (256 messages, a context's worth of prompt), so those name
/// the field; this only bounds what is read before parsing.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What the endpoints share.
#[derive(Clone)]
pub struct Front {
    pub inference: Arc<InferenceService>,
    pub tenancy: Arc<Tenancy>,
}

impl Front {
    /// The caller of a request with these headers, as the gRPC front finds
    /// it, and `message` ready for the shared service.
    fn call<T>(&self, headers: &HeaderMap, message: T) -> Result<tonic::Request<T>, ApiError> {
        let arrived = Instant::now();
        let caller = self
            .tenancy
            .authenticate(headers)
            .map_err(|s| ApiError::from_status(&s))?;
        let mut request = tonic::Request::new(message);
        let extensions = request.extensions_mut();
        extensions.insert(caller);
        extensions.insert(Stamp {
            arrived,
            deadline: None,
        });
        extensions.insert(Protocol::OpenAi);
        Ok(request)
    }

    /// Authenticates, then reads the body as `T`.
    async fn parse<T: DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(T, tonic::Request<()>), ApiError> {
        // Who calls is known before the body is read: an unknown caller
        // costs no parsing.
        let request = self.call(headers, ())?;
        let bytes = read_body(body).await?;
        let mut json = serde_json::Deserializer::from_slice(&bytes);
        let parsed = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            let mut path = e.path().to_string();
            if path == "." {
                // The sampling fields are flattened into the request,
                // where the path is lost: read them alone to find it.
                if let Err(inner) = serde_path_to_error::deserialize::<_, Sampling>(
                    &mut serde_json::Deserializer::from_slice(&bytes),
                ) {
                    path = inner.path().to_string();
                }
            }
            let error = without_long_values(&e.into_inner().to_string());
            match missing_field(&error) {
                Some(field) => {
                    // Inside an object (`messages[0]`), the field's full path.
                    let field = match path.as_str() {
                        "." => field,
                        parent => format!("{parent}.{field}"),
                    };
                    ApiError::invalid(&field, format!("the body has no `{field}`"))
                }
                None if path != "." => ApiError::invalid(&path, format!("`{path}`: {error}")),
                None => ApiError::bad_request(format!("the body is not a valid request: {error}")),
            }
        })?;
        json.end()
            .map_err(|e| ApiError::bad_request(format!("the body is not a valid request: {e}")))?;
        Ok((parsed, request))
    }
}

/// How long a request body may take to arrive once its head has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a body of at most [`MAX_BODY_BYTES`], within [`BODY_TIMEOUT`].
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES));
    let Ok(read) = read.await else {
        return Err(ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            ..ApiError::bad_request(format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ))
        });
    };
    read.map_err(|_| ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..ApiError::bad_request(format!(
            "the body is larger than {MAX_BODY_BYTES} bytes, or was cut"
        ))
    })
}

/// A decoder's message with the value it quotes (`invalid type: string
/// "...", expected u32`) cut to what an error may repeat.
fn without_long_values(error: &str) -> String {
    if let (Some(start), Some(end)) = (error.find(" \""), error.rfind("\", expected")) {
        if start + 2 <= end {
            let value = &error[start + 2..end];
            return format!(
                "{} \"{}\"{}",
                &error[..start],
                mig_serve::limits::shown(value),
                &error[end + 1..]
            );
        }
    }
    error.to_string()
}

/// The field serde names in "missing field `x`".
fn missing_field(error: &str) -> Option<String> {
    let rest = error.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(field, _)| field.to_string())
}

/// A request with another's extensions (the caller, arrival, protocol).
fn with_extensions<T>(message: T, from: tonic::Request<()>) -> tonic::Request<T> {
    let (metadata, extensions, ()) = from.into_parts();
    tonic::Request::from_parts(metadata, extensions, message)
}

/// `POST /v1/chat/completions`.
pub async fn chat(State(front): State<Front>, headers: HeaderMap, body: Body) -> Response {
    let answered = async {
        let (request, call) = front.parse(&headers, body).await?;
        let (generate, answer) = convert::chat(request)?;
        generate_answer(&front, with_extensions(generate, call), answer, Kind::Chat).await
    };
    answered.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/completions`.
pub async fn completions(State(front): State<Front>, headers: HeaderMap, body: Body) -> Response {
    let answered = async {
        let (request, call) = front.parse(&headers, body).await?;
        let (generate, answer) = convert::completion(request)?;
        generate_answer(
            &front,
            with_extensions(generate, call),
            answer,
            Kind::Completion,
        )
        .await
    };
    answered.await.unwrap_or_else(IntoResponse::into_response)
}

/// A generation, whole or streamed.
async fn generate_answer(
    front: &Front,
    request: tonic::Request<GenerateRequest>,
    answer: Answer,
    kind: Kind,
) -> Result<Response, ApiError> {
    let head = Head::new(kind, &request.get_ref().model, answer.logprobs);
    if answer.stream {
        // Errors before the first token (admission, quotas, routing) are
        // still the response's status; later ones are events.
        let messages = front
            .inference
            .generate_stream(request)
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        return Ok(stream::respond(messages, head, answer));
    }
    let whole = front
        .inference
        .generate(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    let finish = FinishReason::try_from(whole.finish_reason).unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        &head.whole(
            &whole.text,
            finish,
            &whole.logprobs,
            whole.usage.as_ref(),
            whole.served_by.as_ref(),
        ),
    ))
}

/// `POST /v1/embeddings`.
pub async fn embeddings(State(front): State<Front>, headers: HeaderMap, body: Body) -> Response {
    let answered = async {
        let (request, call) = front.parse(&headers, body).await?;
        let (embed, encoding) = convert::embedding(request)?;
        let model = embed.model.clone();
        let response = front
            .inference
            .embed(with_extensions(embed, call))
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        Ok::<_, ApiError>(json_response(
            StatusCode::OK,
            &answer::embeddings(&model, &response, encoding == Encoding::Base64),
        ))
    };
    answered.await.unwrap_or_else(IntoResponse::into_response)
}

/// The models the caller may call, in OpenAI's list shape.
async fn models_of(front: &Front, headers: &HeaderMap) -> Result<Vec<Value>, ApiError> {
    let request = front.call(headers, ListModelsRequest {})?;
    let listed = front
        .inference
        .list_models(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    Ok(listed
        .models
        .into_iter()
        .map(|m| {
            let kind = match ModelKind::try_from(m.kind).unwrap_or_default() {
                ModelKind::Embed => "embed",
                _ => "generate",
            };
            json!({
                "id": m.name,
                "object": "model",
                "created": 0,
                "owned_by": "mig-gateway",
                "mig": {"kind": kind, "context_length": m.context_length, "workers": m.workers.len()},
            })
        })
        .collect())
}

/// `GET /v1/models`.
pub async fn models(State(front): State<Front>, headers: HeaderMap) -> Response {
    match models_of(&front, &headers).await {
        Ok(data) => json_response(StatusCode::OK, &json!({"object": "list", "data": data})),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/models/{model}`: one the caller may call, else 404.
pub async fn model(
    State(front): State<Front>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match models_of(&front, &headers).await {
        Ok(data) => match data.into_iter().find(|m| m["id"] == name.as_str()) {
            Some(model) => json_response(StatusCode::OK, &model),
            None => ApiError {
                status: StatusCode::NOT_FOUND,
                code: Some("model_not_found"),
                kind: "not_found_error",
                ..ApiError::invalid(
                    "model",
                    format!(
                        "no model `{}` here (or not one this key may call)",
                        mig_serve::limits::shown(&name)
                    ),
                )
            }
            .into_response(),
        },
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(
            missing_field("missing field `model` at line 1 column 2").as_deref(),
            Some("model")
        );
        assert_eq!(missing_field("expected value"), None);
    }

    #[test]
    fn a_quoted_value_is_cut() {
        let long = format!(
            "invalid type: string \"{}\", expected u32 at line 1 column 9",
            "a".repeat(5000)
        );
        let cut = without_long_values(&long);
        assert!(cut.len() < 200, "{cut}");
        assert!(cut.ends_with(", expected u32 at line 1 column 9"), "{cut}");
    }
}
