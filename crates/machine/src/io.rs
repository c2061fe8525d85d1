//! The machine's answer to a vCPU's I/O exits: the port bus and the MMIO bus.

use std::sync::Arc;

use crate::bus::Bus;
use crate::vcpu::IoHandler;

/// Port I/O and MMIO buses, shared by every vCPU.
#[derive(Clone, Default)]
pub struct IoBuses {
    /// The 64 KiB port space.
    pub pio: Arc<Bus>,
    /// Physical addresses that are not RAM.
    pub mmio: Arc<Bus>,
}

impl IoHandler for IoBuses {
    fn pio_read(&self, port: u16, data: &mut [u8]) {
        if !self.pio.read(u64::from(port), data) {
            log::trace!("unhandled in from port {port:#x}");
        }
    }

    fn pio_write(&self, port: u16, data: &[u8]) {
        if !self.pio.write(u64::from(port), data) {
            log::trace!("unhandled out to port {port:#x}: {data:x?}");
        }
    }

    fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if !self.mmio.read(addr, data) {
            log::trace!("unhandled MMIO read at {addr:#x}");
        }
    }

    fn mmio_write(&self, addr: u64, data: &[u8]) {
        if !self.mmio.write(addr, data) {
            log::trace!("unhandled MMIO write at {addr:#x}: {data:x?}");
        }
    }
}
