//! Problems that outsiders cause: malformed packets, refused or evicted connections,
//! timeouts, accept errors.
//!
//! This module owns their kinds, the rule that they are counted (one metric series per
//! kind) and summarised in the log at most once per interval, and [`Throttle`] for the few
//! that deserve their own line (accept errors, a panic on the answer path). Anything a
//! client can repeat at will must go through here: nothing an outsider sends may write a
//! log line per packet or per connection. It must not decide what is a problem; the
//! listeners do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Kinds of client-caused problems; each is a value of the `kind` label of
/// `mailzone_client_problems_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A datagram too short to hold a DNS header (dropped).
    ShortPacket,
    /// A DNS response sent to us (dropped: answering would let anyone bounce packets off us).
    ResponsePacket,
    /// A datagram from source port 0 (dropped).
    SourcePort0,
    /// A query that answers FORMERR (does not decode, or not exactly one question).
    Malformed,
    /// An EDNS option shorter or longer than it claims (the options are ignored).
    BadEdnsOptions,
    /// A query that made the answer path panic (dropped).
    AnswerPanic,
    /// A DNS TCP connection closed at once: its address already has the most allowed.
    TcpPerAddressLimit,
    /// A DNS TCP connection closed to make room (the longest idle one when the cap is full).
    TcpEvicted,
    /// A DNS TCP connection closed at once: every slot is busy and none is idle.
    TcpFull,
    /// accept() failed on a DNS TCP listener (out of file descriptors, …).
    TcpAcceptError,
    /// An HTTP connection closed at once: `http.max_connections` reached.
    HttpConnectionLimit,
    /// An HTTP request whose headers or body did not arrive in time.
    HttpTimeout,
    /// accept() failed on the HTTP listener.
    HttpAcceptError,
    /// An RFC 2136 UPDATE dropped: too many were waiting for the writer already.
    UpdateBacklog,
    /// A public web connection closed at once: `web.max_connections` reached.
    WebConnectionLimit,
    /// A public web connection whose TLS handshake failed or did not finish in time.
    WebTlsHandshake,
    /// accept() failed on the public web listener.
    WebAcceptError,
}

impl Problem {
    pub const ALL: [Problem; 17] = [
        Problem::ShortPacket,
        Problem::ResponsePacket,
        Problem::SourcePort0,
        Problem::Malformed,
        Problem::BadEdnsOptions,
        Problem::AnswerPanic,
        Problem::TcpPerAddressLimit,
        Problem::TcpEvicted,
        Problem::TcpFull,
        Problem::TcpAcceptError,
        Problem::HttpConnectionLimit,
        Problem::HttpTimeout,
        Problem::HttpAcceptError,
        Problem::UpdateBacklog,
        Problem::WebConnectionLimit,
        Problem::WebTlsHandshake,
        Problem::WebAcceptError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Problem::ShortPacket => "dns_short_packet",
            Problem::ResponsePacket => "dns_response_packet",
            Problem::SourcePort0 => "dns_source_port_0",
            Problem::Malformed => "dns_malformed",
            Problem::BadEdnsOptions => "dns_bad_edns_options",
            Problem::AnswerPanic => "dns_answer_panic",
            Problem::TcpPerAddressLimit => "tcp_per_address_limit",
            Problem::TcpEvicted => "tcp_evicted",
            Problem::TcpFull => "tcp_full",
            Problem::TcpAcceptError => "tcp_accept_error",
            Problem::HttpConnectionLimit => "http_connection_limit",
            Problem::HttpTimeout => "http_timeout",
            Problem::HttpAcceptError => "http_accept_error",
            Problem::UpdateBacklog => "dns_update_backlog",
            Problem::WebConnectionLimit => "web_connection_limit",
            Problem::WebTlsHandshake => "web_tls_handshake",
            Problem::WebAcceptError => "web_accept_error",
        }
    }
}

/// Logs, every `interval`, one line summing up the problems counted since the last one
/// (nothing when there were none); `count` reads a kind's counter (the metrics own them).
/// Runs until the task is dropped.
pub async fn summarise(count: impl Fn(Problem) -> u64, interval: Duration) {
    let mut last: Vec<u64> = Problem::ALL.iter().map(|p| count(*p)).collect();
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let mut total = 0;
        let mut kinds = String::new();
        for (p, before) in Problem::ALL.iter().zip(last.iter_mut()) {
            let now = count(*p);
            let delta = now.saturating_sub(*before);
            *before = now;
            if delta > 0 {
                total += delta;
                if !kinds.is_empty() {
                    kinds.push_str(", ");
                }
                kinds.push_str(&format!("{}={delta}", p.as_str()));
            }
        }
        if total > 0 {
            tracing::warn!(
                total,
                kinds = %kinds,
                interval_secs = interval.as_secs(),
                "client problems in the last interval (dropped, refused or closed; see mailzone_client_problems_total)"
            );
        }
    }
}

/// Lets one log line through per interval; counts the ones held back. Lock-free.
pub struct Throttle {
    epoch: Instant,
    interval_ms: u64,
    /// Milliseconds since `epoch` before which nothing is let through (0: at once).
    next_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            interval_ms: interval.as_millis().clamp(1, u128::from(u64::MAX)) as u64,
            next_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being the lines held back since the
    /// last one; `None` when it must not.
    pub fn allow(&self) -> Option<u64> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.interval_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Waits after a failed accept() so that a listener out of file descriptors does not
/// spin: the pending connection stays queued and accept() would fail again at once.
pub async fn accept_backoff(error: &std::io::Error) {
    let pause = match error.raw_os_error() {
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: resources run out; wait for some to be freed.
        Some(24 | 23 | 105 | 12) => Duration::from_millis(200),
        _ => Duration::from_millis(20),
    };
    tokio::time::sleep(pause).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_in_declaration_order() {
        // Metrics index their counters by `kind as usize`.
        for (i, p) in Problem::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i, "{p:?}");
        }
    }

    #[test]
    fn a_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(t.allow(), None);
        }
        assert_eq!(t.held_back.load(Ordering::Relaxed), 1000);
    }
}
