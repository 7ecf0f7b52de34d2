//! Response rate limiting (RRL) for UDP, in the manner of NSD and Knot.
//!
//! This module owns the budgets: per client prefix (IPv4 /24, IPv6 /56 by default) and per
//! kind of response (answers, NXDOMAIN, errors), so many responses per second; over it a
//! response is dropped, except every `slip`-th, which goes out truncated (TC=1, no records)
//! so that a real client behind a spoofed-looking flood retries over TCP. It is lock-free
//! and allocation-free: a fixed table of atomic buckets indexed by a keyed hash of
//! (prefix, kind). Two prefixes landing in one bucket share it (the newer one resets it),
//! which can only let more through, never limit an innocent client more. It must not touch
//! sockets or metrics, and TCP is never passed through it.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hickory_proto::op::ResponseCode;

use crate::config::RrlConfig;

/// What to do with one UDP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    /// Send it truncated ([`truncate`]).
    Slip,
}

pub struct Rrl {
    /// Each bucket: hash tag (32 bits) | second (16 bits) | responses in that second (16 bits).
    table: Box<[AtomicU64]>,
    mask: usize,
    /// Keyed with process-random keys so that a client cannot aim at a bucket.
    hasher: std::collections::hash_map::RandomState,
    epoch: Instant,
    /// Per second: answers, NXDOMAIN, errors.
    rates: [u32; 3],
    slip: u32,
    v4_mask: u32,
    v6_mask: u128,
}

impl Rrl {
    pub fn new(config: &RrlConfig) -> Self {
        let size = config.table_size.next_power_of_two().max(64);
        let prefix_mask = |bits: u8, width: u32| -> u128 {
            let bits = u32::from(bits).min(width);
            if bits == 0 {
                0
            } else {
                (u128::MAX << (128 - bits)) >> (128 - width)
            }
        };
        Self {
            table: (0..size).map(|_| AtomicU64::new(0)).collect(),
            mask: size - 1,
            hasher: Default::default(),
            epoch: Instant::now(),
            rates: [
                config.responses_per_second,
                config.nxdomains_per_second,
                config.errors_per_second,
            ],
            slip: config.slip,
            v4_mask: prefix_mask(config.ipv4_prefix_length, 32) as u32,
            v6_mask: prefix_mask(config.ipv6_prefix_length, 128),
        }
    }

    /// Counts one response of `rcode` to `client` and says whether it may go out.
    pub fn check(&self, client: IpAddr, rcode: ResponseCode) -> Verdict {
        let kind: u8 = match rcode {
            ResponseCode::NoError => 0,
            ResponseCode::NXDomain => 1,
            _ => 2,
        };
        let prefix: (u8, u128) = match client {
            IpAddr::V4(a) => (4, u128::from(u32::from(a) & self.v4_mask)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => (4, u128::from(u32::from(v4) & self.v4_mask)),
                None => (6, u128::from(a) & self.v6_mask),
            },
        };
        let hash = self.hasher.hash_one((prefix, kind));
        let tag = hash >> 32;
        let second = self.epoch.elapsed().as_secs() & 0xFFFF;
        let Some(bucket) = self.table.get(hash as usize & self.mask) else {
            return Verdict::Send;
        };
        let mut current = bucket.load(Ordering::Relaxed);
        let count = loop {
            let same = current >> 32 == tag && (current >> 16) & 0xFFFF == second;
            let count = if same {
                ((current & 0xFFFF) + 1).min(0xFFFF)
            } else {
                1
            };
            let next = (tag << 32) | (second << 16) | count;
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break count as u32,
                Err(seen) => current = seen,
            }
        };
        let rate = self.rates[usize::from(kind)];
        if count <= rate {
            Verdict::Send
        } else if self.slip > 0 && (count - rate).is_multiple_of(self.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// Turns an encoded response into its truncated form in place: header and question only,
/// TC=1, so that the client asks again over TCP.
pub fn truncate(response: &mut Vec<u8>) {
    if response.len() < 12 {
        return;
    }
    let qdcount = u16::from_be_bytes([response[4], response[5]]);
    let mut end = 12;
    if qdcount >= 1 {
        let mut at = 12;
        // Our own encoding: the first name is never compressed.
        loop {
            match response.get(at) {
                Some(0) => {
                    end = (at + 5).min(response.len());
                    break;
                }
                Some(l) if l & 0xC0 == 0 => at += 1 + usize::from(*l),
                _ => break,
            }
        }
    }
    response.truncate(end);
    response[2] |= 0x02;
    let qd: u16 = if end > 12 { 1 } else { 0 };
    response[4..6].copy_from_slice(&qd.to_be_bytes());
    response[6..12].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: u32, slip: u32) -> RrlConfig {
        RrlConfig {
            enabled: true,
            responses_per_second: rate,
            nxdomains_per_second: rate,
            errors_per_second: rate,
            slip,
            ..RrlConfig::default()
        }
    }

    #[test]
    fn a_prefix_gets_its_rate_then_is_limited_with_every_slip_th_truncated() {
        let rrl = Rrl::new(&config(5, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.200".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..9)
            .map(|i| rrl.check(if i % 2 == 0 { a } else { b }, ResponseCode::NoError))
            .collect();
        assert_eq!(&verdicts[..5], &[Verdict::Send; 5]);
        assert_eq!(
            &verdicts[5..],
            &[Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        // Another /24, and another kind of response, have their own budgets.
        let other: IpAddr = "192.0.3.1".parse().unwrap();
        assert_eq!(rrl.check(other, ResponseCode::NoError), Verdict::Send);
        assert_eq!(rrl.check(a, ResponseCode::NXDomain), Verdict::Send);
    }

    #[test]
    fn a_truncated_response_keeps_the_question_only() {
        let mut r = vec![0x12, 0x34, 0x84, 0, 0, 1, 0, 2, 0, 0, 0, 1];
        r.extend_from_slice(b"\x04test\x00\x00\x01\x00\x01");
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
        truncate(&mut r);
        assert_eq!(r.len(), 12 + 6 + 4);
        assert_eq!(r[2] & 0x02, 0x02);
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
