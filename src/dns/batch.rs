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
