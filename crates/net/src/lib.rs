//! Network backends for chr-vmm's virtio-net cards.
//!
//! A [`Backend`] moves whole Ethernet frames (no virtio header) between a card and the outside:
//! - [`slirp::SlirpBackend`]: user-mode networking on libslirp (DHCP, DNS, NAT, port forwards),
//!   no privileges needed;
//! - [`tap::TapBackend`]: a tap interface;
//! - [`packet::PacketBackend`]: an AF_PACKET socket on an existing interface (a container's
//!   `ethN`), so that no tap, bridge or tc rule is needed.
//!
//! The `--net` string is parsed into a [`NetSpec`] and [`open`] makes its backend.
//!
//! A backend never blocks: [`Backend::send`] either takes the frame or refuses it at once, and
//! [`Backend::recv`] returns `Ok(None)` when nothing waits. [`Backend::rx_fd`] is level-triggered:
//! readable while [`Backend::recv`] may have a frame, so the card's worker sleeps in epoll.

pub mod packet;
pub mod slirp;
mod spec;
mod sys;
pub mod tap;

use std::io;
use std::os::unix::io::RawFd;

pub use spec::{
    parse_mac, BackendSpec, HostForward, NetSpec, Protocol, SpecError, UserNet, DEFAULT_MTU, MAX_MTU,
    MIN_MTU, ROUTEROS_TCP_PORTS,
};

/// The largest frame a backend hands over: a 9000-byte MTU, the Ethernet header and two VLAN tags,
/// rounded up. Frames longer than this are dropped where they arrive.
pub const MAX_FRAME: usize = 9216;

/// Moves Ethernet frames between one virtio-net card and the outside.
pub trait Backend: Send {
    /// Sends one frame from the guest. Never blocks: a frame the backend cannot take now fails
    /// with [`io::ErrorKind::WouldBlock`] and the caller drops it.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Receives one frame for the guest into `buf`, returning its length, or `Ok(None)` when none
    /// waits. A frame longer than `buf` is dropped by the backend (and counted in its log).
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// A descriptor that polls readable (level-triggered) while [`Backend::recv`] may have a frame.
    fn rx_fd(&self) -> RawFd;
    /// What the backend is, for log messages (e.g. `tap tap0`).
    fn describe(&self) -> String;
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A tap could not be opened or created.
    #[error("cannot open tap {ifname}: {source}; it needs /dev/net/tun and CAP_NET_ADMIN to create it (or an existing tap owned by this user)")]
    Tap {
        /// The interface.
        ifname: String,
        /// The system's answer.
        source: io::Error,
    },
    /// The packet socket could not be opened or bound.
    #[error("cannot open a packet socket on {ifname}: {source}; the interface must exist and the process needs CAP_NET_RAW")]
    Packet {
        /// The interface.
        ifname: String,
        /// The system's answer.
        source: io::Error,
    },
    /// libslirp refused the configuration.
    #[error("cannot start user-mode networking: {0}")]
    Slirp(String),
    /// A port forward could not listen.
    #[error("cannot forward host {protocol} port {addr}:{port}: it is in use or needs privileges")]
    Forward {
        /// TCP or UDP.
        protocol: Protocol,
        /// The host address.
        addr: std::net::Ipv4Addr,
        /// The host port.
        port: u16,
    },
    /// A helper thread or descriptor could not be made.
    #[error("cannot set up the network backend: {0}")]
    Io(#[from] io::Error),
}

/// Opens the backend `spec` describes. For `user`, the port forwards listen before this returns,
/// so a port in use is reported here.
pub fn open(spec: &NetSpec) -> Result<Box<dyn Backend>, OpenError> {
    Ok(match &spec.backend {
        BackendSpec::User(user) => Box::new(slirp::SlirpBackend::new(user, spec.mtu)?),
        BackendSpec::Tap { ifname } => Box::new(tap::TapBackend::open(ifname, spec.mtu)?),
        BackendSpec::Packet { ifname } => Box::new(packet::PacketBackend::open(ifname)?),
    })
}

/// A backend that takes every frame and never has one: a card whose backend failed.
pub struct NullBackend {
    never: vmm_sys_util::eventfd::EventFd,
}

impl NullBackend {
    /// A new null backend.
    pub fn new() -> io::Result<Self> {
        Ok(Self { never: vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK)? })
    }
}

impl Backend for NullBackend {
    fn send(&mut self, _frame: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
    fn rx_fd(&self) -> RawFd {
        use std::os::unix::io::AsRawFd;
        self.never.as_raw_fd()
    }
    fn describe(&self) -> String {
        "no backend".into()
    }
}
