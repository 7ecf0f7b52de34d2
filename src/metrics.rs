//! Prometheus metrics, all prefixed `mailzone_`.
//!
//! This module owns the registry and the metric handles. The DNS answer loops count into
//! their own [`QueryShard`] (one per loop: an array indexed by protocol × qtype × rcode, in
//! a cache line nobody else writes), folded into `mailzone_dns_queries_total` when
//! `/metrics` is scraped, so that counting a query is one uncontended add: no label hashing,
//! no lock, no cache line bouncing between cores. Response times are measured for a sample
//! of queries only (about one in [`SAMPLE_EVERY`]): reading the clock per query costs more
//! than the rest of counting. It must not decide what to count; callers do.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::problems::Problem;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Udp = 0,
    Tcp = 1,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

const PROTOCOLS: [Protocol; 2] = [Protocol::Udp, Protocol::Tcp];

/// Query types given their own label value; the rest are counted as `OTHER` so that the
/// label set stays bounded whatever clients send.
const QTYPES: [RecordType; 19] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::NS,
    RecordType::SOA,
    RecordType::CNAME,
    RecordType::PTR,
    RecordType::CAA,
    RecordType::DS,
    RecordType::DNSKEY,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::TLSA,
    RecordType::ANY,
    RecordType::AXFR,
    RecordType::IXFR,
    RecordType::NULL,
];
const QTYPE_LABELS: usize = QTYPES.len() + 1;

const RCODES: [ResponseCode; 7] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NXDomain,
    ResponseCode::NotImp,
    ResponseCode::Refused,
    ResponseCode::BADVERS,
];
const RCODE_LABELS: usize = RCODES.len() + 1;
const QUERY_SLOTS: usize = 2 * QTYPE_LABELS * RCODE_LABELS;

/// About one query in this many has its response time measured (`dns_response_seconds`).
pub const SAMPLE_EVERY: i64 = 64;

/// The counters of one DNS loop: only that loop writes them (the TCP listener's
/// connections share theirs), `/metrics` reads them all and adds them up. Aligned so that
/// two loops' shards never share a cache line.
#[repr(align(128))]
pub struct QueryShard {
    counts: [AtomicU64; QUERY_SLOTS],
    /// Queries left until the next timed one; at or below 0: time the next.
    until_sample: AtomicI64,
}

