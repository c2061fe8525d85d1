//! The local APIC of one vCPU: IRR/ISR, task priority, EOI, inter-processor interrupts and
//! the APIC timer, which counts on the host's monotonic clock.

use crate::Platform;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// The APIC timer's input clock: 1 GHz, so one count per nanosecond before the divider.
pub const APIC_TIMER_HZ: u64 = 1_000_000_000;

pub(crate) struct State {
    pub id: u32,
    irr: [u32; 8],
    isr: [u32; 8],
    tmr: [u32; 8],
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    esr: u32,
    icr: u64,
    lvt: [u32; 6],
    divide: u32,
    initial: u32,
    /// When the current timer count started (ns of platform time).
    timer_start: u64,
    /// The next timer expiry (ns), if armed.
    pub timer_deadline: Option<u64>,
    pub init: bool,
    pub sipi: Option<u8>,
}

const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;

fn highest(bits: &[u32; 8]) -> Option<u8> {
    (0..8).rev().find(|&i| bits[i] != 0).map(|i| (i as u32 * 32 + 31 - bits[i].leading_zeros()) as u8)
}

fn set(bits: &mut [u32; 8], v: u8) {
    bits[(v / 32) as usize] |= 1 << (v % 32);
}
fn clear(bits: &mut [u32; 8], v: u8) {
    bits[(v / 32) as usize] &= !(1 << (v % 32));
}
fn test(bits: &[u32; 8], v: u8) -> bool {
    bits[(v / 32) as usize] & (1 << (v % 32)) != 0
}

impl State {
    fn new(id: u32) -> Self {
        let mut s = Self {
            id,
            irr: [0; 8],
            isr: [0; 8],
            tmr: [0; 8],
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xff,
            esr: 0,
            icr: 0,
            lvt: [1 << 16; 6],
            divide: 0,
            initial: 0,
            timer_start: 0,
            timer_deadline: None,
            init: false,
            sipi: None,
        };
        if id == 0 {
            // As KVM and QEMU do: the BSP's LINT0 takes the 8259's ExtINT from reset.
            s.lvt[LVT_LINT0] = 0x700;
        }
        s
    }

    fn ppr(&self) -> u32 {
        let isrv = highest(&self.isr).map(|v| v as u32 & 0xf0).unwrap_or(0);
        if (self.tpr & 0xf0) >= isrv {
            self.tpr & 0xff
        } else {
            isrv
        }
    }

    fn divider(&self) -> u64 {
        let d = (self.divide & 3) | ((self.divide >> 1) & 4);
        if d == 7 {
            1
        } else {
            2 << d
        }
    }

    fn current_count(&self, now: u64) -> u32 {
        match self.timer_deadline {
            None => 0,
            Some(_) if self.initial == 0 => 0,
            Some(_) => {
                let per = self.divider() * 1_000_000_000 / APIC_TIMER_HZ;
                let elapsed = now.saturating_sub(self.timer_start) / per.max(1);
                let init = self.initial as u64;
                if self.lvt[LVT_TIMER] & (1 << 17) != 0 {
                    (init - elapsed % init) as u32
                } else {
                    init.saturating_sub(elapsed) as u32
                }
            }
        }
    }

    fn arm(&mut self, now: u64) {
        self.timer_start = now;
        self.timer_deadline = if self.initial == 0 {
            None
        } else {
            Some(now + self.initial as u64 * self.divider() * 1_000_000_000 / APIC_TIMER_HZ)
        };
    }

    /// Fires the timer if due; returns whether it raised an interrupt.
    pub fn poll_timer(&mut self, now: u64) -> bool {
        let Some(d) = self.timer_deadline else { return false };
        if now < d {
            return false;
        }
        let lvt = self.lvt[LVT_TIMER];
        if lvt & (1 << 17) != 0 {
            let period = (self.initial as u64 * self.divider() * 1_000_000_000 / APIC_TIMER_HZ).max(1000);
            let mut next = d + period;
            if next <= now {
                next = now + period;
            }
            self.timer_deadline = Some(next);
            self.timer_start = next - period;
        } else {
            self.timer_deadline = None;
        }
        if lvt & (1 << 16) == 0 && self.svr & 0x100 != 0 {
            set(&mut self.irr, lvt as u8);
            return true;
        }
        false
    }

