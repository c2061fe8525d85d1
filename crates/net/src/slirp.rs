//! User-mode networking on libslirp: the guest gets DHCP, DNS, NAT to the host's networks and
//! port forwards, and the VMM needs no privileges.
//!
//! libslirp is single-threaded and wants a poll loop (its sockets, its timers). One thread per
//! card owns the `Slirp` instance and runs that loop; frames cross between it and the card's
//! worker through two bounded queues, each with an eventfd:
//! - guest -> slirp: [`Backend::send`] queues the frame and wakes the slirp thread;
//! - slirp -> guest: slirp's send callback queues the frame and makes [`Backend::rx_fd`] readable.
//!
//! A full queue drops the frame (counted): TCP retransmits, and neither side ever waits.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use libslirp::{Context, Handler, PollEvents};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::{Backend, OpenError, Protocol, UserNet, MAX_FRAME};

/// Frames each queue holds before it drops.
const QUEUE_FRAMES: usize = 1024;

/// Counters of one user-mode backend.
#[derive(Debug, Default)]
pub struct SlirpStats {
    /// Frames from the guest dropped because the slirp thread was behind.
    pub to_slirp_dropped: AtomicU64,
    /// Frames for the guest dropped because the card was behind (or too long).
    pub to_guest_dropped: AtomicU64,
}

struct Shared {
    to_slirp: Mutex<VecDeque<Vec<u8>>>,
    to_guest: Mutex<VecDeque<Vec<u8>>>,
    stop: AtomicBool,
    stats: SlirpStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A user-mode network backend.
pub struct SlirpBackend {
    shared: Arc<Shared>,
    wake: EventFd,
    rx_ready: EventFd,
    thread: Option<JoinHandle<()>>,
    network: Ipv4Addr,
}

impl SlirpBackend {
    /// Starts the slirp thread for `net` with the guest's `mtu`; returns once every port forward
    /// listens (or the first that cannot).
    pub fn new(net: &UserNet, mtu: u16) -> Result<Self, OpenError> {
        let shared = Arc::new(Shared {
            to_slirp: Mutex::new(VecDeque::new()),
            to_guest: Mutex::new(VecDeque::new()),
            stop: AtomicBool::new(false),
            stats: SlirpStats::default(),
        });
        let wake = EventFd::new(EFD_NONBLOCK)?;
        let rx_ready = EventFd::new(EFD_NONBLOCK)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let (shared, wake, rx_ready, net) =
                (shared.clone(), wake.try_clone()?, rx_ready.try_clone()?, net.clone());
            std::thread::Builder::new()
                .name("slirp".into())
                .spawn(move || run(&net, mtu, shared, wake, rx_ready, ready_tx))?
        };
        let started =
            ready_rx.recv().unwrap_or_else(|_| Err(OpenError::Slirp("the slirp thread died".into())));
        let backend = Self { shared, wake, rx_ready, thread: Some(thread), network: net.network };
        started.map(|()| backend)
    }

    /// The counters of this backend.
    pub fn stats(&self) -> &SlirpStats {
        &self.shared.stats
    }
}

impl Drop for SlirpBackend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("user network {}: the slirp thread panicked", self.network);
            }
        }
    }
}

impl Backend for SlirpBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        {
            let mut q = lock(&self.shared.to_slirp);
            if q.len() >= QUEUE_FRAMES || self.shared.stop.load(Ordering::Relaxed) {
                self.shared.stats.to_slirp_dropped.fetch_add(1, Ordering::Relaxed);
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            q.push_back(frame.to_vec());
        }
        self.wake.write(1)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let pop = |buf: &mut [u8]| -> Option<usize> {
            let mut q = lock(&self.shared.to_guest);
            while let Some(frame) = q.pop_front() {
                if frame.len() <= buf.len() {
                    buf[..frame.len()].copy_from_slice(&frame);
                    return Some(frame.len());
                }
                self.shared.stats.to_guest_dropped.fetch_add(1, Ordering::Relaxed);
            }
            None
        };
        if let Some(n) = pop(buf) {
            return Ok(Some(n));
        }
        // Empty: clear readiness, then look once more for a frame queued meanwhile (its
        // producer signals after queueing, so nothing is missed).
        let _ = self.rx_ready.read();
        Ok(pop(buf))
    }

    fn rx_fd(&self) -> RawFd {
        self.rx_ready.as_raw_fd()
    }

    fn describe(&self) -> String {
        format!("user network {}", self.network)
    }
}

