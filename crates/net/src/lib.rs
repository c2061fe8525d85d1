//! Network backends for chr-vmm's virtio-net cards.
//!
//! A [`Backend`] moves whole Ethernet frames between a card and the outside, behind a virtio-net
//! header when [`Backend::vnet_hdr`] says so (the tap), bare otherwise:
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
//! readable while [`Backend::recv`] may have a frame or work to do, so the card's worker sleeps in
//! epoll. A backend may do its own work inside those calls (user mode runs libslirp's poll loop
//! there), on whichever thread owns it: backends move between threads but are used by one at a
//! time.

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

/// The virtio-net header in front of every frame of a backend with [`Backend::vnet_hdr`]: the
/// virtio 1.0 layout (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers),
/// little-endian, `num_buffers` unused.
pub const VNET_HDR_LEN: usize = 12;

/// The longest frame behind a vnet header once segmentation offload is on: a 64 KiB GSO packet,
/// its Ethernet header and two VLAN tags.
pub const MAX_GSO_FRAME: usize = 65_536 + 14 + 8;

/// The offloads the guest accepts on frames it receives: what a backend with a vnet header may
/// hand over with the checksum still to do ([`GuestOffloads::csum`]) or not yet segmented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestOffloads {
    /// Partially checksummed frames (VIRTIO_NET_F_GUEST_CSUM).
    pub csum: bool,
    /// TCP over IPv4 segmentation (GUEST_TSO4).
    pub tso4: bool,
    /// TCP over IPv6 segmentation (GUEST_TSO6).
    pub tso6: bool,
    /// Segmented TCP with ECN (GUEST_ECN).
    pub tso_ecn: bool,
}

/// Moves Ethernet frames between one virtio-net card and the outside.
pub trait Backend: Send {
    /// Sends one frame from the guest (behind a [`VNET_HDR_LEN`]-byte header when
    /// [`Backend::vnet_hdr`]). Never blocks: a frame the backend cannot take now fails with
    /// [`io::ErrorKind::WouldBlock`] and the caller drops it.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Receives one frame for the guest into `buf` (behind a header when [`Backend::vnet_hdr`]),
    /// returning its length, or `Ok(None)` when none waits. A frame that does not fit in `buf`
    /// with a byte to spare is dropped by the backend (and counted in its log).
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Whether frames cross this backend behind a [`VNET_HDR_LEN`]-byte virtio-net header, so
    /// that checksum and segmentation offloads can pass through it.
    fn vnet_hdr(&self) -> bool {
        false
    }
    /// Tells a backend with a vnet header which offloads the guest accepts on its frames. The
    /// default (and the state before the first call) is none.
    fn set_guest_offloads(&mut self, _offloads: GuestOffloads) -> io::Result<()> {
        Ok(())
    }
    /// Whether [`Backend::recv_scattered`] works, so that frames can be received straight into
    /// the guest's buffers instead of through a copy.
    fn can_scatter(&self) -> bool {
        false
    }
    /// Like [`Backend::recv`], into the buffers of `into` in order: the header (when
    /// [`Backend::vnet_hdr`]) and the frame, spread over them. A frame that does not fit with a
    /// byte to spare is dropped by the backend, as by [`Backend::recv`]. Backends that cannot
    /// ([`Backend::can_scatter`] false) fail with [`io::ErrorKind::Unsupported`].
    fn recv_scattered(&mut self, _into: &Scatter<'_>) -> io::Result<Option<usize>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// A descriptor that polls readable (level-triggered) while [`Backend::recv`] may have a frame
    /// or work to do. Calling [`Backend::recv`] until it returns `Ok(None)` makes it unreadable
    /// until something new arrives, so a caller that does so never spins.
    fn rx_fd(&self) -> RawFd;
    /// What the backend is, for log messages (e.g. `tap tap0`).
    fn describe(&self) -> String;
}

/// Writable memory for [`Backend::recv_scattered`], as raw buffers rather than `&mut [u8]`: it is
/// guest memory, which the guest may change at any moment, so it is never borrowed as a Rust
/// slice; only the kernel writes it (readv).
pub struct Scatter<'a> {
    iov: &'a [libc::iovec],
    len: usize,
}

impl<'a> Scatter<'a> {
    /// Buffers `iov`, in order.
    ///
    /// # Safety
    /// Every element of `iov` must point at memory valid for writes of `iov_len` bytes for as
    /// long as `'a`, and nothing may hold a Rust reference to that memory meanwhile.
    pub unsafe fn new(iov: &'a [libc::iovec]) -> Self {
        let len = iov.iter().map(|v| v.iov_len).fold(0usize, usize::saturating_add);
        Self { iov, len }
    }

    /// The buffers.
    pub fn iovecs(&self) -> &[libc::iovec] {
        self.iov
    }

    /// Their total length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no room at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
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
