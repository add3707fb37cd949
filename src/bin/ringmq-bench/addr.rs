//! Broker host lists (`-h a,b:1884,[::1]:1883`) and local source-address lists with ranges
//! (`--ifaddr 127.0.0.2-127.0.0.40,10.0.0.5`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// At most this many source addresses (a sanity bound on ranges).
pub const MAX_IFADDRS: u128 = 1 << 20;

/// Parses a comma-separated list of addresses and inclusive ranges `FIRST-LAST` (both of the
/// same family, FIRST <= LAST) into the list of addresses, in order.
pub fn parse_ifaddrs(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        match item.split_once('-') {
            None => out.push(parse_ip(item)?),
            Some((a, b)) => {
                let (a, b) = (parse_ip(a.trim())?, parse_ip(b.trim())?);
                let (lo, hi, v6) = match (a, b) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => {
                        (u32::from(a) as u128, u32::from(b) as u128, false)
                    }
                    (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), true),
                    _ => return Err(format!("--ifaddr {item}: both ends must be of one family")),
                };
                if lo > hi {
                    return Err(format!(
                        "--ifaddr {item}: the first address is above the last"
                    ));
                }
                if hi - lo + 1 + out.len() as u128 > MAX_IFADDRS {
                    return Err(format!("--ifaddr: more than {MAX_IFADDRS} addresses"));
                }
                for x in lo..=hi {
                    out.push(if v6 {
                        IpAddr::V6(Ipv6Addr::from(x))
                    } else {
                        IpAddr::V4(Ipv4Addr::from(x as u32))
                    });
                }
            }
        }
    }
    if out.is_empty() {
        return Err("--ifaddr: no address given".into());
    }
    Ok(out)
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("--ifaddr: {s:?} is not an IP address"))
}

/// Parses a comma-separated host list; each entry is `HOST` or `HOST:PORT` (`[V6]:PORT` for
/// IPv6 with a port) and is resolved now (the first address of a name is used).
pub fn parse_hosts(s: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (host, port) = split_host_port(item, default_port)?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("--host {item}: {e}"))?
            .next()
            .ok_or_else(|| format!("--host {item}: no address"))?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err("--host: no host given".into());
    }
    Ok(out)
}

/// `host`, `host:port`, `v6addr`, `[v6addr]` or `[v6addr]:port`.
pub fn split_host_port(item: &str, default_port: u16) -> Result<(&str, u16), String> {
    let bad_port = |p: &str| format!("--host {item}: bad port {p:?}");
    if let Some(rest) = item.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("--host {item}: missing ]"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port(p))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("--host {item}: junk after ]")),
        };
        return Ok((host, port));
    }
    match item.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Ok((item, default_port)),
        Some((h, p)) => Ok((h, p.parse().map_err(|_| bad_port(p))?)),
        None => Ok((item, default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_addresses_and_ranges() {
        let v = parse_ifaddrs("127.0.0.2-127.0.0.4, 10.0.0.1").unwrap();
        let s: Vec<String> = v.iter().map(|a| a.to_string()).collect();
        assert_eq!(s, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "10.0.0.1"]);
    }

    #[test]
    fn ranges_cross_octets_and_work_for_v6() {
        let v = parse_ifaddrs("10.0.0.254-10.0.1.1").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[2].to_string(), "10.0.1.0");
        let v = parse_ifaddrs("::1-::3").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].to_string(), "::3");
        assert_eq!(parse_ifaddrs("127.0.0.9-127.0.0.9").unwrap().len(), 1);
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(parse_ifaddrs("").is_err());
        assert!(parse_ifaddrs("127.0.0.5-127.0.0.4").is_err());
        assert!(parse_ifaddrs("127.0.0.1-::1").is_err());
        assert!(parse_ifaddrs("nothost").is_err());
        assert!(parse_ifaddrs("0.0.0.0-255.255.255.255").is_err());
    }

    #[test]
    fn hosts_with_and_without_ports() {
        assert_eq!(split_host_port("a", 1883).unwrap(), ("a", 1883));
        assert_eq!(split_host_port("a:1884", 1883).unwrap(), ("a", 1884));
        assert_eq!(split_host_port("::1", 1883).unwrap(), ("::1", 1883));
        assert_eq!(split_host_port("[::1]:9", 1883).unwrap(), ("::1", 9));
        assert_eq!(split_host_port("[::1]", 1883).unwrap(), ("::1", 1883));
        assert!(split_host_port("a:x", 1883).is_err());
        let v = parse_hosts("127.0.0.1,127.0.0.2:1884", 1883).unwrap();
        assert_eq!(v[0].to_string(), "127.0.0.1:1883");
        assert_eq!(v[1].to_string(), "127.0.0.2:1884");
    }
}
