//! The legacy (virtio 0.9.5) register block in the I/O BAR, as RouterOS v6's Linux 3.x and
//! SeaBIOS drive it:
//!
//! ```text
//! 0x00 u32 host features (bits 0-31)   0x0e u16 queue select
//! 0x04 u32 guest features              0x10 u16 queue notify
//! 0x08 u32 queue PFN                   0x12 u8  device status
//! 0x0c u16 queue size (read-only)      0x13 u8  ISR (reading clears it)
//! with MSI-X enabled: 0x14 u16 config vector, 0x16 u16 queue vector
//! then the device configuration (at 0x14, or 0x18 with MSI-X enabled)
//! ```

use super::state::Transport;

pub(crate) const HOST_FEATURES: u64 = 0x00;
pub(crate) const GUEST_FEATURES: u64 = 0x04;
pub(crate) const QUEUE_PFN: u64 = 0x08;
pub(crate) const QUEUE_NUM: u64 = 0x0c;
pub(crate) const QUEUE_SEL: u64 = 0x0e;
pub(crate) const QUEUE_NOTIFY: u64 = 0x10;
pub(crate) const STATUS: u64 = 0x12;
pub(crate) const ISR: u64 = 0x13;
pub(crate) const CONFIG_VECTOR: u64 = 0x14;
pub(crate) const QUEUE_VECTOR: u64 = 0x16;
/// Where the device configuration starts without MSI-X.
pub(crate) const CONFIG: u64 = 0x14;
/// Where it starts while MSI-X is enabled.
pub(crate) const CONFIG_MSIX: u64 = 0x18;

/// The I/O BAR's size for a device configuration of `config_len` bytes.
pub(crate) fn bar_size(config_len: usize) -> u64 {
    (CONFIG_MSIX + config_len as u64).next_power_of_two().max(0x40)
}

fn le(data: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = data.len().min(4);
    b[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(b)
}

impl Transport {
    fn legacy_config_start(&self) -> u64 {
        if self.interrupt.msix_enabled() {
            CONFIG_MSIX
        } else {
            CONFIG
        }
    }

    pub(crate) fn legacy_read(&mut self, offset: u64, data: &mut [u8]) {
        let config_start = self.legacy_config_start();
        let len = data.len() as u64;
        if offset >= config_start {
            self.device.read_config(offset - config_start, data);
            return;
        }
        let mut header = [0u8; CONFIG_MSIX as usize];
        // The legacy interface only ever shows the low 32 feature bits (no VERSION_1).
        let mut put = |off: u64, bytes: &[u8]| {
            header[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
        };
        put(HOST_FEATURES, &(self.offered as u32).to_le_bytes());
        put(GUEST_FEATURES, &(self.acked as u32).to_le_bytes());
        let (pfn, num) = self.selected().map_or((0, 0), |q| (q.legacy_pfn(), q.max_size));
        put(QUEUE_PFN, &pfn.to_le_bytes());
        put(QUEUE_NUM, &num.to_le_bytes());
        put(QUEUE_SEL, &self.queue_select.to_le_bytes());
        put(STATUS, &[self.status]);
        if offset <= ISR && ISR < offset + len {
            put(ISR, &[self.interrupt.read_isr()]);
        }
        if config_start == CONFIG_MSIX {
            let qv = self.interrupt.queue_vector(usize::from(self.queue_select));
            put(CONFIG_VECTOR, &self.interrupt.config_vector().to_le_bytes());
            put(QUEUE_VECTOR, &qv.to_le_bytes());
        }
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *b = if at < config_start {
                header[at as usize]
            } else {
                let mut one = [0u8];
                self.device.read_config(at - config_start, &mut one);
                one[0]
            };
        }
    }

    pub(crate) fn legacy_write(&mut self, offset: u64, data: &[u8]) {
        let config_start = self.legacy_config_start();
        if offset >= config_start {
            self.device.write_config(offset - config_start, data);
            return;
        }
        let value = le(data);
        match (offset, data.len()) {
            (GUEST_FEATURES, 4) => self.set_driver_features(0, value),
            (QUEUE_PFN, 4) if self.selected().is_some() => {
                if self.active {
                    // The driver lays its queues out again (Linux 3.x does when its first
                    // choice of interrupt vectors fails): restart on the new layout.
                    self.stop_device();
                }
                if let Some(q) = self.selected_mut() {
                    q.set_legacy_pfn(value);
                }
                if value != 0 {
                    self.legacy_queue_set();
                }
            }
            (QUEUE_SEL, 2) => self.queue_select = value as u16,
            (QUEUE_NOTIFY, 2) => self.notify(value as usize),
            (STATUS, 1) => self.set_status(value as u8),
            (CONFIG_VECTOR, 2) if config_start == CONFIG_MSIX => {
                self.interrupt.set_config_vector(value as u16)
            }
            (QUEUE_VECTOR, 2) if config_start == CONFIG_MSIX => {
                let q = usize::from(self.queue_select);
                self.interrupt.set_queue_vector(q, value as u16);
            }
            _ => log::debug!("virtio legacy: ignored {}-byte write at {offset:#x}", data.len()),
        }
    }
}
