//! Command-line clients of a running daemon: `mailzone zone …`.
//!
//! This module owns the subcommands that talk to the daemon's HTTP API (address and token
//! from the config, or from flags) and how their results are shown: readable tables by
//! default, the API's JSON with `--json`. It must not touch zone files itself: the daemon's
//! single writer does.

pub mod client;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::config::Config;
use client::{ApiClient, ClientError};

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The daemon's configuration (for its HTTP address and token).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// HTTP address of the daemon, overriding the config's `http.listen`.
    #[arg(long, global = true)]
    pub api: Option<SocketAddr>,
    /// Bearer token, overriding the config's token and `<keys_dir>/api-token`.
    #[arg(long, global = true, env = "MAILZONE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// List the hosted zones.
    List,
    /// Create a zone with its SOA and NS records.
    Create {
        zone: String,
        /// A name server (absolute name); repeat for several. Default: zone_defaults.nameservers.
        #[arg(long = "ns")]
        nameservers: Vec<String>,
    },
    /// Show a zone and its records.
    Show { zone: String },
    /// Delete a zone and its file.
    Delete { zone: String },
    /// Set the rrset NAME TYPE to the given records (none: delete the rrset).
    Set {
        zone: String,
        name: String,
        #[arg(value_name = "TYPE")]
        rtype: String,
        /// Record data in zone-file form, e.g. `10 mx1.example.net.`
        records: Vec<String>,
        #[arg(long)]
        ttl: Option<u32>,
        /// Add to the rrset instead of replacing it.
        #[arg(long)]
        add: bool,
    },
    /// Print the zone as a master file.
    Export { zone: String },
}

/// A failure of a client command, already worded for the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("no API token: pass --token, set MAILZONE_TOKEN, or run where {0} is readable")]
    NoToken(String),
}

fn client(args: &ApiArgs) -> Result<ApiClient, CliError> {
    let config = match &args.config {
        Some(f) => Config::load(f)?,
        None => Config::default(),
    };
    let addr = args.api.unwrap_or(config.http.listen);
    let token = match (&args.token, &config.http.token) {
        (Some(t), _) | (None, Some(t)) => t.clone(),
        (None, None) => {
            let path = crate::daemon::token::token_path(&config);
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .map_err(|_| CliError::NoToken(path.display().to_string()))?
        }
    };
    Ok(ApiClient::new(addr, token))
}

/// Runs one `zone` subcommand; returns what to print.
pub fn run_zone(args: &ApiArgs, command: &ZoneCommand) -> Result<String, CliError> {
    let api = client(args)?;
    let out = match command {
        ZoneCommand::List => {
            let v = api.request("GET", "/v1/zones", None)?;
            if args.json {
                pretty(&v)
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|z| {
                                vec![text(&z["name"]), text(&z["serial"]), text(&z["records"])]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["ZONE", "SERIAL", "RECORDS"], &rows)
            }
        }
        ZoneCommand::Create { zone, nameservers } => {
            let body = json!({"name": zone, "nameservers": nameservers});
            let v = api.request("POST", "/v1/zones", Some(&body))?;
            if args.json {
                pretty(&v)
            } else {
                format!(
                    "created {} serial {}\n",
                    text(&v["name"]),
                    text(&v["serial"])
                )
            }
        }
        ZoneCommand::Show { zone } => {
            let info = api.request("GET", &format!("/v1/zones/{zone}"), None)?;
            let records = api.request("GET", &format!("/v1/zones/{zone}/records"), None)?;
            if args.json {
                pretty(&json!({"zone": info, "rrsets": records}))
            } else {
                let mut rows = Vec::new();
                for set in records.as_array().into_iter().flatten() {
                    for r in set["records"].as_array().into_iter().flatten() {
                        rows.push(vec![
                            text(&set["name"]),
                            text(&set["ttl"]),
                            text(&set["type"]),
                            text(r),
                        ]);
                    }
                }
                format!(
                    "zone {}  serial {}  records {}\n\n{}",
                    text(&info["name"]),
                    text(&info["serial"]),
                    text(&info["records"]),
                    table(&["NAME", "TTL", "TYPE", "DATA"], &rows)
                )
            }
        }
        ZoneCommand::Delete { zone } => {
            api.request("DELETE", &format!("/v1/zones/{zone}"), None)?;
            if args.json {
                "{}\n".into()
            } else {
                format!("deleted {zone}\n")
            }
        }
        ZoneCommand::Set {
            zone,
            name,
            rtype,
            records,
            ttl,
            add,
        } => {
            let op = match (records.is_empty(), add) {
                (true, _) => "delete",
                (false, true) => "add",
                (false, false) => "replace",
            };
            let mut operation = json!({"op": op, "name": name, "type": rtype, "records": records});
            if let Some(t) = ttl {
                operation["ttl"] = json!(t);
            }
            let v = api.request(
                "PATCH",
                &format!("/v1/zones/{zone}/records"),
                Some(&json!({"operations": [operation]})),
            )?;
            if args.json {
                pretty(&v)
            } else {
                format!(
                    "{op} {name} {rtype}: zone {} serial {}\n",
                    text(&v["name"]),
                    text(&v["serial"])
                )
            }
        }
        ZoneCommand::Export { zone } => {
            api.request_text("GET", &format!("/v1/zones/{zone}/export"))?
        }
    };
    Ok(out)
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
