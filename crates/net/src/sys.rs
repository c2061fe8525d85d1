//! Thin, checked wrappers over the few system calls the tap and packet backends make.

use std::ffi::CString;
use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `struct ifreq` with the flags member of its union (40 bytes on Linux).
#[repr(C)]
pub(crate) struct IfReq {
    pub(crate) name: [libc::c_char; libc::IFNAMSIZ],
    pub(crate) flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReq {
    pub(crate) fn new(ifname: &str) -> io::Result<Self> {
        let bytes = ifname.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
        }
        let mut req = Self { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
        for (d, &s) in req.name.iter_mut().zip(bytes) {
            *d = s as libc::c_char;
        }
        Ok(req)
    }
}

/// Turns a returned descriptor (or -1) into an owned one.
pub(crate) fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Turns a -1 return into the thread's errno.
pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turns a -1 `ssize_t` return into the thread's errno.
pub(crate) fn check_len(ret: isize) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// The interface index of `ifname`.
pub(crate) fn if_index(ifname: &str) -> io::Result<libc::c_int> {
    let name = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    libc::c_int::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Sets IFF_UP on `ifname` (needs CAP_NET_ADMIN).
pub(crate) fn set_link_up(ifname: &str) -> io::Result<()> {
    // SAFETY: a plain socket(2) call; the result is checked by `owned`.
    let sock = owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let mut req = IfReq::new(ifname)?;
    // SAFETY: SIOCGIFFLAGS reads the interface name from and writes the flags into `req`, a valid
    // 40-byte ifreq.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    if req.flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.flags |= libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS only reads `req`, a valid ifreq.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// Reads from a non-blocking descriptor: `Ok(None)` when nothing waits.
pub(crate) fn read_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match check_len(n) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Reads from a non-blocking descriptor into `into`'s buffers in order (readv): `Ok(None)` when
/// nothing waits.
pub(crate) fn readv_nonblocking(fd: RawFd, into: &crate::Scatter<'_>) -> io::Result<Option<usize>> {
    let iov = into.iovecs();
    let count = libc::c_int::try_from(iov.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: `Scatter`'s contract makes every iovec valid for writes of its length for the
        // duration of this call.
        let n = unsafe { libc::readv(fd, iov.as_ptr(), count) };
        match check_len(n) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
