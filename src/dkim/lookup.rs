//! Fetching DKIM key records over DNS for verification: a TXT query over UDP (EDNS, 1232
//! bytes) with the fallback to TCP when the answer is truncated.
//!
//! Blocking and small on purpose: it serves the `mailzone dkim verify` command, not the
//! daemon. The server is given, or the first `nameserver` of `/etc/resolv.conf`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

/// The first `nameserver` of `/etc/resolv.conf`, port 53.
pub fn system_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The TXT records at `name` (each record's strings joined).
pub fn txt(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    let qname = Name::from_ascii(name).map_err(|e| format!("{name}: {e}"))?;
    let mut q = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(qname, RecordType::TXT));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    q.set_edns(edns);
    let bytes = q.to_vec().map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(5);

    let socket = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    socket
        .send_to(&bytes, server)
        .map_err(|e| format!("{server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .map_err(|e| format!("{server}: no answer: {e}"))?;
    let mut reply = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    if reply.metadata.truncation {
        let mut s =
            TcpStream::connect_timeout(&server, timeout).map_err(|e| format!("{server}: {e}"))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        s.write_all(&framed).map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).map_err(|e| e.to_string())?;
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut body).map_err(|e| e.to_string())?;
        reply = Message::from_vec(&body).map_err(|e| e.to_string())?;
    }
    Ok(crate::diagnose::probe::txt_values(&reply))
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_be_bytes(b)
}
