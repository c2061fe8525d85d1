//! TCP keepalive for VNC connections, so that a viewer whose machine vanished (a laptop that
//! left the Wi-Fi, a cable pulled: no FIN, no RST) gives its place back within about a minute.
//! A viewer that is alive but idle answers the probes from its kernel and is never affected.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Silence on the connection before the first probe.
pub(crate) const PROBE_AFTER: Duration = Duration::from_secs(20);
/// Between probes.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is given up.
pub(crate) const PROBES: u32 = 4;
/// How long sent data may stay unacknowledged before the connection is given up: keepalive
/// only probes an idle connection, and a peer that vanished with an update in flight would
/// otherwise be retransmitted to for a quarter of an hour.
pub(crate) const UNACKED_FOR: Duration = Duration::from_secs(60);

fn set(s: &TcpStream, level: libc::c_int, name: libc::c_int, value: u64) -> io::Result<()> {
    let value = libc::c_int::try_from(value).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the descriptor is `s`'s open socket for the whole call, and `value` is a live
    // c_int whose size is the length passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Turns keepalive on for `s`: a peer that stops answering is given up after about
/// `PROBE_AFTER + PROBES * PROBE_EVERY` (a minute), and blocked reads on `s` then fail.
pub(crate) fn keep_alive(s: &TcpStream) -> io::Result<()> {
    set(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, PROBE_AFTER.as_secs())?;
    set(s, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, PROBE_EVERY.as_secs())?;
    set(s, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, u64::from(PROBES))?;
    let unacked_ms = u64::try_from(UNACKED_FOR.as_millis()).unwrap_or(u64::MAX);
    set(s, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, unacked_ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::net::TcpListener;

    fn get(s: &TcpStream, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are live locals; `len` holds `value`'s size.
        let rc =
            unsafe { libc::getsockopt(s.as_raw_fd(), level, name, (&raw mut value).cast(), &raw mut len) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }

    #[test]
    fn a_vanished_peer_is_given_up_within_about_a_minute() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        keep_alive(&accepted).unwrap();
        assert_eq!(get(&accepted, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        let idle = get(&accepted, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE);
        let every = get(&accepted, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL);
        let probes = get(&accepted, libc::IPPROTO_TCP, libc::TCP_KEEPCNT);
        let unacked_ms = get(&accepted, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT);
        let silent_peer_dropped_after = idle + every * probes;
        assert!((30..=90).contains(&silent_peer_dropped_after), "{idle} + {every} x {probes} s");
        assert!((30_000..=90_000).contains(&unacked_ms), "{unacked_ms} ms");
    }
}
