//! The virtio-pci transport, transitional like QEMU's `disable-legacy=off` devices:
//!
//! - IDs 1af4:(0x1000 + type - 1), subsystem 1af4:type, revision 0, INTA;
//! - BAR0: the legacy register block in I/O space ([`legacy`]);
//! - BAR1: the MSI-X table (offset 0) and pending bits (offset 0x800), 32-bit memory;
//! - BAR4: the virtio 1.x structures ([`modern`]), 64-bit prefetchable memory, described by
//!   vendor capabilities, with VIRTIO_PCI_CAP_PCI_CFG for firmware that cannot reach the BAR;
//! - an MSI-X capability with one vector for configuration changes and one per queue.

mod legacy;
mod modern;
mod state;

#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;

use machine::irq::{InterruptController, IrqLine};
use machine::memory::GuestMemory;
use machine::pci::{command, reg, BarIoEvent, BarKind, PciConfig, PciDevice, PciId};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::interrupt::MSIX_ENTRY_SIZE;
use crate::{device_type, VirtioDevice, VirtioInterrupt};
use modern::layout;
use state::Transport;

/// The PCI vendor ID of virtio devices (Red Hat / Qumranet).
pub const VIRTIO_VENDOR: u16 = 0x1af4;

/// BAR numbers.
pub const LEGACY_BAR: usize = 0;
/// The MSI-X table and PBA.
pub const MSIX_BAR: usize = 1;
/// The virtio 1.x structures.
pub const MODERN_BAR: usize = 4;

const MSIX_BAR_SIZE: u64 = 0x1000;
const MSIX_PBA_OFFSET: u64 = 0x800;

const CAP_ID_VENDOR: u8 = 0x09;
const CAP_ID_MSIX: u8 = 0x11;
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;

/// virtio_pci_cap.cfg_type values.
mod cfg_type {
    pub(super) const COMMON: u8 = 1;
    pub(super) const NOTIFY: u8 = 2;
    pub(super) const ISR: u8 = 3;
    pub(super) const DEVICE: u8 = 4;
    pub(super) const PCI_CFG: u8 = 5;
}

/// Offsets inside the VIRTIO_PCI_CAP_PCI_CFG capability.
const PCI_CFG_BAR: usize = 4;
const PCI_CFG_OFFSET: usize = 8;
const PCI_CFG_LENGTH: usize = 12;
const PCI_CFG_DATA: usize = 16;

/// Where in a BAR a queue notification lands, for binding it as an ioeventfd.
#[derive(Debug)]
pub struct IoEvent {
    /// The BAR ([`LEGACY_BAR`], an I/O BAR, or [`MODERN_BAR`], a memory BAR).
    pub bar: usize,
    /// The offset inside the BAR.
    pub offset: u64,
    /// The access width to match in bytes; 0 matches any width.
    pub len: u32,
    /// The value to match (the queue index on the shared legacy register), or any value.
    pub datamatch: Option<u64>,
    /// The queue's eventfd (a clone; the device's worker waits on the same counter).
    pub event: EventFd,
    /// The queue this notifies.
    pub queue: usize,
}

/// A virtio device on the PCI bus.
pub struct VirtioPci {
    config: PciConfig,
    transport: Transport,
    msix_cap: usize,
    pci_cfg_cap: usize,
}

fn virtio_cap(cfg_type: u8, bar: u8, offset: u32, length: u32, extra: &[u8]) -> Vec<u8> {
    // Body after the id/next pair: cap_len, cfg_type, bar, id, padding[2], offset, length.
    let cap_len = (16 + extra.len()) as u8;
    let mut body = vec![cap_len, cfg_type, bar, 0, 0, 0];
    body.extend_from_slice(&offset.to_le_bytes());
    body.extend_from_slice(&length.to_le_bytes());
    body.extend_from_slice(extra);
    body
}

fn class_of(device: u16) -> u32 {
    match device {
        device_type::NET => 0x02_00_00,
        device_type::BLOCK => 0x01_00_00,
        _ => 0xff_00_00,
    }
}

