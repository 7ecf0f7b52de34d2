//! DNS over UDP and TCP: the sockets and the loops that serve them.
//!
//! This module owns binding (several SO_REUSEPORT UDP sockets per address, a large receive
//! buffer, the same port for UDP and TCP), the receive/answer/send loops, the TCP
//! connection limits (per client address, shorter idle time near the cap, the longest idle
//! connection closed to make room), response rate limiting over UDP ([`rrl`]) and counting
//! what clients get wrong ([`crate::problems`]: counted, never logged per packet). Each loop
//! reads the current zone snapshot with one atomic load: the answer path never waits on a
//! lock or on the writer (the TCP table is locked on accept and close only). It must not
//! build answers itself ([`answer`] does) nor load zones.
//!
//! We run our own loops rather than hickory-server's `Server`: the latter spawns a task per
//! datagram, funnels every send through one task per socket and logs every query
//! (`../shared/HICKORY-NOTES.md` §1, §9), and answering inline is both simpler and faster.

pub mod answer;
pub mod batch;
pub mod fast;
pub mod rrl;
pub mod wire;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::metrics::{Metrics, Protocol, QueryShard};
use crate::problems::{Problem, Throttle};
use crate::transfer::xfr;
use crate::zone::ZoneSet;

/// Where RFC 2136 UPDATE requests go (the daemon's single writer is behind it). The DNS
/// loops only route them there, off the answer path: a query never waits for an update.
pub trait UpdateHandler: Send + Sync {
    /// The response to `request` from `peer`, or `None` to send nothing.
    fn handle(
        &self,
        request: Vec<u8>,
        peer: IpAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send + 'static>>;
}

/// UPDATEs waiting for the writer at once; more are dropped (and counted): a flood of them
/// must not pile up tasks and memory.
const MAX_UPDATES_IN_FLIGHT: usize = 256;

/// What the DNS loops share: the current zones and the counters.
pub struct DnsContext {
    pub zones: Arc<ArcSwap<ZoneSet>>,
    pub metrics: Arc<Metrics>,
    pub max_udp_payload: u16,
    pub tcp_idle_timeout: Duration,
    pub tcp_max_per_address: usize,
    /// Response rate limiting over UDP, when enabled.
    pub rrl: Option<rrl::Rrl>,
    /// The transfer server (AXFR/IXFR); `None`: transfers are answered REFUSED.
    pub transfers: Option<Arc<xfr::Service>>,
    /// RFC 2136 UPDATE; `None`: answered NOTIMP.
    pub updates: Option<Arc<dyn UpdateHandler>>,
    update_slots: Arc<tokio::sync::Semaphore>,
    /// One line per interval for accept errors, and for the answer path panicking.
    accept_errors: Throttle,
    panics: Throttle,
}

/// Sockets bound for one configured address.
pub struct BoundAddress {
    /// The address actually bound (the port filled in when 0 was asked).
    pub local: SocketAddr,
    udp: Vec<std::net::UdpSocket>,
    tcp: TcpListener,
}

/// Large enough to absorb a burst of a few thousand queries (the default drops some).
const UDP_RECV_BUFFER: usize = 4 << 20;

/// The largest `dns.max_udp_payload` with which UDP responses are sent unfragmentable
/// ([`batch::set_dont_fragment`]): RFC 9715's recommended maximum DNS/UDP payload (R3),
/// which fits the MTU of any common link. A larger setting asks for responses some links
/// can only carry fragmented: those sockets keep the kernel's default.
pub const DONT_FRAGMENT_MAX_PAYLOAD: u16 = 1400;

/// Binds UDP and TCP on `addr`. With port 0 a free port is chosen that is free for both.
/// UDP responses are never fragmented when `max_udp_payload` is at most
/// [`DONT_FRAGMENT_MAX_PAYLOAD`].
pub fn bind(
    addr: SocketAddr,
    udp_sockets: usize,
    max_udp_payload: u16,
) -> io::Result<BoundAddress> {
    let dont_fragment = max_udp_payload <= DONT_FRAGMENT_MAX_PAYLOAD;
    let mut last_err = None;
    for _ in 0..32 {
        match bind_once(addr, udp_sockets, dont_fragment) {
            Ok(b) => return Ok(b),
            // A random UDP port may be taken for TCP: try another one.
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                last_err = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
}

fn bind_once(
    addr: SocketAddr,
    udp_sockets: usize,
    dont_fragment: bool,
) -> io::Result<BoundAddress> {
    let first = udp_socket(addr, dont_fragment)?;
    let local = first.local_addr()?;
    let mut udp = vec![first];
    for _ in 1..udp_sockets {
        udp.push(udp_socket(local, dont_fragment)?);
    }
    let tcp = tcp_listener(local)?;
    Ok(BoundAddress { local, udp, tcp })
}

/// A blocking UDP socket, for its own thread ([`serve_udp`]).
fn udp_socket(addr: SocketAddr, dont_fragment: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.set_read_timeout(Some(UDP_RECV_TIMEOUT))?;
    if dont_fragment {
        use std::os::fd::AsRawFd;
        batch::set_dont_fragment(socket.as_raw_fd(), addr.is_ipv6())?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Starts the loops for one bound address into `tasks`.
pub fn serve(
    bound: BoundAddress,
    ctx: Arc<DnsContext>,
    max_tcp_connections: usize,
    tasks: &mut JoinSet<()>,
) {
    for socket in bound.udp {
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let guard = UdpStop {
            socket: socket.clone(),
            stop: stop.clone(),
        };
        let loop_ctx = ctx.clone();
        // UPDATEs wait for the writer: the thread hands them to the runtime.
        let runtime = tokio::runtime::Handle::current();
        let started = std::thread::Builder::new()
            .name("dns-udp".into())
            .spawn(move || serve_udp(socket, loop_ctx, stop, runtime));
        if let Err(e) = started {
            tracing::error!(addr = %bound.local, error = %e, "cannot start a UDP thread; this socket is not served");
            continue;
        }
        tasks.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
    }
    tasks.spawn(serve_tcp(bound.tcp, ctx, max_tcp_connections));
}

/// One thread per UDP socket, blocked in `recvmmsg` until a datagram arrives: a batch in
/// with one system call, each answered in turn (fast path, else general path), the
/// responses out with one system call. A plain thread rather than a task: no readiness
/// polling, no empty receive to learn that the socket is drained, no wake-ups between
/// runtime workers (the way NSD and Knot serve UDP). It ends when `stop` is set (its
/// [`UdpStop`] dropped, which also wakes it).
fn serve_udp(
    socket: Arc<std::net::UdpSocket>,
    ctx: Arc<DnsContext>,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let counters = ctx.metrics.query_shard();
    let mut batch = batch::RecvBatch::new();
    // Response buffers, reused: the fast path writes into them without allocating. One that
    // once needed more keeps its larger capacity.
    let mut outs: Vec<Vec<u8>> = (0..batch::BATCH)
        .map(|_| Vec::with_capacity(UDP_RESPONSE_BUFFER))
        .collect();
    let mut answered: Vec<(usize, fast::Answered)> = Vec::with_capacity(batch::BATCH);
    while !stop.load(Ordering::Relaxed) {
        let received = match batch.recv(fd, true) {
            Ok(n) => n,
            // The receive timeout (a chance to see `stop`), or a signal.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP-induced errors and the like: keep serving, without spinning on an
                // error that repeats.
                tracing::debug!(error = %e, "udp receive error");
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Only a sample of the batches is timed: two clock reads per batch cost more than
        // the rest of the counting.
        let start = counters.sample(received).then(Instant::now);
        answered.clear();
        {
            let zones = ctx.zones.load();
            for i in 0..received {
                let Some(src) = batch.source(i) else {
                    continue;
                };
                if src.port() == 0 {
                    ctx.metrics.dropped_packets.inc();
                    ctx.metrics.problem(Problem::SourcePort0);
                    continue;
                }
                let out = &mut outs[answered.len()];
                let request = batch.datagram(i);
                let a = match transfer_service(&ctx, request) {
                    Some(service) => transfer_udp(service, &zones, request, src.ip(), &ctx)
                        .map(|r| copy_response(r, out)),
                    None => match answer_into(&zones, request, Protocol::Udp, &ctx, out) {
                        Some(Routed::Answered(a)) => Some(a),
                        Some(Routed::Update) => {
                            update_udp(&socket, &runtime, &ctx, request, src);
                            None
                        }
                        None => None,
                    },
                };
                let Some(a) = a else {
                    continue;
                };
                if !passes_rrl(&ctx, src.ip(), a.rcode, out) {
                    continue;
                }
                answered.push((i, a));
            }
        }
        // Counted before they leave: a client that has its answer and then reads /metrics
        // must find it counted.
        for (_, a) in &answered {
            counters.count(Protocol::Udp, a.qtype, a.rcode);
        }
        let mut list: [(usize, &[u8]); batch::BATCH] = [(0, &[]); batch::BATCH];
        for (k, (i, _)) in answered.iter().enumerate() {
            list[k] = (*i, outs[k].as_slice());
        }
        let list = &list[..answered.len()];
        let mut sent = 0;
        while sent < list.len() {
            // A blocking socket: a full send buffer waits here, as it should.
            match batch.send(fd, &list[sent..]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "udp send error");
                    break;
                }
            }
        }
        // The time from the batch's arrival to its responses' departure.
        if let Some(start) = start {
            ctx.metrics
                .observe_response(Protocol::Udp, start.elapsed().as_secs_f64());
        }
    }
}

/// Owned by the DNS task set for one UDP thread: dropping it (the tasks are aborted at
/// shutdown) stops the thread, and shuts the socket down so that a blocked receive returns
/// at once.
struct UdpStop {
    socket: Arc<std::net::UdpSocket>,
    stop: Arc<AtomicBool>,
}

impl Drop for UdpStop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Linux wakes the receivers of a shut-down UDP socket (and reports ENOTCONN, since
        // it is not connected: expected, ignored).
        let _ = socket2::SockRef::from(&*self.socket).shutdown(std::net::Shutdown::Both);
    }
}

/// How long a UDP thread waits in one receive before it looks at its stop flag again
/// (shutting the socket down wakes it sooner).
const UDP_RECV_TIMEOUT: Duration = Duration::from_secs(1);

/// The initial capacity of a UDP response buffer: our largest usual EDNS payload, with room.
const UDP_RESPONSE_BUFFER: usize = 4096;

/// A connection that has not sent a query for this long may be closed to make room for a
/// new one when every slot is taken; younger ones are left alone (unless their address
/// holds more connections than the newcomer's), so that a flood of new connections cannot
/// push out clients in the middle of an exchange.
const TCP_EVICTABLE_AFTER_MS: u64 = 100;
/// The idle timeout once more than 90 % of the slots are taken.
const TCP_BUSY_IDLE: Duration = Duration::from_secs(1);

/// The open connections of one TCP listener: counts per client address, and who has been
/// idle longest. Locked on accept and close only, never while answering.
struct TcpTable {
    epoch: Instant,
    max: usize,
    per_address: usize,
    open: AtomicUsize,
    /// One more than the millisecond (since `epoch`) at which an accept last left the
    /// listener nearly full; 0 = never. Waiting connections compare it with the start of
    /// their wait, so every connection idle at that moment takes the short limit, even when
    /// the first of them to close brings the count back under 90 % before the others look.
    busy_mark_ms: AtomicU64,
    inner: Mutex<TcpInner>,
}

#[derive(Default)]
struct TcpInner {
    per_ip: HashMap<IpAddr, usize>,
    slots: Vec<Option<Arc<TcpConn>>>,
    free: Vec<usize>,
}

struct TcpConn {
    ip: IpAddr,
    slot: usize,
    /// Milliseconds since the table's epoch at the last query (or the accept).
    last_active_ms: AtomicU64,
    close: Notify,
}

impl TcpTable {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Admits a connection from `ip`, closing the longest idle one if every slot is taken.
    fn admit(&self, ip: IpAddr) -> Result<Arc<TcpConn>, Problem> {
        let now = self.now_ms();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_address {
            return Err(Problem::TcpPerAddressLimit);
        }
        if self.open.load(Ordering::Relaxed) >= self.max {
            // Evictable: idle a while, or from an address holding more connections than
            // the newcomer's (a crowd of fresh connections from few addresses gives way).
            let mine = inner.per_ip.get(&ip).copied().unwrap_or(0);
            let oldest = inner
                .slots
                .iter()
                .flatten()
                .filter(|c| {
                    now.saturating_sub(c.last_active_ms.load(Ordering::Relaxed))
                        >= TCP_EVICTABLE_AFTER_MS
                        || inner.per_ip.get(&c.ip).copied().unwrap_or(0) > mine + 1
                })
                .min_by_key(|c| c.last_active_ms.load(Ordering::Relaxed))
                .cloned();
            let Some(oldest) = oldest else {
                return Err(Problem::TcpFull);
            };
            oldest.close.notify_one();
            Self::remove(&mut inner, &oldest, &self.open);
        }
        let slot = inner.free.pop().unwrap_or_else(|| {
            inner.slots.push(None);
            inner.slots.len() - 1
        });
        let conn = Arc::new(TcpConn {
            ip,
            slot,
            last_active_ms: AtomicU64::new(now),
            close: Notify::new(),
        });
        if let Some(s) = inner.slots.get_mut(slot) {
            *s = Some(conn.clone());
        }
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        if self.busy() {
            self.busy_mark_ms
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
        Ok(conn)
    }

    /// Forgets a connection that ended (unless it was already evicted).
    fn release(&self, conn: &Arc<TcpConn>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Self::remove(&mut inner, conn, &self.open);
    }

    fn remove(inner: &mut TcpInner, conn: &Arc<TcpConn>, open: &AtomicUsize) {
        let ours = inner
            .slots
            .get(conn.slot)
            .and_then(Option::as_ref)
            .is_some_and(|c| Arc::ptr_eq(c, conn));
        if !ours {
            return;
        }
        inner.slots[conn.slot] = None;
        inner.free.push(conn.slot);
        if let Some(n) = inner.per_ip.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&conn.ip);
            }
        }
        open.fetch_sub(1, Ordering::Relaxed);
    }

    /// More than 90 % of the slots are taken.
    fn busy(&self) -> bool {
        self.open.load(Ordering::Relaxed) * 10 > self.max * 9
    }

    /// The listener is nearly full now, or an accept made it so since `since_ms`.
    fn busy_since(&self, since_ms: u64) -> bool {
        self.busy() || self.busy_mark_ms.load(Ordering::Relaxed) > since_ms
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<DnsContext>, max_connections: usize) {
    // One set of counters for the listener's connections.
    let counters = ctx.metrics.query_shard();
    let table = Arc::new(TcpTable {
        epoch: Instant::now(),
        max: max_connections.max(1),
        per_address: ctx.tcp_max_per_address.max(1),
        open: AtomicUsize::new(0),
        busy_mark_ms: AtomicU64::new(0),
        inner: Mutex::new(TcpInner::default()),
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: keep serving, without spinning on
                // the connection still queued nor logging each attempt.
                ctx.metrics.problem(Problem::TcpAcceptError);
                if let Some(held_back) = ctx.accept_errors.allow() {
                    tracing::warn!(error = %e, held_back, "DNS TCP accept error (logged at most once per interval)");
                }
                crate::problems::accept_backoff(&e).await;
                continue;
            }
        };
        let conn = match table.admit(peer.ip()) {
            Ok(c) => c,
            Err(problem) => {
                ctx.metrics.tcp_refused_connections.inc();
                ctx.metrics.problem(problem);
                drop(stream);
                continue;
            }
        };
        let ctx = ctx.clone();
        let table = table.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            ctx.metrics.tcp_connections.inc();
            let evicted = tokio::select! {
                ended = serve_tcp_connection(stream, &ctx, &table, &conn, &counters) => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, %peer, "tcp connection ended");
                    }
                    false
                }
                _ = conn.close.notified() => true,
            };
            if evicted {
                ctx.metrics.problem(Problem::TcpEvicted);
            }
            table.release(&conn);
            ctx.metrics.tcp_connections.dec();
        });
    }
}