    pub fn accept(&mut self, vector: u8, level: bool) {
        if vector < 16 {
            self.esr |= 1 << 6;
            return;
        }
        set(&mut self.irr, vector);
        if level {
            set(&mut self.tmr, vector);
        } else {
            clear(&mut self.tmr, vector);
        }
    }

    /// Whether an interrupt is deliverable now.
    fn deliverable(&self) -> Option<u8> {
        let v = highest(&self.irr)?;
        ((v as u32 & 0xf0) > (self.ppr() & 0xf0)).then_some(v)
    }

    fn accepts_pic(&self) -> bool {
        let l = self.lvt[LVT_LINT0];
        self.svr & 0x100 == 0 && self.id == 0 || (l & (1 << 16) == 0 && (l >> 8) & 7 == 7)
    }

    pub fn matches(&self, dest: u8, logical: bool) -> bool {
        if logical {
            if self.dfr >> 28 == 0xf {
                (self.ldr >> 24) as u8 & dest != 0
            } else {
                let l = (self.ldr >> 24) as u8;
                (l >> 4) == (dest >> 4) && (l & dest & 0xf) != 0
            }
        } else {
            dest == 0xff || dest as u32 == self.id
        }
    }
}

/// One vCPU's local APIC.
pub struct LocalApic {
    pub(crate) state: Mutex<State>,
    cv: Condvar,
    /// Something may be pending: a cheap check before taking the lock.
    hint: AtomicBool,
    platform: Weak<Platform>,
}

/// What a register write asks the platform to do.
pub(crate) enum Effect {
    None,
    Eoi(u8),
    Ipi { vector: u8, mode: u8, dest: u8, logical: bool, shorthand: u8 },
}

