//! Reset and power-off requests from devices, delivered to the vCPUs.
//!
//! A device that resets or powers off the machine records the request here; every vCPU is then
//! kicked out of its run loop and the VMM decides what to do (rebuild the machine or exit).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::vcpu::VcpuKick;

/// What the machine was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// Restart the machine.
    Reset,
    /// Turn the machine off.
    PowerOff,
}

/// The machine's pending power event and the vCPUs to tell about it.
#[derive(Default)]
pub struct PowerControl {
    pending: AtomicU8,
    kickers: Mutex<Vec<Arc<dyn VcpuKick>>>,
}

const NONE: u8 = 0;
const RESET: u8 = 1;
const POWER_OFF: u8 = 2;

impl PowerControl {
    /// No event pending, no vCPU registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a vCPU to be stopped when an event is requested.
    pub fn add_vcpu(&self, kicker: Arc<dyn VcpuKick>) {
        self.kickers.lock().unwrap_or_else(|e| e.into_inner()).push(kicker);
    }

    /// Records `event` (the first request wins) and stops every vCPU.
    pub fn request(&self, event: PowerEvent) {
        let code = match event {
            PowerEvent::Reset => RESET,
            PowerEvent::PowerOff => POWER_OFF,
        };
        let _ = self.pending.compare_exchange(NONE, code, Ordering::SeqCst, Ordering::SeqCst);
        self.kick_all();
    }

    /// Stops every vCPU without recording an event (the VMM is shutting down).
    pub fn kick_all(&self) {
        for k in self.kickers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            k.kick();
        }
    }

    /// The event requested so far, if any.
    pub fn pending(&self) -> Option<PowerEvent> {
        match self.pending.load(Ordering::SeqCst) {
            RESET => Some(PowerEvent::Reset),
            POWER_OFF => Some(PowerEvent::PowerOff),
            _ => None,
        }
    }
}
