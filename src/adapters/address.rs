//! Which network addresses the controller may connect to when it follows a URL a user wrote
//! (`spec.source.url`, `spec.image.repository`): the outward edge against server-side request
//! forgery.
//!
//! Refused always: link-local addresses, IPv4 `169.254.0.0/16` and IPv6 `fe80::/10` (also
//! written as IPv4-mapped IPv6, `::ffff:169.254.169.254`): the cloud metadata services live
//! there (`169.254.169.254`, `fd00:ec2::254` is not link-local and is listed in
//! [`METADATA`]), and they hand out the node's or the cloud account's credentials to anyone
//! who asks. Refused when configured: the cluster's own ranges (`--refused-networks`, chart
//! value `refusedNetworks`; empty by default, because the e2e cluster, and many real ones,
//! serve git and registries from inside the cluster, and which ranges are "the cluster's"
//! differs per cluster). Loopback stays allowed: the controller's own loopback reaches
//! nothing but the controller's own pod.
//!
//! [`check_host`] judges a URL's host before any connection: an IP literal directly, a name
//! by resolving it and refusing it if any address it resolves to is refused (so a name that
//! points at the metadata server is refused, not only the literal). [`GuardedResolver`] does
//! the same inside the HTTP client for the names it resolves itself, so a name that changes
//! its answer between the check and the connection (DNS rebinding) is still refused.
//!
//! The policy is process-wide ([`policy`], set once at start by [`configure`]): it describes
//! the network the process runs in, not an object. Build pods run the user's own script with
//! the network the cluster gives them, so only a NetworkPolicy can fence them; this module
//! guards the controller, which holds Ferry's token and runs no user code.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::OnceLock;

/// Metadata endpoints outside the link-local ranges (AWS's IPv6 endpoint).
const METADATA: &[IpAddr] = &[IpAddr::V6(Ipv6Addr::new(
    0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254,
))];

/// An address range, `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is inside this range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not a network such as 10.0.0.0/8 or fd00::/8");
        let (address, prefix) = text.trim().split_once('/').ok_or_else(invalid)?;
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(invalid());
        }
        Ok(Self { address, prefix })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// Which addresses are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Refused on top of link-local and metadata addresses (the cluster's own ranges).
    pub refused: Vec<Network>,
}

impl AddressPolicy {
    /// Why `ip` is refused, or `None` if the controller may connect to it.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        let ip = ip.to_canonical();
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        };
        if link_local {
            return Some(format!(
                "{ip} is link-local (where cloud metadata services answer)"
            ));
        }
        if METADATA.contains(&ip) {
            return Some(format!("{ip} is a cloud metadata service"));
        }
        self.refused
            .iter()
            .find(|network| network.contains(ip))
            .map(|network| format!("{ip} is in {network}, refused by --refused-networks"))
    }
}

/// Sets the process-wide policy; the first call wins (the controller calls it once at start).
pub fn configure(policy: AddressPolicy) {
    let _ = POLICY.set(policy);
}

static POLICY: OnceLock<AddressPolicy> = OnceLock::new();

/// The process-wide policy: link-local and metadata only, unless [`configure`]d.
pub fn policy() -> &'static AddressPolicy {
    POLICY.get_or_init(AddressPolicy::default)
}

/// A host the controller will not connect to, with the reason (for `Ready=False`, reason
/// `AddressRefused`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{host} is refused: {why}")]
pub struct AddressRefused {
    pub host: String,
    pub why: String,
}

/// Judges a URL's host (a name, an IPv4 literal or an IPv6 literal with or without
/// brackets) before connecting. A name is resolved (blocking: call it off the async runtime
/// or through `spawn_blocking`); one refused address refuses the name. A name that does not
/// resolve passes: connecting then fails as unreachable, with the resolver's own message.
pub fn check_host(policy: &AddressPolicy, host: &str) -> Result<(), AddressRefused> {
    check_host_with(policy, host, |name| {
        (name, 0)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
    })
}

/// [`check_host`] with the name resolution given (tests resolve names of their own).
pub fn check_host_with(
    policy: &AddressPolicy,
    host: &str,
    resolve: impl FnOnce(&str) -> std::io::Result<Vec<IpAddr>>,
) -> Result<(), AddressRefused> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let refused = |why| AddressRefused {
        host: host.to_owned(),
        why,
    };
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return policy.refusal(ip).map_or(Ok(()), |why| Err(refused(why)));
    }
    let Ok(addrs) = resolve(bare) else {
        return Ok(());
    };
    check_addrs(policy, addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|why| refused(format!("it resolves to {why}")))
}

