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
}