/// What a connection has received and not answered yet. A client that pipelines (RFC 7766
/// §6.2.1.1) gets all the queries one read brought answered in turn, and their responses
/// leave together in one write: one read and one write system call per batch instead of
/// three per query.
struct TcpInput {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// A connection's first receive buffer; it grows only for a message larger than this.
const TCP_INPUT_BUFFER: usize = 4096;
/// Responses gathered this long are sent without waiting for the rest of the batch.
const TCP_OUTPUT_FLUSH: usize = 16 * 1024;

impl TcpInput {
    fn new() -> Self {
        TcpInput {
            buf: vec![0; TCP_INPUT_BUFFER],
            start: 0,
            end: 0,
        }
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The length of the next message when it has been received whole.
    fn complete(&self) -> Option<usize> {
        let b = self.buf.get(self.start..self.end)?;
        let len = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
        (b.len() >= 2 + len).then_some(len)
    }

    /// The message whose length [`TcpInput::complete`] gave.
    fn message(&self, len: usize) -> &[u8] {
        &self.buf[self.start + 2..self.start + 2 + len]
    }

    fn consume(&mut self, len: usize) {
        self.start += 2 + len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to receive into: what is left of a partial message moves to the front, and the
    /// buffer grows to hold a message larger than it.
    fn room(&mut self) -> &mut [u8] {
        let need = match self.buf.get(self.start..self.end) {
            Some([hi, lo, ..]) => 2 + u16::from_be_bytes([*hi, *lo]) as usize,
            _ => 2,
        };
        if self.buf.len() - self.start < need || self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        &mut self.buf[self.end..]
    }
}

/// Sends the responses gathered in `out` (each with its length prefix) and empties it.
async fn flush_tcp(stream: &mut TcpStream, out: &mut Vec<u8>, timeout: Duration) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(timeout, stream.write_all(out))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not sent in time"))??;
    out.clear();
    Ok(())
}

/// RFC 7766: several queries per connection, each prefixed by its 2-byte length, possibly
/// pipelined (answered in order); the connection is closed after `tcp_idle_timeout` without
/// a query (1 s when the listener is nearly full).
async fn serve_tcp_connection(
    mut stream: TcpStream,
    ctx: &DnsContext,
    table: &TcpTable,
    conn: &TcpConn,
    counters: &QueryShard,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut input = TcpInput::new();
    let mut response = Vec::new();
    let mut out = Vec::new();
    loop {
        // Every query received whole, answered in turn.
        let start = counters.sample(1).then(Instant::now);
        let mut answered_any = false;
        while let Some(len) = input.complete() {
            conn.last_active_ms.store(table.now_ms(), Ordering::Relaxed);
            let request = input.message(len);
            if let Some(service) = transfer_service(ctx, request) {
                // Responses go out in the order of the requests: the transfer's turn.
                flush_tcp(&mut stream, &mut out, ctx.tcp_idle_timeout).await?;
                if !serve_transfer(&mut stream, ctx, table, conn, service, request).await? {
                    return Ok(());
                }
                input.consume(len);
                continue;
            }
            let answered = {
                let zones = ctx.zones.load();
                answer_into(&zones, request, Protocol::Tcp, ctx, &mut response)
            };
            let answered = match answered {
                Some(Routed::Answered(a)) => a,
                Some(Routed::Update) => {
                    flush_tcp(&mut stream, &mut out, ctx.tcp_idle_timeout).await?;
                    let request = request.to_vec();
                    input.consume(len);
                    let Some(bytes) = update_response(ctx, request, conn.ip).await else {
                        return Ok(());
                    };
                    write_framed(&mut stream, &bytes, ctx.tcp_idle_timeout).await?;
                    conn.last_active_ms.store(table.now_ms(), Ordering::Relaxed);
                    continue;
                }
                None => return Ok(()),
            };
            input.consume(len);
            let Ok(n) = u16::try_from(response.len()) else {
                return Err(io::Error::other("response larger than 65535 bytes"));
            };
            // Counted before it leaves, as over UDP.
            counters.count(Protocol::Tcp, answered.qtype, answered.rcode);
            answered_any = true;
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&response);
            if out.len() >= TCP_OUTPUT_FLUSH {
                flush_tcp(&mut stream, &mut out, ctx.tcp_idle_timeout).await?;
            }
        }
        // Nothing complete is left: what was answered leaves before we wait for more.
        flush_tcp(&mut stream, &mut out, ctx.tcp_idle_timeout).await?;
        if answered_any {
            conn.last_active_ms.store(table.now_ms(), Ordering::Relaxed);
            if let Some(start) = start {
                ctx.metrics
                    .observe_response(Protocol::Tcp, start.elapsed().as_secs_f64());
            }
        }
        if input.buffered() > 0 {
            // The rest of a message already begun: it must come in time.
            let read = tokio::time::timeout(ctx.tcp_idle_timeout, stream.read(input.room()))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "query body not received in time")
                })?;
            match read? {
                0 => return Ok(()),
                n => input.end += n,
            }
            continue;
        }
        // Waiting for the next query, in steps of at most TCP_BUSY_IDLE so that the idle
        // limit is re-evaluated as the listener fills up (`read` is cancel-safe: no byte is
        // lost). Once the listener was seen nearly full during this wait, the short limit
        // holds for the rest of it: every idle connection goes, not just enough to dip
        // under 90 %.
        let since = Instant::now();
        let since_ms = table.now_ms();
        let mut short = false;
        loop {
            short |= table.busy_since(since_ms);
            let limit = if short {
                TCP_BUSY_IDLE.min(ctx.tcp_idle_timeout)
            } else {
                ctx.tcp_idle_timeout
            };
            let left = limit.saturating_sub(since.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            match tokio::time::timeout(left.min(TCP_BUSY_IDLE), stream.read(input.room())).await {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => {
                    input.end += n;
                    break;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {}
            }
        }
    }
}

