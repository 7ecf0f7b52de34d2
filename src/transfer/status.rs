//! What each secondary has had from us: NOTIFYs sent and acknowledged, serials transferred,
//! and the lag derived from them (for `/v1/status`, `/v1/zones/{zone}` and the metrics).
//!
//! This module owns the per (secondary, zone) marks and, per zone, the times its serials
//! were published (the lag is measured from the first serial a secondary does not have).
//! It must not send anything (`notify` does) nor answer transfers (the DNS side reports them
//! through [`TransferStatus::transferred`]). Entries of a zone go with [`TransferStatus::forget`].
//! Every method takes one short lock; none is called on the answer path of ordinary queries.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::Name;
use serde::Serialize;

use crate::config::{TransferConfig, ZoneSelection};
use crate::zone::serial::serial_gt;

/// Publication times kept per zone. Beyond this, the middle of the history is thinned (the
/// oldest entry stays, so the lag of a secondary behind everything stays exact).
const MAX_HISTORY: usize = 1024;

/// One configured secondary, as NOTIFY and the status see it.
#[derive(Debug, Clone)]
pub struct Secondary {
    /// The address as configured (`IP` or `IP:PORT`): the name of the secondary in the API
    /// and the metrics.
    pub address: String,
    /// Where NOTIFY goes.
    pub addr: SocketAddr,
    /// The TSIG key name, if its traffic is signed (the name only, never the secret).
    pub key: Option<String>,
    /// The zones it serves; `None`: all.
    zones: Option<HashSet<Name>>,
}

impl Secondary {
    /// Does this secondary serve `zone`?
    pub fn covers(&self, zone: &Name) -> bool {
        self.zones.as_ref().is_none_or(|z| z.contains(zone))
    }
}

/// The secondaries of the configuration (entries whose address does not parse are left
/// out; validation refuses them before this is called).
pub fn secondaries(config: &TransferConfig) -> Vec<Secondary> {
    config
        .secondaries
        .iter()
        .filter_map(|s| {
            Some(Secondary {
                address: s.address.clone(),
                addr: s.socket_addr()?,
                key: s.key.clone(),
                zones: match &s.zones {
                    ZoneSelection::All => None,
                    ZoneSelection::List(list) => Some(
                        list.iter()
                            .filter_map(|z| Name::from_ascii(z).ok())
                            .collect(),
                    ),
                },
            })
        })
        .collect()
}

/// A serial and when it happened (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mark {
    pub serial: u32,
    pub at: u64,
}

impl Mark {
    fn now(serial: u32) -> Self {
        Self {
            serial,
            at: unix(SystemTime::now()),
        }
    }
}

/// What one secondary has had of one zone.
#[derive(Debug, Clone, Default)]
struct PeerZone {
    sent: Option<Mark>,
    acked: Option<Mark>,
    failed: Option<Mark>,
    error: Option<String>,
    transferred: Option<Mark>,
    kind: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Per zone, the serials published since the oldest one some secondary lacks, oldest
    /// first, with their publication time; the last one is the zone's current serial.
    history: HashMap<Name, VecDeque<(u32, SystemTime)>>,
    /// Per (secondary index, zone).
    peers: HashMap<(usize, Name), PeerZone>,
}

/// Per secondary and zone, what was sent and what was taken.
#[derive(Debug, Default)]
pub struct TransferStatus {
    secondaries: Vec<Secondary>,
    state: Mutex<State>,
}

/// One secondary's view of one zone, as `GET /v1/zones/{zone}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SecondaryZoneStatus {
    pub address: String,
    /// The TSIG key name (never its secret), or null when unsigned.
    pub key: Option<String>,
    pub last_notify_sent: Option<Mark>,
    pub last_notify_acked: Option<Mark>,
    /// The last NOTIFY given up on (every try unacknowledged), and why.
    pub last_notify_failed: Option<Mark>,
    pub last_notify_error: Option<String>,
    pub last_transferred_serial: Option<u32>,
    /// When that transfer happened, and how (`axfr`, `ixfr`).
    pub last_transferred_at: Option<u64>,
    pub last_transfer_kind: Option<String>,
    /// How long the secondary has been behind: now minus the publication time of the first
    /// serial it does not have; 0 when it has the current serial.
    pub lag_seconds: f64,
}

