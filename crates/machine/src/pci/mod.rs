//! PCI: configuration space, the devices' trait, and the root complex that maps BARs onto the
//! machine's buses as the firmware and the guest move them.

mod config;
mod piix;
mod root;

pub use config::{command, reg, BarKind, BarMapping, PciConfig, PciId};
pub use piix::{HostBridge, Piix3};
pub use root::{PciRoot, PCI_CONFIG_PORT};

/// A PCI function as the root complex sees it.
pub trait PciDevice: Send {
    /// The function's configuration space.
    fn config(&self) -> &PciConfig;
    /// The function's configuration space, mutable.
    fn config_mut(&mut self) -> &mut PciConfig;
    /// A guest read of config space; override to give some registers side effects.
    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        self.config().read(offset, data);
    }
    /// A guest write to config space; override to give some registers side effects.
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config_mut().write(offset, data);
    }
    /// A guest read of `data.len()` bytes at `offset` inside BAR `bar`.
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// A guest write at `offset` inside BAR `bar`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]);
    /// Doorbells an accelerator may bind (see [`BarIoEvent`]); none by default.
    fn ioevents(&self) -> Vec<BarIoEvent> {
        Vec::new()
    }
}

/// A doorbell inside a BAR that an accelerator may bind so that guest writes signal `event`
/// without leaving the vCPU (KVM ioeventfd). Writes that still reach the device must signal
/// the same event, so binding is only an optimisation.
pub struct BarIoEvent {
    /// The BAR.
    pub bar: usize,
    /// Offset inside the BAR.
    pub offset: u64,
    /// The write width to match in bytes (2 or 4), or 0 for any width.
    pub len: u32,
    /// The value to match, if any (only with `len` 2 or 4).
    pub datamatch: Option<u64>,
    /// Signalled on a matching write.
    pub event: vmm_sys_util::eventfd::EventFd,
}

/// Where a doorbell lives once its BAR is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoEventAddress {
    /// A port.
    Pio(u64),
    /// A physical address.
    Mmio(u64),
}

/// Binds doorbells for an accelerator (implemented by KVM; the interpreter needs none).
pub trait IoEventBinder: Send + Sync {
    /// Starts signalling `ev.event` on matching writes to `at`.
    fn bind(&self, at: IoEventAddress, ev: &BarIoEvent) -> Result<(), String>;
    /// Stops it again.
    fn unbind(&self, at: IoEventAddress, ev: &BarIoEvent);
}
