//! User-mode networking on libslirp: the guest gets DHCP, DNS, NAT to the host's networks and
//! port forwards, and the VMM needs no privileges.
//!
//! libslirp is single-threaded and wants a poll loop (its sockets, its timers). The backend runs
//! it inside its own [`Backend`] calls, on whichever thread owns it (the card's worker), so a
//! guest frame and slirp's answer cross no thread:
//! - guest -> slirp: [`Backend::send`] hands the frame to slirp at once;
//! - slirp -> guest: slirp's frames go to a bounded queue that [`Backend::recv`] empties; a full
//!   queue drops the frame (counted), and TCP retransmits;
//! - the poll loop: [`Backend::rx_fd`] is an epoll set ([`poller`]) that polls readable while
//!   frames wait, a socket slirp watches is ready or slirp's next deadline has passed, and
//!   [`Backend::recv`], when its queue is empty, runs one turn of the loop without waiting
//!   (slirp reads and writes its ready sockets, runs its due timers and says what to watch next).
//!
//! The card's worker stops watching `rx_fd` while the guest has no receive buffers, so slirp is
//! not polled until buffers come back. That is harmless: the host's sockets keep their data and
//! push back on their senders meanwhile, and slirp's timers run late.
//!
//! The instance is made, and the port forwards listen, on the thread that calls
//! [`SlirpBackend::new`], so that [`crate::open`] reports a port in use; the backend then moves to
//! the card's worker.

mod handler;
mod poller;

use std::cell::RefCell;
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::io::RawFd;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

use libslirp::Context;

use crate::{Backend, HostForward, OpenError, Protocol, UserNet};
use handler::{fire_timers, now_ns, until, GuestQueue, SlirpHandler, Timers};
use poller::Poller;

/// Counters of one user-mode backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlirpStats {
    /// Frames for the guest dropped because the card was behind (or too long).
    pub to_guest_dropped: u64,
}

/// A user-mode network backend.
pub struct SlirpBackend {
    // Declared first so that it is dropped first: slirp's clean-up calls back into the handler.
    ctx: Context<SlirpHandler>,
    poller: Poller,
    to_guest: Rc<RefCell<GuestQueue>>,
    timers: Rc<RefCell<Timers>>,
    /// A guest frame went into slirp since the last turn of the poll loop: slirp may want other
    /// sockets (or other events) watched.
    turn_due: bool,
    _strings: ConfigStrings,
    network: Ipv4Addr,
}

// SAFETY: `Context` holds a raw pointer to the Slirp instance, and the handler and timers share
// `Rc`s (the guest-bound queue, the timers, the renewed-descriptor set) with the backend. Every
// clone of those `Rc`s, the handler and every timer callback slirp registered are owned by this
// struct and never handed out, so moving the backend moves all of them together, and only the
// thread that owns it (through `&mut self`) ever touches a reference count or calls into slirp.
// libslirp itself has no thread affinity: it keeps no thread-local storage (its shared library
// has no TLS segment), runs no event loop of its own and calls back only from inside the calls
// made here. Its few process-wide variables (its clock in ms, a DNS address cache, a flag for
// one-time initialisation) are not tied to a thread.
unsafe impl Send for SlirpBackend {}

impl SlirpBackend {
    /// Makes the slirp instance for `net` with the guest's `mtu`; returns once every port forward
    /// listens (or fails at the first that cannot).
    pub fn new(net: &UserNet, mtu: u16) -> Result<Self, OpenError> {
        let strings = ConfigStrings {
            hostname: net.hostname.as_deref().and_then(|s| CString::new(s).ok()),
            domainname: net.domainname.as_deref().and_then(|s| CString::new(s).ok()),
        };
        let config = slirp_config(net, mtu, &strings);
        let to_guest = Rc::new(RefCell::new(GuestQueue::default()));
        let timers = Rc::new(RefCell::new(Timers::default()));
        let renewed = Rc::default();
        let poller = Poller::new(Rc::clone(&renewed))?;
        let handler = SlirpHandler::new(Rc::clone(&to_guest), Rc::clone(&timers), renewed);
        // The bindings assert that slirp_new succeeded; it fails only on a configuration it
        // refuses.
        let made = std::panic::catch_unwind(AssertUnwindSafe(|| Context::new_with_config(&config, handler)));
        let refused = || OpenError::Slirp(format!("libslirp refused network {} with MTU {mtu}", net.network));
        let ctx = made.map_err(|_| refused())?;
        for f in &net.forwards {
            add_forward(&ctx, net, f)?;
        }
        let mut backend =
            Self { ctx, poller, to_guest, timers, turn_due: false, _strings: strings, network: net.network };
        // Watch the forwards' listeners and arm the timer.
        backend.refill(true)?;
        Ok(backend)
    }

    /// The counters of this backend.
    pub fn stats(&self) -> SlirpStats {
        SlirpStats { to_guest_dropped: self.to_guest.borrow().dropped }
    }

