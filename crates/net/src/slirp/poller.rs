//! The readiness behind a user-mode backend's `rx_fd`: one epoll set holding
//! - an eventfd, signalled while frames wait for the guest or slirp has a guest frame to digest;
//! - a timerfd, armed to when slirp next wants to run its timers;
//! - slirp's sockets, each with exactly the events slirp asked for in its last fill, level-triggered.
//!
//! The set polls readable exactly while one of those is ready, so the card's worker can sleep on
//! it; a socket slirp does not want to read (its buffer toward the guest is full) is not in the
//! set and wakes nobody.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use libslirp::PollEvents;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

/// Epoll data of the wake eventfd and of the timerfd; sockets carry their descriptor.
const TOKEN_WAKE: u64 = u64::MAX;
const TOKEN_TIMER: u64 = u64::MAX - 1;
/// Ready descriptors taken per service step; the rest stay ready for the next.
const EVENTS_PER_STEP: usize = 64;

/// What one look at the set found.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ready {
    /// The look failed: slirp must not read the (empty) results.
    pub(super) error: bool,
    /// A socket of the last fill has an event slirp asked for.
    pub(super) sockets: bool,
    /// The timer expired.
    pub(super) timer: bool,
}

impl Ready {
    /// Whether slirp has anything to do.
    pub(super) fn any(&self) -> bool {
        self.error || self.sockets || self.timer
    }
}

pub(super) struct Poller {
    epoll: Epoll,
    wake: EventFd,
    woken: bool,
    timer: TimerFd,
    /// When the timer expires, once armed.
    armed_until: Option<Instant>,
    /// The sockets of slirp's last fill, by the index slirp was given for each.
    slots: Vec<(RawFd, u32)>,
    index_of: HashMap<RawFd, usize>,
    /// The events each socket of the set is registered for.
    watched: HashMap<RawFd, u32>,
    /// Descriptors slirp opened or closed since the last sync (see `SlirpHandler`). slirp
    /// reports every socket it closes, and every one it opens after start-up (the port
    /// forwards' listeners, opened first, are not reported and need not be).
    renewed: Rc<RefCell<HashSet<RawFd>>>,
    /// The events of each slot found by the last look.
    revents: Vec<u32>,
    events: Vec<EpollEvent>,
    errors: u64,
}