/// Answers an ordinary query; one signed with TSIG (a secondary's SOA check) gets its answer
/// signed, or the TSIG error.
fn respond_signed(
    zones: &ZoneSet,
    request: &[u8],
    protocol: Protocol,
    ctx: &DnsContext,
) -> Option<answer::Response> {
    let service = ctx.transfers.as_deref().filter(|_| wire::has_tsig(request));
    let Some(service) = service else {
        return respond_counted(zones, request, protocol, ctx);
    };
    match service.check_query_tsig(request) {
        xfr::QueryTsig::Unsigned => respond_counted(zones, request, protocol, ctx),
        xfr::QueryTsig::Reply(bytes) => {
            let rcode = answer_rcode(&bytes);
            Some(answer::Response {
                bytes,
                qtype: None,
                rcode,
            })
        }
        xfr::QueryTsig::Sign(mut signer) => {
            let mut response = respond_counted(zones, request, protocol, ctx)?;
            if signer
                .sign(&mut response.bytes, crate::transfer::tsig::now())
                .is_err()
            {
                return None;
            }
            Some(response)
        }
    }
}

/// The response code in an encoded header (the low four bits; enough for what we send).
fn answer_rcode(bytes: &[u8]) -> hickory_proto::op::ResponseCode {
    let low = bytes.get(3).map_or(0, |b| b & 0x0F);
    hickory_proto::op::ResponseCode::from(0, low)
}