impl VirtioPci {
    /// Puts `device` behind a transitional virtio-pci function. `intx` is the line its INTA pin
    /// is routed to; `msi` delivers its MSI-X messages once the guest enables them.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        memory: GuestMemory,
        intx: IrqLine,
        msi: Arc<dyn InterruptController>,
    ) -> io::Result<Self> {
        let kind = device.device_type();
        let num_queues = device.queue_max_sizes().len();
        let vectors = num_queues + 1;
        if vectors * MSIX_ENTRY_SIZE > MSIX_PBA_OFFSET as usize || kind == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a virtio device needs a type and at most 127 queues",
            ));
        }
        let id = PciId {
            vendor: VIRTIO_VENDOR,
            device: 0x1000 + kind - 1,
            class: class_of(kind),
            revision: 0,
            subsystem_vendor: VIRTIO_VENDOR,
            subsystem: kind,
        };
        let mut config = PciConfig::new(id, 1);
        config.add_bar(LEGACY_BAR, BarKind::Io, legacy::bar_size(device.config_len()));
        config.add_bar(MSIX_BAR, BarKind::Mem32, MSIX_BAR_SIZE);
        config.add_bar(MODERN_BAR, BarKind::Mem64, layout::BAR_SIZE);
        // 64-bit prefetchable.
        config.bytes_mut()[reg::BAR0 + MODERN_BAR * 4] |= 0x8;

        let bar = MODERN_BAR as u8;
        let device_len = device.config_len() as u32;
        let notify_len = num_queues as u32 * layout::NOTIFY_MULTIPLIER;
        for (t, off, len, extra) in [
            (cfg_type::COMMON, layout::COMMON, layout::COMMON_LEN as u32, vec![]),
            (cfg_type::ISR, layout::ISR, layout::ISR_LEN as u32, vec![]),
            (cfg_type::DEVICE, layout::DEVICE, device_len, vec![]),
            (cfg_type::NOTIFY, layout::NOTIFY, notify_len, layout::NOTIFY_MULTIPLIER.to_le_bytes().to_vec()),
        ] {
            let body = virtio_cap(t, bar, off as u32, len, &extra);
            config.add_capability(CAP_ID_VENDOR, &body, &vec![0; body.len()]);
        }
        // VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and the data window are the driver's.
        let body = virtio_cap(cfg_type::PCI_CFG, 0, 0, 0, &[0; 4]);
        let mut writable = vec![0u8; body.len()];
        writable[PCI_CFG_BAR - 2] = 0xff;
        writable[PCI_CFG_OFFSET - 2..].fill(0xff);
        let pci_cfg_cap = config.add_capability(CAP_ID_VENDOR, &body, &writable);

        // MSI-X: message control (table size - 1, enable and function mask writable), table
        // offset/BIR, PBA offset/BIR.
        let mut body = Vec::new();
        body.extend_from_slice(&((vectors - 1) as u16).to_le_bytes());
        body.extend_from_slice(&(MSIX_BAR as u32).to_le_bytes());
        body.extend_from_slice(&(MSIX_PBA_OFFSET as u32 | MSIX_BAR as u32).to_le_bytes());
        let mut writable = vec![0u8; body.len()];
        writable[1] = ((MSIX_ENABLE | MSIX_FUNCTION_MASK) >> 8) as u8;
        let msix_cap = config.add_capability(CAP_ID_MSIX, &body, &writable);

        let events = (0..num_queues).map(|_| EventFd::new(EFD_NONBLOCK)).collect::<io::Result<Vec<_>>>()?;
        let interrupt = Arc::new(VirtioInterrupt::new(intx, msi, num_queues, vectors));
        Ok(Self {
            config,
            transport: Transport::new(device, memory, interrupt, events),
            msix_cap,
            pci_cfg_cap,
        })
    }

    /// The queue notification addresses and their eventfds. An accelerator that binds them
    /// (KVM ioeventfds) must follow the BARs' current addresses; writes that still reach
    /// [`PciDevice::write_bar`] signal the same eventfds, so binding is an optimisation only.
    pub fn ioevents(&self) -> io::Result<Vec<IoEvent>> {
        let mut v = Vec::new();
        for (queue, ev) in self.transport.events.iter().enumerate() {
            v.push(IoEvent {
                bar: LEGACY_BAR,
                offset: legacy::QUEUE_NOTIFY,
                len: 2,
                datamatch: Some(queue as u64),
                event: ev.try_clone()?,
                queue,
            });
            v.push(IoEvent {
                bar: MODERN_BAR,
                offset: layout::NOTIFY + queue as u64 * u64::from(layout::NOTIFY_MULTIPLIER),
                len: 0,
                datamatch: None,
                event: ev.try_clone()?,
                queue,
            });
        }
        Ok(v)
    }

    /// The interrupt state (for tests and for devices that raise configuration changes).
    pub fn interrupt(&self) -> &Arc<VirtioInterrupt> {
        &self.transport.interrupt
    }

    fn overlaps(offset: usize, len: usize, start: usize, field_len: usize) -> bool {
        offset < start + field_len && start < offset + len
    }

    /// The BAR access the PCI_CFG window describes, if it is a valid one.
    fn pci_cfg_target(&self) -> Option<(usize, u64, usize)> {
        let cap = self.pci_cfg_cap;
        let bar = (self.config.u32(cap + PCI_CFG_BAR) & 0xff) as usize;
        let offset = u64::from(self.config.u32(cap + PCI_CFG_OFFSET));
        let len = self.config.u32(cap + PCI_CFG_LENGTH) as usize;
        let bar_size = match bar {
            LEGACY_BAR => legacy::bar_size(self.transport.device.config_len()),
            MSIX_BAR => MSIX_BAR_SIZE,
            MODERN_BAR => layout::BAR_SIZE,
            _ => return None,
        };
        let fits = offset.checked_add(len as u64).is_some_and(|e| e <= bar_size);
        (matches!(len, 1 | 2 | 4) && offset & (len as u64 - 1) == 0 && fits).then_some((bar, offset, len))
    }

    fn sync_msix_control(&self) {
        let control = self.config.u16(self.msix_cap + 2);
        self.transport
            .interrupt
            .set_msix_control(control & MSIX_ENABLE != 0, control & MSIX_FUNCTION_MASK != 0);
    }
}

