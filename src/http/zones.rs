//! `/v1/zones`: hosted zones and their rrsets as JSON.
//!
//! This module owns the JSON shapes of zones and rrsets and turns request bodies into
//! validated changes, naming the offending field (`operations[2].records[0]`) on error. It
//! never writes: every change goes to the daemon's single writer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ApiError, authenticate, permit};
use crate::daemon::shared::{SecondaryZoneStatus, Shared, SoaRequest, WriteError};
use crate::daemon::tokens::{Access, Target};
use crate::zone::edit::{ChangeKind, RrsetChange};
use crate::zone::master::{MAX_TTL, parse_api_name, parse_rdata_text, parse_record_type};
use crate::zone::{Zone, limits, writer};

type AppState = Arc<Shared>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateZone {
    pub name: String,
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub soa: Option<SoaJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaJson {
    pub mname: Option<String>,
    pub rname: Option<String>,
    pub refresh: Option<u32>,
    pub retry: Option<u32>,
    pub expire: Option<u32>,
    pub minimum: Option<u32>,
    pub ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRecords {
    pub operations: Vec<Operation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub op: OpKind,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub records: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Add,
    Replace,
    Delete,
}

/// An rrset as the API shows it: record data in presentation format.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RrsetJson {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub records: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ZoneJson {
    name: String,
    serial: u32,
    records: usize,
    soa: String,
    nameservers: Vec<String>,
}

fn zone_json(zone: &Zone) -> ZoneJson {
    let nameservers = zone
        .view()
        .node(zone.origin())
        .and_then(|n| n.rrset(RecordType::NS))
        .map(|s| {
            s.records
                .iter()
                .map(|r| writer::rdata_text(&r.data))
                .collect()
        })
        .unwrap_or_default();
    ZoneJson {
        name: writer::name_text(zone.origin()),
        serial: zone.serial(),
        records: zone.record_count(),
        soa: writer::rdata_text(&zone.soa().data),
        nameservers,
    }
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message).with_field(field)
}

/// Well-formed data that no DNS answer could ever carry.
fn unservable(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unservable", message).with_field(field)
}

/// Parses a JSON body, naming the field at fault.
pub(super) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is over the size limit",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid", r.body_text())
        }
    })?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let message = e.into_inner().to_string();
        let err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("invalid JSON body: {message}"),
        );
        if field.is_empty() {
            err
        } else {
            err.with_field(field)
        }
    })?;
    // One JSON value and nothing after it but whitespace.
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("invalid JSON body: data after the JSON value: {e}"),
        )
    })?;
    Ok(value)
}

fn zone_name(text: &str) -> Result<Name, ApiError> {
    let mut name = parse_api_name(text, &Name::root()).map_err(|m| bad("zone", m))?;
    name.set_fqdn(true);
    if name.is_root() || name.is_wildcard() {
        return Err(bad("zone", format!("{text} is not a zone name")));
    }
    Ok(name.to_lowercase())
}

pub(super) fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::NotFound(z) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("zone {z} not found"),
        ),
        WriteError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        WriteError::Invalid(e) => {
            let err = ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.message);
            match e.operation {
                Some(i) => err.with_field(format!("operations[{i}]")),
                None => err,
            }
        }
        WriteError::Io { .. } => {
            tracing::error!(error = %e, "zone write failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string())
        }
    }
}

pub async fn list(
    State(shared): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let set = shared.zones.load();
    let mut zones: Vec<ZoneJson> = set
        .zones()
        .iter()
        .filter(|z| grant.sees_zone(z.origin()))
        .map(|z| zone_json(z))
        .collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(zones).into_response())
}

