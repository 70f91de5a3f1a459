//! Who the client is: the peer, unless the peer is a proxy we trust to say who it forwarded.
//!
//! Behind an Ingress or a load balancer every request arrives from the same few addresses, so
//! a per-address limit keyed on the TCP peer puts every client in one bucket. The forwarding
//! headers say who the client was, but a client can write them too. The rule (nginx's
//! `real_ip_recursive`, Envoy's `xff_num_trusted_hops` by address): believe the headers only
//! from a trusted peer, and then take the right-most hop that is not itself trusted; everything
//! left of it was written by someone we do not trust.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Addresses (CIDRs) of proxies whose `X-Forwarded-For` / `Forwarded` headers are believed.
/// Empty: no one's, the TCP peer is the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct TrustedProxies(#[schemars(with = "Vec<String>")] Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Loopback only: the router and a gateway on one machine.
    pub fn loopback() -> Self {
        Self(vec![IpNet::from_str("127.0.0.0/8").unwrap(), IpNet::from_str("::1/128").unwrap()])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    ///
    /// From an untrusted peer, the peer. From a trusted one, the right-most hop of
    /// `X-Forwarded-For` (or, without it, of `Forwarded`'s `for=`) that is not trusted; when
    /// every hop is trusted, the left-most. A hop that is not an address ends the walk: the
    /// trusted hop that wrote it is the best we know.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop else { return client };
            client = *ip;
            if !self.contains(client) {
                return client;
            }
        }
        client
    }
}

/// The hops a request names, left (first client) to right (nearest proxy); `None` for a hop
/// that is not an address (`unknown`, an obfuscated name, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    if !xff.is_empty() {
        return xff.iter().flat_map(|v| v.split(',')).map(|hop| parse_hop(hop.trim())).collect();
    }
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then(|| parse_hop(value.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')).and_then(|h| h.parse().ok()).map(canonical)
}

/// The key that counts a client against per-client limits (rate, connections, login attempts):
/// its IPv4 address, or the /64 network of its IPv6 address. One host usually holds a whole /64,
/// so keying on the full address would give it 2^64 fresh buckets.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
        v4 => v4,
    }
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`, what a dual-stack socket reports) as the IPv4 address,
/// so one client is one key whichever way it arrived.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        map
    }

    /// Header lines of one case.
    type Lines<'a> = &'a [(&'a str, &'a str)];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_address_follows_the_trust_table() {
        let ingress = trusted(&["10.0.0.0/8"]);
        let cases: &[(&str, &TrustedProxies, Lines<'_>, &str)] = &[
            // Untrusted peer: its headers are ignored, whatever they say.
            ("spoofed by a client", &ingress, &[("x-forwarded-for", "1.2.3.4")], "203.0.113.9"),
            (
                "no trust configured",
                &TrustedProxies::default(),
                &[("x-forwarded-for", "1.2.3.4")],
                "203.0.113.9",
            ),
        ];
        for (name, table, hdrs, want) in cases {
            assert_eq!(table.client_addr(ip("203.0.113.9"), &headers(hdrs)), ip(want), "{name}");
        }
        let from_ingress: &[(&str, Lines<'_>, &str)] = &[
            ("one hop", &[("x-forwarded-for", "198.51.100.7")], "198.51.100.7"),
            ("right-most untrusted wins", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")], "198.51.100.7"),
            ("trusted hops are skipped", &[("x-forwarded-for", "198.51.100.7, 10.1.2.3")], "198.51.100.7"),
            (
                "two header lines",
                &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.7")],
                "198.51.100.7",
            ),
            ("with a port", &[("x-forwarded-for", "198.51.100.7:5555")], "198.51.100.7"),
            ("ipv6 in brackets", &[("x-forwarded-for", "[2001:db8::1]:80")], "2001:db8::1"),
            ("all trusted: the left-most", &[("x-forwarded-for", "10.9.9.9, 10.1.2.3")], "10.9.9.9"),
            (
                "garbage ends the walk at the hop that wrote it",
                &[("x-forwarded-for", "1.1.1.1, junk, 10.1.2.3")],
                "10.1.2.3",
            ),
            ("no header: the peer", &[], "10.0.0.2"),
            (
                "Forwarded when there is no XFF",
                &[("forwarded", "for=192.0.2.60;proto=https, for=\"[2001:db8::2]:4711\"")],
                "2001:db8::2",
            ),
            (
                "XFF over Forwarded",
                &[("forwarded", "for=192.0.2.60"), ("x-forwarded-for", "198.51.100.7")],
                "198.51.100.7",
            ),
        ];
        for (name, hdrs, want) in from_ingress {
            assert_eq!(ingress.client_addr(ip("10.0.0.2"), &headers(hdrs)), ip(want), "{name}");
        }
    }

    #[test]
    fn a_mapped_ipv4_peer_is_the_ipv4_address() {
        let table = trusted(&["127.0.0.0/8"]);
        assert!(table.contains(ip("::ffff:127.0.0.1")));
        assert_eq!(
            TrustedProxies::default().client_addr(ip("::ffff:192.0.2.1"), &HeaderMap::new()),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("2001:db8:1:2:bbbb::9")), client_key(ip("2001:db8:1:2::77")));
        assert_ne!(client_key(ip("2001:db8:1:3::1")), client_key(ip("2001:db8:1:2::1")));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn trusted_proxies_parse_from_cidr_strings() {
        let table: TrustedProxies = serde_json::from_str(r#"["10.0.0.0/8", "::1/128"]"#).unwrap();
        assert!(
            table.contains(ip("10.200.0.1")) && table.contains(ip("::1")) && !table.contains(ip("11.0.0.1"))
        );
        assert!(serde_json::from_str::<TrustedProxies>(r#"["10.0.0.0/33"]"#).is_err());
    }
}
