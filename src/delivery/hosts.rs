//! Which URLs the delivery worker may call. An endpoint's URL must be http or https with a host;
//! the operator's deny list (host names, `*.suffix` patterns, IP networks in CIDR notation)
//! and optional allow list decide which hosts. The same rules are checked when an endpoint is
//! saved (its host as written) and when it is called (every address the name resolves to), so
//! a name that later resolves to an internal address is refused too. Pure: no Postgres.

use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq)]
enum Rule {
    Name(String),
    Suffix(String),
    Net(IpAddr, u8),
}

/// A parsed allow or deny list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostList(Vec<Rule>);

impl HostList {
    pub fn parse(text: &str) -> Result<HostList, String> {
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_rule).collect::<Result<_, _>>().map(HostList)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn matches_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0.iter().any(|r| match r {
            Rule::Name(n) => *n == host,
            Rule::Suffix(s) => host.ends_with(s.as_str()),
            Rule::Net(..) => false,
        })
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|r| match r {
            Rule::Net(net, bits) => in_net(ip, *net, *bits),
            Rule::Name(n) => n.parse::<IpAddr>().is_ok_and(|a| canonical(a) == ip),
            Rule::Suffix(_) => false,
        })
    }
}

fn parse_rule(s: &str) -> Result<Rule, String> {
    let s = s.to_ascii_lowercase();
    if let Some(suffix) = s.strip_prefix("*.") {
        return Ok(Rule::Suffix(format!(".{suffix}")));
    }
    if let Some((addr, bits)) = s.split_once('/') {
        let ip: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address/prefix such as 10.0.0.0/8"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits: u8 =
            bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| format!("{s:?}: a prefix is 0..={max}"))?;
        return Ok(Rule::Net(ip, bits));
    }
    Ok(Rule::Name(s.trim_matches(|c| c == '[' || c == ']').to_string()))
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry (`::ffff:127.0.0.1`).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, n, width) = match (ip, canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a) as u128, u32::from(n) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (a >> shift) == (n >> shift)
}

/// The operator's rules.
#[derive(Clone, Debug, Default)]
pub struct HostRules {
    pub allowed: HostList,
    pub denied: HostList,
}

impl HostRules {
    pub fn parse(allowed: &str, denied: &str) -> Result<HostRules, String> {
        Ok(HostRules { allowed: HostList::parse(allowed)?, denied: HostList::parse(denied)? })
    }

    /// Whether a host as written in a URL may be called. The deny list wins; a non-empty
    /// allow list must name the host (or its address).
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let host = host.trim_matches(|c| c == '[' || c == ']');
        let ip = host.parse::<IpAddr>().ok();
        let denied = self.denied.matches_name(host) || ip.is_some_and(|ip| self.denied.matches_ip(ip));
        if denied {
            return Err(format!("host {host} is on the delivery deny list (booking_engine.delivery_denied_hosts)"));
        }
        let allowed = self.allowed.matches_name(host) || ip.is_some_and(|ip| self.allowed.matches_ip(ip));
        if !self.allowed.is_empty() && !allowed {
            return Err(format!(
                "host {host} is not on the delivery allow list (booking_engine.delivery_allowed_hosts)"
            ));
        }
        Ok(())
    }

    /// Whether a resolved address may be connected to.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        if self.denied.matches_ip(ip) {
            return Err(format!("host {host} resolves to {ip}, which is on the delivery deny list"));
        }
        Ok(())
    }
}

/// A valid endpoint URL: http or https, a host, no credentials in it; the host passes `rules`.
pub fn check_url(text: &str, rules: &HostRules) -> Result<url::Url, String> {
    let u = url::Url::parse(text.trim()).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("an endpoint URL is http or https, not {}", u.scheme()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("an endpoint URL carries no credentials: put them in the secret".into());
    }
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{text:?} has no host"))?;
    rules.check_host(host)?;
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_rules() -> HostRules {
        HostRules::parse("", crate::gucs::DELIVERY_DENIED_HOSTS_DEFAULT.to_str().unwrap()).unwrap()
    }

    #[test]
    fn by_default_internal_addresses_and_localhost_are_refused() {
        let r = default_rules();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://api.localhost/x",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:192.168.1.1]/",
            "http://0.0.0.0/",
            "http://[fd00::1]/",
        ] {
            assert!(check_url(url, &r).is_err(), "{url}");
        }
        assert!(check_url("https://hooks.example.com/in", &r).is_ok());
        assert!(check_url("https://8.8.8.8/", &r).is_ok());
    }

    #[test]
    fn only_http_and_https_with_a_host_and_no_credentials() {
        let r = default_rules();
        for url in ["ftp://example.com/", "file:///etc/passwd", "not a url", "https://user:pw@example.com/", "http://"]
        {
            assert!(check_url(url, &r).is_err(), "{url}");
        }
    }

    #[test]
    fn the_allow_list_restricts_and_the_deny_list_wins() {
        let r = HostRules::parse("*.example.com, 192.0.2.0/24", "bad.example.com").unwrap();
        assert!(r.check_host("hooks.example.com").is_ok());
        assert!(r.check_host("192.0.2.7").is_ok());
        assert!(r.check_host("bad.example.com").is_err());
        assert!(r.check_host("example.org").is_err());
    }

    #[test]
    fn resolved_addresses_are_checked_against_the_deny_list() {
        let r = default_rules();
        assert!(r.check_address("rebind.example", "10.0.0.5".parse().unwrap()).is_err());
        assert!(r.check_address("ok.example", "93.184.216.34".parse().unwrap()).is_ok());
    }

    #[test]
    fn malformed_lists_are_refused() {
        assert!(HostList::parse("10.0.0.0/33").is_err());
        assert!(HostList::parse("nonsense/8").is_err());
    }
}