impl PciDevice for VirtioPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        let window = self.pci_cfg_cap + PCI_CFG_DATA;
        if Self::overlaps(offset, data.len(), window, 4) {
            if let Some((bar, bar_offset, len)) = self.pci_cfg_target() {
                let mut buf = [0u8; 4];
                self.read_bar(bar, bar_offset, &mut buf[..len]);
                self.config.bytes_mut()[window..window + 4].copy_from_slice(&buf);
            }
        }
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        let len = data.len();
        if Self::overlaps(offset, len, reg::COMMAND, 2) {
            let disabled = self.config.command() & command::INTX_DISABLE != 0;
            self.transport.interrupt.set_intx_disabled(disabled);
        }
        if Self::overlaps(offset, len, self.msix_cap + 2, 2) {
            self.sync_msix_control();
        }
        let window = self.pci_cfg_cap + PCI_CFG_DATA;
        if Self::overlaps(offset, len, window, 4) {
            if let Some((bar, bar_offset, len)) = self.pci_cfg_target() {
                let mut buf = [0u8; 4];
                buf.copy_from_slice(&self.config.u32(window).to_le_bytes());
                self.write_bar(bar, bar_offset, &buf[..len]);
            }
        }
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match bar {
            LEGACY_BAR => self.transport.legacy_read(offset, data),
            MSIX_BAR if offset < MSIX_PBA_OFFSET => self.transport.interrupt.read_msix_table(offset, data),
            MSIX_BAR => self.transport.interrupt.read_msix_pba(offset - MSIX_PBA_OFFSET, data),
            MODERN_BAR => self.transport.modern_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        match bar {
            LEGACY_BAR => self.transport.legacy_write(offset, data),
            MSIX_BAR if offset < MSIX_PBA_OFFSET => self.transport.interrupt.write_msix_table(offset, data),
            MODERN_BAR => self.transport.modern_write(offset, data),
            _ => {}
        }
    }

    fn ioevents(&self) -> Vec<BarIoEvent> {
        match VirtioPci::ioevents(self) {
            Ok(events) => events
                .into_iter()
                .map(|e| BarIoEvent {
                    bar: e.bar,
                    offset: e.offset,
                    len: e.len,
                    datamatch: e.datamatch,
                    event: e.event,
                })
                .collect(),
            Err(e) => {
                log::warn!("virtio doorbells stay unbound (cannot clone their eventfds: {e})");
                Vec::new()
            }
        }
    }
}

impl Drop for VirtioPci {
    fn drop(&mut self) {
        // Stop the worker before guest memory and the disk go away.
        self.transport.reset();
    }
}
