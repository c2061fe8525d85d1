//! The `--net` option: one network card and the backend behind it.
//!
//! ```text
//! user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,routeros[=OFFSET]]
//!     [,net=ADDR[/PREFIX|/MASK]][,host=ADDR][,dns=ADDR][,dhcpstart=ADDR][,ipv6=on|off]
//!     [,restrict=on|off][,hostname=NAME][,domainname=NAME]
//! tap=IFNAME            (or tap,ifname=IFNAME)
//! packet=IFNAME         (or packet,ifname=IFNAME)
//! ```
//! Every kind also takes `mac=52:54:00:xx:xx:xx` and `mtu=68..9000`. The `user` options follow
//! QEMU's `-netdev user`, so existing command lines carry over.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The ports RouterOS serves over TCP that `routeros` forwards: ssh, telnet, www, www-ssl,
/// winbox, api and api-ssl.
pub const ROUTEROS_TCP_PORTS: [u16; 7] = [22, 23, 80, 443, 8291, 8728, 8729];

/// The largest MTU a card may have (jumbo frames for VLAN labs).
pub const MAX_MTU: u16 = 9000;
/// The smallest MTU (IPv4's minimum).
pub const MIN_MTU: u16 = 68;
/// The MTU when `mtu=` is not given.
pub const DEFAULT_MTU: u16 = 1500;

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// One `hostfwd`: connections to `host_addr:host_port` on the host reach
/// `guest_addr:guest_port` in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address to listen on (0.0.0.0 = every address).
    pub host_addr: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The guest address; `None` means the first address the DHCP server leases.
    pub guest_addr: Option<Ipv4Addr>,
    /// The guest port.
    pub guest_port: u16,
}

/// The user-mode (libslirp) network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNet {
    /// The guest network's address.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The host's address inside it (the gateway; it reaches the host's loopback).
    pub host: Ipv4Addr,
    /// The DNS server address the guest is given.
    pub dns: Ipv4Addr,
    /// The first address the DHCP server leases.
    pub dhcp_start: Ipv4Addr,
    /// Whether the guest gets IPv6 (fec0::/64, as QEMU does).
    pub ipv6: bool,
    /// Whether the guest is cut off from everything but the forwards.
    pub restrict: bool,
    /// The host name the DHCP server hands out.
    pub hostname: Option<String>,
    /// The domain name the DHCP server hands out.
    pub domainname: Option<String>,
    /// Port forwards, `routeros` ones included.
    pub forwards: Vec<HostForward>,
}

impl Default for UserNet {
    fn default() -> Self {
        Self {
            network: Ipv4Addr::new(10, 0, 2, 0),
            prefix: 24,
            host: Ipv4Addr::new(10, 0, 2, 2),
            dns: Ipv4Addr::new(10, 0, 2, 3),
            dhcp_start: Ipv4Addr::new(10, 0, 2, 15),
            ipv6: true,
            restrict: false,
            hostname: None,
            domainname: None,
            forwards: Vec::new(),
        }
    }
}

impl UserNet {
    /// The netmask of the guest network.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix))
    }

    /// Whether `addr` lies in the guest network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & prefix_mask(self.prefix) == u32::from(self.network)
    }
}

/// The backend behind a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// User-mode networking.
    User(UserNet),
    /// A tap interface (created when it does not exist and the process may).
    Tap {
        /// The interface name.
        ifname: String,
    },
    /// An AF_PACKET socket on an existing interface.
    Packet {
        /// The interface name.
        ifname: String,
    },
}

/// One `--net` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// The backend.
    pub backend: BackendSpec,
    /// The card's MAC address; `None` lets [`NetSpec::mac_for`] pick one.
    pub mac: Option<[u8; 6]>,
    /// The card's MTU.
    pub mtu: u16,
}

impl NetSpec {
    /// The MAC address of card number `index` (0 = the first `--net`): the one given, else
    /// QEMU's 52:54:00:12:34:56 counting up, so that each card has its own.
    pub fn mac_for(&self, index: usize) -> [u8; 6] {
        self.mac.unwrap_or_else(|| {
            let last = 0x56u32 + (index as u32 & 0xff);
            [0x52, 0x54, 0x00, 0x12, 0x34 + (last >> 8) as u8, last as u8]
        })
    }
}

