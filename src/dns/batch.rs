//! Batched UDP system calls: up to [`BATCH`] datagrams received with one `recvmmsg` and their
//! responses sent with one `sendmmsg` (Linux), so the per-packet system-call cost is shared.
//!
//! This module owns the raw `libc` calls and their buffers (the only `unsafe` of the DNS
//! side) and converting the kernel's socket addresses. It must not answer nor count: the
//! loop in `dns` does, per datagram, exactly as with one datagram per call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// The largest request we read: datagrams larger than our largest response are not DNS
/// queries we want (they are cut, and then fail to parse).
pub const RECV_SIZE: usize = 4096;

/// Receive buffers and source addresses for one batch.
pub struct RecvBatch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: [usize; BATCH],
    addr_lens: [libc::socklen_t; BATCH],
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            bufs: vec![0; BATCH * RECV_SIZE],
            // SAFETY: an all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
            addrs: vec![unsafe { zeroed() }; BATCH],
            lens: [0; BATCH],
            addr_lens: [0; BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams; the number received. With `wait`, blocks until
    /// the first one arrives (or the socket's receive timeout: `WouldBlock`) and takes
    /// whatever else is queued then; without, `WouldBlock` when there is none.
    pub fn recv(&mut self, fd: RawFd, wait: bool) -> io::Result<usize> {
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        // SAFETY: zeroed iovec/mmsghdr are valid; every pointer set below points into
        // `self`'s buffers, which outlive the call, with the lengths of those buffers.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, (chunk, addr)) in self
            .bufs
            .chunks_exact_mut(RECV_SIZE)
            .zip(self.addrs.iter_mut())
            .enumerate()
        {
            iov[i].iov_base = chunk.as_mut_ptr().cast();
            iov[i].iov_len = RECV_SIZE;
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: see above; the kernel writes at most the given lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(BATCH);
        for (i, h) in hdrs.iter().enumerate().take(n) {
            self.lens[i] = (h.msg_len as usize).min(RECV_SIZE);
            self.addr_lens[i] = h.msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// Datagram `i` of the last batch.
    pub fn datagram(&self, i: usize) -> &[u8] {
        let start = i * RECV_SIZE;
        &self.bufs[start..start + self.lens[i]]
    }

    /// The source address of datagram `i`, if it is IPv4 or IPv6.
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        to_socket_addr(&self.addrs[i], self.addr_lens[i])
    }

    /// Sends `responses` (datagram index, bytes) to the sources of those datagrams with as
    /// few `sendmmsg` calls as the socket buffer allows (a blocking socket waits for room).
    /// Returns how many were handed to the kernel, skipping any that it refused outright;
    /// on a non-blocking socket, those sent before it would block.
    pub fn send(&self, fd: RawFd, responses: &[(usize, &[u8])]) -> io::Result<usize> {
        let mut done = 0;
        while done < responses.len() {
            let part = &responses[done..responses.len().min(done + BATCH)];
            // SAFETY: as in `recv`; the kernel only reads through these pointers.
            let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            for (k, (i, bytes)) in part.iter().enumerate() {
                iov[k].iov_base = bytes.as_ptr() as *mut libc::c_void;
                iov[k].iov_len = bytes.len();
                let h = &mut hdrs[k].msg_hdr;
                h.msg_name = (&self.addrs[*i] as *const libc::sockaddr_storage)
                    .cast_mut()
                    .cast();
                h.msg_namelen = self.addr_lens[*i];
                h.msg_iov = &mut iov[k];
                h.msg_iovlen = 1;
            }
            // SAFETY: see above.
            let sent =
                unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), part.len() as libc::c_uint, 0) };
            if sent < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    return if done == 0 { Err(e) } else { Ok(done) };
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // This one datagram cannot be sent (unreachable, refused): the rest can.
                tracing::debug!(error = %e, "udp send error");
                done += 1;
                continue;
            }
            done += sent as usize;
        }
        Ok(done)
    }
}

/// Sends this UDP socket's datagrams with the DF bit and never fragments them, ignoring
/// path MTU updates (`IP_PMTUDISC_PROBE`; for IPv6 `IPV6_PMTUDISC_PROBE`). RFC 9715 asks
/// for no fragment header on IPv6 (R1) and allows DF on IPv4 (R2). DNS responses are kept
/// within `dns.max_udp_payload`, at most [`super::DONT_FRAGMENT_MAX_PAYLOAD`] here, so no
/// fragment is ever needed. A forged ICMP "fragmentation needed" cannot lower what we send.
/// A datagram larger than the interface's MTU fails alone and the rest of the batch goes
/// ([`RecvBatch::send`]). DF also spares the kernel an IP ID hash per IPv4 datagram: one the
/// sender lets be fragmented needs an unpredictable ID, one with DF gets 0 (3.4 % of the
/// server's CPU under load in a profile; about 5 % more answers per CPU-second, 9 pairs).
pub fn set_dont_fragment(fd: RawFd, ipv6: bool) -> io::Result<()> {
    let (level, name, value) = if ipv6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    };
    // SAFETY: `value` is a c_int that outlives the call, and its size is given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The socket's path MTU discovery mode (`IP_MTU_DISCOVER` or `IPV6_MTU_DISCOVER`).
#[cfg(test)]
fn mtu_discover(fd: RawFd, ipv6: bool) -> io::Result<libc::c_int> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)
    };
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` outlive the call; `len` is the size of `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn to_socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this storage holds a sockaddr_in, long enough.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says this storage holds a sockaddr_in6, long enough.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn mode_of(addr: &str, max_udp_payload: u16) -> (libc::c_int, bool) {
        let addr: SocketAddr = addr.parse().unwrap();
        let bound = crate::dns::bind(addr, 1, max_udp_payload).unwrap();
        let socket = &bound.udp[0];
        (
            mtu_discover(socket.as_raw_fd(), addr.is_ipv6()).unwrap(),
            addr.is_ipv6(),
        )
    }

    // `bind` makes a tokio TCP listener too: a runtime is needed.
    #[tokio::test]
    async fn udp_responses_are_sent_unfragmentable_with_the_default_payload_limit() {
        assert_eq!(mode_of("127.0.0.1:0", 1232).0, libc::IP_PMTUDISC_PROBE);
        assert_eq!(mode_of("127.0.0.1:0", 1400).0, libc::IP_PMTUDISC_PROBE);
        // IPv6 where the machine has it.
        if std::net::UdpSocket::bind("[::1]:0").is_ok() {
            assert_eq!(mode_of("[::1]:0", 1232), (libc::IPV6_PMTUDISC_PROBE, true));
        }
    }

    #[tokio::test]
    async fn a_payload_limit_above_1400_keeps_the_kernels_default_fragmentation() {
        let (mode, _) = mode_of("127.0.0.1:0", 4096);
        assert_ne!(mode, libc::IP_PMTUDISC_PROBE);
        assert_ne!(mode, libc::IP_PMTUDISC_DO);
    }
}
