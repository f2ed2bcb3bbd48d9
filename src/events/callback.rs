//! Callback URL rules and signing.
//!
//! A callback URL must be `https`, and every address its host resolves to must be public: no
//! loopback, private, shared (carrier-grade NAT), link-local, multicast, unspecified or cloud
//! metadata address. The check runs when the job is created and again before every delivery,
//! and the request connects only to the addresses that passed, so a DNS answer that changes
//! between the check and the connection cannot redirect it. Redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

/// Addresses a callback may reach besides public ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Accept loopback addresses, and plain `http` to them. Only for tests on one machine,
    /// through the `VCM_CALLBACK_ALLOW_LOOPBACK` setting.
    pub allow_loopback: bool,
}

/// A callback URL that must not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("invalid callback URL: {0}")]
    Invalid(String),
    #[error("callback URL host {host} resolves to {address}, which is {reason}; use a public HTTPS endpoint")]
    ForbiddenAddress {
        host: String,
        address: IpAddr,
        reason: &'static str,
    },
    #[error("callback URL host {host} could not be resolved: {reason}")]
    Unresolved { host: String, reason: String },
}

/// Azure's platform address (wire server and DNS), reachable from every Azure VM.
const AZURE_WIRE_SERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// Returns why `ip` is not allowed as a callback destination, or `Ok` when it is.
pub fn check_ip(ip: IpAddr, policy: AddressPolicy) -> Result<(), &'static str> {
    match ip {
        IpAddr::V4(v4) => check_ipv4(v4, policy),
        IpAddr::V6(v6) => {
            // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible forms reach the IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return check_ipv4(v4, policy);
            }
            check_ipv6(v6, policy)
        }
    }
}

fn check_ipv4(ip: Ipv4Addr, policy: AddressPolicy) -> Result<(), &'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        return if policy.allow_loopback {
            Ok(())
        } else {
            Err("a loopback address")
        };
    }
    if ip.is_link_local() {
        // 169.254.0.0/16 contains the instance metadata service (169.254.169.254).
        return Err("a link-local or metadata address");
    }
    if ip == AZURE_WIRE_SERVER {
        return Err("the Azure platform metadata address");
    }
    if ip.is_private() {
        return Err("a private address");
    }
    if a == 100 && (64..128).contains(&b) {
        return Err("a shared (carrier-grade NAT) address");
    }
    if ip.is_unspecified() || a == 0 {
        return Err("an unspecified address");
    }
    if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        return Err("a multicast, broadcast or reserved address");
    }
    Ok(())
}

fn check_ipv6(ip: Ipv6Addr, policy: AddressPolicy) -> Result<(), &'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        return if policy.allow_loopback {
            Ok(())
        } else {
            Err("a loopback address")
        };
    }
    if ip.is_unspecified() {
        return Err("an unspecified address");
    }
    if first & 0xffc0 == 0xfe80 {
        return Err("a link-local address");
    }
    // fc00::/7 (unique local) also contains cloud metadata addresses such as fd00:ec2::254.
    if first & 0xfe00 == 0xfc00 {
        return Err("a private (unique local) address");
    }
    if ip.is_multicast() {
        return Err("a multicast address");
    }
    if let Some(v4) = ip.to_ipv4() {
        // Deprecated IPv4-compatible form (::a.b.c.d).
        return check_ipv4(v4, policy);
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return check_ipv4(v4, policy);
    }
    let segments = ip.segments();
    // Teredo (2001::/32) and local-use NAT64 (64:ff9b:1::/48) tunnel to IPv4 addresses that are
    // not checked here, and no callback receiver needs them.
    if segments[0] == 0x2001 && segments[1] == 0 {
        return Err("a Teredo tunnel address");
    }
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1 {
        return Err("a local-use NAT64 address");
    }
    Ok(())
}

/// Returns the IPv4 address that an IPv6 translation or tunnel form reaches: NAT64's well-known
/// prefix (64:ff9b::/96), 6to4 (2002::/16), and IPv4-translated addresses (::ffff:0:a.b.c.d).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return Some(from(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(from(s[1], s[2]));
    }
    if s[..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0 {
        return Some(from(s[6], s[7]));
    }
    None
}