impl LocalApic {
    pub(crate) fn new(id: u32, platform: Weak<Platform>) -> Self {
        Self { state: Mutex::new(State::new(id)), cv: Condvar::new(), hint: AtomicBool::new(true), platform }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks an interrupt as possibly pending and wakes the vCPU from HLT.
    pub fn wake(&self) {
        self.hint.store(true, Ordering::SeqCst);
        let _g = self.lock();
        self.cv.notify_all();
    }

    /// Accepts a fixed interrupt.
    pub(crate) fn deliver(&self, vector: u8, level: bool) {
        self.lock().accept(vector, level);
        self.wake();
    }

    /// The next interrupt to take (already acknowledged), if any: the APIC's own, or the
    /// 8259's through LINT0 in ExtINT mode.
    pub fn take_interrupt(&self) -> Option<u8> {
        // Clear the hint before looking, so that an interrupt delivered while we look sets it
        // again rather than being overwritten by a late "nothing pending".
        if !self.hint.swap(false, Ordering::SeqCst) {
            return None;
        }
        let mut s = self.lock();
        if let Some(v) = s.deliverable() {
            clear(&mut s.irr, v);
            set(&mut s.isr, v);
            // More may be waiting behind this one.
            self.hint.store(true, Ordering::SeqCst);
            return Some(v);
        }
        let pic_ok = s.accepts_pic();
        let irr_any = s.irr.iter().any(|w| *w != 0);
        drop(s);
        if irr_any {
            // Requests held back by the processor priority: look again after the next EOI.
            self.hint.store(true, Ordering::SeqCst);
        }
        if pic_ok {
            if let Some(p) = self.platform.upgrade() {
                if let Some(v) = p.pic_ack() {
                    self.hint.store(true, Ordering::SeqCst);
                    return Some(v);
                }
            }
        }
        None
    }

    /// Takes a pending INIT (true) and SIPI vector.
    pub fn take_init_sipi(&self) -> (bool, Option<u8>) {
        let mut s = self.lock();
        (std::mem::take(&mut s.init), s.sipi.take())
    }

    /// Sleeps until an interrupt may be pending, `deadline` passes, or `stop()` says so.
    pub fn wait(&self, deadline: Option<Instant>, interrupts_enabled: bool, stop: &dyn Fn() -> bool) {
        let mut g = self.lock();
        loop {
            if stop() || g.init || g.sipi.is_some() {
                return;
            }
            if interrupts_enabled && self.hint.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            let timeout = match deadline {
                Some(d) if d <= now => return,
                Some(d) => (d - now).min(Duration::from_millis(100)),
                None => Duration::from_millis(100),
            };
            let (ng, r) = self.cv.wait_timeout(g, timeout).unwrap_or_else(|e| e.into_inner());
            g = ng;
            if r.timed_out() {
                return;
            }
        }
    }

    /// Reads a 32-bit APIC register at `offset` within the 4 KiB page.
    pub fn mmio_read(&self, offset: u64) -> u32 {
        let now = self.platform.upgrade().map(|p| p.now()).unwrap_or(0);
        let s = self.lock();
        let r = (offset >> 4) as usize;
        match r {
            0x2 => s.id << 24,
            0x3 => 0x0005_0014,
            0x8 => s.tpr,
            0x9 => 0,
            0xa => s.ppr(),
            0xd => s.ldr,
            0xe => s.dfr,
            0xf => s.svr,
            0x10..=0x17 => s.isr[r - 0x10],
            0x18..=0x1f => s.tmr[r - 0x18],
            0x20..=0x27 => s.irr[r - 0x20],
            0x28 => s.esr,
            0x30 => s.icr as u32,
            0x31 => (s.icr >> 32) as u32,
            0x32..=0x37 => s.lvt[r - 0x32],
            0x38 => s.initial,
            0x39 => s.current_count(now),
            0x3e => s.divide,
            _ => 0,
        }
    }

    /// Writes a 32-bit APIC register.
    pub fn mmio_write(&self, offset: u64, v: u32) {
        let platform = self.platform.upgrade();
        let now = platform.as_ref().map(|p| p.now()).unwrap_or(0);
        let effect = {
            let mut s = self.lock();
            let r = (offset >> 4) as usize;
            match r {
                0x2 => {
                    s.id = v >> 24;
                    Effect::None
                }
                0x8 => {
                    s.tpr = v & 0xff;
                    Effect::None
                }
                0xb => match highest(&s.isr) {
                    Some(vec) => {
                        clear(&mut s.isr, vec);
                        if test(&s.tmr, vec) {
                            Effect::Eoi(vec)
                        } else {
                            Effect::None
                        }
                    }
                    None => Effect::None,
                },
                0xd => {
                    s.ldr = v & 0xff00_0000;
                    Effect::None
                }
                0xe => {
                    s.dfr = v | 0x0fff_ffff;
                    Effect::None
                }
                0xf => {
                    s.svr = v & 0x13ff;
                    if v & 0x100 == 0 {
                        for l in s.lvt.iter_mut() {
                            *l |= 1 << 16;
                        }
                    }
                    Effect::None
                }
                0x28 => {
                    s.esr = 0;
                    Effect::None
                }
                0x30 => {
                    s.icr = (s.icr & !0xffff_ffff) | (v as u64 & !(1 << 12));
                    let icr = s.icr;
                    Effect::Ipi {
                        vector: icr as u8,
                        mode: ((icr >> 8) & 7) as u8,
                        dest: (icr >> 56) as u8,
                        logical: icr & (1 << 11) != 0,
                        shorthand: ((icr >> 18) & 3) as u8,
                    }
                }
                0x31 => {
                    s.icr = (s.icr & 0xffff_ffff) | ((v as u64) << 32);
                    Effect::None
                }
                0x32..=0x37 => {
                    let mut val = v;
                    if s.svr & 0x100 == 0 {
                        val |= 1 << 16;
                    }
                    s.lvt[r - 0x32] = val;
                    Effect::None
                }
                0x38 => {
                    s.initial = v;
                    s.arm(now);
                    Effect::None
                }
                0x3e => {
                    s.divide = v & 0xb;
                    Effect::None
                }
                _ => Effect::None,
            }
        };
        self.hint.store(true, Ordering::SeqCst);
        if let Some(p) = platform {
            match effect {
                Effect::None => {}
                Effect::Eoi(vec) => p.ioapic_eoi(vec),
                Effect::Ipi { vector, mode, dest, logical, shorthand } => {
                    let me = self.lock().id;
                    p.send_ipi(me, vector, mode, dest, logical, shorthand);
                }
            }
            p.timers_changed();
        }
    }
}