/// Why a `--net` string was refused; each message is a sentence that says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Nothing was given.
    #[error("the network option is empty; write user, tap=IFNAME or packet=IFNAME")]
    Empty,
    /// The first word names no backend.
    #[error("`{0}` is not a network backend; write user, tap=IFNAME or packet=IFNAME")]
    UnknownBackend(String),
    /// An option the backend does not know.
    #[error("`{option}` is not an option of the {backend} backend")]
    UnknownOption {
        /// The backend.
        backend: &'static str,
        /// The option as written.
        option: String,
    },
    /// A tap or packet backend without an interface name.
    #[error("the {0} backend needs an interface name: write {0}=IFNAME")]
    MissingInterface(&'static str),
    /// An interface name Linux would refuse.
    #[error("`{0}` is not a valid interface name (1 to 15 characters, no `/`, `:` or spaces)")]
    BadInterface(String),
    /// A malformed MAC address.
    #[error("`{0}` is not a MAC address; write six hex bytes like 52:54:00:12:34:56")]
    BadMac(String),
    /// A multicast MAC address.
    #[error("`{0}` is a multicast MAC address; a card needs a unicast one (even first byte)")]
    MulticastMac(String),
    /// An MTU out of range.
    #[error("`{0}` is not a usable MTU; write a number from 68 to 9000")]
    BadMtu(String),
    /// A malformed forward.
    #[error(
        "`{0}` is not a port forward; write hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT"
    )]
    BadForward(String),
    /// A forward's protocol is neither tcp nor udp.
    #[error("`{0}` is not a forward protocol; write tcp or udp")]
    BadProtocol(String),
    /// A malformed or zero port.
    #[error("`{0}` is not a port number; write 1 to 65535")]
    BadPort(String),
    /// A malformed IPv4 address.
    #[error("`{0}` is not an IPv4 address")]
    BadAddress(String),
    /// A malformed network.
    #[error("`{0}` is not a network; write net=ADDR/PREFIX, e.g. net=10.0.2.0/24")]
    BadNetwork(String),
    /// A prefix that leaves no room for the host, DNS and DHCP addresses.
    #[error("net=/{0} is too small; use a prefix from 8 to 28")]
    BadPrefix(u8),
    /// An address that must lie inside the network does not.
    #[error("{what}={addr} lies outside the network {network}/{prefix}")]
    OutsideNetwork {
        /// The option.
        what: &'static str,
        /// Its address.
        addr: Ipv4Addr,
        /// The network.
        network: Ipv4Addr,
        /// Its prefix.
        prefix: u8,
    },
    /// A yes/no option with another value.
    #[error("`{0}` must be on or off")]
    BadSwitch(String),
    /// The `routeros` offset pushes a port past 65535.
    #[error("routeros={0} moves port 8729 past 65535; use an offset up to 56806")]
    BadOffset(String),
    /// Two forwards listen on the same host port.
    #[error("host {protocol} port {port} is forwarded twice")]
    DuplicateForward {
        /// The protocol.
        protocol: Protocol,
        /// The host port.
        port: u16,
    },
    /// An option given twice.
    #[error("`{0}` is given twice")]
    Repeated(String),
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn parse_addr(s: &str) -> Result<Ipv4Addr, SpecError> {
    s.parse().map_err(|_| SpecError::BadAddress(s.to_string()))
}

fn parse_port(s: &str) -> Result<u16, SpecError> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(SpecError::BadPort(s.to_string())),
    }
}

fn parse_switch(key: &str, value: &str) -> Result<bool, SpecError> {
    match value {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(SpecError::BadSwitch(format!("{key}={value}"))),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(s: &str) -> Result<[u8; 6], SpecError> {
    let bad = || SpecError::BadMac(s.to_string());
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(SpecError::MulticastMac(s.to_string()));
    }
    Ok(mac)
}

fn parse_mtu(s: &str) -> Result<u16, SpecError> {
    match s.parse::<u16>() {
        Ok(m) if (MIN_MTU..=MAX_MTU).contains(&m) => Ok(m),
        _ => Err(SpecError::BadMtu(s.to_string())),
    }
}

fn check_ifname(name: &str) -> Result<String, SpecError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(name.to_string())
    } else {
        Err(SpecError::BadInterface(name.to_string()))
    }
}

