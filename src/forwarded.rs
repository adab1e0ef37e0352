//! Who the client is: its IP address and the scheme it used.
//!
//! By default that is the TCP peer and cloakroom's own listener, and whatever `Forwarded` or
//! `X-Forwarded-*` headers the request carries are ignored (and replaced upstream): anyone can
//! write them. Only when the peer is one of `[server] trusted_proxies` is one header believed:
//! the one those proxies are configured to write (`trusted_proxy_header`: `X-Forwarded-For`
//! with `X-Forwarded-Proto`, or RFC 7239 `Forwarded`), never the other, which the client may
//! have written itself. It is walked from the nearest hop outwards, and the first address that
//! is not a trusted proxy is the client (a client cannot push itself further in by writing its
//! own). A hop that cannot be read (not an address, `unknown`, an obfuscated name, bytes that
//! are not text, an empty header) ends the walk with the client *unknown*: never the proxy's
//! own address, which a client could otherwise borrow.

use http::HeaderMap;
use http::header::HeaderName;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The client as cloakroom believes it to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// `None`: behind a trusted proxy whose chain could not be read ("unknown").
    pub ip: Option<IpAddr>,
    /// `"https"` or `"http"`: how the browser reached the first trusted hop (or cloakroom).
    pub proto: &'static str,
    /// The TCP peer is a trusted proxy (so, e.g., its `X-Request-Id` may be adopted).
    pub via_trusted_proxy: bool,
}

impl ClientAddr {
    /// The address for logs, the session list and `X-Forwarded-For`: `unknown` when unknown.
    pub fn ip_text(&self) -> ClientIp {
        ClientIp(self.ip)
    }
}

/// [`ClientAddr::ip_text`]: an address, or `unknown` (RFC 7239 §6.3).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(Option<IpAddr>);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Which header the trusted proxies write (`[server] trusted_proxy_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardingHeader {
    /// `X-Forwarded-For` (appended to) and `X-Forwarded-Proto` (set): nginx, HAProxy, cloud
    /// load balancers.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`, `for=` and `proto=` of each element (Envoy, some CDNs).
    Forwarded,
}

impl FromStr for ForwardingHeader {
    type Err = ForwardingParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(ForwardingParseError::Header(text.into())),
        }
    }
}

