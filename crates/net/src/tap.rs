//! A tap interface: frames go to and come from the host kernel's network stack.
//!
//! Opened with the vnet header (IFF_VNET_HDR, [`VNET_HDR_LEN`] bytes) when the kernel allows it,
//! so checksum and segmentation offloads cross the tap both ways: the guest's unfinished frames
//! are finished by the kernel (or by the host NIC), and the kernel hands the guest unfinished
//! frames once [`Backend::set_guest_offloads`] allows it (TUNSETOFFLOAD). Without the header
//! (an old kernel, or [`TapBackend::open_without_vnet_hdr`]) the kernel finishes checksums and
//! splits segments before handing frames over, and the card offers no offloads.
//!
//! The header's fields are in host byte order to the kernel; the hosts chr-vmm runs on (x86_64,
//! aarch64) are little-endian like the guest, so no TUNSETVNETLE is needed.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};

use crate::sys::{self, IfReq};
use crate::{Backend, GuestOffloads, OpenError, VNET_HDR_LEN};

/// A tap backend.
pub struct TapBackend {
    fd: OwnedFd,
    ifname: String,
    vnet_hdr: bool,
    dropped: u64,
}

/// Why an open with the vnet header failed.
enum Failure {
    /// The kernel does not know or refused the header: open again without it.
    NoVnetHdr(String),
    /// The tap cannot be opened at all.
    Open(OpenError),
}

impl TapBackend {
    /// Opens (creating it when allowed) the tap `ifname` with the vnet header, or without it
    /// (and so without offloads, with a logged note) when the kernel refuses it, and brings its
    /// link up if it may.
    pub fn open(ifname: &str, mtu: u16) -> Result<Self, OpenError> {
        match Self::open_with(ifname, mtu, true) {
            Ok(tap) => Ok(tap),
            Err(Failure::Open(e)) => Err(e),
            Err(Failure::NoVnetHdr(why)) => {
                log::info!("tap {ifname}: {why}; it carries frames without offloads");
                Self::open_without_vnet_hdr(ifname, mtu)
            }
        }
    }

    /// Opens the tap `ifname` without the vnet header: frames cross it complete, no offloads.
    pub fn open_without_vnet_hdr(ifname: &str, mtu: u16) -> Result<Self, OpenError> {
        Self::open_with(ifname, mtu, false).map_err(|failure| match failure {
            Failure::Open(e) => e,
            // Only an open that asks for the header can fail for want of it.
            Failure::NoVnetHdr(why) => OpenError::Tap {
                ifname: ifname.to_string(),
                source: io::Error::new(io::ErrorKind::Unsupported, why),
            },
        })
    }

    fn open_with(ifname: &str, mtu: u16, vnet_hdr: bool) -> Result<Self, Failure> {
        let err = |source| Failure::Open(OpenError::Tap { ifname: ifname.to_string(), source });
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(err)?;
        let fd = OwnedFd::from(file);
        if vnet_hdr && !supports_vnet_hdr(&fd) {
            return Err(Failure::NoVnetHdr(
                "the kernel's tun driver has no vnet header (IFF_VNET_HDR)".into(),
            ));
        }
        let mut req = IfReq::new(ifname).map_err(err)?;
        req.flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        if vnet_hdr {
            req.flags |= libc::IFF_VNET_HDR as libc::c_short;
        }
        // SAFETY: TUNSETIFF reads the name and flags from `req`, a valid ifreq, and writes the
        // final name back into it.
        let attached = sys::check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req) });
        match attached {
            Ok(_) => {}
            Err(e) if vnet_hdr && e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(Failure::NoVnetHdr(format!("the kernel refused the vnet header ({e})")));
            }
            Err(e) => return Err(err(e)),
        }
        if vnet_hdr {
            let size = VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer, which points at `size`.
            let set = sys::check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ as _, &size) });
            if let Err(e) = set {
                return Err(Failure::NoVnetHdr(format!(
                    "the kernel refused a {VNET_HDR_LEN}-byte vnet header ({e})"
                )));
            }
        }
        if let Err(e) = sys::set_link_up(ifname) {
            log::info!("tap {ifname}: cannot bring the link up ({e}); it stays as it is");
        }
        log::debug!("tap {ifname}: open, guest MTU {mtu}, vnet header {vnet_hdr}");
        let mut tap = Self { fd, ifname: ifname.to_string(), vnet_hdr, dropped: 0 };
        if vnet_hdr {
            // A tap left by an earlier user may still have offloads on: start from none.
            if let Err(e) = tap.set_guest_offloads(GuestOffloads::default()) {
                return Err(Failure::NoVnetHdr(format!("the kernel refused TUNSETOFFLOAD ({e})")));
            }
        }
        Ok(tap)
    }

    /// Whether a read of `n` bytes into `room` bytes is a whole frame: one that fills the room
    /// may have been cut, one too short for the header is not a frame. Others are counted.
    fn keep(&mut self, n: usize, room: usize) -> bool {
        if n < room && !(self.vnet_hdr && n < VNET_HDR_LEN) {
            return true;
        }
        self.dropped += 1;
        if self.dropped.is_power_of_two() {
            log::warn!(
                "tap {}: {} frames longer than the card takes (or shorter than a header) dropped",
                self.ifname,
                self.dropped
            );
        }
        false
    }
}