/// slirp's timers: callbacks with a deadline in milliseconds of [`SlirpHandler::clock_get_ns`].
#[derive(Default)]
struct Timers {
    next_id: u64,
    entries: HashMap<u64, TimerEntry>,
}

struct TimerEntry {
    func: Option<Box<dyn FnMut()>>,
    deadline_ms: Option<i64>,
}

/// The handle slirp holds for one timer.
struct TimerHandle(u64);

struct SlirpHandler {
    shared: Arc<Shared>,
    rx_ready: EventFd,
    start: Instant,
    timers: Rc<RefCell<Timers>>,
    guest_errors: u64,
}

fn now_ns(start: Instant) -> i64 {
    i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

impl Handler for SlirpHandler {
    type Timer = TimerHandle;

    fn clock_get_ns(&mut self) -> i64 {
        now_ns(self.start)
    }

    fn send_packet(&mut self, buf: &[u8]) -> io::Result<usize> {
        let queued = {
            let mut q = lock(&self.shared.to_guest);
            if q.len() < QUEUE_FRAMES && buf.len() <= MAX_FRAME {
                q.push_back(buf.to_vec());
                true
            } else {
                false
            }
        };
        if queued {
            let _ = self.rx_ready.write(1);
        } else {
            self.shared.stats.to_guest_dropped.fetch_add(1, Ordering::Relaxed);
        }
        // slirp may drop frames the guest cannot take: report success either way.
        Ok(buf.len())
    }

    fn register_poll_fd(&mut self, _fd: RawFd) {}

    fn unregister_poll_fd(&mut self, _fd: RawFd) {}

    fn guest_error(&mut self, msg: &str) {
        self.guest_errors += 1;
        if self.guest_errors.is_power_of_two() {
            log::debug!("user network: guest error ({} so far): {msg}", self.guest_errors);
        }
    }

    fn notify(&mut self) {}

    fn timer_new(&mut self, func: Box<dyn FnMut()>) -> Box<TimerHandle> {
        let mut t = self.timers.borrow_mut();
        let id = t.next_id;
        t.next_id += 1;
        t.entries.insert(id, TimerEntry { func: Some(func), deadline_ms: None });
        Box::new(TimerHandle(id))
    }

    fn timer_mod(&mut self, timer: &mut Box<TimerHandle>, expire_time: i64) {
        if let Some(e) = self.timers.borrow_mut().entries.get_mut(&timer.0) {
            e.deadline_ms = Some(expire_time);
        }
    }

    fn timer_free(&mut self, timer: Box<TimerHandle>) {
        self.timers.borrow_mut().entries.remove(&timer.0);
    }
}

impl Timers {
    fn next_deadline(&self) -> Option<i64> {
        self.entries.values().filter_map(|e| e.deadline_ms).min()
    }
}

/// Runs every timer whose deadline has passed; a callback may re-arm or free timers.
fn fire_timers(timers: &Rc<RefCell<Timers>>, now_ms: i64) {
    let due: Vec<u64> = timers
        .borrow()
        .entries
        .iter()
        .filter(|(_, e)| e.deadline_ms.is_some_and(|d| d <= now_ms))
        .map(|(&id, _)| id)
        .collect();
    for id in due {
        let func = timers.borrow_mut().entries.get_mut(&id).and_then(|e| {
            e.deadline_ms = None;
            e.func.take()
        });
        if let Some(mut func) = func {
            func();
            if let Some(e) = timers.borrow_mut().entries.get_mut(&id) {
                e.func = Some(func);
            }
        }
    }
}

fn to_poll(ev: PollEvents) -> libc::c_short {
    let mut out = 0;
    for (has, bit) in [
        (ev.has_in(), libc::POLLIN),
        (ev.has_out(), libc::POLLOUT),
        (ev.has_pri(), libc::POLLPRI),
        (ev.has_err(), libc::POLLERR),
        (ev.has_hup(), libc::POLLHUP),
    ] {
        if has {
            out |= bit;
        }
    }
    out
}

fn from_poll(revents: libc::c_short) -> PollEvents {
    let mut ev = PollEvents::empty();
    for (bit, flag) in [
        (libc::POLLIN, PollEvents::poll_in()),
        (libc::POLLOUT, PollEvents::poll_out()),
        (libc::POLLPRI, PollEvents::poll_pri()),
        (libc::POLLERR, PollEvents::poll_err()),
        (libc::POLLHUP, PollEvents::poll_hup()),
    ] {
        if revents & bit != 0 {
            ev |= flag;
        }
    }
    ev
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

/// The slirp thread: sets up the instance and its forwards, reports, then polls until stopped.
fn run(
    net: &UserNet,
    mtu: u16,
    shared: Arc<Shared>,
    wake: EventFd,
    rx_ready: EventFd,
    ready: mpsc::Sender<Result<(), OpenError>>,
) {
    let strings = ConfigStrings {
        hostname: net.hostname.as_deref().and_then(|s| CString::new(s).ok()),
        domainname: net.domainname.as_deref().and_then(|s| CString::new(s).ok()),
    };
    let config = slirp_config(net, mtu, &strings);
    let start = Instant::now();
    let timers = Rc::new(RefCell::new(Timers::default()));
    let handler =
        SlirpHandler { shared: shared.clone(), rx_ready, start, timers: timers.clone(), guest_errors: 0 };
    let ctx = Context::new_with_config(&config, handler);
    for f in &net.forwards {
        let guest = f.guest_addr.unwrap_or(net.dhcp_start);
        // SAFETY: `ctx.inner.context` is the live Slirp instance this thread owns; the call only
        // reads its plain-value arguments.
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
            let _ = ready.send(Err(OpenError::Forward {
                protocol: f.protocol,
                addr: f.host_addr,
                port: f.host_port,
            }));
            return;
        }
        log::info!(
            "user network: {} {}:{} -> {}:{}",
            f.protocol,
            f.host_addr,
            f.host_port,
            guest,
            f.guest_port
        );
    }
    if ready.send(Ok(())).is_err() {
        return;
    }
    drop(ready);

    let mut fds: Vec<libc::pollfd> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        // Frames from the guest first: they may make slirp open sockets to poll.
        let frames: Vec<Vec<u8>> = lock(&shared.to_slirp).drain(..).collect();
        for frame in &frames {
            ctx.input(frame);
        }

        fds.clear();
        fds.push(libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        let mut timeout_ms: u32 = u32::MAX;
        ctx.pollfds_fill(&mut timeout_ms, |fd, events| {
            fds.push(libc::pollfd { fd, events: to_poll(events), revents: 0 });
            i32::try_from(fds.len() - 1).unwrap_or(i32::MAX)
        });
        let now_ms = now_ns(start) / 1_000_000;
        if let Some(deadline) = timers.borrow().next_deadline() {
            let wait = u32::try_from(deadline.saturating_sub(now_ms).max(0)).unwrap_or(u32::MAX);
            timeout_ms = timeout_ms.min(wait);
        }
        let timeout = i32::try_from(timeout_ms.min(1000)).unwrap_or(1000);
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        let error = n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted;
        if fds[0].revents & libc::POLLIN != 0 {
            let _ = wake.read();
        }
        if n < 0 {
            fds.iter_mut().for_each(|p| p.revents = 0);
        }
        ctx.pollfds_poll(error, |idx| {
            usize::try_from(idx)
                .ok()
                .and_then(|i| fds.get(i))
                .map_or(PollEvents::empty(), |p| from_poll(p.revents))
        });
        fire_timers(&timers, now_ns(start) / 1_000_000);
    }
}

#[cfg(test)]
mod tests;
