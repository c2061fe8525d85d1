//! The virtio 1.x register structures in the memory BAR: common configuration, ISR, device
//! configuration and the notification area, each at a fixed offset.

use super::state::Transport;

/// Where each structure sits in the memory BAR, and the BAR's size.
pub(crate) mod layout {
    pub(crate) const COMMON: u64 = 0x0000;
    pub(crate) const COMMON_LEN: u64 = 0x38;
    pub(crate) const ISR: u64 = 0x1000;
    pub(crate) const ISR_LEN: u64 = 1;
    pub(crate) const DEVICE: u64 = 0x2000;
    pub(crate) const NOTIFY: u64 = 0x3000;
    /// Each queue notifies at its own 4-byte slot (queue_notify_off = queue index), so that
    /// an ioeventfd needs no data match and queues never share an address.
    pub(crate) const NOTIFY_MULTIPLIER: u32 = 4;
    pub(crate) const BAR_SIZE: u64 = 0x4000;
}

/// Offsets in the common configuration structure.
mod common {
    pub(super) const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub(super) const DEVICE_FEATURE: u64 = 0x04;
    pub(super) const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub(super) const DRIVER_FEATURE: u64 = 0x0c;
    pub(super) const MSIX_CONFIG: u64 = 0x10;
    pub(super) const NUM_QUEUES: u64 = 0x12;
    pub(super) const DEVICE_STATUS: u64 = 0x14;
    pub(super) const CONFIG_GENERATION: u64 = 0x15;
    pub(super) const QUEUE_SELECT: u64 = 0x16;
    pub(super) const QUEUE_SIZE: u64 = 0x18;
    pub(super) const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub(super) const QUEUE_ENABLE: u64 = 0x1c;
    pub(super) const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub(super) const QUEUE_DESC_LO: u64 = 0x20;
    pub(super) const QUEUE_DESC_HI: u64 = 0x24;
    pub(super) const QUEUE_AVAIL_LO: u64 = 0x28;
    pub(super) const QUEUE_AVAIL_HI: u64 = 0x2c;
    pub(super) const QUEUE_USED_LO: u64 = 0x30;
    pub(super) const QUEUE_USED_HI: u64 = 0x34;
}