/// One secondary over all its zones, as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SecondarySummary {
    pub address: String,
    pub key: Option<String>,
    /// Zones it should serve (that are hosted here).
    pub zones: usize,
    /// Of those, the zones whose current serial it has not transferred.
    pub zones_behind: usize,
    pub max_lag_seconds: f64,
    /// Zones whose last NOTIFY was given up on and not acknowledged since.
    pub notifies_failed: usize,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `a` is `b` or newer (RFC 1982).
fn serial_ge(a: u32, b: u32) -> bool {
    a == b || serial_gt(a, b)
}

/// The lag of a secondary that transferred `have` of a zone with this history.
fn lag(history: &VecDeque<(u32, SystemTime)>, have: Option<u32>, now: SystemTime) -> f64 {
    history
        .iter()
        .find(|(serial, _)| have.is_none_or(|h| !serial_ge(h, *serial)))
        .map_or(0.0, |(_, at)| {
            now.duration_since(*at).map_or(0.0, |d| d.as_secs_f64())
        })
}

impl TransferStatus {
    /// A status with no secondaries (every report is ignored).
    pub fn new() -> Self {
        Self::default()
    }

    /// The status of the configured secondaries.
    pub fn for_config(config: &TransferConfig) -> Self {
        Self {
            secondaries: secondaries(config),
            state: Mutex::default(),
        }
    }

