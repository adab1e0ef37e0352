//! Who the client is: its IP address and the scheme it used.
//!
//! By default that is the TCP peer and cloakroom's own listener, and whatever `Forwarded` or
//! `X-Forwarded-*` headers the request carries are ignored (and replaced upstream): anyone can
//! write them. Only when the peer is one of `[server] trusted_proxies` are they believed, and
//! then only as far as the chain of trusted hops goes: walking from the nearest hop outwards,
//! the first address that is not a trusted proxy is the client (a client cannot push itself
//! further in by writing its own `X-Forwarded-For`).

use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The client as cloakroom believes it to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// `"https"` or `"http"`: how the browser reached the first trusted hop (or cloakroom).
    pub proto: &'static str,
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`; a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr =
            address.parse().map_err(|_| format!("{text:?} is not an IP address or CIDR (e.g. \"10.0.0.0/8\")"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        if mask(network, prefix) != network {
            return Err(format!("{text:?} has host bits set; did you mean {}/{prefix}?", mask(network, prefix)));
        }
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

/// Works out the client from the connection and, if the peer is trusted, the forwarding headers.
pub fn client_addr(peer: SocketAddr, own_proto: &'static str, headers: &HeaderMap, trusted: &[Cidr]) -> ClientAddr {
    let peer_ip = peer.ip().to_canonical();
    let own = ClientAddr { ip: peer_ip, proto: own_proto };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer_ip) {
        return own;
    }
    // Hops from the client inwards, each with the scheme it was reached by when known.
    let hops: Vec<(Option<IpAddr>, Option<&'static str>)> = if headers.contains_key("forwarded") {
        forwarded_hops(headers)
    } else {
        let proto = last_value(headers, "x-forwarded-proto").and_then(proto);
        let mut hops: Vec<_> = list(headers, "x-forwarded-for").map(|v| (parse_node(v), None)).collect();
        if let Some(last) = hops.last_mut() {
            last.1 = proto;
        }
        // With only X-Forwarded-Proto, the nearest proxy still tells the scheme.
        if hops.is_empty() && proto.is_some() {
            return ClientAddr { ip: peer_ip, proto: proto.unwrap_or(own_proto) };
        }
        hops
    };
    // Walk inwards-out; stop at the first hop that is not a trusted proxy (or unreadable).
    let mut client = own;
    for (ip, hop_proto) in hops.into_iter().rev() {
        let Some(ip) = ip else { break };
        client = ClientAddr { ip, proto: hop_proto.unwrap_or(client.proto) };
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// RFC 7239 elements, oldest first: `for=` and `proto=` of each.
fn forwarded_hops(headers: &HeaderMap) -> Vec<(Option<IpAddr>, Option<&'static str>)> {
    list(headers, "forwarded")
        .map(|element| {
            let mut ip = None;
            let mut scheme = None;
            for pair in element.split(';') {
                let Some((name, value)) = pair.split_once('=') else { continue };
                let value = value.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    "for" => ip = parse_node(value),
                    "proto" => scheme = proto(value),
                    _ => {}
                }
            }
            (ip, scheme)
        })
        .collect()
}

/// Comma-separated values across every instance of a header.
fn list<'a>(headers: &'a HeaderMap, name: &str) -> impl DoubleEndedIterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn last_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    list(headers, name).next_back()
}

fn proto(value: &str) -> Option<&'static str> {
    match value.trim().to_ascii_lowercase().as_str() {
        "https" => Some("https"),
        "http" => Some("http"),
        _ => None,
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`,
/// or a bare IPv6 address. `unknown` and obfuscated names are not addresses.
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    value.strip_prefix('[')?.strip_suffix(']')?.parse::<IpAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::headers::header_map as headers;

    fn trusted(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    fn client(ip: &str, proto: &'static str) -> ClientAddr {
        ClientAddr { ip: ip.parse().unwrap(), proto }
    }

    #[test]
    fn cidrs_parse_strictly() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()), "IPv4-mapped peers of a dual-stack listener");
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert!(host.contains("192.0.2.7".parse().unwrap()) && !host.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()) && !v6.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.1/8".parse::<Cidr>().unwrap_err().contains("did you mean 10.0.0.0/8"));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy.internal".parse::<Cidr>().is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_writes() {
        let claims = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=2.2.2.2;proto=https"),
        ]);
        assert_eq!(client_addr(at("203.0.113.9"), "http", &claims, &[]), client("203.0.113.9", "http"));
        let lb = trusted(&["10.0.0.0/8"]);
        assert_eq!(client_addr(at("203.0.113.9"), "http", &claims, &lb), client("203.0.113.9", "http"));
    }

    #[test]
    fn a_trusted_proxy_is_believed_up_to_the_first_untrusted_hop() {
        let lb = trusted(&["10.0.0.0/8"]);
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.3"), ("x-forwarded-proto", "https")]);
        // 6.6.6.6 was written by the client itself; 198.51.100.4 is who reached our proxies.
        assert_eq!(client_addr(at("10.0.0.2"), "http", &chain, &lb), client("198.51.100.4", "https"));
        // Every hop trusted: the outermost one is the client.
        let internal = headers(&[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(client_addr(at("10.0.0.2"), "http", &internal, &lb), client("10.9.9.9", "http"));
        // No forwarding headers: the proxy itself.
        assert_eq!(client_addr(at("10.0.0.2"), "http", &HeaderMap::new(), &lb), client("10.0.0.2", "http"));
        // Only the scheme.
        let scheme = headers(&[("x-forwarded-proto", "https")]);
        assert_eq!(client_addr(at("10.0.0.2"), "http", &scheme, &lb), client("10.0.0.2", "https"));
        // Garbage stops the walk where the trusted chain ends.
        let garbage = headers(&[("x-forwarded-for", "not-an-ip, 10.0.0.5"), ("x-forwarded-proto", "gopher")]);
        assert_eq!(client_addr(at("10.0.0.2"), "http", &garbage, &lb), client("10.0.0.5", "http"));
    }

    #[test]
    fn rfc_7239_forwarded_is_read_with_its_proto_and_ipv6_forms() {
        let lb = trusted(&["10.0.0.0/8", "fd00::/8"]);
        let forwarded =
            headers(&[("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.9;proto=http")]);
        assert_eq!(client_addr(at("10.0.0.2"), "http", &forwarded, &lb), client("2001:db8:cafe::17", "https"));
        let obfuscated = headers(&[("forwarded", "for=_hidden;proto=https, for=192.0.2.1:80")]);
        assert_eq!(
            client_addr(SocketAddr::new("fd00::1".parse().unwrap(), 1), "http", &obfuscated, &lb),
            client("192.0.2.1", "http")
        );
        // `Forwarded` wins over the X- headers when both are there.
        let both = headers(&[("forwarded", "for=192.0.2.60;proto=https"), ("x-forwarded-for", "192.0.2.99")]);
        assert_eq!(client_addr(at("10.0.0.2"), "http", &both, &lb), client("192.0.2.60", "https"));
    }
}