/// Checks a callback URL's form: `https` (or `http` to a loopback host when the policy allows
/// loopback), a host, and no user name or password.
pub fn check_url(text: &str, policy: AddressPolicy) -> Result<Url, CallbackError> {
    let url = Url::parse(text).map_err(|e| CallbackError::Invalid(format!("{text:?}: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| CallbackError::Invalid(format!("{text:?} has no host")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CallbackError::Invalid(
            "the URL contains a user name or password; remove them, because receivers \
             authenticate callbacks by their x-vcm-signature header"
                .into(),
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_loopback && is_loopback_name(host) => {}
        other => {
            return Err(CallbackError::Invalid(format!(
                "the scheme is {other}; callbacks are sent over https only"
            )))
        }
    }
    Ok(url)
}

fn is_loopback_name(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Resolves the URL's host and checks every address; returns the addresses to connect to.
pub async fn resolve_checked(
    url: &Url,
    policy: AddressPolicy,
) -> Result<Vec<SocketAddr>, CallbackError> {
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| CallbackError::Unresolved {
                host: host.clone(),
                reason: e.to_string(),
            })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(CallbackError::Unresolved {
            host,
            reason: "no addresses".into(),
        });
    }
    // Every address must pass, because the connection may use any of them.
    for address in &addresses {
        check_ip(address.ip(), policy).map_err(|reason| CallbackError::ForbiddenAddress {
            host: host.clone(),
            address: address.ip(),
            reason,
        })?;
    }
    Ok(addresses)
}

/// Returns the signature header value for `body`: `sha256=` and the lowercase hex HMAC-SHA256.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    type HmacSha256 = Hmac<Sha256>;
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy {
        allow_loopback: false,
    };
    const LOOPBACK_ALLOWED: AddressPolicy = AddressPolicy {
        allow_loopback: true,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forbidden_addresses_are_rejected() {
        let cases = [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "168.63.129.16",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2002:0a00:0001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::ffff:0:a9fe:a9fe",
        ];
        for case in cases {
            assert!(check_ip(ip(case), STRICT).is_err(), "{case} was accepted");
        }
    }

    #[test]
    fn public_addresses_are_accepted() {
        for case in [
            "20.50.2.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "64:ff9b::1432:201",
            "2002:1432:201::1",
        ] {
            assert_eq!(check_ip(ip(case), STRICT), Ok(()), "{case}");
        }
    }

    #[test]
    fn loopback_setting_allows_only_loopback() {
        assert_eq!(check_ip(ip("127.0.0.1"), LOOPBACK_ALLOWED), Ok(()));
        assert_eq!(check_ip(ip("::1"), LOOPBACK_ALLOWED), Ok(()));
        assert!(check_ip(ip("10.0.0.1"), LOOPBACK_ALLOWED).is_err());
        assert!(check_ip(ip("169.254.169.254"), LOOPBACK_ALLOWED).is_err());
    }

    #[test]
    fn url_needs_https() {
        assert!(check_url("https://hooks.example.com/x", STRICT).is_ok());
        let err = check_url("http://hooks.example.com/x", STRICT).unwrap_err();
        assert!(err.to_string().contains("https only"), "{err}");
        assert!(check_url("ftp://hooks.example.com/x", LOOPBACK_ALLOWED).is_err());
        assert!(check_url("not a url", STRICT).is_err());
    }

    #[test]
    fn url_with_credentials_is_rejected() {
        let err = check_url("https://user:pw@hooks.example.com/", STRICT).unwrap_err();
        assert!(err.to_string().contains("user name or password"), "{err}");
    }

    #[test]
    fn plain_http_only_to_loopback_when_allowed() {
        assert!(check_url("http://127.0.0.1:9000/hook", LOOPBACK_ALLOWED).is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook", STRICT).is_err());
        assert!(check_url("http://hooks.example.com/", LOOPBACK_ALLOWED).is_err());
    }

    #[tokio::test]
    async fn literal_addresses_are_checked() {
        let url = check_url("https://169.254.169.254/latest", STRICT).unwrap();
        let err = resolve_checked(&url, STRICT).await.unwrap_err();
        assert!(
            matches!(err, CallbackError::ForbiddenAddress { .. }),
            "{err}"
        );
        let url = check_url("https://[::ffff:10.0.0.1]/", STRICT).unwrap();
        assert!(resolve_checked(&url, STRICT).await.is_err());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        // `localhost` resolves through the hosts file to loopback, without a DNS query.
        let url = check_url("https://localhost:8443/hook", STRICT).unwrap();
        let err = resolve_checked(&url, STRICT).await.unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let allowed = resolve_checked(&url, LOOPBACK_ALLOWED).await.unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn signature_matches_known_vector() {
        // RFC 4231 test case 2.
        let value = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            value,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