fn check_addrs(
    policy: &AddressPolicy,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<(), String> {
    for addr in addrs {
        if let Some(why) = policy.refusal(addr.ip()) {
            return Err(why);
        }
    }
    Ok(())
}

/// The host of an `http://` or `https://` URL (without user information or port), as
/// [`check_host`] takes it.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(host, _)| host);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// reqwest's DNS resolution, refusing names that resolve to a refused address: used by the
/// git client, so the check holds at the moment of connecting, not only before.
#[derive(Clone, Debug)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_addrs(policy(), addrs.iter().copied()).map_err(|why| {
                Box::new(AddressRefused {
                    host: host.clone(),
                    why: format!("it resolves to {why}"),
                }) as Box<dyn std::error::Error + Send + Sync>
            })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> AddressPolicy {
        AddressPolicy {
            refused: vec![
                "10.96.0.0/12".parse().unwrap(),
                "fd00:10::/64".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn addresses_are_refused_or_allowed_by_range() {
        // (case, address, refused by default, refused with the cluster's ranges)
        let cases = [
            ("cloud metadata", "169.254.169.254", true, true),
            ("link-local, lowest", "169.254.0.0", true, true),
            ("link-local, highest", "169.254.255.255", true, true),
            ("just below link-local", "169.253.255.255", false, false),
            ("just above link-local", "169.255.0.0", false, false),
            ("IPv6 link-local", "fe80::1", true, true),
            (
                "IPv6 link-local, end of fe80::/10",
                "febf:ffff::1",
                true,
                true,
            ),
            ("IPv6 after fe80::/10", "fec0::1", false, false),
            ("IPv4-mapped metadata", "::ffff:169.254.169.254", true, true),
            ("AWS IPv6 metadata", "fd00:ec2::254", true, true),
            ("loopback", "127.0.0.1", false, false),
            ("IPv6 loopback", "::1", false, false),
            ("e2e git server", "10.211.0.2", false, false),
            ("e2e pod network", "10.244.1.7", false, false),
            (
                "a Service in the configured range",
                "10.96.0.10",
                false,
                true,
            ),
            (
                "an IPv6 Service in the configured range",
                "fd00:10::a",
                false,
                true,
            ),
            ("IPv4-mapped Service", "::ffff:10.96.0.10", false, true),
            ("public", "140.82.112.3", false, false),
            ("public IPv6", "2606:50c0:8000::153", false, false),
        ];
        for (case, address, by_default, with_cluster) in cases {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(
                AddressPolicy::default().refusal(ip).is_some(),
                by_default,
                "{case}"
            );
            assert_eq!(cluster().refusal(ip).is_some(), with_cluster, "{case}");
        }
    }

    #[test]
    fn networks_parse_and_bad_ones_are_named() {
        for good in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "fd00::/8",
            "::/0",
            "192.168.1.1/32",
        ] {
            assert_eq!(good.parse::<Network>().unwrap().to_string(), good);
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "fd00::/129", "ten/8", ""] {
            let error = bad.parse::<Network>().unwrap_err();
            assert!(error.contains("is not a network"), "{bad}: {error}");
        }
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
    }

    #[test]
    fn url_hosts_are_found_in_every_form() {
        let cases = [
            ("https://git.example/a.git", Some("git.example")),
            ("http://u:pw@10.0.0.1:3000/a", Some("10.0.0.1")),
            ("http://[fe80::1]:80/x", Some("fe80::1")),
            (
                "https://[::ffff:169.254.169.254]/",
                Some("::ffff:169.254.169.254"),
            ),
            ("http://169.254.169.254?x=1", Some("169.254.169.254")),
            ("https://host/a@b", Some("host")),
            ("not a url", None),
        ];
        for (url, host) in cases {
            assert_eq!(url_host(url), host, "{url}");
        }
    }

    #[test]
    fn literals_and_names_are_checked_before_connecting() {
        let policy = AddressPolicy::default();
        let refused = check_host(&policy, "169.254.169.254").unwrap_err();
        assert!(refused.to_string().contains("link-local"), "{refused}");
        assert!(check_host(&policy, "[fe80::1]").is_err());
        assert!(check_host(&policy, "127.0.0.1").is_ok());
        assert!(check_host(&policy, "localhost").is_ok());
        assert!(check_host(&policy, "[::ffff:169.254.169.254]").is_err());
        assert!(check_host(&policy, "no-such-host.invalid").is_ok());
    }

    #[test]
    fn a_name_is_refused_when_any_address_it_resolves_to_is_refused() {
        let dns = |name: &str| -> std::io::Result<Vec<IpAddr>> {
            let answer: &[&str] = match name {
                "metadata.internal" => &["169.254.169.254"],
                "rebinding.example" => &["140.82.112.3", "fe80::1"],
                "metadata6.example" => &["fd00:ec2::254"],
                "git.example" => &["140.82.112.3", "2606:50c0:8000::153"],
                "svc.cluster.local" => &["10.96.0.10"],
                _ => return Err(std::io::ErrorKind::NotFound.into()),
            };
            Ok(answer.iter().map(|a| a.parse().unwrap()).collect())
        };
        let default = AddressPolicy::default();
        for (host, refused_by_default, refused_with_cluster) in [
            ("metadata.internal", true, true),
            ("rebinding.example", true, true),
            ("metadata6.example", true, true),
            ("git.example", false, false),
            ("svc.cluster.local", false, true),
            ("unknown.example", false, false),
        ] {
            let by_default = check_host_with(&default, host, dns);
            assert_eq!(by_default.is_err(), refused_by_default, "{host}");
            if let Err(refused) = by_default {
                assert!(refused.to_string().contains("resolves to"), "{refused}");
            }
            let with_cluster = check_host_with(&cluster(), host, dns);
            assert_eq!(with_cluster.is_err(), refused_with_cluster, "{host}");
        }
    }

    #[tokio::test]
    async fn the_http_clients_resolver_refuses_what_the_policy_refuses() {
        use reqwest::dns::Resolve as _;
        let resolve = |name: &str| GuardedResolver.resolve(name.parse().unwrap());
        let localhost: Vec<SocketAddr> = resolve("localhost").await.unwrap().collect();
        assert!(
            localhost.iter().all(|a| a.ip().is_loopback()),
            "{localhost:?}"
        );
        // A real socket: a client through the guarded resolver still reaches loopback.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let addr = localhost
            .iter()
            .find(|a| a.is_ipv4())
            .map(|a| SocketAddr::new(a.ip(), port))
            .unwrap();
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        assert!(connected.is_ok() && accepted.is_ok());
    }
}