    /// Takes the oldest frame for the guest into `buf`; frames too long for it are dropped.
    fn pop(&mut self, buf: &mut [u8]) -> Option<usize> {
        let mut q = self.to_guest.borrow_mut();
        while let Some(frame) = q.frames.pop_front() {
            if frame.len() <= buf.len() {
                buf[..frame.len()].copy_from_slice(&frame);
                return Some(frame.len());
            }
            q.drop_one("longer than the card's buffer");
        }
        None
    }

    /// One turn of slirp's poll loop, without waiting: slirp handles its ready sockets and due
    /// timers, then says what to watch next. Nothing is done when nothing is ready.
    fn turn(&mut self) -> io::Result<()> {
        let ready = self.poller.look();
        if !ready.any() && !self.turn_due {
            return Ok(());
        }
        self.turn_due = false;
        let poller = &self.poller;
        self.ctx.pollfds_poll(ready.error, |idx| poller.revents(idx));
        fire_timers(&self.timers, now_ns() / 1_000_000);
        self.refill(ready.timer)
    }

    /// Asks slirp which sockets to watch and how long it may sleep, and sets the poller so.
    fn refill(&mut self, timer_fired: bool) -> io::Result<()> {
        self.poller.begin_fill();
        // slirp caps this at a second (half a second while TCP connections exist).
        let mut timeout_ms = u32::MAX;
        let poller = &mut self.poller;
        self.ctx.pollfds_fill(&mut timeout_ms, |fd, events| poller.add(fd, events));
        self.poller.sync();
        let mut sleep = Duration::from_millis(u64::from(timeout_ms));
        if let Some(deadline) = self.timers.borrow().next_deadline() {
            sleep = sleep.min(until(deadline));
        }
        self.poller.arm(sleep, timer_fired)
    }

    /// Keeps the wake eventfd readable exactly while frames wait or a turn is due.
    fn update_wake(&mut self) {
        let woken = self.turn_due || !self.to_guest.borrow().frames.is_empty();
        self.poller.set_woken(woken);
    }
}

/// Makes slirp listen for port forward `f`.
fn add_forward(ctx: &Context<SlirpHandler>, net: &UserNet, f: &HostForward) -> Result<(), OpenError> {
    let guest = f.guest_addr.unwrap_or(net.dhcp_start);
    // SAFETY: `ctx.inner.context` is the live Slirp instance `ctx` owns; the call only reads its
    // plain-value arguments.
    let rc = unsafe {
        libslirp_sys::slirp_add_hostfwd(
            ctx.inner.context,
            i32::from(f.protocol == Protocol::Udp),
            f.host_addr.into(),
            i32::from(f.host_port),
            guest.into(),
            i32::from(f.guest_port),
        )
    };
    if rc < 0 {
        return Err(OpenError::Forward { protocol: f.protocol, addr: f.host_addr, port: f.host_port });
    }
    log::info!("user network: {} {}:{} -> {}:{}", f.protocol, f.host_addr, f.host_port, guest, f.guest_port);
    Ok(())
}

impl Backend for SlirpBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.ctx.input(frame);
        // The frame may have opened a socket, or filled or drained one: the next turn asks slirp
        // again what to watch. Frames slirp answered with are queued already.
        self.turn_due = true;
        self.update_wake();
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if let Some(n) = self.pop(buf) {
            self.update_wake();
            return Ok(Some(n));
        }
        let turned = self.turn();
        let n = self.pop(buf);
        self.update_wake();
        match (n, turned) {
            (Some(n), _) => Ok(Some(n)),
            // The worker tries again a second later; frames queued meanwhile stay queued.
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(None),
        }
    }

    fn rx_fd(&self) -> RawFd {
        self.poller.fd()
    }

    fn describe(&self) -> String {
        format!("user network {}", self.network)
    }
}

/// Strings slirp's configuration points at; they live as long as the instance.
struct ConfigStrings {
    hostname: Option<CString>,
    domainname: Option<CString>,
}

fn slirp_config(net: &UserNet, mtu: u16, strings: &ConfigStrings) -> libslirp_sys::SlirpConfig {
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    libslirp_sys::SlirpConfig {
        // Version 3: later versions read callbacks the bindings' SlirpCb does not have.
        version: 3,
        restricted: i32::from(net.restrict),
        in_enabled: true,
        vnetwork: net.network.into(),
        vnetmask: net.netmask().into(),
        vhost: net.host.into(),
        in6_enabled: net.ipv6,
        vprefix_addr6: std::net::Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0).into(),
        vprefix_len: 64,
        vhost6: std::net::Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 2).into(),
        vhostname: ptr(&strings.hostname),
        tftp_server_name: std::ptr::null(),
        tftp_path: std::ptr::null(),
        bootfile: std::ptr::null(),
        vdhcp_start: net.dhcp_start.into(),
        vnameserver: net.dns.into(),
        vnameserver6: std::net::Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 3).into(),
        vdnssearch: std::ptr::null_mut(),
        vdomainname: ptr(&strings.domainname),
        if_mtu: usize::from(mtu),
        if_mru: usize::from(mtu),
        disable_host_loopback: false,
        enable_emu: false,
        outbound_addr: std::ptr::null(),
        outbound_addr6: std::ptr::null(),
        disable_dns: false,
        disable_dhcp: false,
    }
}

#[cfg(test)]
mod tests;
