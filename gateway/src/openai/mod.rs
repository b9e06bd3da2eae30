//! The OpenAI-compatible HTTP front (`--http-listen`): what OpenAI's SDKs,
//! curl scripts and tools built on them call. It is a wire format, not a
//! second router: each endpoint turns its JSON into the project's own
//! message and calls the same `Inference` service the gRPC front serves,
//! so tenants, quotas, admission, routing and metrics (labelled
//! `protocol="openai"`) are one path.
//!
//! # Layout
//! - [`wire`]: the request bodies as read.
//! - [`convert`]: bodies into the project's messages; what is not served
//!   is refused naming the field.
//! - [`handlers`]: the endpoints (auth, the shared service call).
//! - [`answer`]: answers and stream chunks in OpenAI's JSON, with the
//!   `mig` extension object (the serving slice).
//! - [`stream`]: server-sent events.
//! - [`error`]: OpenAI's error shape and HTTP codes.
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{model}`.

pub mod answer;
pub mod convert;
pub mod error;
pub mod handlers;
pub mod stream;
pub mod wire;

use axum::routing::{get, post};
use axum::Router;

pub use handlers::Front;

/// The HTTP front's routes; any other path or method is answered in
/// OpenAI's error shape.
pub fn router(front: Front) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(handlers::chat))
        .route("/v1/completions", post(handlers::completions))
        .route("/v1/embeddings", post(handlers::embeddings))
        .route("/v1/models", get(handlers::models))
        .route("/v1/models/{model}", get(handlers::model))
        .fallback(|uri: axum::http::Uri| async move { error::ApiError::no_route(uri.path()) })
        .method_not_allowed_fallback(|| async { error::ApiError::method_not_allowed() })
        .with_state(front)
}
