//! `/v1/tokens`: scoped API tokens, created, listed and revoked with the admin token.
//!
//! This module owns the JSON of tokens. The clear token is in the creation answer only; a
//! list never shows a token nor its hash. Storing and checking tokens is
//! [`crate::daemon::tokens`]'s job.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::zones::parse_body;
use super::{ApiError, require_token};
use crate::daemon::shared::Shared;
use crate::daemon::tokens::{Access, TokenStoreError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[serde(default)]
    pub name: String,
    pub access: Access,
    /// Zones the token reaches (and the names and associations in them).
    #[serde(default)]
    pub zones: Vec<String>,
    /// Or: the associations of this platform only.
    #[serde(default)]
    pub platform: Option<String>,
}

fn store_error(e: TokenStoreError) -> ApiError {
    match e {
        TokenStoreError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", m),
        TokenStoreError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        TokenStoreError::File { .. } => {
            tracing::error!(error = %e, "token store write failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string())
        }
    }
}

pub async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_token(&shared, &headers)?;
    let req: CreateToken = parse_body(body)?;
    let mut zones = Vec::with_capacity(req.zones.len());
    for (i, z) in req.zones.iter().enumerate() {
        zones.push(super::domains::domain_name(z, &format!("zones[{i}]"))?);
    }
    if let Some(p) = &req.platform
        && !shared.platforms.load().iter().any(|x| &x.id == p)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_platform",
            format!("unknown platform {p}"),
        )
        .with_field("platform"));
    }
    if req.name.len() > 200 {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "invalid", "at most 200 characters")
                .with_field("name"),
        );
    }
    let (shown, clear) = shared
        .tokens
        .create(
            req.name,
            req.access,
            zones,
            req.platform,
            crate::zone::set::unix_now(),
        )
        .await
        .map_err(store_error)?;
    let mut value = serde_json::to_value(&shown).unwrap_or_default();
    value["token"] = serde_json::json!(clear);
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

pub async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_token(&shared, &headers)?;
    Ok(Json(shared.tokens.list()).into_response())
}

pub async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_token(&shared, &headers)?;
    shared.tokens.revoke(&id).await.map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
