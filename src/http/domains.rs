//! `/v1/domains`: associating domains with e-mail platforms.
//!
//! This module owns the JSON of associations and maps the product rules to HTTP: 409 with
//! `authoritative domain detected` (and the holder), 422 for an unknown platform, a missing
//! relay host or a family the platform cannot provide, 400 for a bad domain name. The work is
//! done by the daemon's single writer.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

use super::zones::{parse_body, write_error};
use super::{ApiError, authenticate, permit};
use crate::daemon::shared::{
    AssociateRequest, AssociationChange, AssociationError, AssociationKey, Shared,
};
use crate::daemon::tokens::{Access, Target};
use crate::provision::association::{Association, Mode, RuleError};
use crate::provision::records::{ExpectedRecord, Families, FamiliesPatch};
use crate::zone::master::parse_api_name;

type AppState = Arc<Shared>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociateBody {
    pub domain: String,
    pub platform: String,
    pub mode: Mode,
    #[serde(default)]
    pub relay_host: Option<String>,
    #[serde(default)]
    pub records: Families,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default, deserialize_with = "some_or_null")]
    pub relay_host: Option<Option<String>>,
    /// Only the families named change.
    #[serde(default)]
    pub records: Option<FamiliesPatch>,
}

/// `"relay_host": null` clears it; an absent key leaves it.
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
pub struct Flags {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    replace: bool,
    #[serde(default)]
    platform: Option<String>,
}

fn bad(
    status: StatusCode,
    code: &'static str,
    field: &str,
    message: impl Into<String>,
) -> ApiError {
    ApiError::new(status, code, message).with_field(field)
}

pub(super) fn domain_name(text: &str, field: &str) -> Result<Name, ApiError> {
    let mut name = parse_api_name(text, &Name::root())
        .map_err(|m| bad(StatusCode::BAD_REQUEST, "invalid", field, m))?;
    name.set_fqdn(true);
    if name.is_root() || name.is_wildcard() || name.num_labels() < 2 {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "invalid",
            field,
            format!("{text} is not a domain name"),
        ));
    }
    Ok(name.to_lowercase())
}

fn relay(text: Option<String>) -> Result<Option<String>, ApiError> {
    text.map(|t| {
        let mut n = parse_api_name(&t, &Name::root())
            .map_err(|m| bad(StatusCode::BAD_REQUEST, "invalid", "relay_host", m))?;
        n.set_fqdn(true);
        Ok(n.to_ascii())
    })
    .transpose()
}

pub(super) fn association_error(e: AssociationError) -> ApiError {
    let message = e.to_string();
    match e {
        AssociationError::UnknownPlatform(_) => bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_platform",
            "platform",
            message,
        ),
        AssociationError::Unprocessable { field, .. } => bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            field,
            message,
        ),
        AssociationError::Missing(m) => bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "platform_cannot_provide",
            &format!("records.{}", m.family),
            message,
        ),
        AssociationError::Rule(RuleError::AuthoritativeDomain { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "authoritative_domain", message)
        }
        AssociationError::Rule(_) | AssociationError::Zone(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", message)
        }
        AssociationError::Broken { .. } => {
            ApiError::new(StatusCode::CONFLICT, "broken_file", message)
        }
        AssociationError::NotFound { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
        }
        AssociationError::Write(w) => write_error(w),
        AssociationError::KeysPending => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
        }
    }
}

pub async fn associate(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Query(flags): Query<Flags>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let body: AssociateBody = parse_body(body)?;
    let domain = domain_name(&body.domain, "domain")?;
    permit(
        &grant,
        Access::Write,
        Target::Association(&domain, &body.platform),
    )?;
    let request = AssociateRequest {
        domain,
        platform: body.platform,
        mode: body.mode,
        relay_host: relay(body.relay_host)?,
        records: body.records,
    };
    let report = shared
        .associate(request, flags.dry_run, flags.replace)
        .await
        .map_err(association_error)?;
    let status = if flags.dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut value = serde_json::to_value(&report).unwrap_or_default();
    spf_replacing_the_served_one(&shared, &report.association, &mut value).await;
    Ok((status, Json(value)).into_response())
}

/// The association of `domain` the request means: `?platform=` or the only one.
fn pick(shared: &Shared, domain: &Name, platform: Option<String>) -> Result<String, ApiError> {
    if let Some(p) = platform {
        return Ok(p);
    }
    let set = shared.associations.load();
    let domain_text = domain.to_ascii();
    let mut platforms = set.for_domain(&domain_text).map(|a| a.platform.clone());
    match (platforms.next(), platforms.next()) {
        (Some(p), None) => Ok(p),
        (None, _) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{domain_text} is not associated"),
        )),
        (Some(_), Some(_)) => Err(bad(
            StatusCode::BAD_REQUEST,
            "invalid",
            "platform",
            "the domain has several associations: say which with ?platform=",
        )),
    }
}

pub async fn change(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Query(flags): Query<Flags>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let domain = domain_name(&domain, "domain")?;
    let body: ChangeBody = parse_body(body)?;
    let platform = pick(&shared, &domain, flags.platform)?;
    permit(
        &grant,
        Access::Write,
        Target::Association(&domain, &platform),
    )?;
    let relay_host = match body.relay_host {
        Some(r) => Some(relay(r)?),
        None => None,
    };
    let report = shared
        .change_association(
            &domain,
            &platform,
            AssociationChange {
                mode: body.mode,
                relay_host,
                records: body.records,
            },
            flags.dry_run,
            flags.replace,
        )
        .await
        .map_err(association_error)?;
    Ok(Json(report).into_response())
}