/// The transfer server, when `request` is an AXFR/IXFR query and transfers are served.
fn transfer_service<'c>(ctx: &'c DnsContext, request: &[u8]) -> Option<&'c xfr::Service> {
    ctx.transfers
        .as_deref()
        .filter(|_| xfr::is_transfer_query(request))
}

/// Runs `f`, counting a panic as a dropped request (as [`respond_guarded`] does).
fn guarded<T>(ctx: &DnsContext, bytes: usize, f: impl FnOnce() -> Option<T>) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            ctx.metrics.problem(Problem::AnswerPanic);
            if let Some(held_back) = ctx.panics.allow() {
                tracing::error!(
                    bytes,
                    held_back,
                    "a transfer request made the answer path panic; dropped it (logged at most once per interval)"
                );
            }
            None
        }
    }
}

/// A transfer request over UDP: always a single message (AXFR is refused, IXFR gets the
/// single SOA or an error).
fn transfer_udp(
    service: &xfr::Service,
    zones: &ZoneSet,
    request: &[u8],
    peer: IpAddr,
    ctx: &DnsContext,
) -> Option<answer::Response> {
    let reply = guarded(ctx, request.len(), || {
        service.handle(zones, request, peer, true)
    });
    match reply {
        Some(xfr::Reply::Single {
            bytes,
            kind,
            rcode,
            outcome,
        }) => {
            ctx.metrics.count_transfer(kind.as_str(), outcome.as_str());
            Some(answer::Response {
                bytes,
                qtype: Some(qtype_of(kind)),
                rcode,
            })
        }
        // `handle` never streams over UDP.
        Some(xfr::Reply::Stream(_)) | None => {
            ctx.metrics.dropped_packets.inc();
            None
        }
    }
}

