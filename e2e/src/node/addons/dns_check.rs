//! Whether the cluster DNS answers: one A query, as RFC 1035 lays it out, sent to the DNS
//! Service's address from the machine, through kube-proxy's rules.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::host::{Error, Result};
use crate::node::config::CLUSTER_DNS;

/// A DNS query for one A record, as RFC 1035 lays it out.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::new();
    packet.extend(id.to_be_bytes());
    packet.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // recursion desired, one question
    for label in name.trim_end_matches('.').split('.') {
        packet.push(u8::try_from(label.len()).unwrap_or(63));
        packet.extend(label.as_bytes());
    }
    packet.extend([0, 0, 1, 0, 1]); // root, type A, class IN
    packet
}

/// The IPv4 addresses in the answer section of a reply to `dns_query`.
pub fn dns_answers(reply: &[u8], question_len: usize) -> Vec<Ipv4Addr> {
    let count = reply
        .get(6..8)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let mut at = question_len;
    let mut found = Vec::new();
    for _ in 0..count {
        // The owner name: labels up to the root, or ending in a 2-byte compression pointer.
        loop {
            match reply.get(at) {
                Some(0) => {
                    at += 1;
                    break;
                }
                Some(&length) if length >= 0xc0 => {
                    at += 2;
                    break;
                }
                Some(&length) => at += 1 + usize::from(length),
                None => return found,
            }
        }
        let Some(header) = reply.get(at..at + 10) else {
            break;
        };
        let (kind, length) = (
            u16::from_be_bytes([header[0], header[1]]),
            usize::from(u16::from_be_bytes([header[8], header[9]])),
        );
        if let (1, Some(data)) = (kind, reply.get(at + 10..at + 10 + length))
            && length == 4
        {
            found.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    found
}

/// Asks the cluster DNS, through its Service address, for the API server's Service.
pub fn resolve(name: &str) -> Option<Vec<Ipv4Addr>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let query = dns_query(0x0dfa, name);
    socket
        .send_to(&query, SocketAddr::from((CLUSTER_DNS, 53)))
        .ok()?;
    let mut reply = [0u8; 512];
    let (length, _) = socket.recv_from(&mut reply).ok()?;
    Some(dns_answers(&reply[..length], query.len()))
}

pub async fn wait_for_dns(_client: &kube::Client, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let expected = Ipv4Addr::new(10, 96, 0, 1);
    loop {
        let answers =
            tokio::task::spawn_blocking(|| resolve("kubernetes.default.svc.cluster.local"))
                .await
                .ok()
                .flatten();
        if answers.is_some_and(|a| a.contains(&expected)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                component: "coredns".into(),
                seconds: timeout.as_secs(),
                log: "kubectl -n kube-system logs deploy/coredns".into(),
                tail: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_reply_is_read_back_to_its_addresses() {
        let query = dns_query(7, "kubernetes.default.svc.cluster.local");
        assert_eq!(query.len(), 12 + 38 + 4);
        let mut reply = query.clone();
        reply[2] = 0x81;
        reply[7] = 1; // one answer
        reply.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 0, 1]);
        assert_eq!(
            dns_answers(&reply, query.len()),
            vec![Ipv4Addr::new(10, 96, 0, 1)]
        );
        // CoreDNS spells the owner name out instead of pointing back to the question.
        let mut spelled = query.clone();
        spelled[7] = 1;
        spelled.extend(&query[12..query.len() - 4]);
        spelled.extend([0, 1, 0, 1, 0, 0, 0, 6, 0, 4, 10, 96, 0, 1]);
        assert_eq!(
            dns_answers(&spelled, query.len()),
            vec![Ipv4Addr::new(10, 96, 0, 1)]
        );
    }
}
