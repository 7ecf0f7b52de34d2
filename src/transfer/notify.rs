//! NOTIFY to secondaries (RFC 1996): after a zone changes, each secondary serving it is told
//! so over UDP, TSIG-signed when its entry names a key, and retried with a doubling wait
//! until it answers with a valid NOTIFY response or the tries run out.
//!
//! This module owns the per (secondary, zone) NOTIFY state and the one task that sends. The
//! writer only calls [`Notifier::changed`] / [`Notifier::removed`]: a short lock and a
//! wake-up, never a wait on the network. Bursts coalesce: per (secondary, zone) at most one
//! NOTIFY transaction is in flight; changes meanwhile mark it dirty, and exactly one more
//! follows with the newest SOA when it ends, and no sooner than `notify_interval_ms` after
//! the previous one started (a secondary answers in a millisecond, so without that interval
//! a burst of changes would still be one NOTIFY each). It must not read zones or answer
//! queries, and logs one line per give-up, never one per packet.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::TsigKey;
use super::status::{Secondary, TransferStatus};
use crate::config::{TransferConfig, TsigAlgorithm};
use crate::metrics::{Metrics, NotifyResult};

/// NOTIFY transactions in flight at once per secondary (a reload of thousands of zones must
/// not open thousands of sockets). Per secondary, so that a dead one, whose transactions
/// each take every try, never holds up the NOTIFYs of the others.
const MAX_IN_FLIGHT: usize = 32;

/// TSIG time fudge of our NOTIFYs (RFC 8945 §10 recommends 300 s).
const FUDGE: u16 = 300;

/// Per (secondary, zone): the newest SOA to announce and where its NOTIFY stands. Kept while
/// the zone is hosted (bounded by zones × secondaries; goes with the zone).
struct Entry {
    soa: Record,
    /// A change arrived since the last NOTIFY of the transaction in flight was sent.
    dirty: bool,
    /// A transaction is running (its abort handle, to stop it when the zone goes).
    flight: Option<AbortHandle>,
    /// Waiting in `ready` for a free transaction slot.
    queued: bool,
    /// Waiting in `delayed` until this time (the minimum interval since the last start).
    due: Option<Instant>,
    /// When the last transaction started.
    last_start: Option<Instant>,
}

type Key = (usize, Name);

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Per secondary, the entries waiting for a transaction slot, in order.
    ready: Vec<VecDeque<Key>>,
    /// Per secondary, transactions running.
    in_flight: Vec<usize>,
    delayed: BTreeSet<(Instant, Key)>,
}

impl State {
    fn queue(&mut self, key: Key) {
        if self.ready.len() <= key.0 {
            self.ready.resize_with(key.0 + 1, VecDeque::new);
        }
        self.ready[key.0].push_back(key);
    }

    fn landed(&mut self, secondary: usize) {
        if let Some(n) = self.in_flight.get_mut(secondary) {
            *n = n.saturating_sub(1);
        }
    }

    /// Queues `key` for a transaction, at once or when its minimum interval has passed.
    fn schedule(&mut self, key: Key, now: Instant, interval: Duration) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if e.flight.is_some() || e.queued || e.due.is_some() {
            return;
        }
        let at = e.last_start.map_or(now, |t| (t + interval).max(now));
        if at <= now {
            e.queued = true;
            self.queue(key);
        } else {
            e.due = Some(at);
            self.delayed.insert((at, key));
        }
    }

    /// Moves the entries whose time has come to `ready`; says when the next one is due.
    fn release(&mut self, now: Instant) -> Option<Instant> {
        while let Some((at, key)) = self.delayed.first().cloned() {
            if at > now {
                return Some(at);
            }
            self.delayed.pop_first();
            if let Some(e) = self.entries.get_mut(&key) {
                e.due = None;
                e.queued = true;
                self.queue(key);
            }
        }
        None
    }
}

/// The NOTIFY side of the daemon. Cheap to call from the writer; one task sends.
pub struct Notifier {
    status: Arc<TransferStatus>,
    first_wait: Duration,
    tries: u32,
    interval: Duration,
    state: Mutex<State>,
    wake: Notify,
}

/// How one NOTIFY transaction ended.
enum Outcome {
    Acked,
    GaveUp,
    /// The zone went while it was running.
    Gone,
}

impl Notifier {
    /// A notifier for the secondaries `status` knows.
    pub fn new(config: &TransferConfig, status: Arc<TransferStatus>) -> Self {
        Self {
            status,
            first_wait: Duration::from_millis(config.notify_timeout_ms.max(1)),
            tries: config.notify_tries.max(1),
            interval: Duration::from_millis(config.notify_interval_ms),
            state: Mutex::default(),
            wake: Notify::new(),
        }
    }

    pub fn status(&self) -> &Arc<TransferStatus> {
        &self.status
    }