fn qtype_of(kind: xfr::Kind) -> hickory_proto::rr::RecordType {
    match kind {
        xfr::Kind::Axfr => hickory_proto::rr::RecordType::AXFR,
        xfr::Kind::Ixfr => hickory_proto::rr::RecordType::IXFR,
    }
}

/// Writes one length-prefixed message; each write has the idle timeout to itself, so a
/// long transfer is never cut by it while a slow reader is still taking data.
async fn write_framed(stream: &mut TcpStream, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    let Ok(n) = u16::try_from(bytes.len()) else {
        return Err(io::Error::other("message larger than 65535 bytes"));
    };
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    tokio::time::timeout(timeout, stream.write_all(&out))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not sent in time"))?
}

/// Answers a transfer request over TCP: a single message, or the transfer streamed message
/// by message from the snapshot taken now, yielding between messages so that other
/// connections and the UDP loops keep being served. `Ok(false)`: close the connection.
async fn serve_transfer(
    stream: &mut TcpStream,
    ctx: &DnsContext,
    table: &TcpTable,
    conn: &TcpConn,
    service: &xfr::Service,
    request: &[u8],
) -> io::Result<bool> {
    let start = Instant::now();
    let reply = {
        let zones = ctx.zones.load();
        guarded(ctx, request.len(), || {
            service.handle(&zones, request, conn.ip, false)
        })
    };
    let Some(reply) = reply else {
        ctx.metrics.dropped_packets.inc();
        return Ok(false);
    };
    let mut transfer = match reply {
        xfr::Reply::Single {
            bytes,
            kind,
            rcode,
            outcome,
        } => {
            write_framed(stream, &bytes, ctx.tcp_idle_timeout).await?;
            conn.last_active_ms.store(table.now_ms(), Ordering::Relaxed);
            ctx.metrics.count_transfer(kind.as_str(), outcome.as_str());
            ctx.metrics.count_query(
                Protocol::Tcp,
                Some(qtype_of(kind)),
                rcode,
                start.elapsed().as_secs_f64(),
            );
            return Ok(true);
        }
        xfr::Reply::Stream(t) => t,
    };
    let kind = transfer.kind();
    let full = transfer.is_full();
    let mut messages = transfer.messages();
    let ended: io::Result<()> = loop {
        let next = guarded(ctx, request.len(), || messages.next_message());
        let bytes = match next {
            None => break Ok(()),
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => break Err(io::Error::other(e)),
        };
        if let Err(e) = write_framed(stream, &bytes, ctx.tcp_idle_timeout).await {
            break Err(e);
        }
        // Busy, not idle: the connection is not a candidate for eviction.
        conn.last_active_ms.store(table.now_ms(), Ordering::Relaxed);
        tokio::task::yield_now().await;
    };
    let (sent, records, bytes) = (
        messages.messages,
        messages.records_sent,
        messages.bytes_sent,
    );
    drop(messages);
    ctx.metrics.transfer_records.inc_by(records as u64);
    ctx.metrics.transfer_bytes.inc_by(bytes as u64);
    let zone = transfer.zone();
    let ms = start.elapsed().as_millis() as u64;
    match ended {
        Ok(()) => {
            ctx.metrics.count_transfer(kind.as_str(), "ok");
            ctx.metrics.count_query(
                Protocol::Tcp,
                Some(qtype_of(kind)),
                hickory_proto::op::ResponseCode::NoError,
                start.elapsed().as_secs_f64(),
            );
            transfer.completed(&service.status);
            tracing::info!(
                zone = %zone.origin(),
                peer = %transfer.peer(),
                r#type = kind.as_str(),
                style = if full { "full" } else { "incremental" },
                serial = zone.serial(),
                messages = sent,
                records,
                ms,
                "zone transferred"
            );
            Ok(true)
        }
        Err(e) => {
            ctx.metrics.count_transfer(kind.as_str(), "error");
            tracing::info!(
                zone = %zone.origin(),
                peer = %transfer.peer(),
                r#type = kind.as_str(),
                serial = zone.serial(),
                messages = sent,
                records,
                ms,
                error = %e,
                "zone transfer interrupted"
            );
            Err(e)
        }
    }
}