pub async fn remove(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let domain = domain_name(&domain, "domain")?;
    let platform = pick(&shared, &domain, flags.platform)?;
    permit(
        &grant,
        Access::Write,
        Target::Association(&domain, &platform),
    )?;
    let report = shared
        .dissociate(&domain, &platform)
        .await
        .map_err(association_error)?;
    Ok(Json(report).into_response())
}

/// An external domain that already serves an SPF record must not get a second one: its SPF
/// line to paste becomes the one merged record that replaces it, and `to_remove` lists the
/// served record(s).
async fn spf_replacing_the_served_one(
    shared: &Shared,
    a: &Association,
    value: &mut serde_json::Value,
) {
    if !value["zone"].is_null() || value["to_paste"].get("spf").is_none() {
        return;
    }
    let platforms = shared.platforms.load();
    let Some(platform) = platforms.iter().find(|p| p.id == a.platform) else {
        return;
    };
    let Some(prober) = crate::diagnose::prober(&shared.config.diagnosis) else {
        return;
    };
    let served = match crate::diagnose::served_spf_now(&prober, &a.domain).await {
        Ok(served) => served,
        Err(reason) => {
            // Said, not implied: without it the plain SPF line reads as "there is none",
            // and a second v=spf1 record makes SPF fail (RFC 7208 §4.5 permerror).
            value["served_spf"] = serde_json::json!({
                "checked": false,
                "reason": reason,
                "action": format!(
                    "if {} already publishes a v=spf1 TXT record, merge the line to paste into it instead of adding a second one (two SPF records make SPF fail); the diagnosis checks it once the records are in place",
                    a.domain
                ),
            });
            return;
        }
    };
    value["served_spf"] = serde_json::json!({ "checked": true, "records": served });
    if served.is_empty() {
        return;
    }
    let Ok(name) = Name::from_ascii(&a.domain) else {
        return;
    };
    let merged = crate::provision::spf::SpfRecord::merged(&served, &platform.spf);
    let line = ExpectedRecord::new(
        crate::provision::records::Family::Spf,
        &name,
        hickory_proto::rr::RecordType::TXT,
        platform.ttl,
        merged.to_string(),
    )
    .line;
    let remove: Vec<String> = served
        .iter()
        .map(|v| {
            crate::provision::records::zone_line(&a.domain, hickory_proto::rr::RecordType::TXT, v)
        })
        .collect();
    value["to_paste"]["spf"] = serde_json::json!([line]);
    value["to_remove"] = serde_json::json!({ "spf": remove });
}

/// Whether the caller may read this association (lists show only those).
fn sees(grant: &crate::daemon::tokens::Grant, a: &Association) -> bool {
    Name::from_ascii(&a.domain).is_ok_and(|d| grant.sees_association(&d, &a.platform))
}

#[derive(Serialize)]
struct AssociationView {
    #[serde(flatten)]
    association: Association,
    expected: Vec<ExpectedRecord>,
    /// The last diagnosis, if one ran.
    diagnosis: Option<Arc<crate::diagnose::check::Diagnosis>>,
}

fn view(shared: &Shared, a: &Association) -> AssociationView {
    let platforms = shared.platforms.load();
    // The same set as the POST response's `to_paste` (DKIM keys included).
    let expected = platforms
        .iter()
        .find(|p| p.id == a.platform)
        .and_then(|p| crate::provision::records::association_records(a, p).ok())
        .unwrap_or_default();
    AssociationView {
        association: a.clone(),
        expected,
        diagnosis: shared.diagnosis.get(&a.domain, &a.platform),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Only domains whose overall diagnosis is this (`ok`, `pending`, `warning`, `error`).
    #[serde(default)]
    status: Option<String>,
}

pub async fn list(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let set = shared.associations.load();
    let views: Vec<AssociationView> = set
        .all()
        .filter(|a| sees(&grant, a))
        .map(|a| view(&shared, a))
        .filter(|v| {
            q.status.as_deref().is_none_or(|s| {
                v.diagnosis
                    .as_ref()
                    .is_some_and(|d| d.overall.as_str() == s)
            })
        })
        .collect();
    Ok(Json(views).into_response())
}

pub async fn show(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let domain = domain_name(&domain, "domain")?.to_ascii();
    let set = shared.associations.load();
    let views: Vec<AssociationView> = set
        .for_domain(&domain)
        .filter(|a| sees(&grant, a))
        .map(|a| view(&shared, a))
        .collect();
    if views.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{domain} is not associated"),
        ));
    }
    Ok(Json(serde_json::json!({"domain": domain, "associations": views})).into_response())
}

/// Runs the diagnosis of a domain now and returns it.
pub async fn diagnose(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let domain = domain_name(&domain, "domain")?;
    let platform = pick(&shared, &domain, flags.platform)?;
    permit(
        &grant,
        Access::Write,
        Target::Association(&domain, &platform),
    )?;
    let association = shared
        .associations
        .load()
        .find(&domain.to_ascii(), &platform)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{domain} is not associated with {platform}"),
            )
        })?;
    let key = AssociationKey::new(&association.domain, &platform);
    let result = shared.diagnose(&key).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{domain} is no longer associated with {platform}"),
        )
    })?;
    Ok(Json(result).into_response())
}