impl Poller {
    pub(super) fn new(renewed: Rc<RefCell<HashSet<RawFd>>>) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new(EFD_NONBLOCK)?;
        let timer = TimerFd::new().map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
        for (fd, token) in [(wake.as_raw_fd(), TOKEN_WAKE), (timer.as_raw_fd(), TOKEN_TIMER)] {
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, token))?;
        }
        Ok(Self {
            epoll,
            wake,
            woken: false,
            timer,
            armed_until: None,
            slots: Vec::new(),
            index_of: HashMap::new(),
            watched: HashMap::new(),
            renewed,
            revents: Vec::new(),
            events: vec![EpollEvent::default(); EVENTS_PER_STEP],
            errors: 0,
        })
    }

    /// The set's descriptor: readable while one of its members is.
    pub(super) fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Makes the wake eventfd readable or not.
    pub(super) fn set_woken(&mut self, woken: bool) {
        if woken == self.woken {
            return;
        }
        let result = if woken { self.wake.write(1) } else { self.wake.read().map(drop) };
        match result {
            Ok(()) => self.woken = woken,
            // Not readable after all: it is clear, which is what was wanted.
            Err(e) if !woken && e.kind() == io::ErrorKind::WouldBlock => self.woken = false,
            Err(e) => self.note_error("cannot signal its eventfd", &e),
        }
    }

    /// Looks, without waiting, at what is ready; [`Poller::revents`] then answers for each slot.
    pub(super) fn look(&mut self) -> Ready {
        self.revents.clear();
        self.revents.resize(self.slots.len(), 0);
        let n = match self.epoll.wait(0, &mut self.events) {
            Ok(n) => n,
            Err(e) => {
                self.note_error("cannot poll its sockets", &e);
                // Re-arm the timer in any case, as if it had fired.
                return Ready { error: true, sockets: false, timer: true };
            }
        };
        let mut ready = Ready::default();
        for i in 0..n {
            let (data, events) = (self.events[i].data(), self.events[i].events());
            match data {
                TOKEN_WAKE => {}
                TOKEN_TIMER => ready.timer = true,
                data => {
                    let Ok(fd) = RawFd::try_from(data) else { continue };
                    if let Some(&slot) = self.index_of.get(&fd) {
                        self.revents[slot] |= events;
                        ready.sockets = true;
                    } else {
                        // Not in the last fill (cannot happen after a sync): never let it
                        // keep the set readable.
                        let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
                        self.watched.remove(&fd);
                    }
                }
            }
        }
        ready
    }

    /// The events the last look found for slot `idx` of the last fill.
    pub(super) fn revents(&self, idx: i32) -> PollEvents {
        let events = usize::try_from(idx).ok().and_then(|i| self.revents.get(i)).copied().unwrap_or(0);
        from_epoll(events)
    }

    /// Starts a new fill: slirp will [`Poller::add`] the sockets it wants watched.
    pub(super) fn begin_fill(&mut self) {
        self.slots.clear();
        self.index_of.clear();
    }

    /// One socket of slirp's fill; returns the index slirp will ask about.
    pub(super) fn add(&mut self, fd: RawFd, events: PollEvents) -> i32 {
        let Ok(idx) = i32::try_from(self.slots.len()) else {
            return -1;
        };
        self.index_of.insert(fd, self.slots.len());
        self.slots.push((fd, to_epoll(events)));
        idx
    }

    /// Makes the set hold exactly the sockets of the last fill, each with the events asked for.
    pub(super) fn sync(&mut self) {
        // A renewed number may name a new socket: forget what was registered under it.
        for fd in self.renewed.borrow_mut().drain() {
            if self.watched.remove(&fd).is_some() {
                // Fails harmlessly when the old socket is closed (the kernel dropped it then).
                let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
        }
        let (epoll, index_of) = (&self.epoll, &self.index_of);
        self.watched.retain(|&fd, _| {
            let keep = index_of.contains_key(&fd);
            if !keep {
                let _ = epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
            keep
        });
        for i in 0..self.slots.len() {
            let (fd, events) = self.slots[i];
            let old = self.watched.get(&fd).copied();
            let Ok(data) = u64::try_from(fd) else { continue };
            if old == Some(events) {
                continue;
            }
            let event = EpollEvent::new(EventSet::from_bits_truncate(events), data);
            let (first, second) = if old.is_some() {
                (ControlOperation::Modify, ControlOperation::Add)
            } else {
                (ControlOperation::Add, ControlOperation::Modify)
            };
            // The set may know the descriptor better than the map does (EEXIST on add, ENOENT
            // on modify): then the other operation is the right one.
            let result = self.epoll.ctl(first, fd, event).or_else(|e| match e.raw_os_error() {
                Some(libc::EEXIST | libc::ENOENT) => self.epoll.ctl(second, fd, event),
                _ => Err(e),
            });
            match result {
                Ok(()) => {
                    self.watched.insert(fd, events);
                }
                Err(e) => {
                    self.watched.remove(&fd);
                    self.note_error("cannot watch a socket", &e);
                }
            }
        }
    }

    /// Arms the timer to expire `after` from now. An earlier expiry still pending is kept (slirp
    /// then only looks once too early), which saves a system call per step; one that `fired` is
    /// always re-armed, which also makes the timer unreadable again.
    pub(super) fn arm(&mut self, after: Duration, fired: bool) -> io::Result<()> {
        // A zero duration would disarm it.
        let after = after.max(Duration::from_micros(1));
        let now = Instant::now();
        let at = now + after;
        if !fired && self.armed_until.is_some_and(|t| t > now && t <= at) {
            return Ok(());
        }
        self.timer.reset(after, None).map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
        self.armed_until = Some(at);
        Ok(())
    }

    fn note_error(&mut self, what: &str, e: &io::Error) {
        self.errors += 1;
        if self.errors.is_power_of_two() {
            log::error!("user network: {what}: {e} ({} errors so far)", self.errors);
        }
    }
}

fn to_epoll(ev: PollEvents) -> u32 {
    let mut out = EventSet::empty();
    for (has, bit) in [
        (ev.has_in(), EventSet::IN),
        (ev.has_out(), EventSet::OUT),
        (ev.has_pri(), EventSet::PRIORITY),
        (ev.has_err(), EventSet::ERROR),
        (ev.has_hup(), EventSet::HANG_UP),
    ] {
        if has {
            out |= bit;
        }
    }
    out.bits()
}

fn from_epoll(events: u32) -> PollEvents {
    let events = EventSet::from_bits_truncate(events);
    let mut ev = PollEvents::empty();
    for (bit, flag) in [
        (EventSet::IN, PollEvents::poll_in()),
        (EventSet::OUT, PollEvents::poll_out()),
        (EventSet::PRIORITY, PollEvents::poll_pri()),
        (EventSet::ERROR, PollEvents::poll_err()),
        (EventSet::HANG_UP, PollEvents::poll_hup()),
    ] {
        if events.contains(bit) {
            ev |= flag;
        }
    }
    ev
}
