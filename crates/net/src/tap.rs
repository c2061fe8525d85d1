//! A tap interface: frames go to and come from the host kernel's network stack.
//!
//! Opened without the vnet header (IFF_NO_PI only), so the kernel finishes checksums and splits
//! segmentation-offloaded packets before handing them over, and the card offers no offloads.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};

use crate::sys::{self, IfReq};
use crate::{Backend, OpenError, MAX_FRAME};

/// `TUNSETIFF`: _IOW('T', 202, int).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// A tap backend.
pub struct TapBackend {
    fd: OwnedFd,
    ifname: String,
    oversized: u64,
}

impl TapBackend {
    /// Opens (creating it when allowed) the tap `ifname` and brings its link up if it may.
    pub fn open(ifname: &str, mtu: u16) -> Result<Self, OpenError> {
        let err = |source| OpenError::Tap { ifname: ifname.to_string(), source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(err)?;
        let fd = OwnedFd::from(file);
        let mut req = IfReq::new(ifname).map_err(err)?;
        req.flags = IFF_TAP | IFF_NO_PI;
        // SAFETY: TUNSETIFF reads the name and flags from `req`, a valid ifreq, and writes the
        // final name back into it.
        sys::check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) }).map_err(err)?;
        if let Err(e) = sys::set_link_up(ifname) {
            log::info!("tap {ifname}: cannot bring the link up ({e}); it stays as it is");
        }
        log::debug!("tap {ifname}: open, guest MTU {mtu}");
        Ok(Self { fd, ifname: ifname.to_string(), oversized: 0 })
    }
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
        // Read into a buffer one byte longer than the largest frame so truncation shows.
        let mut big = [0u8; MAX_FRAME + 1];
        loop {
            let Some(n) = sys::read_nonblocking(self.fd.as_raw_fd(), &mut big)? else {
                return Ok(None);
            };
            if n > buf.len() || n > MAX_FRAME {
                self.oversized += 1;
                if self.oversized.is_power_of_two() {
                    log::warn!(
                        "tap {}: {} frames longer than the card takes dropped",
                        self.ifname,
                        self.oversized
                    );
                }
                continue;
            }
            buf[..n].copy_from_slice(&big[..n]);
            return Ok(Some(n));
        }
    }

    fn rx_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn describe(&self) -> String {
        format!("tap {}", self.ifname)
    }
}