pub async fn create(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let req: CreateZone = parse_body(body)?;
    let origin = zone_name(&req.name).map_err(|e| e.with_field("name"))?;
    permit(&grant, Access::Write, Target::Zone(&origin))?;
    let mut nameservers = Vec::new();
    for (i, ns) in req.nameservers.iter().enumerate() {
        let field = format!("nameservers[{i}]");
        if !ns.ends_with('.') {
            return Err(bad(
                field,
                format!("{ns} must be an absolute name ending with a dot"),
            ));
        }
        nameservers.push(parse_api_name(ns, &Name::root()).map_err(|m| bad(field, m))?);
    }
    if nameservers.is_empty() && shared.config.zone_defaults.nameservers.is_empty() {
        return Err(bad(
            "nameservers",
            "at least one name server is needed (and zone_defaults.nameservers is empty)",
        ));
    }
    let soa = req.soa.unwrap_or_default();
    let absolute = |v: &Option<String>, field: &str| -> Result<Option<Name>, ApiError> {
        v.as_deref()
            .map(|t| {
                if !t.ends_with('.') {
                    return Err(bad(
                        field,
                        format!("{t} must be an absolute name ending with a dot"),
                    ));
                }
                parse_api_name(t, &Name::root()).map_err(|m| bad(field, m))
            })
            .transpose()
    };
    for (field, v) in [
        ("soa.refresh", soa.refresh),
        ("soa.retry", soa.retry),
        ("soa.expire", soa.expire),
        ("soa.minimum", soa.minimum),
        ("soa.ttl", soa.ttl),
    ] {
        if v.is_some_and(|v| v > MAX_TTL) {
            return Err(bad(field, format!("must be at most {MAX_TTL}")));
        }
    }
    let request = SoaRequest {
        mname: absolute(&soa.mname, "soa.mname")?,
        rname: absolute(&soa.rname, "soa.rname")?,
        refresh: soa.refresh,
        retry: soa.retry,
        expire: soa.expire,
        minimum: soa.minimum,
        ttl: soa.ttl,
    };
    let zone = shared
        .create_zone(origin, nameservers, request)
        .await
        .map_err(write_error)?;
    Ok((StatusCode::CREATED, Json(zone_json(&zone))).into_response())
}

/// The served zone named `zone`, if the caller may read it (checked before the zone is
/// looked up, so a scoped token cannot probe which zones exist).
fn readable_zone(shared: &Shared, headers: &HeaderMap, zone: &str) -> Result<Arc<Zone>, ApiError> {
    let grant = authenticate(shared, headers)?;
    permit(&grant, Access::Read, Target::Zone(&zone_name(zone)?))?;
    served_zone(shared, zone)
}

fn served_zone(shared: &Shared, zone: &str) -> Result<Arc<Zone>, ApiError> {
    let origin = zone_name(zone)?;
    shared.zones.load().get(&origin).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("zone {} not found", writer::name_text(&origin)),
        )
    })
}

pub async fn show(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(zone): Path<String>,
) -> Result<Response, ApiError> {
    let zone = readable_zone(&shared, &headers, &zone)?;
    /// One zone, with what each of its secondaries has had.
    #[derive(Serialize)]
    struct Shown {
        #[serde(flatten)]
        zone: ZoneJson,
        secondaries: Vec<SecondaryZoneStatus>,
    }
    Ok(Json(Shown {
        secondaries: shared.transfer_status.zone(zone.origin()),
        zone: zone_json(&zone),
    })
    .into_response())
}

/// `PATCH /v1/zones/{zone}`: the zone's own settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSettings {
    /// Sign the zone with DNSSEC (overrides `dnssec.enabled`).
    pub dnssec: Option<bool>,
    /// Denial of existence, `"nsec"` or `"nsec3"` (overrides `dnssec.denial`).
    pub dnssec_denial: Option<crate::dnssec::Denial>,
    /// Seconds a ZSK signs before it is rolled by itself, 0: never (overrides
    /// `dnssec.zsk_lifetime_secs`).
    pub dnssec_zsk_lifetime_secs: Option<u64>,
    /// The same for the KSK or CSK (overrides `dnssec.ksk_lifetime_secs`).
    pub dnssec_ksk_lifetime_secs: Option<u64>,
}

