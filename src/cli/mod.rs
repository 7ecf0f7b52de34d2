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
    /// HTTP address of the daemon (`host:port` or `http://host:port`), overriding the
    /// config's `http.listen`.
    #[arg(long, global = true, value_name = "URL", value_parser = parse_api_address)]
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
        /// The zone's name, e.g. `shop.test`.
        zone: String,
        /// A name server (absolute name); repeat for several. Default: zone_defaults.nameservers.
        #[arg(long = "ns")]
        nameservers: Vec<String>,
    },
    /// Show a zone and its records.
    Show {
        /// The zone's name.
        zone: String,
    },
    /// Delete a zone and its file.
    Delete {
        /// The zone's name.
        zone: String,
    },
    /// Set the rrset NAME TYPE to the given records (none: delete the rrset).
    Set {
        /// The zone's name.
        zone: String,
        /// Owner name, relative to the zone unless it ends with a dot; `@` is the apex.
        name: String,
        /// Record type, e.g. `MX`, `TXT`, `A`.
        #[arg(value_name = "TYPE")]
        rtype: String,
        /// Record data in zone-file form, e.g. `10 mx1.example.net.`
        records: Vec<String>,
        /// TTL in seconds (default: the rrset's current TTL, else zone_defaults.ttl).
        #[arg(long)]
        ttl: Option<u32>,
        /// Add to the rrset instead of replacing it.
        #[arg(long)]
        add: bool,
    },
    /// Print the zone as a master file.
    Export {
        /// The zone's name.
        zone: String,
    },
    /// Print the DS records to hand to the registrar (the zone must be signed).
    Ds {
        /// The zone's name.
        zone: String,
    },
    /// Turn DNSSEC signing of a zone on or off (overrides `dnssec.enabled`).
    Dnssec {
        /// The zone's name.
        zone: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        setting: String,
    },
}