impl QueryShard {
    fn new() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            until_sample: AtomicI64::new(0),
        }
    }

    /// Counts one answered query: one uncontended add, no lock.
    pub fn count(&self, protocol: Protocol, qtype: Option<RecordType>, rcode: ResponseCode) {
        if let Some(c) = self.counts.get(query_slot(protocol, qtype, rcode)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the next `queries` queries (a batch) should be timed: true about once per
    /// [`SAMPLE_EVERY`] queries, and for the first one.
    pub fn sample(&self, queries: usize) -> bool {
        let left = self.until_sample.load(Ordering::Relaxed);
        if left <= 0 {
            self.until_sample.store(SAMPLE_EVERY, Ordering::Relaxed);
            return true;
        }
        self.until_sample
            .store(left - queries as i64, Ordering::Relaxed);
        false
    }
}

fn query_slot(protocol: Protocol, qtype: Option<RecordType>, rcode: ResponseCode) -> usize {
    let q = qtype
        .and_then(|t| QTYPES.iter().position(|x| *x == t))
        .unwrap_or(QTYPES.len());
    let r = RCODES
        .iter()
        .position(|x| *x == rcode)
        .unwrap_or(RCODES.len());
    (protocol as usize * QTYPE_LABELS + q) * RCODE_LABELS + r
}

fn rcode_label(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    /// `[protocol][qtype][rcode]`, flattened: what the shards held at the last scrape.
    queries: Vec<IntCounter>,
    /// Every loop's counters (locked when a loop starts and at scrape time only), and one
    /// for the rare queries counted outside a loop (transfers).
    shards: Mutex<Vec<Arc<QueryShard>>>,
    common: Arc<QueryShard>,
    response_seconds: [Histogram; 2],
    pub dropped_packets: IntCounter,
    pub tcp_connections: IntGauge,
    pub tcp_refused_connections: IntCounter,
    pub zones_loaded: IntGauge,
    pub zones_failing: IntGauge,
    pub reloads: IntCounter,
    pub reload_failures: IntCounter,
    pub http_requests: IntCounterVec,
    /// RFC 2136 UPDATE requests by result (`mailzone_updates_total{result}`).
    pub updates: IntCounterVec,
    /// Public web listener requests by document (bounded set) and status code.
    pub web_requests: IntCounterVec,
    /// ACME orders by result (`mailzone_acme_orders_total{result="ok|failed"}`).
    pub acme_orders: IntCounterVec,
    /// DKIM key lifecycle events: generated, activated, retiring, removed.
    pub dkim_events: IntCounterVec,
    pub dkim_signatures: IntCounterVec,
    pub dkim_key_age: prometheus::IntGaugeVec,
    /// DNSSEC signatures made (not reused).
    pub dnssec_signatures: IntCounter,
    /// Seconds until the earliest signature of each signed zone expires.
    pub dnssec_expiry: prometheus::IntGaugeVec,
    /// Seconds from the daemon's start to the end of its start-up DNSSEC policy pass.
    pub dnssec_start_pass: prometheus::Gauge,
    /// DNSSEC keys by zone and state (1 per key).
    pub dnssec_keys: prometheus::IntGaugeVec,
    /// DNSSEC key events: generated, activated, retired, removed.
    pub dnssec_key_events: IntCounterVec,
    /// When each signed zone's active key of each role is due to be rolled by itself.
    pub dnssec_next_rollover: prometheus::IntGaugeVec,
    pub diagnosis_runs: IntCounterVec,
    pub diagnosis_seconds: Histogram,
    pub diagnosis_queries: IntCounter,
    pub nameserver_errors: IntCounter,
    pub diagnosis_check_status: prometheus::IntGaugeVec,
    pub domains_by_status: prometheus::IntGaugeVec,
    pub diagnosis_rcodes: IntCounterVec,
    /// `mailzone_client_problems_total{kind}`, one handle per [`Problem`], in `Problem::ALL` order.
    problem_counters: Vec<IntCounter>,
    /// UDP responses held back by response rate limiting: `[dropped, slipped]`.
    pub rrl_limited: [IntCounter; 2],
    pub http_connections: IntGauge,
    /// `mailzone_transfers_total{type,result}`: `[type][result]` in the order of
    /// [`TRANSFER_TYPES`] and [`TRANSFER_RESULTS`].
    transfers: Vec<IntCounter>,
    /// Records and bytes sent by completed or interrupted transfers.
    pub transfer_records: IntCounter,
    pub transfer_bytes: IntCounter,
    /// NOTIFY outcomes: `[acked, retried, failed]` (`mailzone_notify_total{result}`).
    pub notify: [IntCounter; 3],
    /// NOTIFY transactions in flight.
    pub notify_in_flight: IntGauge,
    /// Per configured secondary: its largest lag over its zones, and how many it is behind on.
    pub secondary_lag_seconds: prometheus::GaugeVec,
    pub secondary_zones_behind: prometheus::IntGaugeVec,
}

/// Index into [`Metrics::notify`].
#[derive(Debug, Clone, Copy)]
pub enum NotifyResult {
    Acked = 0,
    Retried = 1,
    Failed = 2,
}

/// The `type` label of `mailzone_transfers_total`.
pub const TRANSFER_TYPES: [&str; 2] = ["axfr", "ixfr"];
/// The `result` label of `mailzone_transfers_total`.
pub const TRANSFER_RESULTS: [&str; 7] = [
    "ok", "refused", "notauth", "badkey", "badsig", "badtime", "error",
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("mailzone".into()), None)?;
        let queries_vec = IntCounterVec::new(
            Opts::new(
                "dns_queries_total",
                "DNS queries answered, by protocol, query type and response code",
            ),
            &["protocol", "qtype", "rcode"],
        )?;
        registry.register(Box::new(queries_vec.clone()))?;
        let mut queries = Vec::with_capacity(PROTOCOLS.len() * QTYPE_LABELS * RCODE_LABELS);
        for p in PROTOCOLS {
            for q in 0..QTYPE_LABELS {
                let qlabel = QTYPES.get(q).map_or("OTHER".to_string(), |t| t.to_string());
                for r in 0..RCODE_LABELS {
                    let rlabel = RCODES.get(r).map_or("OTHER", |c| rcode_label(*c));
                    queries.push(queries_vec.with_label_values(&[p.as_str(), &qlabel, rlabel]));
                }
            }
        }
        let hist = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "dns_response_seconds",
                "Time from a query's arrival to its response being handed to the socket, for a sample of about one query in 64 (all zone transfers)",
            )
            .buckets(vec![
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                0.01, 0.05, 0.25,
            ]),
            &["protocol"],
        )?;
        registry.register(Box::new(hist.clone()))?;
        let response_seconds = [
            hist.with_label_values(&["udp"]),
            hist.with_label_values(&["tcp"]),
        ];

        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests, by route and status code",
            ),
            &["route", "status"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        let updates = IntCounterVec::new(
            Opts::new(
                "updates_total",
                "RFC 2136 UPDATE requests, by result (changed, unchanged, refused, unsigned, notauth, prerequisite, formerr, servfail)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(updates.clone()))?;
        let web_requests = IntCounterVec::new(
            Opts::new(
                "web_requests_total",
                "Public web listener requests, by document (autoconfig, autodiscover, autodiscover_json, mta_sts, acme_challenge, unknown_host, not_found) and status",
            ),
            &["document", "status"],
        )?;
        registry.register(Box::new(web_requests.clone()))?;
        let acme_orders = IntCounterVec::new(
            Opts::new(
                "acme_orders_total",
                "ACME certificate orders, by result (ok, failed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(acme_orders.clone()))?;
        let build = IntGauge::with_opts(
            Opts::new("build_info", "Always 1; the version is a label")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build.set(1);
        registry.register(Box::new(build))?;

        let dkim_events = IntCounterVec::new(
            Opts::new(
                "dkim_rotation_events_total",
                "DKIM key lifecycle events, by event",
            ),
            &["event"],
        )?;
        registry.register(Box::new(dkim_events.clone()))?;
        let dkim_signatures = IntCounterVec::new(
            Opts::new(
                "dkim_signatures_total",
                "DKIM signatures made, by key algorithm",
            ),
            &["algorithm"],
        )?;
        registry.register(Box::new(dkim_signatures.clone()))?;
        let dkim_key_age = prometheus::IntGaugeVec::new(
            Opts::new(
                "dkim_key_age_seconds",
                "Age of each DKIM key, by domain and selector",
            ),
            &["domain", "selector"],
        )?;
        registry.register(Box::new(dkim_key_age.clone()))?;
        let dnssec_signatures = IntCounter::new(
            "dnssec_signatures_total",
            "DNSSEC signatures made (reused ones not counted)",
        )?;
        registry.register(Box::new(dnssec_signatures.clone()))?;
        let dnssec_expiry = prometheus::IntGaugeVec::new(
            Opts::new(
                "dnssec_earliest_expiry_seconds",
                "Seconds until the earliest RRSIG of the zone expires (alert below a day or two)",
            ),
            &["zone"],
        )?;
        registry.register(Box::new(dnssec_expiry.clone()))?;
        let dnssec_start_pass = prometheus::Gauge::new(
            "dnssec_start_pass_seconds",
            "Seconds from the start to the end of the start-up DNSSEC policy pass over the zones served from their stored signatures (0 until it is done)",
        )?;
        registry.register(Box::new(dnssec_start_pass.clone()))?;
        let dnssec_keys = prometheus::IntGaugeVec::new(
            Opts::new("dnssec_keys", "DNSSEC keys of each zone by role and state"),
            &["zone", "role", "state"],
        )?;
        registry.register(Box::new(dnssec_keys.clone()))?;
        let dnssec_key_events = IntCounterVec::new(
            Opts::new(
                "dnssec_key_events_total",
                "DNSSEC key events: generated, activated, retired, removed",
            ),
            &["event"],
        )?;
        registry.register(Box::new(dnssec_key_events.clone()))?;
        let dnssec_next_rollover = prometheus::IntGaugeVec::new(
            Opts::new(
                "dnssec_next_rollover_timestamp_seconds",
                "When the zone's active key of this role is due to be rolled by itself (unix time; no series: never)",
            ),
            &["zone", "role"],
        )?;
        registry.register(Box::new(dnssec_next_rollover.clone()))?;
        let diagnosis_runs = IntCounterVec::new(
            Opts::new("diagnosis_runs_total", "Diagnosis runs, by overall result"),
            &["result"],
        )?;
        registry.register(Box::new(diagnosis_runs.clone()))?;
        let diagnosis_seconds = Histogram::with_opts(
            HistogramOpts::new("diagnosis_run_seconds", "Time to diagnose one domain").buckets(
                vec![0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
        )?;
        registry.register(Box::new(diagnosis_seconds.clone()))?;
        let diagnosis_check_status = prometheus::IntGaugeVec::new(
            Opts::new(
                "diagnosis_check_status",
                "Per domain and check: 0 ok, 1 pending, 2 notice, 3 red",
            ),
            &["domain", "check"],
        )?;
        registry.register(Box::new(diagnosis_check_status.clone()))?;
        let domains_by_status = prometheus::IntGaugeVec::new(
            Opts::new(
                "diagnosis_domains",
                "Associated domains by overall diagnosis status",
            ),
            &["status"],
        )?;
        registry.register(Box::new(domains_by_status.clone()))?;
        let diagnosis_rcodes = IntCounterVec::new(
            Opts::new(
                "diagnosis_answers_total",
                "Answers to diagnosis queries, by response code",
            ),
            &["rcode"],
        )?;
        registry.register(Box::new(diagnosis_rcodes.clone()))?;
        let problems = IntCounterVec::new(
            Opts::new(
                "client_problems_total",
                "Problems clients caused (malformed packets, refused or closed connections, timeouts, accept errors), by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(problems.clone()))?;
        let problem_counters = Problem::ALL
            .iter()
            .map(|p| problems.with_label_values(&[p.as_str()]))
            .collect();
        let rrl = IntCounterVec::new(
            Opts::new(
                "dns_rrl_limited_total",
                "UDP responses held back by response rate limiting: dropped, or slipped (sent truncated)",
            ),
            &["action"],
        )?;
        registry.register(Box::new(rrl.clone()))?;
        let rrl_limited = [
            rrl.with_label_values(&["dropped"]),
            rrl.with_label_values(&["slipped"]),
        ];
        let transfers_vec = IntCounterVec::new(
            Opts::new(
                "transfers_total",
                "Zone transfer requests (AXFR, IXFR) answered, by type and result",
            ),
            &["type", "result"],
        )?;
        registry.register(Box::new(transfers_vec.clone()))?;
        let transfers = TRANSFER_TYPES
            .iter()
            .flat_map(|t| {
                TRANSFER_RESULTS
                    .iter()
                    .map(|r| transfers_vec.with_label_values(&[*t, *r]))
                    .collect::<Vec<_>>()
            })
            .collect();
        let transfer_records = counter("transfer_records_total", "Records sent in zone transfers")?;
        let transfer_bytes = counter(
            "transfer_bytes_total",
            "Bytes of DNS messages sent in zone transfers",
        )?;
        let notify = IntCounterVec::new(
            Opts::new(
                "notify_total",
                "NOTIFY messages to secondaries, by result: acked, retried (sent again after no valid answer), failed (given up)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(notify.clone()))?;
        let secondary_lag_seconds = prometheus::GaugeVec::new(
            Opts::new(
                "secondary_lag_seconds",
                "Per secondary, the longest time it has been behind on one of its zones (0: current)",
            ),
            &["secondary"],
        )?;
        registry.register(Box::new(secondary_lag_seconds.clone()))?;
        let secondary_zones_behind = prometheus::IntGaugeVec::new(
            Opts::new(
                "secondary_zones_behind",
                "Per secondary, zones whose current serial it has not transferred",
            ),
            &["secondary"],
        )?;
        registry.register(Box::new(secondary_zones_behind.clone()))?;
        let common = Arc::new(QueryShard::new());
        Ok(Self {
            transfers,
            transfer_records,
            transfer_bytes,
            notify: [
                notify.with_label_values(&["acked"]),
                notify.with_label_values(&["retried"]),
                notify.with_label_values(&["failed"]),
            ],
            notify_in_flight: gauge(
                "notify_in_flight",
                "NOTIFY transactions waiting for an answer",
            )?,
            secondary_lag_seconds,
            secondary_zones_behind,
            problem_counters,
            rrl_limited,
            http_connections: gauge("http_connections", "Open HTTP connections")?,
            diagnosis_rcodes,
            diagnosis_runs,
            diagnosis_seconds,
            diagnosis_queries: counter("diagnosis_queries_total", "DNS queries sent by diagnosis")?,
            nameserver_errors: counter(
                "diagnosis_nameserver_errors_total",
                "Diagnosis queries a nameserver did not answer usefully (timeout, network error)",
            )?,
            diagnosis_check_status,
            domains_by_status,
            dkim_events,
            dkim_signatures,
            dkim_key_age,
            dnssec_signatures,
            dnssec_expiry,
            dnssec_start_pass,
            dnssec_keys,
            dnssec_key_events,
            dnssec_next_rollover,
            queries,
            shards: Mutex::new(vec![common.clone()]),
            common,
            response_seconds,
            dropped_packets: counter(
                "dns_dropped_packets_total",
                "Datagrams dropped unanswered (too short, or a response)",
            )?,
            tcp_connections: gauge("dns_tcp_connections", "Open DNS TCP connections")?,
            tcp_refused_connections: counter(
                "dns_tcp_refused_connections_total",
                "TCP connections closed at once because the connection limit was reached",
            )?,
            zones_loaded: gauge("zones_loaded", "Zones being served")?,
            zones_failing: gauge("zones_failing", "Zone files whose last load failed")?,
            reloads: counter("reloads_total", "Reloads of the zones folder")?,
            reload_failures: counter(
                "reload_failures_total",
                "Reloads during which at least one zone file failed",
            )?,
            http_requests,
            updates,
            web_requests,
            acme_orders,
            registry,
        })
    }

    /// New counters for one DNS loop, added up with the others at scrape time.
    pub fn query_shard(&self) -> Arc<QueryShard> {
        let shard = Arc::new(QueryShard::new());
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(shard.clone());
        shard
    }

    /// Counts one query answered outside the DNS loops' own counters (a zone transfer),
    /// always timed; lock-free.
    pub fn count_query(
        &self,
        protocol: Protocol,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        seconds: f64,
    ) {
        self.common.count(protocol, qtype, rcode);
        self.observe_response(protocol, seconds);
    }

    /// Records one timed (sampled) response.
    pub fn observe_response(&self, protocol: Protocol, seconds: f64) {
        self.response_seconds[protocol as usize].observe(seconds);
    }

    /// Adds up the loops' counters into the exported ones. Under the shards' lock, so that
    /// two scrapes at once do not both add the same queries.
    fn fold_queries(&self) {
        let shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        for (i, exported) in self.queries.iter().enumerate() {
            let total: u64 = shards
                .iter()
                .map(|s| s.counts[i].load(Ordering::Relaxed))
                .sum();
            let folded = exported.get();
            if total > folded {
                exported.inc_by(total - folded);
            }
        }
    }

    /// Counts one transfer request by type (`axfr`, `ixfr`) and result (one of
    /// [`TRANSFER_RESULTS`]); lock-free.
    pub fn count_transfer(&self, kind: &str, result: &str) {
        let t = TRANSFER_TYPES.iter().position(|x| *x == kind);
        let r = TRANSFER_RESULTS.iter().position(|x| *x == result);
        if let (Some(t), Some(r)) = (t, r)
            && let Some(c) = self.transfers.get(t * TRANSFER_RESULTS.len() + r)
        {
            c.inc();
        }
    }

    /// How many transfers of this type ended with this result so far.
    pub fn transfers(&self, kind: &str, result: &str) -> u64 {
        let t = TRANSFER_TYPES.iter().position(|x| *x == kind);
        let r = TRANSFER_RESULTS.iter().position(|x| *x == result);
        match (t, r) {
            (Some(t), Some(r)) => self
                .transfers
                .get(t * TRANSFER_RESULTS.len() + r)
                .map_or(0, IntCounter::get),
            _ => 0,
        }
    }

    /// Counts one client-caused problem; lock-free.
    pub fn problem(&self, problem: Problem) {
        if let Some(c) = self.problem_counters.get(problem as usize) {
            c.inc();
        }
    }

    /// How many problems of this kind were counted so far.
    pub fn problems(&self, problem: Problem) -> u64 {
        self.problem_counters
            .get(problem as usize)
            .map_or(0, IntCounter::get)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.fold_queries();
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