/// Parses `[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`.
fn parse_forward(s: &str) -> Result<HostForward, SpecError> {
    let bad = || SpecError::BadForward(s.to_string());
    let (proto, rest) = s.split_once(':').ok_or_else(bad)?;
    let protocol = match proto {
        "" | "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(SpecError::BadProtocol(other.to_string())),
    };
    let (host, guest) = rest.split_once('-').ok_or_else(bad)?;
    let (host_addr, host_port) = host.rsplit_once(':').ok_or_else(bad)?;
    let (guest_addr, guest_port) = guest.rsplit_once(':').ok_or_else(bad)?;
    let host_addr = if host_addr.is_empty() { Ipv4Addr::UNSPECIFIED } else { parse_addr(host_addr)? };
    let guest_addr = if guest_addr.is_empty() { None } else { Some(parse_addr(guest_addr)?) };
    Ok(HostForward {
        protocol,
        host_addr,
        host_port: parse_port(host_port)?,
        guest_addr,
        guest_port: parse_port(guest_port)?,
    })
}

/// Parses `ADDR`, `ADDR/PREFIX` or `ADDR/MASK`.
fn parse_network(s: &str) -> Result<(Ipv4Addr, u8), SpecError> {
    let bad = || SpecError::BadNetwork(s.to_string());
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => {
            let prefix = match p.parse::<u8>() {
                Ok(n) if n <= 32 => n,
                Ok(_) => return Err(bad()),
                Err(_) => {
                    let mask = u32::from(p.parse::<Ipv4Addr>().map_err(|_| bad())?);
                    if mask.leading_ones() + mask.trailing_zeros() != 32 {
                        return Err(bad());
                    }
                    mask.leading_ones() as u8
                }
            };
            (a, prefix)
        }
        None => (s, 24),
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    if !(8..=28).contains(&prefix) {
        return Err(SpecError::BadPrefix(prefix));
    }
    Ok((Ipv4Addr::from(u32::from(addr) & prefix_mask(prefix)), prefix))
}

/// Adds `ROUTEROS_TCP_PORTS`, each on host port `port + offset`.
fn routeros_forwards(value: Option<&str>) -> Result<Vec<HostForward>, SpecError> {
    let offset = match value {
        None => 0u32,
        Some(v) => {
            v.trim_start_matches('+').parse::<u32>().map_err(|_| SpecError::BadOffset(v.to_string()))?
        }
    };
    ROUTEROS_TCP_PORTS
        .iter()
        .map(|&port| {
            let host_port = u16::try_from(u32::from(port) + offset)
                .map_err(|_| SpecError::BadOffset(value.unwrap_or("").to_string()))?;
            Ok(HostForward {
                protocol: Protocol::Tcp,
                host_addr: Ipv4Addr::UNSPECIFIED,
                host_port,
                guest_addr: None,
                guest_port: port,
            })
        })
        .collect()
}

