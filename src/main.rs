//! The `mailzone` command line: parse arguments, set up logging, run the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mailzone::cli::{ApiArgs, DkimCommand, DomainCommand, TokenCommand, TsigCommand, ZoneCommand};
use mailzone::config::{Config, LogFormat};
use mailzone::server::Daemon;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

#[derive(Parser)]
#[command(
    name = "mailzone",
    version,
    about = "Authoritative DNS that provisions and diagnoses e-mail records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (embedded defaults when no --config is given).
    Serve {
        /// YAML configuration file (default: the embedded defaults).
        #[arg(long, short, env = "MAILZONE_CONFIG")]
        config: Option<PathBuf>,
        /// DNS address to serve on UDP and TCP, replacing `dns.listen`; repeat (or separate
        /// with commas) for several, e.g. `127.0.0.1:5353`.
        #[arg(long, env = "MAILZONE_DNS_LISTEN", value_delimiter = ',')]
        dns_listen: Vec<SocketAddr>,
        /// HTTP address of the API, metrics and status page, replacing `http.listen`.
        #[arg(long, env = "MAILZONE_HTTP_LISTEN")]
        http_listen: Option<SocketAddr>,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// The YAML file to check (default: the embedded defaults).
        file: Option<PathBuf>,
    },
    /// Associate domains with e-mail platforms through a running daemon's API.
    Domain {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// Sign messages with a domain's DKIM key, or verify their signatures.
    Dkim {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: DkimCommand,
    },
    /// Check a domain's records on its own nameservers, once, without a daemon; exit 1 if anything is red.
    Diagnose(mailzone::cli::DiagnoseArgs),
    /// Exit 0 if the daemon is ready (/readyz), or alive with --live; for health checks.
    Health(mailzone::cli::HealthArgs),
    /// TSIG keys for zone transfers, in the forms secondaries' configs take.
    Tsig {
        #[command(subcommand)]
        command: TsigCommand,
    },
    /// Scoped API tokens (by zone or platform, read or write), through a running daemon's API.
    Token {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage hosted zones through a running daemon's API.
    Zone {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: ZoneCommand,
    },
}

/// Exit code for a configuration the daemon refuses.
const EXIT_BAD_CONFIG: u8 = 2;

fn load_config(file: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match file {
        None => Ok(Config::default()),
        Some(f) => Config::load(f).map_err(|e| {
            eprintln!("mailzone: invalid configuration: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load_config(file.as_ref()) {
            Ok(config) => {
                print!("{}", config.to_yaml_redacted());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Health(args) => print_outcome(mailzone::cli::run_health(&args)),
        Command::Tsig { command } => print_outcome(mailzone::cli::run_tsig(&command)),
        Command::Token { api, command } => print_outcome(mailzone::cli::run_token(&api, &command)),
        Command::Zone { api, command } => print_outcome(mailzone::cli::run_zone(&api, &command)),
        Command::Domain { api, command } => {
            print_outcome(mailzone::cli::run_domain(&api, &command))
        }
        Command::Dkim { api, command } => {
            let mut input = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input) {
                eprintln!("mailzone: cannot read the message: {e}");
                return ExitCode::FAILURE;
            }
            match mailzone::cli::run_dkim(&api, &command, &input) {
                Ok((out, ok)) => {
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("mailzone: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Diagnose(args) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("mailzone: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(mailzone::cli::run_diagnose(&args)) {
                Ok((out, green)) => {
                    print!("{out}");
                    if green {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("mailzone: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve {
            config,
            dns_listen,
            http_listen,
        } => {
            let config_file = config.clone();
            let mut config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // Other ports without editing a copied config file.
            if !dns_listen.is_empty() {
                config.dns.listen = dns_listen;
            }
            if let Some(addr) = http_listen {
                config.http.listen = addr;
            }
            init_logging(&config);
            match run(config, config_file) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Logging is set up by now, and it goes to standard error.
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn print_outcome(outcome: Result<String, mailzone::cli::CliError>) -> ExitCode {
    match outcome {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailzone: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    // hickory-proto WARNs about what it decodes (e.g. an EDNS option shorter than it
    // claims): that is whatever a client sends, once per packet, so it never reaches the log;
    // the DNS loops count such problems and summarise them once per interval instead.
    let directives = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| format!("{},hickory_proto=error", config.log.level));
    let filter: Targets = directives
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    match config.log.format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Text => registry.with(layer).init(),
    }
}

fn run(config: Config, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let daemon = Daemon::start_with_config_file(config, config_file).await?;
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading zones");
                    let _ = daemon.shared().reload().await;
                }
                _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            }
        }
        daemon.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every subcommand says what it is for in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let command = Cli::command();
        command.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&command, "mailzone", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