/// Whether the kernel's tun driver knows IFF_VNET_HDR (TUNGETFEATURES).
fn supports_vnet_hdr(fd: &OwnedFd) -> bool {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int through the pointer, which points at
    // `features`.
    let got = sys::check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES as _, &mut features) });
    got.is_ok() && features & libc::IFF_VNET_HDR as libc::c_uint != 0
}

/// The TUNSETOFFLOAD bits for `offloads`: segmentation only on top of checksum offload, ECN
/// only on top of segmentation, as the tun driver requires.
fn tun_offload_flags(offloads: GuestOffloads) -> libc::c_uint {
    if !offloads.csum {
        return 0;
    }
    let mut flags = libc::TUN_F_CSUM;
    if offloads.tso4 {
        flags |= libc::TUN_F_TSO4;
    }
    if offloads.tso6 {
        flags |= libc::TUN_F_TSO6;
    }
    if offloads.tso_ecn && (offloads.tso4 || offloads.tso6) {
        flags |= libc::TUN_F_TSO_ECN;
    }
    flags
}

impl Backend for TapBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `frame` is a valid buffer of `frame.len()` bytes.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            match sys::check_len(n) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let Some(n) = sys::read_nonblocking(self.fd.as_raw_fd(), buf)? else {
                return Ok(None);
            };
            if self.keep(n, buf.len()) {
                return Ok(Some(n));
            }
        }
    }

    fn can_scatter(&self) -> bool {
        true
    }

    fn recv_scattered(&mut self, into: &crate::Scatter<'_>) -> io::Result<Option<usize>> {
        loop {
            let Some(n) = sys::readv_nonblocking(self.fd.as_raw_fd(), into)? else {
                return Ok(None);
            };
            if self.keep(n, into.len()) {
                return Ok(Some(n));
            }
        }
    }

    fn rx_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn describe(&self) -> String {
        format!("tap {}", self.ifname)
    }

    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    fn set_guest_offloads(&mut self, offloads: GuestOffloads) -> io::Result<()> {
        if !self.vnet_hdr {
            return Ok(());
        }
        let flags = tun_offload_flags(offloads);
        // SAFETY: TUNSETOFFLOAD takes its argument by value and touches no memory of ours.
        sys::check(unsafe {
            libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETOFFLOAD as _, flags as libc::c_ulong)
        })?;
        log::debug!("tap {}: guest offloads {offloads:?} (TUNSETOFFLOAD {flags:#x})", self.ifname);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_flags_follow_the_tun_drivers_rules() {
        let all = GuestOffloads { csum: true, tso4: true, tso6: true, tso_ecn: true };
        assert_eq!(
            tun_offload_flags(all),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN
        );
        assert_eq!(tun_offload_flags(GuestOffloads { csum: false, ..all }), 0, "TSO needs checksum offload");
        let ecn_alone = GuestOffloads { csum: true, tso_ecn: true, ..GuestOffloads::default() };
        assert_eq!(tun_offload_flags(ecn_alone), libc::TUN_F_CSUM, "ECN needs TSO");
    }
}
