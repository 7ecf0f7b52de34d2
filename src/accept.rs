//! Accepting TCP connections for the two HTTP listeners (the admin API and the public web
//! listener): a cap on open connections (one more is closed at once), back-off on accept
//! errors such as running out of file descriptors (counted, logged at most once per
//! interval), and at shutdown a graceful close of every connection and a wait for them.
//!
//! This module owns the connection slots and the shutdown signal. It must not know what a
//! connection serves (the caller's closure does that) and must not log per connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::metrics::Metrics;
use crate::problems::{Problem, Throttle};

/// How one listener accepts.
pub struct Policy {
    /// For the log line of an accept error.
    pub listener: &'static str,
    pub max_connections: usize,
    /// Counted when accept() fails.
    pub accept_error: Problem,
    /// Counted when a connection is closed at once because every slot is taken.
    pub over_limit: Problem,
    /// At most one accept-error line per this interval.
    pub log_interval: Duration,
    /// How long shutdown waits for open connections; `None`: until they end.
    pub drain_within: Option<Duration>,
}

/// An accepted connection: its slot is free again when `permit` is dropped, and `closing`
/// changes when the listener stops.
pub struct Connection {
    pub stream: TcpStream,
    pub permit: OwnedSemaphorePermit,
    pub closing: watch::Receiver<bool>,
}

/// Accepts on `listener` until `stop` resolves, handing each connection within the cap to
/// `serve` (which spawns what runs it); then signals `closing` and waits for the
/// connections as `policy.drain_within` says.
pub async fn accept_until(
    listener: &TcpListener,
    policy: Policy,
    metrics: &Metrics,
    stop: impl Future<Output = ()>,
    mut serve: impl FnMut(Connection),
) {
    // `acquire_many` below counts in u32.
    let max_connections = policy.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max_connections));
    let errors = Throttle::new(policy.log_interval.max(Duration::from_secs(1)));
    let (closing, closing_seen) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                metrics.problem(policy.accept_error);
                if let Some(held_back) = errors.allow() {
                    tracing::warn!(listener = policy.listener, error = %e, held_back, "accept error (logged at most once per interval)");
                }
                crate::problems::accept_backoff(&e).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.problem(policy.over_limit);
            drop(stream);
            continue;
        };
        serve(Connection {
            stream,
            permit,
            closing: closing_seen.clone(),
        });
    }
    let _ = closing.send(true);
    // Every connection holds a slot until it ends: having them all back means all ended.
    let all = slots.acquire_many(max_connections as u32);
    match policy.drain_within {
        None => drop(all.await),
        Some(limit) => drop(tokio::time::timeout(limit, all).await),
    }
}

/// Runs one HTTP/1 connection to its end, closing it gracefully when the listener stops;
/// a request whose headers did not arrive in time is counted.
pub async fn drive<I, S>(
    connection: hyper::server::conn::http1::Connection<I, S>,
    closing: &mut watch::Receiver<bool>,
    metrics: &Metrics,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = closing.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(e) = ended
        && e.is_timeout()
    {
        metrics.problem(Problem::HttpTimeout);
    }
}
