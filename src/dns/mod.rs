//! DNS over UDP and TCP: the sockets and the loops that serve them.
//!
//! This module owns binding (several SO_REUSEPORT UDP sockets per address, a large receive
//! buffer, the same port for UDP and TCP), the receive/answer/send loops and the TCP
//! connection limits. Each loop reads the current zone snapshot with one atomic load: the
//! answer path never waits on a lock or on the writer. It must not build answers itself
//! ([`answer`] does) nor load zones.
//!
//! We run our own loops rather than hickory-server's `Server`: the latter spawns a task per
//! datagram, funnels every send through one task per socket and logs every query
//! (`../shared/HICKORY-NOTES.md` §1, §9), and answering inline is both simpler and faster.

pub mod answer;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::DnsConfig;
use crate::metrics::{Metrics, Protocol};
use crate::zone::ZoneSet;

/// What the DNS loops share: the current zones and the counters.
pub struct DnsContext {
    pub zones: Arc<ArcSwap<ZoneSet>>,
    pub metrics: Arc<Metrics>,
    pub max_udp_payload: u16,
    pub tcp_idle_timeout: Duration,
}

/// Sockets bound for one configured address.
pub struct BoundAddress {
    /// The address actually bound (the port filled in when 0 was asked).
    pub local: SocketAddr,
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
}

/// Large enough to absorb a burst of a few thousand queries (the default drops some).
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Binds UDP and TCP on `addr`. With port 0 a free port is chosen that is free for both.
pub fn bind(addr: SocketAddr, udp_sockets: usize) -> io::Result<BoundAddress> {
    let mut last_err = None;
    for _ in 0..32 {
        match bind_once(addr, udp_sockets) {
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

fn bind_once(addr: SocketAddr, udp_sockets: usize) -> io::Result<BoundAddress> {
    let first = udp_socket(addr)?;
    let local = first.local_addr()?;
    let mut udp = vec![first];
    for _ in 1..udp_sockets {
        udp.push(udp_socket(local)?);
    }
    let tcp = tcp_listener(local)?;
    Ok(BoundAddress { local, udp, tcp })
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
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
        tasks.spawn(serve_udp(socket, ctx.clone()));
    }
    tasks.spawn(serve_tcp(bound.tcp, ctx, max_tcp_connections));
}

async fn serve_udp(socket: UdpSocket, ctx: Arc<DnsContext>) {
    // Datagrams larger than our largest response are not DNS queries we want.
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP-induced errors and the like: keep serving.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let start = Instant::now();
        if src.port() == 0 {
            ctx.metrics.dropped_packets.inc();
            continue;
        }
        let response = {
            let zones = ctx.zones.load();
            respond_guarded(&zones, &buf[..len], Protocol::Udp, &ctx)
        };
        let Some(response) = response else {
            ctx.metrics.dropped_packets.inc();
            continue;
        };
        if let Err(e) = socket.send_to(&response.bytes, src).await {
            tracing::debug!(error = %e, %src, "udp send error");
        }
        ctx.metrics.count_query(
            Protocol::Udp,
            response.qtype,
            response.rcode,
            start.elapsed().as_secs_f64(),
        );
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<DnsContext>, max_connections: usize) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off a little, keep serving.
                tracing::warn!(error = %e, "tcp accept error");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ctx.metrics.tcp_refused_connections.inc();
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.metrics.tcp_connections.inc();
            if let Err(e) = serve_tcp_connection(stream, &ctx).await {
                tracing::debug!(error = %e, %peer, "tcp connection ended");
            }
            ctx.metrics.tcp_connections.dec();
            drop(permit);
        });
    }
}

/// RFC 7766: several queries per connection, each prefixed by its 2-byte length; the
/// connection is closed after `tcp_idle_timeout` without a query.
async fn serve_tcp_connection(mut stream: TcpStream, ctx: &DnsContext) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(ctx.tcp_idle_timeout, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let len = u16::from_be_bytes(len) as usize;
        buf.resize(len, 0);
        tokio::time::timeout(ctx.tcp_idle_timeout, stream.read_exact(&mut buf))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "query body not received in time")
            })??;
        let start = Instant::now();
        let response = {
            let zones = ctx.zones.load();
            respond_guarded(&zones, &buf, Protocol::Tcp, ctx)
        };
        let Some(response) = response else {
            ctx.metrics.dropped_packets.inc();
            return Ok(());
        };
        let Ok(n) = u16::try_from(response.bytes.len()) else {
            return Err(io::Error::other("response larger than 65535 bytes"));
        };
        let mut out = Vec::with_capacity(2 + response.bytes.len());
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&response.bytes);
        tokio::time::timeout(ctx.tcp_idle_timeout, stream.write_all(&out))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not sent in time"))??;
        ctx.metrics.count_query(
            Protocol::Tcp,
            response.qtype,
            response.rcode,
            start.elapsed().as_secs_f64(),
        );
    }
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
            ctx.metrics.dropped_packets.inc();
            tracing::error!(
                bytes = request.len(),
                "a request made the answer path panic; dropped it"
            );
            None
        }
    }
}

/// Convenience for callers that only need the configured limits.
pub fn context(
    config: &DnsConfig,
    zones: Arc<ArcSwap<ZoneSet>>,
    metrics: Arc<Metrics>,
) -> DnsContext {
    DnsContext {
        zones,
        metrics,
        max_udp_payload: config.max_udp_payload,
        tcp_idle_timeout: Duration::from_secs(config.tcp_idle_timeout_secs.max(1)),
    }
}