pub async fn patch_zone(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(zone): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let origin = zone_name(&zone)?;
    permit(&grant, Access::Write, Target::Zone(&origin))?;
    let req: ZoneSettings = parse_body(body)?;
    if req.dnssec.is_none()
        && req.dnssec_denial.is_none()
        && req.dnssec_zsk_lifetime_secs.is_none()
        && req.dnssec_ksk_lifetime_secs.is_none()
    {
        return Err(bad(
            "dnssec",
            "nothing to change: give \"dnssec\": true or false, \"dnssec_denial\": \"nsec\" or \"nsec3\", \"dnssec_zsk_lifetime_secs\" or \"dnssec_ksk_lifetime_secs\"",
        ));
    }
    for (key, secs) in [
        ("dnssec_zsk_lifetime_secs", req.dnssec_zsk_lifetime_secs),
        ("dnssec_ksk_lifetime_secs", req.dnssec_ksk_lifetime_secs),
    ] {
        if let Some(secs) = secs
            && let Err((key, why)) = crate::dnssec::check_key_lifetime(key, secs)
        {
            return Err(bad(key, why));
        }
    }
    let zone = shared
        .set_zone_dnssec(
            &origin,
            crate::daemon::shared::ZoneDnssecSettings {
                enabled: req.dnssec,
                denial: req.dnssec_denial,
                zsk_lifetime_secs: req.dnssec_zsk_lifetime_secs,
                ksk_lifetime_secs: req.dnssec_ksk_lifetime_secs,
            },
        )
        .await
        .map_err(write_error)?;
    Ok(Json(zone_json(&zone)).into_response())
}

/// `GET /v1/zones/{zone}/dnssec`: whether it is signed, its keys (public parts) and the DS
/// records for the parent.
pub async fn dnssec(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(zone): Path<String>,
) -> Result<Response, ApiError> {
    let zone = readable_zone(&shared, &headers, &zone)?;
    let view = shared.dnssec_view(zone.origin()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("zone {} not found", writer::name_text(zone.origin())),
        )
    })?;
    Ok(Json(view).into_response())
}

/// `POST /v1/zones/{zone}/dnssec/rollover` `{"key": "zsk"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollover {
    pub key: crate::dnssec::keys::Role,
}

pub async fn rollover(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(zone): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let origin = zone_name(&zone)?;
    permit(&grant, Access::Write, Target::Zone(&origin))?;
    let req: Rollover = parse_body(body)?;
    let view = shared
        .start_rollover(&origin, req.key)
        .await
        .map_err(write_error)?;
    Ok(Json(view).into_response())
}