/// What became of a request in [`answer_into`].
enum Routed {
    /// The response is in `out`.
    Answered(fast::Answered),
    /// An RFC 2136 UPDATE: the caller hands it to the update handler.
    Update,
}

/// Answers one request into `out`: the fast path when it can, else the general path (whose
/// response is copied in). `None`: nothing to send. UPDATEs are recognised only once the
/// fast path has declined the request, so queries pay nothing for them.
fn answer_into(
    zones: &ZoneSet,
    request: &[u8],
    protocol: Protocol,
    ctx: &DnsContext,
    out: &mut Vec<u8>,
) -> Option<Routed> {
    // A bug in the fast path that panics costs that packet only, as in the general path.
    let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fast::respond(zones, request, protocol, ctx.max_udp_payload, out)
    }));
    match fast {
        Ok(Some(answered)) => return Some(Routed::Answered(answered)),
        Ok(None) => {}
        Err(_) => ctx.metrics.problem(Problem::AnswerPanic),
    }
    if ctx.updates.is_some() && wire::is_update(request) {
        return Some(Routed::Update);
    }
    let response = respond_signed(zones, request, protocol, ctx)?;
    Some(Routed::Answered(copy_response(response, out)))
}

/// Hands an UPDATE to the update handler, waiting for a free slot no longer than it takes
/// to see there is none. `None`: send nothing.
async fn update_response(ctx: &DnsContext, request: Vec<u8>, peer: IpAddr) -> Option<Vec<u8>> {
    let handler = ctx.updates.clone()?;
    let Ok(_slot) = ctx.update_slots.clone().try_acquire_owned() else {
        ctx.metrics.dropped_packets.inc();
        ctx.metrics.problem(Problem::UpdateBacklog);
        return None;
    };
    handler.handle(request, peer).await
}