/// The record families an association can manage.
pub const FAMILIES: [&str; 8] = [
    "mx",
    "srv",
    "autoconfig",
    "spf",
    "dmarc",
    "dkim",
    "mta-sts",
    "tls-rpt",
];

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Associate a domain with a platform (records written if its zone is hosted here).
    Add {
        /// The domain, e.g. `shop.test`.
        domain: String,
        /// The platform's id (under `platforms:` in the daemon's config).
        #[arg(long)]
        platform: String,
        /// Share the domain with another mail service (needs --relay-host).
        #[arg(long)]
        non_authoritative: bool,
        /// Where mail for unknown recipients goes (non-authoritative mode).
        #[arg(long)]
        relay_host: Option<String>,
        /// Families to manage besides the defaults (all but dkim), e.g. `--with dkim`.
        #[arg(long, value_parser = FAMILIES)]
        with: Vec<String>,
        /// Families not to manage, e.g. `--skip dmarc --skip srv`.
        #[arg(long, value_parser = FAMILIES)]
        skip: Vec<String>,
        /// Replace user records that stand where a record must go.
        #[arg(long)]
        replace: bool,
        /// Show what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Change an association: families (`--with`, `--skip`), mode, relay host.
    Set {
        /// The associated domain.
        domain: String,
        /// The platform, when the domain has several associations.
        #[arg(long)]
        platform: Option<String>,
        /// Families to turn on, e.g. `--with dkim`; the others stay as they are.
        #[arg(long, value_parser = FAMILIES)]
        with: Vec<String>,
        /// Families to turn off, e.g. `--skip srv`; the others stay as they are.
        #[arg(long, value_parser = FAMILIES)]
        skip: Vec<String>,
        /// New mode.
        #[arg(long, value_parser = ["authoritative", "non-authoritative"])]
        mode: Option<String>,
        /// New relay host (non-authoritative mode).
        #[arg(long)]
        relay_host: Option<String>,
        /// Replace user records that stand where a record must go.
        #[arg(long)]
        replace: bool,
        /// Show what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the associations.
    List,
    /// Show a domain's associations and the records they need.
    Show {
        /// The associated domain.
        domain: String,
    },
    /// Print the records a domain needs, as zone-file lines.
    Records {
        /// The associated domain.
        domain: String,
    },
    /// Remove an association (its records go, replaced records come back).
    Remove {
        /// The associated domain.
        domain: String,
        /// The platform, when the domain has several associations.
        #[arg(long)]
        platform: Option<String>,
    },
}

/// The `records` object of a request: `with` families on, `skip` families off; a family
/// in both is refused.
fn families_json(with: &[String], skip: &[String]) -> Result<Value, CliError> {
    if let Some(f) = with.iter().find(|f| skip.contains(f)) {
        return Err(CliError::Failed(format!(
            "--with {f} and --skip {f} contradict each other"
        )));
    }
    let mut records = json!({});
    for f in with {
        records[f.as_str()] = json!(true);
    }
    for f in skip {
        records[f.as_str()] = json!(false);
    }
    Ok(records)
}

/// `--api`: `host:port`, `http://host:port` or `http://host:port/`.
pub fn parse_api_address(text: &str) -> Result<SocketAddr, String> {
    if text.starts_with("https://") {
        return Err("the API speaks plain HTTP: use http://host:port".into());
    }
    let bare = text.strip_prefix("http://").unwrap_or(text);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    if bare.contains('/') {
        return Err(format!("{text}: give only the address, without a path"));
    }
    std::net::ToSocketAddrs::to_socket_addrs(bare)
        .map_err(|e| format!("{text}: not host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("{text}: no address"))
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a scoped API token (needs the admin token); its secret is printed once.
    Create {
        /// What the token may do: read, or write (which includes read).
        #[arg(long, value_parser = ["read", "write"])]
        access: String,
        /// A zone the token reaches (its names and associations); repeat for several.
        /// Neither --zone nor --platform: every zone and association.
        #[arg(long = "zone")]
        zones: Vec<String>,
        /// Limit the token to the associations of this platform (and no zone).
        #[arg(long, conflicts_with = "zones")]
        platform: Option<String>,
        /// A label for humans, shown by `token list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the scoped tokens (never their secrets).
    List,
    /// Revoke a scoped token: refused from now on.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

/// Runs one `token` subcommand; returns what to print.
pub fn run_token(args: &ApiArgs, command: &TokenCommand) -> Result<String, CliError> {
    let api = client(args)?;
    let scope = |t: &Value| -> String {
        if let Some(p) = t["platform"].as_str() {
            format!("platform {p}")
        } else if let Some(z) = t["zones"].as_array().filter(|z| !z.is_empty()) {
            z.iter().map(text).collect::<Vec<_>>().join(" ")
        } else {
            "all".into()
        }
    };
    Ok(match command {
        TokenCommand::Create {
            access,
            zones,
            platform,
            name,
        } => {
            let body =
                json!({"access": access, "zones": zones, "platform": platform, "name": name});
            let v = api.request("POST", "/v1/tokens", Some(&body))?;
            if args.json {
                pretty(&v)
            } else {
                format!(
                    "token {} ({} on {}); keep it now, it is not shown again:\n{}\n",
                    text(&v["id"]),
                    text(&v["access"]),
                    scope(&v),
                    text(&v["token"])
                )
            }
        }
        TokenCommand::List => {
            let v = api.request("GET", "/v1/tokens", None)?;
            if args.json {
                pretty(&v)
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        vec![
                            text(&t["id"]),
                            text(&t["access"]),
                            scope(t),
                            text(&t["name"]),
                        ]
                    })
                    .collect();
                table(&["ID", "ACCESS", "SCOPE", "NAME"], &rows)
            }
        }
        TokenCommand::Revoke { id } => {
            api.request("DELETE", &format!("/v1/tokens/{id}"), None)?;
            if args.json {
                "{}\n".into()
            } else {
                format!("revoked {id}\n")
            }
        }
    })
}

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Sign the message on standard input; print the signed message.
    Sign {
        /// The signing domain (d=).
        #[arg(long)]
        domain: String,
        /// The platform whose key signs, when the domain has several associations.
        #[arg(long)]
        platform: Option<String>,
        /// Sign here with this PEM key instead of asking the daemon (needs --selector).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The selector (s=) of --key.
        #[arg(long)]
        selector: Option<String>,
    },
    /// Verify the DKIM signatures of the message on standard input through DNS.
    Verify {
        /// DNS server to ask (`IP` or `IP:PORT`); default: the first of /etc/resolv.conf.
        #[arg(long)]
        nameserver: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TsigCommand {
    /// Print a TSIG key of `transfer.keys` in the forms NSD, Knot and BIND configs take
    /// (generating its secret into `<keys_dir>/tsig/NAME.key` when absent).
    Show {
        /// The key's name in `transfer.keys`.
        name: String,
        /// The daemon's configuration (default: the embedded one).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// `mailzone health`: exit 0 when the daemon is ready (`/readyz`), or alive with `--live`
/// (`/healthz`); for container health checks, which have no HTTP client of their own.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The daemon's configuration (for its HTTP address); default: the embedded one.
    #[arg(long, short, env = "MAILZONE_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP address of the daemon (`host:port` or `http://host:port`), overriding the config.
    #[arg(long, value_name = "URL", value_parser = parse_api_address)]
    pub api: Option<SocketAddr>,
    /// Only check that the daemon answers (liveness), not that it is ready.
    #[arg(long)]
    pub live: bool,
}

/// Runs `mailzone health`; returns what to print.
pub fn run_health(args: &HealthArgs) -> Result<String, CliError> {
    let config = match &args.config {
        Some(f) => Config::load(f)?,
        None => Config::default(),
    };
    let mut addr = args.api.unwrap_or(config.http.listen);
    // A daemon listening on every address is asked on loopback.
    if addr.ip().is_unspecified() {
        let ip: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        addr.set_ip(ip);
    }
    let path = if args.live { "/healthz" } else { "/readyz" };
    // These endpoints need no token.
    let text = ApiClient::new(addr, String::new()).request_text("GET", path)?;
    Ok(if text.ends_with('\n') {
        text
    } else {
        format!("{text}\n")
    })
}

/// Runs one `tsig` subcommand locally (the secret never travels through the API).
pub fn run_tsig(command: &TsigCommand) -> Result<String, CliError> {
    match command {
        TsigCommand::Show { name, config } => {
            let config = match config {
                Some(f) => Config::load(f)?,
                None => Config::default(),
            };
            let key = crate::transfer::load_named(&config, name)
                .map_err(|e| CliError::Failed(e.to_string()))?;
            Ok(key.config_snippets())
        }
    }
}

/// `mailzone diagnose`: the checks of one domain, once, without a daemon.
#[derive(Debug, Clone, Args)]
pub struct DiagnoseArgs {
    /// The domain to check, e.g. `shop.example`.
    pub domain: String,
    /// The platform whose records the domain should carry.
    #[arg(long)]
    pub platform: String,
    /// The domain shares mailboxes with another service.
    #[arg(long)]
    pub non_authoritative: bool,
    /// Resolver used to find the nameservers (`IP:PORT`); default: the config's, or the system's.
    #[arg(long)]
    pub resolver: Option<SocketAddr>,
    /// Port the nameservers are asked on (default 53).
    #[arg(long)]
    pub port: Option<u16>,
    /// Configuration file (for the platforms and diagnosis settings).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the diagnosis as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
    #[error("{0}")]
    Failed(String),
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
        ZoneCommand::Ds { zone } => {
            let v = api.request("GET", &format!("/v1/zones/{zone}/dnssec"), None)?;
            if args.json {
                pretty(&v)
            } else {
                let ds: Vec<String> = v["ds"].as_array().into_iter().flatten().map(text).collect();
                if ds.is_empty() {
                    return Err(CliError::Failed(format!(
                        "{zone} has no DS records: it is not signed (mailzone zone dnssec {zone} on)"
                    )));
                }
                ds.join("\n") + "\n"
            }
        }
        ZoneCommand::Dnssec { zone, setting } => {
            let v = api.request(
                "PATCH",
                &format!("/v1/zones/{zone}"),
                Some(&json!({"dnssec": setting == "on"})),
            )?;
            if args.json {
                pretty(&v)
            } else {
                format!(
                    "zone {} DNSSEC {setting}: serial {}\n",
                    text(&v["name"]),
                    text(&v["serial"])
                )
            }
        }
    };
    Ok(out)
}

/// Runs one `domain` subcommand; returns what to print.
pub fn run_domain(args: &ApiArgs, command: &DomainCommand) -> Result<String, CliError> {
    let api = client(args)?;
    let changes = |v: &Value| -> String {
        let mut out = String::new();
        for l in v["removed"].as_array().into_iter().flatten() {
            out.push_str(&format!("- {}\n", text(l)));
        }
        for l in v["added"].as_array().into_iter().flatten() {
            out.push_str(&format!("+ {}\n", text(l)));
        }
        out
    };
    let out = match command {
        DomainCommand::Add {
            domain,
            platform,
            non_authoritative,
            relay_host,
            with,
            skip,
            replace,
            dry_run,
        } => {
            let records = families_json(with, skip)?;
            let mode = if *non_authoritative {
                "non-authoritative"
            } else {
                "authoritative"
            };
            let body = json!({"domain": domain, "platform": platform, "mode": mode, "relay_host": relay_host, "records": records});
            let v = api.request(
                "POST",
                &format!("/v1/domains?dry_run={dry_run}&replace={replace}"),
                Some(&body),
            )?;
            if args.json {
                pretty(&v)
            } else if v["zone"].is_null() {
                let mut out =
                    format!("{domain} is not hosted here: add these records to its zone\n");
                for (family, lines) in v["to_paste"].as_object().into_iter().flatten() {
                    out.push_str(&format!("; {family}\n"));
                    for l in lines.as_array().into_iter().flatten() {
                        out.push_str(&format!("{}\n", text(l)));
                    }
                }
                // Records the lines above replace (an existing SPF record).
                for (family, lines) in v["to_remove"].as_object().into_iter().flatten() {
                    out.push_str(&format!("; {family}: remove these records\n"));
                    for l in lines.as_array().into_iter().flatten() {
                        out.push_str(&format!("; remove: {}\n", text(l)));
                    }
                }
                out
            } else {
                let head = if *dry_run { "would change" } else { "changed" };
                let body = changes(&v);
                if body.is_empty() {
                    format!("{domain}: nothing to change\n")
                } else {
                    format!("{head} zone {}:\n{body}", text(&v["zone"]))
                }
            }
        }
        DomainCommand::List => {
            let v = api.request("GET", "/v1/domains", None)?;
            if args.json {
                pretty(&v)
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let hosted = if a["hosted"] == json!(true) {
                            "hosted"
                        } else {
                            "external"
                        };
                        vec![
                            text(&a["domain"]),
                            text(&a["platform"]),
                            text(&a["mode"]),
                            hosted.to_string(),
                        ]
                    })
                    .collect();
                table(&["DOMAIN", "PLATFORM", "MODE", "ZONE"], &rows)
            }
        }
        DomainCommand::Set {
            domain,
            platform,
            with,
            skip,
            mode,
            relay_host,
            replace,
            dry_run,
        } => {
            let mut body = json!({});
            if !with.is_empty() || !skip.is_empty() {
                body["records"] = families_json(with, skip)?;
            }
            if let Some(m) = mode {
                body["mode"] = json!(m);
            }
            if let Some(r) = relay_host {
                body["relay_host"] = json!(r);
            }
            let mut query = format!("?dry_run={dry_run}&replace={replace}");
            if let Some(p) = platform {
                query.push_str(&format!("&platform={p}"));
            }
            let v = api.request(
                "PATCH",
                &format!("/v1/domains/{domain}{query}"),
                Some(&body),
            )?;
            if args.json {
                pretty(&v)
            } else {
                let head = if *dry_run { "would change" } else { "changed" };
                let body = changes(&v);
                let families = enabled_families(&v["association"]["records"]);
                if body.is_empty() {
                    format!("{domain}: families {families}; no record changes\n")
                } else {
                    format!("{domain}: families {families}; {head}:\n{body}")
                }
            }
        }
        DomainCommand::Show { domain } => {
            let v = api.request("GET", &format!("/v1/domains/{domain}"), None)?;
            if args.json {
                pretty(&v)
            } else {
                show_domain(&v)
            }
        }
        DomainCommand::Records { domain } => {
            let v = api.request("GET", &format!("/v1/domains/{domain}"), None)?;
            if args.json {
                pretty(&v)
            } else {
                let mut out = String::new();
                for a in v["associations"].as_array().into_iter().flatten() {
                    out.push_str(&format!("; platform {}\n", text(&a["platform"])));
                    for r in a["expected"].as_array().into_iter().flatten() {
                        out.push_str(&format!("{}\n", text(&r["line"])));
                    }
                }
                out
            }
        }
        DomainCommand::Remove { domain, platform } => {
            let query = platform
                .as_ref()
                .map(|p| format!("?platform={p}"))
                .unwrap_or_default();
            let v = api.request("DELETE", &format!("/v1/domains/{domain}{query}"), None)?;
            if args.json {
                pretty(&v)
            } else {
                format!("removed {domain}\n{}", changes(&v))
            }
        }
    };
    Ok(out)
}

/// Runs one `dkim` subcommand on `input` (the message); returns what to print and whether
/// it succeeded (a failed verification is an answer, not an error).
pub fn run_dkim(
    args: &ApiArgs,
    command: &DkimCommand,
    input: &[u8],
) -> Result<(Vec<u8>, bool), CliError> {
    use crate::dkim::message::{Message, sign, to_crlf, verify};
    match command {
        DkimCommand::Sign {
            domain,
            platform,
            key,
            selector,
        } => {
            let headers: Vec<String> = match key {
                Some(path) => {
                    let selector = selector
                        .as_deref()
                        .ok_or_else(|| CliError::Failed("--key needs --selector".into()))?;
                    let key = crate::dkim::SigningKey::load(path)
                        .map_err(|e| CliError::Failed(e.to_string()))?;
                    let message =
                        Message::parse(input).map_err(|e| CliError::Failed(e.to_string()))?;
                    let now = crate::zone::set::unix_now();
                    vec![
                        sign(&message, domain, selector, &key, now)
                            .map_err(|e| CliError::Failed(e.to_string()))?,
                    ]
                }
                None => {
                    let api = client(args)?;
                    let body = json!({"domain": domain, "platform": platform, "message": String::from_utf8_lossy(input)});
                    let v = api.request("POST", "/v1/dkim/sign", Some(&body))?;
                    v["signatures"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect()
                }
            };
            let mut out: Vec<u8> = headers.concat().into_bytes();
            out.extend_from_slice(&to_crlf(input));
            Ok((out, true))
        }
        DkimCommand::Verify { nameserver } => {
            let mut config = crate::config::DiagnosisConfig::default();
            if let Some(s) = nameserver {
                config.resolver = Some(
                    s.parse::<SocketAddr>()
                        .or_else(|_| {
                            s.parse::<std::net::IpAddr>()
                                .map(|ip| SocketAddr::new(ip, 53))
                        })
                        .map_err(|_| {
                            CliError::Failed(format!("{s} is not an IP address or IP:PORT"))
                        })?,
                );
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
            let _entered = runtime.enter();
            // The diagnosis's own client: a reply counts only from the server asked, with our
            // ID and our question (a spoofed key must not make a forged message pass).
            let prober = crate::diagnose::probe::Prober::new(&config).ok_or_else(|| {
                CliError::Failed("no nameserver in /etc/resolv.conf: pass --nameserver".into())
            })?;
            let message = Message::parse(input).map_err(|e| CliError::Failed(e.to_string()))?;
            let verdicts = verify(&message, |name| {
                let qname = hickory_proto::rr::Name::from_ascii(name)
                    .map_err(|e| format!("{name}: {e}"))?;
                runtime
                    .block_on(prober.query(
                        prober.resolver,
                        &qname,
                        hickory_proto::rr::RecordType::TXT,
                        true,
                    ))
                    .map(|m| crate::diagnose::probe::txt_values(&m))
                    .map_err(|e| e.to_string())
            });
            let mut out = String::new();
            if verdicts.is_empty() {
                out.push_str("none: the message has no DKIM-Signature\n");
            }
            for v in &verdicts {
                match &v.result {
                    Ok(()) => out.push_str(&format!("pass d={} s={}\n", v.domain, v.selector)),
                    Err(e) => out.push_str(&format!("fail d={} s={}: {e}\n", v.domain, v.selector)),
                }
            }
            let ok = !verdicts.is_empty() && verdicts.iter().all(|v| v.result.is_ok());
            Ok((out.into_bytes(), ok))
        }
    }
}

/// Runs the checks of one domain once. Returns what to print and whether nothing is red.
pub async fn run_diagnose(args: &DiagnoseArgs) -> Result<(String, bool), CliError> {
    use crate::diagnose::checks::{Subject, diagnosis};
    use crate::provision::association::{Association, Mode};
    use crate::provision::records::Families;
    let mut config = match &args.config {
        Some(f) => Config::load(f)?,
        None => Config::default(),
    };
    if let Some(r) = args.resolver {
        config.diagnosis.resolver = Some(r);
    }
    if let Some(p) = args.port {
        config.diagnosis.port = p;
    }
    let platform = config
        .platforms
        .iter()
        .find(|p| p.id == args.platform)
        .cloned()
        .ok_or_else(|| CliError::Failed(format!("unknown platform {}", args.platform)))?;
    let prober = crate::diagnose::prober(&config.diagnosis)
        .ok_or_else(|| CliError::Failed("no resolver: pass --resolver".into()))?;
    let mut domain = hickory_proto::rr::Name::from_ascii(&args.domain)
        .map_err(|e| CliError::Failed(format!("{}: {e}", args.domain)))?;
    domain.set_fqdn(true);
    // What the domain should carry on this platform; without keys or a token, DKIM and
    // ownership are not checked here.
    let mode = if args.non_authoritative {
        Mode::NonAuthoritative
    } else {
        Mode::Authoritative
    };
    let association = Association::new(
        &domain.to_lowercase().to_ascii(),
        &platform.id,
        mode,
        Families::default(),
        true,
        String::new(),
    );
    let subject = Subject::new(&association, &platform);
    let per = config.diagnosis.per_nameserver.max(1);
    let slots = std::sync::Mutex::new(std::collections::HashMap::new());
    let outcome = crate::diagnose::check_once(&prober, &subject, &|addr| {
        slots
            .lock()
            .map(|mut m| {
                m.entry(addr)
                    .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(per)))
                    .clone()
            })
            .unwrap_or_else(|_| std::sync::Arc::new(tokio::sync::Semaphore::new(per)))
    })
    .await;
    let result = diagnosis(
        &subject,
        outcome.findings,
        outcome.queries,
        crate::zone::set::unix_now(),
    );
    let green = !result.checks.iter().any(|f| f.is_red());
    if args.json {
        return Ok((
            format!(
                "{}\n",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            ),
            green,
        ));
    }
    let rows: Vec<Vec<String>> = result
        .checks
        .iter()
        .map(|f| {
            let status = if f.is_red() {
                format!("{:?} (red)", f.status)
            } else {
                format!("{:?}", f.status)
            };
            vec![
                f.check.clone(),
                status.to_lowercase(),
                f.code.clone(),
                f.message.clone(),
            ]
        })
        .collect();
    let mut out = format!(
        "{} on {}: {}\n\n",
        result.domain,
        result.platform,
        result.overall.as_str()
    );
    out.push_str(&table(&["CHECK", "STATUS", "CODE", "MESSAGE"], &rows));
    let fixes: Vec<&String> = result
        .checks
        .iter()
        .filter(|f| f.is_red())
        .flat_map(|f| f.fix.iter())
        .collect();
    if !fixes.is_empty() {
        out.push_str("\nLines to add:\n");
        for f in fixes {
            out.push_str(&format!("{f}\n"));
        }
    }
    let removals: Vec<&String> = result
        .checks
        .iter()
        .filter(|f| f.is_red())
        .flat_map(|f| f.remove.iter())
        .collect();
    if !removals.is_empty() {
        out.push_str("\nLines to remove:\n");
        for f in removals {
            out.push_str(&format!("{f}\n"));
        }
    }
    Ok((out, green))
}

/// The families an association's `records` object turns on, space-separated.
fn enabled_families(records: &Value) -> String {
    let on: Vec<&str> = FAMILIES
        .iter()
        .copied()
        .filter(|f| records[*f] == json!(true))
        .collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(" ")
    }
}

/// `domain show` as tables: one row per association, then the records each needs.
fn show_domain(v: &Value) -> String {
    let associations: Vec<&Value> = v["associations"].as_array().into_iter().flatten().collect();
    let rows: Vec<Vec<String>> = associations
        .iter()
        .map(|a| {
            let zone = if a["hosted"] == json!(true) {
                "hosted"
            } else {
                "external"
            };
            let diagnosis = match &a["diagnosis"]["overall"] {
                Value::Null => "-".to_string(),
                other => text(other),
            };
            vec![
                text(&a["platform"]),
                text(&a["mode"]),
                zone.to_string(),
                enabled_families(&a["records"]),
                diagnosis,
            ]
        })
        .collect();
    let mut out = format!("domain {}\n\n", text(&v["domain"]));
    out.push_str(&table(
        &["PLATFORM", "MODE", "ZONE", "FAMILIES", "DIAGNOSIS"],
        &rows,
    ));
    for a in associations {
        let records: Vec<Vec<String>> = a["expected"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                vec![
                    text(&r["family"]),
                    text(&r["name"]),
                    text(&r["ttl"]),
                    text(&r["type"]),
                    text(&r["value"]),
                ]
            })
            .collect();
        out.push_str(&format!("\nrecords for {}:\n", text(&a["platform"])));
        out.push_str(&table(&["FAMILY", "NAME", "TTL", "TYPE", "DATA"], &records));
    }
    out
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