    /// The configured secondaries, in config order (their index names them below).
    pub fn secondaries(&self) -> &[Secondary] {
        &self.secondaries
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut state)
    }

    /// `zone` is now served at `serial` (a change, a reload, or the start).
    pub fn published(&self, zone: &Name, serial: u32) {
        if !self.secondaries.iter().any(|s| s.covers(zone)) {
            return;
        }
        let now = SystemTime::now();
        self.with(|st| {
            let history = st.history.entry(zone.clone()).or_default();
            if history.back().is_some_and(|(s, _)| *s == serial) {
                return;
            }
            history.push_back((serial, now));
            if history.len() > MAX_HISTORY {
                history.remove(1);
            }
            prune(st, &self.secondaries, zone);
        });
    }

    /// A NOTIFY for `zone` at `serial` went to secondary `index`.
    pub fn notify_sent(&self, index: usize, zone: &Name, serial: u32) {
        self.with(|st| {
            st.peers.entry((index, zone.clone())).or_default().sent = Some(Mark::now(serial));
        });
    }

    /// Secondary `index` acknowledged the NOTIFY of `zone` at `serial`.
    pub fn notify_acked(&self, index: usize, zone: &Name, serial: u32) {
        self.with(|st| {
            let p = st.peers.entry((index, zone.clone())).or_default();
            p.acked = Some(Mark::now(serial));
            p.error = None;
        });
    }

    /// Every try of the NOTIFY of `zone` at `serial` to secondary `index` went unacknowledged.
    pub fn notify_failed(&self, index: usize, zone: &Name, serial: u32, error: String) {
        self.with(|st| {
            let p = st.peers.entry((index, zone.clone())).or_default();
            p.failed = Some(Mark::now(serial));
            p.error = Some(error);
        });
    }

    /// A secondary at `peer` completed a transfer (`kind`: "axfr" or "ixfr") of `zone` at
    /// `serial`.
    pub fn transferred(&self, peer: IpAddr, zone: &Name, serial: u32, kind: &str) {
        self.with(|st| {
            // A zone not (or no longer) hosted gets no entry: state only lives with its zone.
            if !st.history.contains_key(zone) {
                return;
            }
            for (i, s) in self.secondaries.iter().enumerate() {
                if s.addr.ip() == peer && s.covers(zone) {
                    let p = st.peers.entry((i, zone.clone())).or_default();
                    p.transferred = Some(Mark::now(serial));
                    p.kind = Some(kind.to_string());
                }
            }
            prune(st, &self.secondaries, zone);
        });
    }

    /// The zone is gone: every entry of it goes.
    pub fn forget(&self, zone: &Name) {
        self.with(|st| {
            st.history.remove(zone);
            st.peers.retain(|(_, z), _| z != zone);
        });
    }

    /// Per secondary that serves `zone`, what it has had.
    pub fn zone(&self, zone: &Name) -> Vec<SecondaryZoneStatus> {
        let now = SystemTime::now();
        self.with(|st| {
            let empty = VecDeque::new();
            let history = st.history.get(zone).unwrap_or(&empty);
            self.secondaries
                .iter()
                .enumerate()
                .filter(|(_, s)| s.covers(zone))
                .map(|(i, s)| {
                    let p = st
                        .peers
                        .get(&(i, zone.clone()))
                        .cloned()
                        .unwrap_or_default();
                    let have = p.transferred.map(|m| m.serial);
                    SecondaryZoneStatus {
                        address: s.address.clone(),
                        key: s.key.clone(),
                        last_notify_sent: p.sent,
                        last_notify_acked: p.acked,
                        last_notify_failed: p.failed,
                        last_notify_error: p.error,
                        last_transferred_serial: have,
                        last_transferred_at: p.transferred.map(|m| m.at),
                        last_transfer_kind: p.kind,
                        lag_seconds: round_ms(lag(history, have, now)),
                    }
                })
                .collect()
        })
    }

    /// Per secondary, over every zone it serves.
    pub fn summary(&self) -> Vec<SecondarySummary> {
        let now = SystemTime::now();
        self.with(|st| {
            let mut out: Vec<SecondarySummary> = self
                .secondaries
                .iter()
                .map(|s| SecondarySummary {
                    address: s.address.clone(),
                    key: s.key.clone(),
                    zones: 0,
                    zones_behind: 0,
                    max_lag_seconds: 0.0,
                    notifies_failed: 0,
                })
                .collect();
            for (zone, history) in &st.history {
                for (i, s) in self.secondaries.iter().enumerate() {
                    if !s.covers(zone) {
                        continue;
                    }
                    let p = st.peers.get(&(i, zone.clone()));
                    let have = p.and_then(|p| p.transferred).map(|m| m.serial);
                    let l = lag(history, have, now);
                    let sum = &mut out[i];
                    sum.zones += 1;
                    if history
                        .back()
                        .is_some_and(|(cur, _)| have.is_none_or(|h| !serial_ge(h, *cur)))
                    {
                        sum.zones_behind += 1;
                    }
                    sum.max_lag_seconds = sum.max_lag_seconds.max(round_ms(l));
                    if p.is_some_and(|p| {
                        p.failed
                            .is_some_and(|f| p.acked.is_none_or(|a| serial_gt(f.serial, a.serial)))
                    }) {
                        sum.notifies_failed += 1;
                    }
                }
            }
            out
        })
    }

    /// Per secondary address, `(max lag in seconds, zones behind)`, for the metrics.
    pub fn lag_by_secondary(&self) -> BTreeMap<String, (f64, usize)> {
        self.summary()
            .into_iter()
            .map(|s| (s.address, (s.max_lag_seconds, s.zones_behind)))
            .collect()
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Drops the serials every secondary of `zone` already has (the current one always stays).
fn prune(st: &mut State, secondaries: &[Secondary], zone: &Name) {
    let Some(history) = st.history.get_mut(zone) else {
        return;
    };
    let mut oldest_held: Option<u32> = None;
    for (i, s) in secondaries.iter().enumerate() {
        if !s.covers(zone) {
            continue;
        }
        let have = st
            .peers
            .get(&(i, zone.clone()))
            .and_then(|p| p.transferred)
            .map(|m| m.serial);
        match have {
            None => return,
            Some(h) => {
                oldest_held = Some(match oldest_held {
                    Some(o) if serial_gt(h, o) => o,
                    _ => h,
                })
            }
        }
    }
    let Some(held) = oldest_held else { return };
    while history.len() > 1 && history.front().is_some_and(|(s, _)| serial_ge(held, *s)) {
        history.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecondaryConfig;

    fn status() -> TransferStatus {
        TransferStatus::for_config(&TransferConfig {
            secondaries: vec![
                SecondaryConfig {
                    address: "127.0.0.2:5300".into(),
                    key: None,
                    zones: ZoneSelection::All,
                },
                SecondaryConfig {
                    address: "127.0.0.3".into(),
                    key: Some("k".into()),
                    zones: ZoneSelection::List(vec!["b.test.".into()]),
                },
            ],
            ..TransferConfig::default()
        })
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn a_secondary_that_never_transferred_lags_since_the_first_publication() {
        let s = status();
        s.published(&name("a.test."), 1);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let z = s.zone(&name("a.test."));
        assert_eq!(z.len(), 1, "only the secondary serving a.test.");
        assert!(z[0].lag_seconds >= 0.03, "{z:?}");
    }

    #[test]
    fn the_lag_counts_from_the_first_missing_serial_and_is_zero_when_current() {
        let s = status();
        let a = name("a.test.");
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        s.published(&a, 1);
        s.transferred(ip, &a, 1, "axfr");
        assert_eq!(s.zone(&a)[0].lag_seconds, 0.0);
        s.published(&a, 2);
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.published(&a, 3);
        let first = s.zone(&a)[0].lag_seconds;
        assert!(first >= 0.02, "measured from serial 2: {first}");
        s.transferred(ip, &a, 2, "ixfr");
        let second = s.zone(&a)[0].lag_seconds;
        assert!(second < first, "now from serial 3: {second} vs {first}");
        s.transferred(ip, &a, 3, "ixfr");
        assert_eq!(s.zone(&a)[0].lag_seconds, 0.0);
        assert_eq!(s.summary()[0].zones_behind, 0);
        assert_eq!(s.with(|st| st.history[&a].len()), 1, "history pruned");
    }

    #[test]
    fn a_transfer_from_another_address_or_of_an_unknown_zone_changes_nothing() {
        let s = status();
        let a = name("a.test.");
        s.published(&a, 5);
        s.transferred("127.0.0.9".parse().unwrap(), &a, 5, "axfr");
        s.transferred("127.0.0.2".parse().unwrap(), &name("x.test."), 5, "axfr");
        assert_eq!(s.zone(&a)[0].last_transferred_serial, None);
        assert!(s.zone(&name("x.test.")).len() == 1);
        assert_eq!(s.summary()[0].zones, 1);
    }

    #[test]
    fn forgetting_a_zone_removes_every_entry_of_it() {
        let s = status();
        let b = name("b.test.");
        s.published(&b, 1);
        s.notify_sent(1, &b, 1);
        s.transferred("127.0.0.3".parse().unwrap(), &b, 1, "axfr");
        s.forget(&b);
        s.with(|st| {
            assert!(st.history.is_empty());
            assert!(st.peers.is_empty());
        });
        assert_eq!(s.summary()[1].zones, 0);
    }

    #[test]
    fn serials_wrap_around_per_rfc_1982() {
        let s = status();
        let a = name("a.test.");
        s.published(&a, u32::MAX);
        s.published(&a, 1);
        s.transferred("127.0.0.2".parse().unwrap(), &a, 1, "ixfr");
        assert_eq!(s.zone(&a)[0].lag_seconds, 0.0);
    }
}