/// A `trusted_proxy_header` or `trusted_proxies` entry that cannot be used, quoting it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardingParseError {
    #[error("{0:?}: must be \"x-forwarded-for\" or \"forwarded\"")]
    Header(String),
    #[error("{0:?} is not an IP address or CIDR (e.g. \"10.0.0.0/8\")")]
    NotAnAddress(String),
    #[error("{text:?}: the prefix length must be 0 to {max}")]
    PrefixLength { text: String, max: u8 },
    #[error("{text:?} has host bits set; did you mean {network}/{prefix}?")]
    HostBits { text: String, network: IpAddr, prefix: u8 },
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`; a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = ForwardingParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| ForwardingParseError::NotAnAddress(text.into()))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(ForwardingParseError::PrefixLength { text: text.into(), max }),
            },
        };
        if mask(network, prefix) != network {
            return Err(ForwardingParseError::HostBits { text: text.into(), network: mask(network, prefix), prefix });
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

/// Works out the client from the connection and, if the peer is trusted, the one forwarding
/// header its proxies write.
pub fn client_addr(
    peer: SocketAddr,
    own_proto: &'static str,
    headers: &HeaderMap,
    trusted: &[Cidr],
    header: ForwardingHeader,
) -> ClientAddr {
    let peer_ip = peer.ip().to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer_ip) {
        return ClientAddr { ip: Some(peer_ip), proto: own_proto, via_trusted_proxy: false };
    }
    let mut client = ClientAddr { ip: Some(peer_ip), proto: own_proto, via_trusted_proxy: true };
    match header {
        ForwardingHeader::XForwardedFor => {
            // The nearest proxy sets the scheme; a value it cannot read leaves our own.
            if let Some(scheme) = elements(headers, &X_FORWARDED_PROTO).next_back().and_then(proto) {
                client.proto = scheme;
            }
            if !headers.contains_key(&X_FORWARDED_FOR) {
                return client; // the proxy's own request (a health check)
            }
            client.ip = None;
            for hop in elements(headers, &X_FORWARDED_FOR).rev() {
                client.ip = parse_node(hop);
                match client.ip {
                    Some(ip) if is_trusted(ip) => {}
                    _ => break,
                }
            }
        }
        ForwardingHeader::Forwarded => {
            if !headers.contains_key(http::header::FORWARDED) {
                return client;
            }
            client.ip = None;
            for element in elements(headers, &http::header::FORWARDED).rev() {
                let (ip, scheme) = forwarded_element(element);
                client.ip = ip;
                if let Some(scheme) = scheme {
                    client.proto = scheme;
                }
                match ip {
                    Some(ip) if is_trusted(ip) => {}
                    _ => break,
                }
            }
        }
    }
    client
}

/// `for=` and `proto=` of one RFC 7239 element; a `for` that is not an address is `None`.
fn forwarded_element(element: &[u8]) -> (Option<IpAddr>, Option<&'static str>) {
    let mut ip = None;
    let mut scheme = None;
    for pair in element.split(|&b| b == b';') {
        let Some(at) = pair.iter().position(|&b| b == b'=') else { continue };
        let (name, value) = (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii());
        let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
        if name.eq_ignore_ascii_case(b"for") {
            ip = parse_node(value);
        } else if name.eq_ignore_ascii_case(b"proto") {
            scheme = proto(value);
        }
    }
    (ip, scheme)
}

/// Comma-separated elements across every instance of a header, in order, as bytes (a byte that
/// is not text makes its element unreadable, not the header absent). Empty elements are kept:
/// an empty hop is an unreadable hop.
fn elements<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'a {
    headers.get_all(name).iter().flat_map(|v| v.as_bytes().split(|&b| b == b',')).map(<[u8]>::trim_ascii)
}

fn proto(value: &[u8]) -> Option<&'static str> {
    let value = value.trim_ascii();
    if value.eq_ignore_ascii_case(b"https") {
        Some("https")
    } else if value.eq_ignore_ascii_case(b"http") {
        Some("http")
    } else {
        None
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`,
/// or a bare IPv6 address. `unknown`, obfuscated names and non-text bytes are not addresses.
fn parse_node(value: &[u8]) -> Option<IpAddr> {
    let value = std::str::from_utf8(value).ok()?.trim();
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    value.strip_prefix('[')?.strip_suffix(']')?.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    fn trusted(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
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
        assert!("10.0.0.1/8".parse::<Cidr>().unwrap_err().to_string().contains("did you mean 10.0.0.0/8"));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy.internal".parse::<Cidr>().is_err());
    }

    const XFF: ForwardingHeader = ForwardingHeader::XForwardedFor;
    const RFC: ForwardingHeader = ForwardingHeader::Forwarded;

    fn seen(
        peer: SocketAddr,
        headers: &HeaderMap,
        trusted: &[Cidr],
        header: ForwardingHeader,
    ) -> (String, &'static str) {
        let client = client_addr(peer, "http", headers, trusted, header);
        (client.ip_text().to_string(), client.proto)
    }

    fn client(ip: &str, proto: &'static str) -> (String, &'static str) {
        (ip.to_string(), proto)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_writes() {
        let claims = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=2.2.2.2;proto=https"),
        ]);
        assert_eq!(seen(at("203.0.113.9"), &claims, &[], XFF), client("203.0.113.9", "http"));
        let lb = trusted(&["10.0.0.0/8"]);
        for header in [XFF, RFC] {
            assert_eq!(seen(at("203.0.113.9"), &claims, &lb, header), client("203.0.113.9", "http"));
            assert!(!client_addr(at("203.0.113.9"), "http", &claims, &lb, header).via_trusted_proxy);
        }
    }

    #[test]
    fn a_trusted_proxy_is_believed_up_to_the_first_untrusted_hop() {
        let lb = trusted(&["10.0.0.0/8"]);
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.3"), ("x-forwarded-proto", "https")]);
        // 6.6.6.6 was written by the client itself; 198.51.100.4 is who reached our proxies.
        assert_eq!(seen(at("10.0.0.2"), &chain, &lb, XFF), client("198.51.100.4", "https"));
        // Every hop trusted: the outermost one is the client.
        let internal = headers(&[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(seen(at("10.0.0.2"), &internal, &lb, XFF), client("10.9.9.9", "http"));
        // No forwarding headers: the proxy's own request.
        assert_eq!(seen(at("10.0.0.2"), &HeaderMap::new(), &lb, XFF), client("10.0.0.2", "http"));
        // Only the scheme.
        let scheme = headers(&[("x-forwarded-proto", "https")]);
        assert_eq!(seen(at("10.0.0.2"), &scheme, &lb, XFF), client("10.0.0.2", "https"));
        // Garbage ends the walk as unknown, never as a trusted hop.
        let garbage = headers(&[("x-forwarded-for", "not-an-ip, 10.0.0.5"), ("x-forwarded-proto", "gopher")]);
        assert_eq!(seen(at("10.0.0.2"), &garbage, &lb, XFF), client("unknown", "http"));
    }

    #[test]
    fn a_client_behind_a_trusted_proxy_chooses_neither_address_nor_scheme() {
        // Finding 3 of the outside review: the header the proxy does not write is the client's.
        let lb = trusted(&["127.0.0.2/32"]);
        let proxy = at("127.0.0.2");
        let spoof = headers(&[("forwarded", "for=6.6.6.6;proto=https"), ("x-forwarded-for", "192.0.2.10")]);
        assert_eq!(seen(proxy, &spoof, &lb, XFF), client("192.0.2.10", "http"));
        let spoof =
            headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https"), ("forwarded", "for=192.0.2.10")]);
        assert_eq!(seen(proxy, &spoof, &lb, RFC), client("192.0.2.10", "http"));
        // Unreadable hops are "unknown", never the proxy's own address.
        let mut cases = vec![
            headers(&[("forwarded", "for=unknown")]),
            headers(&[("forwarded", "")]),
            headers(&[("forwarded", "for=_hidden")]),
            headers(&[("forwarded", "proto=https")]),
            headers(&[("forwarded", "for=192.0.2.1, ,")]),
        ];
        let mut latin = HeaderMap::new();
        latin.append("forwarded", http::HeaderValue::from_bytes(b"for=192.0.2.\xff").unwrap());
        cases.push(latin);
        for case in &cases {
            assert_eq!(seen(proxy, case, &lb, RFC).0, "unknown", "{case:?}");
        }
        let mut cases = vec![headers(&[("x-forwarded-for", "")]), headers(&[("x-forwarded-for", "unknown")])];
        let mut latin = HeaderMap::new();
        latin.append("x-forwarded-for", http::HeaderValue::from_bytes(b"192.0.2.1\xc3\xa9").unwrap());
        cases.push(latin);
        let mut split = HeaderMap::new();
        split.append("x-forwarded-for", http::HeaderValue::from_static("192.0.2.1"));
        split.append("x-forwarded-for", http::HeaderValue::from_bytes(b"\x80").unwrap());
        cases.push(split);
        for case in &cases {
            assert_eq!(seen(proxy, case, &lb, XFF).0, "unknown", "{case:?}");
        }
        // A readable hop beyond an unreadable one is not reached.
        let hidden = headers(&[("x-forwarded-for", "192.0.2.1, garbage")]);
        assert_eq!(seen(proxy, &hidden, &lb, XFF).0, "unknown");
    }

    #[test]
    fn rfc_7239_forwarded_is_read_with_its_proto_and_ipv6_forms() {
        let lb = trusted(&["10.0.0.0/8", "fd00::/8"]);
        let forwarded =
            headers(&[("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.9;proto=http")]);
        assert_eq!(seen(at("10.0.0.2"), &forwarded, &lb, RFC), client("2001:db8:cafe::17", "https"));
        let obfuscated = headers(&[("forwarded", "for=_hidden;proto=https, for=192.0.2.1:80")]);
        assert_eq!(
            seen(SocketAddr::new("fd00::1".parse().unwrap(), 1), &obfuscated, &lb, RFC),
            client("192.0.2.1", "http")
        );
        // Only the configured header counts.
        let both = headers(&[("forwarded", "for=192.0.2.60;proto=https"), ("x-forwarded-for", "192.0.2.99")]);
        assert_eq!(seen(at("10.0.0.2"), &both, &lb, RFC), client("192.0.2.60", "https"));
        assert_eq!(seen(at("10.0.0.2"), &both, &lb, XFF), client("192.0.2.99", "http"));
        assert_eq!("Forwarded".parse::<ForwardingHeader>(), Ok(RFC));
        assert!("x-real-ip".parse::<ForwardingHeader>().is_err());
    }
}
