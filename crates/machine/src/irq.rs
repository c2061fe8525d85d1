//! The one interface through which devices raise interrupts.
//!
//! KVM implements it with its in-kernel irqchip; the interpreter with its userspace PIC, IOAPIC
//! and local APICs. Devices hold an [`IrqLine`] or an `Arc<dyn InterruptController>` and never
//! know which one is behind it.

use std::sync::Arc;

/// Something that accepts interrupt requests from devices.
pub trait InterruptController: Send + Sync {
    /// Drives global system interrupt `gsi` to `level` (ISA lines 0-15 also reach the PIC).
    fn set_level(&self, gsi: u32, level: bool);
    /// Delivers a message-signalled interrupt (MSI / MSI-X) with the given address and data.
    fn signal_msi(&self, address: u64, data: u32);
}

/// One interrupt line of one device.
#[derive(Clone)]
pub struct IrqLine {
    controller: Arc<dyn InterruptController>,
    gsi: u32,
}

impl IrqLine {
    /// A line wired to `gsi` on `controller`.
    pub fn new(controller: Arc<dyn InterruptController>, gsi: u32) -> Self {
        Self { controller, gsi }
    }

    /// The GSI this line drives.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Sets a level-triggered line.
    pub fn set_level(&self, level: bool) {
        self.controller.set_level(self.gsi, level);
    }

    /// Signals an edge-triggered interrupt (raise then lower).
    pub fn pulse(&self) {
        self.controller.set_level(self.gsi, true);
        self.controller.set_level(self.gsi, false);
    }
}

/// A controller that drops every request (for unit tests and devices without a line).
pub struct NoInterrupts;

impl InterruptController for NoInterrupts {
    fn set_level(&self, _gsi: u32, _level: bool) {}
    fn signal_msi(&self, _address: u64, _data: u32) {}
}