/// An UPDATE over UDP: answered from its own task (it waits for the writer), so the loop
/// goes on answering queries; the response leaves through the same socket.
fn update_udp(
    socket: &Arc<std::net::UdpSocket>,
    runtime: &tokio::runtime::Handle,
    ctx: &Arc<DnsContext>,
    request: &[u8],
    src: SocketAddr,
) {
    let Some(handler) = ctx.updates.clone() else {
        return;
    };
    let Ok(slot) = ctx.update_slots.clone().try_acquire_owned() else {
        ctx.metrics.dropped_packets.inc();
        ctx.metrics.problem(Problem::UpdateBacklog);
        return;
    };
    let socket = socket.clone();
    let request = request.to_vec();
    let ctx = ctx.clone();
    runtime.spawn(async move {
        let _slot = slot;
        let Some(mut bytes) = handler.handle(request, src.ip()).await else {
            return;
        };
        // An UPDATE's response is a UDP response like any other: a spoofed flood of unsigned
        // UPDATEs must not turn the server into a reflector either.
        if !passes_rrl(&ctx, src.ip(), answer_rcode(&bytes), &mut bytes) {
            return;
        }
        // One datagram on a socket the kernel rarely makes wait: a plain send.
        if let Err(e) = socket.send_to(&bytes, src) {
            tracing::debug!(error = %e, "udp send error");
        }
    });
}