pub async fn delete(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(zone): Path<String>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    let origin = zone_name(&zone)?;
    permit(&grant, Access::Write, Target::Zone(&origin))?;
    shared.delete_zone(&origin).await.map_err(write_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
pub struct RecordFilter {
    name: Option<String>,
    #[serde(rename = "type")]
    rtype: Option<String>,
}

/// Every rrset of the zone, in canonical order, optionally filtered by name and type.
pub fn rrsets(zone: &Zone, name: Option<&Name>, rtype: Option<RecordType>) -> Vec<RrsetJson> {
    let view = zone.view();
    let mut records: Vec<_> = view
        .records()
        .filter(|r| name.is_none_or(|n| r.name == *n))
        .filter(|r| rtype.is_none_or(|t| r.record_type() == t))
        .collect();
    records.sort_by_cached_key(|r| {
        (
            r.name.clone(),
            u16::from(r.record_type()),
            writer::rdata_text(&r.data),
        )
    });
    let mut out: Vec<RrsetJson> = Vec::new();
    for r in records {
        let name = writer::name_text(&r.name);
        let rtype = r.record_type().to_string();
        let data = writer::rdata_text(&r.data);
        match out.last_mut() {
            Some(last) if last.name == name && last.rtype == rtype => last.records.push(data),
            _ => out.push(RrsetJson {
                name,
                rtype,
                ttl: r.ttl,
                records: vec![data],
            }),
        }
    }
    out
}

pub async fn records(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(zone): Path<String>,
    Query(filter): Query<RecordFilter>,
) -> Result<Response, ApiError> {
    let zone = readable_zone(&shared, &headers, &zone)?;
    let name = filter
        .name
        .as_deref()
        .map(|n| parse_api_name(n, zone.origin()).map_err(|m| bad("name", m)))
        .transpose()?;
    let rtype = filter
        .rtype
        .as_deref()
        .map(|t| {
            t.to_ascii_uppercase()
                .parse::<RecordType>()
                .map_err(|_| bad("type", format!("unknown type {t}")))
        })
        .transpose()?;
    Ok(Json(rrsets(&zone, name.as_ref(), rtype)).into_response())
}

pub async fn patch_records(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(zone): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let grant = authenticate(&shared, &headers)?;
    permit(&grant, Access::Write, Target::Zone(&zone_name(&zone)?))?;
    let zone = served_zone(&shared, &zone)?;
    let req: PatchRecords = parse_body(body)?;
    if req.operations.is_empty() {
        return Err(bad("operations", "no operations"));
    }
    let origin = zone.origin().clone();
    let mut changes = Vec::with_capacity(req.operations.len());
    let mut planned: HashMap<(Name, RecordType), Vec<RData>> = HashMap::new();
    for (i, op) in req.operations.iter().enumerate() {
        let at = |f: &str| format!("operations[{i}].{f}");
        let name = parse_api_name(&op.name, &origin).map_err(|m| bad(at("name"), m))?;
        if !origin.zone_of(&name) {
            return Err(bad(
                at("name"),
                format!(
                    "{} is outside the zone {}",
                    writer::name_text(&name),
                    writer::name_text(&origin)
                ),
            ));
        }
        let rtype = parse_record_type(&op.rtype).map_err(|m| bad(at("type"), m))?;
        if op.ttl.is_some_and(|t| t > MAX_TTL) {
            return Err(bad(at("ttl"), format!("must be at most {MAX_TTL}")));
        }
        let shown = || format!("{rtype} at {}", writer::name_text(&name));
        let mut records: Vec<RData> = Vec::with_capacity(op.records.len());
        for (j, text) in op.records.iter().enumerate() {
            let field = at(&format!("records[{j}]"));
            let data = parse_rdata_text(rtype, text, &origin).map_err(|m| bad(&field, m))?;
            if let Some(problem) = limits::rdata_problem(limits::rdata_len(&data)) {
                return Err(unservable(field, format!("{}: {problem}", shown())));
            }
            records.push(data);
        }
        // The rrset as this request leaves it must fit an answer. The writer's zone build
        // checks again, against the zone as it is then.
        let rrset = planned.entry((name.clone(), rtype)).or_insert_with(|| {
            zone.view()
                .node(&name)
                .and_then(|n| n.rrset(rtype))
                .map(|s| s.records.iter().map(|r| r.data.clone()).collect())
                .unwrap_or_default()
        });
        match op.op {
            OpKind::Replace => *rrset = Vec::new(),
            OpKind::Delete if records.is_empty() => rrset.clear(),
            OpKind::Delete => rrset.retain(|d| !records.contains(d)),
            OpKind::Add => {}
        }
        if !matches!(op.op, OpKind::Delete) {
            for data in &records {
                if !rrset.contains(data) {
                    rrset.push(data.clone());
                }
            }
            let size = limits::answer_size(&name, rrset.iter().map(limits::rdata_len));
            if let Some(problem) = limits::answer_problem(size, rrset.len()) {
                return Err(unservable(at("records"), format!("{}: {problem}", shown())));
            }
        }
        changes.push(RrsetChange {
            kind: match op.op {
                OpKind::Add => ChangeKind::Add,
                OpKind::Replace => ChangeKind::Replace,
                OpKind::Delete => ChangeKind::Delete,
            },
            name,
            rtype,
            ttl: op.ttl,
            records,
        });
    }
    let zone = shared
        .change_records(&origin, changes)
        .await
        .map_err(write_error)?;
    Ok(Json(zone_json(&zone)).into_response())
}

pub async fn export(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(zone): Path<String>,
) -> Result<Response, ApiError> {
    let zone = readable_zone(&shared, &headers, &zone)?;
    Ok((
        [(header::CONTENT_TYPE, "text/dns; charset=utf-8")],
        writer::to_master_text(&zone),
    )
        .into_response())
}