/// The options every backend takes; returns false for an option that is not one of them.
fn common_option(
    key: &str,
    value: Option<&str>,
    mac: &mut Option<[u8; 6]>,
    mtu: &mut Option<u16>,
) -> Result<bool, SpecError> {
    match (key, value) {
        ("mac", Some(v)) => {
            if mac.replace(parse_mac(v)?).is_some() {
                return Err(SpecError::Repeated("mac".into()));
            }
            Ok(true)
        }
        ("mtu", Some(v)) => {
            if mtu.replace(parse_mtu(v)?).is_some() {
                return Err(SpecError::Repeated("mtu".into()));
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn parse_user(
    options: &[&str],
    mac: &mut Option<[u8; 6]>,
    mtu: &mut Option<u16>,
) -> Result<UserNet, SpecError> {
    let mut user = UserNet::default();
    let (mut host, mut dns, mut dhcp_start) = (None, None, None);
    let mut network_given = false;
    for option in options {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (*option, None),
        };
        if common_option(key, value, mac, mtu)? {
            continue;
        }
        match (key, value) {
            ("hostfwd", Some(v)) => user.forwards.push(parse_forward(v)?),
            ("routeros", v) => user.forwards.extend(routeros_forwards(v)?),
            ("net", Some(v)) => {
                if network_given {
                    return Err(SpecError::Repeated("net".into()));
                }
                network_given = true;
                (user.network, user.prefix) = parse_network(v)?;
            }
            ("host", Some(v)) => host = Some(parse_addr(v)?),
            ("dns", Some(v)) => dns = Some(parse_addr(v)?),
            ("dhcpstart", Some(v)) => dhcp_start = Some(parse_addr(v)?),
            ("ipv6", Some(v)) => user.ipv6 = parse_switch(key, v)?,
            ("ipv6", None) => user.ipv6 = true,
            ("restrict", Some(v)) => user.restrict = parse_switch(key, v)?,
            ("restrict", None) => user.restrict = true,
            ("hostname", Some(v)) if !v.is_empty() && !v.contains('\0') => {
                user.hostname = Some(v.to_string())
            }
            ("domainname", Some(v)) if !v.is_empty() && !v.contains('\0') => {
                user.domainname = Some(v.to_string())
            }
            _ => return Err(SpecError::UnknownOption { backend: "user", option: option.to_string() }),
        }
    }
    let base = u32::from(user.network);
    user.host = host.unwrap_or(Ipv4Addr::from(base | 2));
    user.dns = dns.unwrap_or(Ipv4Addr::from(base | 3));
    user.dhcp_start = dhcp_start.unwrap_or(Ipv4Addr::from(base | 15));
    for (what, addr) in [("host", user.host), ("dns", user.dns), ("dhcpstart", user.dhcp_start)] {
        if !user.contains(addr) {
            return Err(SpecError::OutsideNetwork { what, addr, network: user.network, prefix: user.prefix });
        }
    }
    for (i, f) in user.forwards.iter().enumerate() {
        if let Some(addr) = f.guest_addr.filter(|a| !user.contains(*a)) {
            return Err(SpecError::OutsideNetwork {
                what: "hostfwd guest address",
                addr,
                network: user.network,
                prefix: user.prefix,
            });
        }
        let clash = user.forwards[..i].iter().any(|g| {
            g.protocol == f.protocol
                && g.host_port == f.host_port
                && (g.host_addr == f.host_addr
                    || g.host_addr.is_unspecified()
                    || f.host_addr.is_unspecified())
        });
        if clash {
            return Err(SpecError::DuplicateForward { protocol: f.protocol, port: f.host_port });
        }
    }
    Ok(user)
}

fn parse_interface_backend(
    kind: &'static str,
    first_value: Option<&str>,
    options: &[&str],
    mac: &mut Option<[u8; 6]>,
    mtu: &mut Option<u16>,
) -> Result<String, SpecError> {
    let mut ifname = first_value.map(check_ifname).transpose()?;
    for option in options {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (*option, None),
        };
        if common_option(key, value, mac, mtu)? {
            continue;
        }
        match (key, value) {
            ("ifname", Some(v)) if ifname.is_none() => ifname = Some(check_ifname(v)?),
            ("ifname", Some(_)) => return Err(SpecError::Repeated("ifname".into())),
            _ => return Err(SpecError::UnknownOption { backend: kind, option: option.to_string() }),
        }
    }
    ifname.ok_or(SpecError::MissingInterface(kind))
}

impl FromStr for NetSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SpecError::Empty);
        }
        let mut parts = s.split(',');
        let first = parts.next().unwrap_or_default();
        let options: Vec<&str> = parts.collect();
        let (kind, first_value) = match first.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (first, None),
        };
        let (mut mac, mut mtu) = (None, None);
        let backend = match kind {
            "user" if first_value.is_none() => BackendSpec::User(parse_user(&options, &mut mac, &mut mtu)?),
            "tap" => BackendSpec::Tap {
                ifname: parse_interface_backend("tap", first_value, &options, &mut mac, &mut mtu)?,
            },
            "packet" => BackendSpec::Packet {
                ifname: parse_interface_backend("packet", first_value, &options, &mut mac, &mut mtu)?,
            },
            _ => return Err(SpecError::UnknownBackend(first.to_string())),
        };
        Ok(NetSpec { backend, mac, mtu: mtu.unwrap_or(DEFAULT_MTU) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserNet {
        match s.parse::<NetSpec>().unwrap().backend {
            BackendSpec::User(u) => u,
            other => panic!("not user: {other:?}"),
        }
    }

    fn err(s: &str) -> SpecError {
        s.parse::<NetSpec>().unwrap_err()
    }

    #[test]
    fn plain_user_has_qemu_defaults() {
        let spec: NetSpec = "user".parse().unwrap();
        assert_eq!(spec.mtu, 1500);
        assert_eq!(spec.mac, None);
        assert_eq!(spec.mac_for(0), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(spec.mac_for(1), [0x52, 0x54, 0, 0x12, 0x34, 0x57]);
        assert_eq!(spec.mac_for(0xaa), [0x52, 0x54, 0, 0x12, 0x35, 0x00]);
        let u = user("user");
        assert_eq!(u, UserNet::default());
        assert_eq!(u.netmask(), Ipv4Addr::new(255, 255, 255, 0));
    }

    #[test]
    fn qemu_hostfwd_forms() {
        let u = user("user,hostfwd=tcp::9180-:80,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53,hostfwd=::2222-:22");
        assert_eq!(
            u.forwards,
            vec![
                HostForward {
                    protocol: Protocol::Tcp,
                    host_addr: Ipv4Addr::UNSPECIFIED,
                    host_port: 9180,
                    guest_addr: None,
                    guest_port: 80
                },
                HostForward {
                    protocol: Protocol::Udp,
                    host_addr: Ipv4Addr::LOCALHOST,
                    host_port: 5353,
                    guest_addr: Some(Ipv4Addr::new(10, 0, 2, 15)),
                    guest_port: 53
                },
                HostForward {
                    protocol: Protocol::Tcp,
                    host_addr: Ipv4Addr::UNSPECIFIED,
                    host_port: 2222,
                    guest_addr: None,
                    guest_port: 22
                },
            ]
        );
    }

    #[test]
    fn routeros_preset_same_ports_or_offset() {
        let u = user("user,routeros");
        let ports: Vec<(u16, u16)> = u.forwards.iter().map(|f| (f.host_port, f.guest_port)).collect();
        assert_eq!(ports, ROUTEROS_TCP_PORTS.iter().map(|&p| (p, p)).collect::<Vec<_>>());
        let u = user("user,routeros=10000,hostfwd=udp::13231-:13231");
        assert_eq!(u.forwards[0].host_port, 10022);
        assert_eq!(u.forwards[6].host_port, 18729);
        assert_eq!(u.forwards[7].protocol, Protocol::Udp);
        assert_eq!(err("user,routeros=60000"), SpecError::BadOffset("60000".into()));
        assert_eq!(err("user,routeros=x"), SpecError::BadOffset("x".into()));
        assert!(matches!(err("user,routeros,hostfwd=tcp::8291-:80"), SpecError::DuplicateForward { .. }));
    }

    #[test]
    fn net_and_addresses() {
        let u = user("user,net=192.168.76.0/24,dns=192.168.76.53");
        assert_eq!(u.network, Ipv4Addr::new(192, 168, 76, 0));
        assert_eq!(u.host, Ipv4Addr::new(192, 168, 76, 2));
        assert_eq!(u.dns, Ipv4Addr::new(192, 168, 76, 53));
        assert_eq!(u.dhcp_start, Ipv4Addr::new(192, 168, 76, 15));
        let u = user("user,net=172.16.5.9/255.255.0.0,ipv6=off,restrict=on,hostname=chr");
        assert_eq!((u.network, u.prefix), (Ipv4Addr::new(172, 16, 0, 0), 16));
        assert!(!u.ipv6 && u.restrict);
        assert_eq!(u.hostname.as_deref(), Some("chr"));
        assert!(matches!(
            err("user,net=10.0.2.0/24,dns=10.0.3.3"),
            SpecError::OutsideNetwork { what: "dns", .. }
        ));
        assert_eq!(err("user,net=10.0.2.0/30"), SpecError::BadPrefix(30));
        assert_eq!(err("user,net=10.0.2/24"), SpecError::BadNetwork("10.0.2/24".into()));
        assert_eq!(
            err("user,net=10.0.0.0/255.0.255.0"),
            SpecError::BadNetwork("10.0.0.0/255.0.255.0".into())
        );
        assert!(matches!(err("user,hostfwd=tcp::80-10.9.9.9:80"), SpecError::OutsideNetwork { .. }));
        assert_eq!(err("user,net=10.0.2.0/24,net=10.0.3.0/24"), SpecError::Repeated("net".into()));
    }

    #[test]
    fn tap_and_packet() {
        let spec: NetSpec = "tap=tap0,mtu=9000,mac=02:00:00:00:00:01".parse().unwrap();
        assert_eq!(spec.backend, BackendSpec::Tap { ifname: "tap0".into() });
        assert_eq!(spec.mtu, 9000);
        assert_eq!(spec.mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(spec.mac_for(3), [2, 0, 0, 0, 0, 1]);
        let spec: NetSpec = "packet,ifname=eth1".parse().unwrap();
        assert_eq!(spec.backend, BackendSpec::Packet { ifname: "eth1".into() });
        assert_eq!(err("tap"), SpecError::MissingInterface("tap"));
        assert_eq!(err("packet=eth1,ifname=eth2"), SpecError::Repeated("ifname".into()));
        assert_eq!(err("packet=a/b"), SpecError::BadInterface("a/b".into()));
        assert_eq!(err("tap=averyveryverylongname"), SpecError::BadInterface("averyveryverylongname".into()));
        assert!(matches!(err("tap=tap0,hostfwd=tcp::1-:1"), SpecError::UnknownOption { backend: "tap", .. }));
    }

    #[test]
    fn invalid_strings_say_what_to_write() {
        assert_eq!(err(""), SpecError::Empty);
        assert_eq!(err("bridge=br0"), SpecError::UnknownBackend("bridge=br0".into()));
        assert_eq!(err("user=x"), SpecError::UnknownBackend("user=x".into()));
        assert_eq!(err("user,hostfwd=tcp:8080:80"), SpecError::BadForward("tcp:8080:80".into()));
        assert_eq!(err("user,hostfwd=sctp::1-:1"), SpecError::BadProtocol("sctp".into()));
        assert_eq!(err("user,hostfwd=tcp::0-:80"), SpecError::BadPort("0".into()));
        assert_eq!(err("user,hostfwd=tcp::70000-:80"), SpecError::BadPort("70000".into()));
        assert_eq!(err("user,hostfwd=tcp:1.2.3:80-:80"), SpecError::BadAddress("1.2.3".into()));
        assert!(matches!(
            err("user,hostfwd=tcp::80-:80,hostfwd=tcp:127.0.0.1:80-:81"),
            SpecError::DuplicateForward { .. }
        ));
        assert_eq!(err("user,mtu=9001"), SpecError::BadMtu("9001".into()));
        assert_eq!(err("user,mtu=abc"), SpecError::BadMtu("abc".into()));
        assert_eq!(err("user,mac=52:54:00:12:34"), SpecError::BadMac("52:54:00:12:34".into()));
        assert_eq!(err("user,mac=01:00:5e:00:00:01"), SpecError::MulticastMac("01:00:5e:00:00:01".into()));
        assert_eq!(err("user,ipv6=maybe"), SpecError::BadSwitch("ipv6=maybe".into()));
        assert_eq!(err("user,mtu=1500,mtu=1400"), SpecError::Repeated("mtu".into()));
        assert!(matches!(err("user,bogus"), SpecError::UnknownOption { backend: "user", .. }));
        // Every message reads as a sentence with a hint.
        let msg = err("user,hostfwd=tcp:8080:80").to_string();
        assert!(msg.contains("hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT"), "{msg}");
    }
}