    fn secondaries(&self) -> &[Secondary] {
        self.status.secondaries()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut state)
    }

    /// `zone` is now served with this SOA: its secondaries are to be told. Never blocks.
    pub fn changed(&self, zone: &Name, soa: &Record) {
        let serial = match &soa.data {
            RData::SOA(s) => s.serial,
            _ => return,
        };
        if !self.secondaries().iter().any(|s| s.covers(zone)) {
            return;
        }
        self.status.published(zone, serial);
        let now = Instant::now();
        self.with(|st| {
            for (i, s) in self.secondaries().iter().enumerate() {
                if !s.covers(zone) {
                    continue;
                }
                let key = (i, zone.clone());
                let e = st.entries.entry(key.clone()).or_insert_with(|| Entry {
                    soa: soa.clone(),
                    dirty: false,
                    flight: None,
                    queued: false,
                    due: None,
                    last_start: None,
                });
                e.soa = soa.clone();
                if e.flight.is_some() {
                    e.dirty = true;
                } else {
                    st.schedule(key, now, self.interval);
                }
            }
        });
        self.wake.notify_one();
    }

    /// `zone` is gone: its pending and running NOTIFYs stop and its status entries go.
    pub fn removed(&self, zone: &Name) {
        self.with(|st| {
            let mut aborted = Vec::new();
            st.entries.retain(|(i, z), e| {
                if z != zone {
                    return true;
                }
                if let Some(f) = &e.flight {
                    f.abort();
                    aborted.push(*i);
                }
                false
            });
            for i in aborted {
                st.landed(i);
            }
            for ready in &mut st.ready {
                ready.retain(|(_, z)| z != zone);
            }
            st.delayed.retain(|(_, (_, z))| z != zone);
        });
        self.status.forget(zone);
    }

    /// NOTIFYs waiting or in flight (for tests and the status).
    pub fn pending(&self) -> usize {
        self.with(|st| {
            st.entries
                .values()
                .filter(|e| e.flight.is_some() || e.queued || e.due.is_some())
                .count()
        })
    }

    /// (Secondary, zone) pairs with NOTIFY state (for tests: they go with their zone).
    pub fn tracked(&self) -> usize {
        self.with(|st| st.entries.len())
    }

    /// The newest SOA for a transaction's next packet (clearing `dirty`: this packet carries
    /// it), or `None` when the zone went.
    fn take_newest(&self, key: &Key) -> Option<Record> {
        self.with(|st| {
            st.entries.get_mut(key).map(|e| {
                e.dirty = false;
                e.soa.clone()
            })
        })
    }

    /// The one task: starts transactions for ready entries (at most [`MAX_IN_FLIGHT`] per
    /// secondary at once) and, when one ends, starts exactly one more if changes came
    /// meanwhile (no sooner than `notify_interval_ms` after the previous one started).
    pub async fn run(self: Arc<Self>, keys: Vec<TsigKey>, metrics: Arc<Metrics>) {
        let signers: Vec<Option<TSigner>> = self
            .secondaries()
            .iter()
            .map(|s| {
                let name = s.key.as_ref()?;
                let key = keys.iter().find(|k| &k.name == name)?;
                signer(key)
            })
            .collect();
        let mut flights: JoinSet<(Key, Outcome)> = JoinSet::new();
        loop {
            let now = Instant::now();
            let next = self.with(|st| {
                let next = st.release(now);
                st.in_flight
                    .resize(st.ready.len().max(st.in_flight.len()), 0);
                for i in 0..st.ready.len() {
                    while st.in_flight[i] < MAX_IN_FLIGHT {
                        let Some(key) = st.ready[i].pop_front() else {
                            break;
                        };
                        let Some(entry) = st.entries.get_mut(&key) else {
                            continue;
                        };
                        st.in_flight[i] += 1;
                        entry.queued = false;
                        entry.last_start = Some(now);
                        let this = self.clone();
                        let signer = signers.get(key.0).cloned().flatten();
                        let metrics = metrics.clone();
                        let k = key.clone();
                        entry.flight = Some(flights.spawn(async move {
                            let outcome = this.transaction(&k, signer, &metrics).await;
                            (k, outcome)
                        }));
                    }
                }
                next
            });
            metrics.notify_in_flight.set(flights.len() as i64);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(done) = flights.join_next_with_id(), if !flights.is_empty() => {
                    // An aborted transaction belonged to a removed zone: nothing to do.
                    if let Ok((id, (key, outcome))) = done {
                        self.finish(id, key, outcome);
                    }
                }
                _ = self.wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// A transaction ended: if a change came meanwhile, one more NOTIFY (with the newest
    /// SOA) is scheduled.
    fn finish(&self, id: tokio::task::Id, key: Key, outcome: Outcome) {
        if matches!(outcome, Outcome::Gone) {
            return;
        }
        let now = Instant::now();
        self.with(|st| {
            let again = match st.entries.get_mut(&key) {
                // Only the entry this transaction ran for (not one made after its zone was
                // removed and added again).
                Some(e) if e.flight.as_ref().is_some_and(|f| f.id() == id) => {
                    e.flight = None;
                    std::mem::take(&mut e.dirty)
                }
                _ => return,
            };
            st.landed(key.0);
            if again {
                st.schedule(key, now, self.interval);
            }
        });
    }

    /// One NOTIFY transaction: up to `tries` packets, each waiting twice as long as the one
    /// before for a valid answer.
    async fn transaction(
        &self,
        key: &(usize, Name),
        signer: Option<TSigner>,
        metrics: &Metrics,
    ) -> Outcome {
        let Some(secondary) = self.secondaries().get(key.0).cloned() else {
            return Outcome::Gone;
        };
        let zone = &key.1;
        let mut wait = self.first_wait;
        let mut serial = 0;
        let mut last_error = String::from("no answer");
        let bind: SocketAddr = if secondary.addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        for attempt in 1..=self.tries {
            let Some(soa) = self.take_newest(key) else {
                return Outcome::Gone;
            };
            if let RData::SOA(s) = &soa.data {
                serial = s.serial;
            }
            if attempt > 1 {
                metrics.notify[NotifyResult::Retried as usize].inc();
            }
            let deadline = Instant::now() + wait;
            // A fresh socket (and port) per packet: an answer to an earlier try cannot be
            // mistaken for this one, and spoofing needs the port as well as the ID.
            let result = match UdpSocket::bind(bind).await {
                Ok(socket) => {
                    self.status.notify_sent(key.0, zone, serial);
                    exchange(&socket, secondary.addr, zone, soa, signer.as_ref(), wait).await
                }
                Err(e) => Err(format!("cannot open a UDP socket: {e}")),
            };
            match result {
                Ok(()) => {
                    metrics.notify[NotifyResult::Acked as usize].inc();
                    self.status.notify_acked(key.0, zone, serial);
                    return Outcome::Acked;
                }
                Err(e) => last_error = e,
            }
            // A send that failed at once still waits out its try: the backoff holds.
            tokio::time::sleep_until(deadline).await;
            wait = wait.saturating_mul(2);
        }
        metrics.notify[NotifyResult::Failed as usize].inc();
        tracing::warn!(secondary = %secondary.address, zone = %zone, serial, tries = self.tries, error = %last_error, "NOTIFY not acknowledged; giving up until the next change");
        self.status.notify_failed(key.0, zone, serial, last_error);
        Outcome::GaveUp
    }
}

/// The hickory signer of one of our keys (`None` if the algorithm is not one hickory signs).
fn signer(key: &TsigKey) -> Option<TSigner> {
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm as Alg;
    let algorithm = match key.algorithm {
        TsigAlgorithm::HmacSha256 => Alg::HmacSha256,
        TsigAlgorithm::HmacSha512 => Alg::HmacSha512,
    };
    let name = Name::from_ascii(&key.name).ok()?;
    TSigner::new(key.secret.clone(), algorithm, name, FUDGE).ok()
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // Without randomness the ID is still checked; only spoofing gets easier.
    let _ = SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

/// The NOTIFY message of RFC 1996 §3.7: opcode NOTIFY, AA, question `<zone> SOA IN`, the
/// new SOA in the answer section.
pub fn notify_message(id: u16, zone: &Name, soa: Record) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
    m.metadata.authoritative = true;
    let mut q = Query::query(zone.clone(), RecordType::SOA);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    m.add_answer(soa);
    m
}

/// Sends one NOTIFY and waits up to `wait` for its answer: a NOTIFY response from the
/// secondary's address with the same ID, NOERROR, and a valid TSIG when ours was signed.
/// Anything else is ignored (and the wait goes on); the last reason is returned on timeout.
async fn exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    zone: &Name,
    soa: Record,
    signer: Option<&TSigner>,
    wait: Duration,
) -> Result<(), String> {
    let id = random_id();
    let mut message = notify_message(id, zone, soa);
    let mut verifier = None;
    if let Some(signer) = signer {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        verifier = message
            .finalize(signer, now)
            .map_err(|e| format!("cannot sign: {e}"))?;
    }
    let bytes = message
        .to_vec()
        .map_err(|e| format!("cannot encode: {e}"))?;
    socket
        .send_to(&bytes, to)
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 4096];
    let mut why = String::from("no answer");
    loop {
        let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
        let (n, from) = match received {
            Err(_) => return Err(why),
            Ok(Err(e)) => {
                why = format!("receive error: {e}");
                // ICMP port unreachable shows up here: wait out the try rather than spin.
                tokio::time::sleep_until(deadline).await;
                return Err(why);
            }
            Ok(Ok(r)) => r,
        };
        if from != to {
            continue;
        }
        let reply = &buf[..n];
        let Ok(parsed) = Message::from_vec(reply) else {
            why = "a malformed answer".into();
            continue;
        };
        if parsed.metadata.id != id
            || parsed.metadata.message_type != MessageType::Response
            || parsed.metadata.op_code != OpCode::Notify
        {
            why = "an answer that is not the response to this NOTIFY".into();
            continue;
        }
        if let Some(v) = verifier.as_mut()
            && let Err(e) = v.verify(reply)
        {
            why = format!(
                "an answer without a valid TSIG ({}: {e})",
                parsed.metadata.response_code
            );
            continue;
        }
        if parsed.metadata.response_code != ResponseCode::NoError {
            why = format!("answered {}", parsed.metadata.response_code);
            continue;
        }
        return Ok(());
    }
}