fn le(data: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = data.len().min(4);
    b[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(b)
}

fn set_half(full: &mut u64, high: bool, value: u32) {
    *full = if high {
        (*full & 0xffff_ffff) | (u64::from(value) << 32)
    } else {
        (*full & !0xffff_ffff) | u64::from(value)
    };
}

impl Transport {
    fn common_image(&self) -> [u8; layout::COMMON_LEN as usize] {
        use common::*;
        let mut img = [0u8; layout::COMMON_LEN as usize];
        let mut put = |off: u64, bytes: &[u8]| {
            img[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
        };
        let feature_word = match self.device_feature_select {
            0 => self.offered as u32,
            1 => (self.offered >> 32) as u32,
            _ => 0,
        };
        let driver_word = match self.driver_feature_select {
            0 => self.acked as u32,
            1 => (self.acked >> 32) as u32,
            _ => 0,
        };
        put(DEVICE_FEATURE_SELECT, &self.device_feature_select.to_le_bytes());
        put(DEVICE_FEATURE, &feature_word.to_le_bytes());
        put(DRIVER_FEATURE_SELECT, &self.driver_feature_select.to_le_bytes());
        put(DRIVER_FEATURE, &driver_word.to_le_bytes());
        put(MSIX_CONFIG, &self.interrupt.config_vector().to_le_bytes());
        put(NUM_QUEUES, &(self.queues.len() as u16).to_le_bytes());
        put(DEVICE_STATUS, &[self.status]);
        put(CONFIG_GENERATION, &[0]);
        put(QUEUE_SELECT, &self.queue_select.to_le_bytes());
        if let Some(q) = self.selected() {
            let index = self.queue_select;
            put(QUEUE_SIZE, &q.size.to_le_bytes());
            let vector = self.interrupt.queue_vector(usize::from(index));
            put(QUEUE_MSIX_VECTOR, &vector.to_le_bytes());
            put(QUEUE_ENABLE, &u16::from(q.ready).to_le_bytes());
            put(QUEUE_NOTIFY_OFF, &index.to_le_bytes());
            put(QUEUE_DESC_LO, &q.desc.to_le_bytes());
            put(QUEUE_AVAIL_LO, &q.avail.to_le_bytes());
            put(QUEUE_USED_LO, &q.used.to_le_bytes());
        }
        img
    }

    fn common_read(&self, offset: u64, data: &mut [u8]) {
        let img = self.common_image();
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| img.get(usize::try_from(o).ok()?))
                .copied()
                .unwrap_or(0);
        }
    }

    fn common_write(&mut self, offset: u64, data: &[u8]) {
        use common::*;
        let value = le(data);
        let queue_index = usize::from(self.queue_select);
        // Queue set-up is frozen while the queue runs.
        let queue_open = !self.active && self.selected().is_some_and(|q| !q.ready);
        match (offset, data.len()) {
            (DEVICE_FEATURE_SELECT, 4) => self.device_feature_select = value,
            (DRIVER_FEATURE_SELECT, 4) => self.driver_feature_select = value,
            (DRIVER_FEATURE, 4) => self.set_driver_features(self.driver_feature_select, value),
            (MSIX_CONFIG, 2) => self.interrupt.set_config_vector(value as u16),
            (DEVICE_STATUS, 1) => self.set_status(value as u8),
            (QUEUE_SELECT, 2) => self.queue_select = value as u16,
            (QUEUE_SIZE, 2) if queue_open => {
                let size = value as u16;
                if let Some(q) = self.selected_mut() {
                    if size.is_power_of_two() && size <= q.max_size {
                        q.size = size;
                    }
                }
            }
            (QUEUE_MSIX_VECTOR, 2) => self.interrupt.set_queue_vector(queue_index, value as u16),
            (QUEUE_ENABLE, 2) if queue_open && value == 1 => {
                if let Some(q) = self.selected_mut() {
                    q.ready = true;
                }
            }
            (QUEUE_DESC_LO | QUEUE_DESC_HI, 4) if queue_open => {
                if let Some(q) = self.selected_mut() {
                    set_half(&mut q.desc, offset == QUEUE_DESC_HI, value);
                }
            }
            (QUEUE_AVAIL_LO | QUEUE_AVAIL_HI, 4) if queue_open => {
                if let Some(q) = self.selected_mut() {
                    set_half(&mut q.avail, offset == QUEUE_AVAIL_HI, value);
                }
            }
            (QUEUE_USED_LO | QUEUE_USED_HI, 4) if queue_open => {
                if let Some(q) = self.selected_mut() {
                    set_half(&mut q.used, offset == QUEUE_USED_HI, value);
                }
            }
            _ => log::debug!("virtio common cfg: ignored {}-byte write at {offset:#x}", data.len()),
        }
    }

    pub(crate) fn modern_read(&mut self, offset: u64, data: &mut [u8]) {
        let device_len = self.device.config_len() as u64;
        if offset < layout::COMMON + layout::COMMON_LEN {
            self.common_read(offset - layout::COMMON, data);
        } else if (layout::ISR..layout::ISR + layout::ISR_LEN).contains(&offset) {
            data.fill(0);
            if let Some(b) = data.first_mut() {
                *b = self.interrupt.read_isr();
            }
        } else if (layout::DEVICE..layout::DEVICE + device_len).contains(&offset) {
            self.device.read_config(offset - layout::DEVICE, data);
        } else {
            data.fill(0);
        }
    }

    pub(crate) fn modern_write(&mut self, offset: u64, data: &[u8]) {
        let device_len = self.device.config_len() as u64;
        let notify_len = self.queues.len() as u64 * u64::from(layout::NOTIFY_MULTIPLIER);
        if offset < layout::COMMON + layout::COMMON_LEN {
            self.common_write(offset - layout::COMMON, data);
        } else if (layout::DEVICE..layout::DEVICE + device_len).contains(&offset) {
            self.device.write_config(offset - layout::DEVICE, data);
        } else if (layout::NOTIFY..layout::NOTIFY + notify_len).contains(&offset) {
            let index = (offset - layout::NOTIFY) / u64::from(layout::NOTIFY_MULTIPLIER);
            self.notify(index as usize);
        }
    }
}