/// Passes one UDP response through RRL, when on: `false` means drop it; a slipped response
/// is truncated in place. Counted either way.
fn passes_rrl(
    ctx: &DnsContext,
    client: IpAddr,
    rcode: hickory_proto::op::ResponseCode,
    response: &mut Vec<u8>,
) -> bool {
    let Some(rrl) = &ctx.rrl else {
        return true;
    };
    match rrl.check(client, rcode) {
        rrl::Verdict::Send => true,
        rrl::Verdict::Drop => {
            ctx.metrics.rrl_limited[0].inc();
            false
        }
        rrl::Verdict::Slip => {
            ctx.metrics.rrl_limited[1].inc();
            rrl::truncate(response);
            true
        }
    }
}

/// Copies a general-path response into the reused buffer `out`.
fn copy_response(response: answer::Response, out: &mut Vec<u8>) -> fast::Answered {
    out.clear();
    out.extend_from_slice(&response.bytes);
    fast::Answered {
        qtype: response.qtype,
        rcode: response.rcode,
    }
}

/// Answers one request and counts what was wrong with it, if anything: a dropped request
/// (too short, a response, a panic) gives `None`.
fn respond_counted(
    zones: &ZoneSet,
    request: &[u8],
    protocol: Protocol,
    ctx: &DnsContext,
) -> Option<answer::Response> {
    let Some(response) = respond_guarded(zones, request, protocol, ctx) else {
        ctx.metrics.dropped_packets.inc();
        if request.len() < 12 {
            ctx.metrics.problem(Problem::ShortPacket);
        } else if request[2] & 0x80 != 0 {
            ctx.metrics.problem(Problem::ResponsePacket);
        }
        return None;
    };
    if response.rcode == hickory_proto::op::ResponseCode::FormErr {
        ctx.metrics.problem(Problem::Malformed);
    } else if wire::has_bad_edns_options(request) {
        ctx.metrics.problem(Problem::BadEdnsOptions);
    }
    Some(response)
}

/// Answers one request; a bug that panics on some packet costs that packet, not the
/// listener (the loop would otherwise die with it and stop serving).
fn respond_guarded(
    zones: &ZoneSet,
    request: &[u8],
    protocol: Protocol,
    ctx: &DnsContext,
) -> Option<answer::Response> {
    let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        answer::respond(zones, request, protocol, ctx.max_udp_payload)
    }));
    match answered {
        Ok(r) => r,
        Err(_) => {
            ctx.metrics.problem(Problem::AnswerPanic);
            if let Some(held_back) = ctx.panics.allow() {
                tracing::error!(
                    bytes = request.len(),
                    held_back,
                    "a request made the answer path panic; dropped it (logged at most once per interval)"
                );
            }
            None
        }
    }
}

/// The shared state of the DNS loops, from the configuration.
pub fn context(config: &Config, zones: Arc<ArcSwap<ZoneSet>>, metrics: Arc<Metrics>) -> DnsContext {
    let interval = Duration::from_secs(config.log.summary_interval_secs.max(1));
    let dns = &config.dns;
    DnsContext {
        zones,
        metrics,
        max_udp_payload: dns.max_udp_payload,
        tcp_idle_timeout: Duration::from_secs(dns.tcp_idle_timeout_secs.max(1)),
        tcp_max_per_address: dns.tcp_max_per_address,
        rrl: dns.rrl.enabled.then(|| rrl::Rrl::new(&dns.rrl)),
        transfers: None,
        updates: None,
        update_slots: Arc::new(tokio::sync::Semaphore::new(MAX_UPDATES_IN_FLIGHT)),
        accept_errors: Throttle::new(interval),
        panics: Throttle::new(interval),
    }
}
