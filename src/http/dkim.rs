//! `/v1/dkim/sign` and `/v1/domains/{domain}/dkim/rotate`.
//!
//! This module maps DKIM requests and their failures to HTTP: 422 for a message that cannot
//! be signed (no header/body separator, no From), 404 for a domain that signs nothing, 409
//! when no key is active yet or a key file is unusable. Private keys never appear in a reply.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::domains::{association_error, domain_name};
use super::zones::parse_body;
use super::{ApiError, authenticate, permit};
use crate::daemon::shared::{Shared, SignError};
use crate::daemon::tokens::{Access, Target};

type AppState = Arc<Shared>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    pub domain: String,
    /// The raw RFC 5322 message.
    pub message: String,
    #[serde(default)]
    pub platform: Option<String>,
}

pub async fn sign(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let body: SignBody = parse_body(body)?;
    let domain = domain_name(&body.domain, "domain")?;
    // A platform-scoped token must name its platform.
    let platform = body.platform.as_deref().unwrap_or_default();
    permit(
        &grant,
        Access::Write,
        Target::Association(&domain, platform),
    )?;
    let signatures = shared
        .dkim_sign(&domain, body.platform.as_deref(), body.message.as_bytes())
        .map_err(|e| {
            let message = e.to_string();
            match e {
                SignError::Message(_) => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_message", message)
                        .with_field("message")
                }
                SignError::NotFound(_) => {
                    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
                }
                SignError::NotReady(_) => {
                    ApiError::new(StatusCode::CONFLICT, "no_active_key", message)
                }
                SignError::Key(_) => ApiError::new(StatusCode::CONFLICT, "key_unusable", message),
            }
        })?;
    Ok(Json(serde_json::json!({ "signatures": signatures })).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct RotateQuery {
    #[serde(default)]
    platform: Option<String>,
}

pub async fn rotate(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Query(q): Query<RotateQuery>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let domain = domain_name(&domain, "domain")?;
    let platform = q.platform.as_deref().unwrap_or_default();
    permit(
        &grant,
        Access::Write,
        Target::Association(&domain, platform),
    )?;
    let report = shared
        .rotate_dkim(&domain, q.platform.as_deref())
        .await
        .map_err(association_error)?;
    Ok(Json(report).into_response())
}
