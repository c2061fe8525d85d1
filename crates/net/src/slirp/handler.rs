//! What libslirp calls back into: its clock, the frames it emits for the guest, its timers and
//! the sockets it opens and closes. Everything here lives on the thread that owns the backend.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libslirp::Handler;

use crate::MAX_FRAME;

/// Frames the guest-bound queue holds before slirp's frames are dropped.
pub(super) const QUEUE_FRAMES: usize = 1024;

/// Frames slirp emitted for the guest, oldest first, and how many did not fit.
#[derive(Default)]
pub(super) struct GuestQueue {
    pub(super) frames: VecDeque<Vec<u8>>,
    pub(super) dropped: u64,
}

impl GuestQueue {
    /// Counts a dropped frame, and logs the first and then every power of two.
    pub(super) fn drop_one(&mut self, why: &str) {
        self.dropped += 1;
        if self.dropped.is_power_of_two() {
            log::warn!("user network: a frame for the guest was dropped ({why}); {} so far", self.dropped);
        }
    }
}

/// slirp's timers: callbacks with a deadline in milliseconds of slirp's clock ([`now_ns`]).
#[derive(Default)]
pub(super) struct Timers {
    next_id: u64,
    entries: HashMap<u64, TimerEntry>,
}

struct TimerEntry {
    func: Option<Box<dyn FnMut()>>,
    deadline_ms: Option<i64>,
}

/// The handle slirp holds for one timer.
pub(super) struct TimerHandle(u64);

impl Timers {
    /// The earliest deadline of an armed timer, in milliseconds of slirp's clock.
    pub(super) fn next_deadline(&self) -> Option<i64> {
        self.entries.values().filter_map(|e| e.deadline_ms).min()
    }
}

/// Runs every timer whose deadline has passed; a callback may re-arm or free timers.
pub(super) fn fire_timers(timers: &Rc<RefCell<Timers>>, now_ms: i64) {
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

/// slirp's clock starts here. libslirp keeps the time in a process-wide variable that each
/// instance overwrites when polled, so every instance must read the same clock.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// slirp's clock, in nanoseconds.
pub(super) fn now_ns() -> i64 {
    i64::try_from(epoch().elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// How long from now until `deadline_ms` of slirp's clock (zero if it has passed).
pub(super) fn until(deadline_ms: i64) -> Duration {
    let at = epoch() + Duration::from_millis(u64::try_from(deadline_ms).unwrap_or(0));
    at.saturating_duration_since(Instant::now())
}

pub(super) struct SlirpHandler {
    to_guest: Rc<RefCell<GuestQueue>>,
    timers: Rc<RefCell<Timers>>,
    /// Descriptors slirp opened or is closing since the poller last looked: a number may now
    /// name another socket than the one the poller watches under it.
    renewed: Rc<RefCell<HashSet<RawFd>>>,
    guest_errors: u64,
}

impl SlirpHandler {
    pub(super) fn new(
        to_guest: Rc<RefCell<GuestQueue>>,
        timers: Rc<RefCell<Timers>>,
        renewed: Rc<RefCell<HashSet<RawFd>>>,
    ) -> Self {
        Self { to_guest, timers, renewed, guest_errors: 0 }
    }
}

impl Handler for SlirpHandler {
    type Timer = TimerHandle;

    fn clock_get_ns(&mut self) -> i64 {
        now_ns()
    }

    fn send_packet(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut q = self.to_guest.borrow_mut();
        if buf.len() > MAX_FRAME {
            q.drop_one("too long");
        } else if q.frames.len() >= QUEUE_FRAMES {
            q.drop_one("the guest is behind");
        } else {
            q.frames.push_back(buf.to_vec());
        }
        // slirp may drop frames the guest cannot take: report success either way.
        Ok(buf.len())
    }

    fn register_poll_fd(&mut self, fd: RawFd) {
        self.renewed.borrow_mut().insert(fd);
    }

    fn unregister_poll_fd(&mut self, fd: RawFd) {
        self.renewed.borrow_mut().insert(fd);
    }

    fn guest_error(&mut self, msg: &str) {
        self.guest_errors += 1;
        if self.guest_errors.is_power_of_two() {
            log::debug!("user network: guest error ({} so far): {msg}", self.guest_errors);
        }
    }

    // slirp asks to be polled again when a socket buffer drains. It does so only inside
    // `input` or `pollfds_poll`, and the backend asks slirp again what to watch after either.
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
