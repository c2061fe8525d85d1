//! virtio-blk: one request queue served by a worker thread over any [`BlockDevice`].
//!
//! Offered features: SIZE_MAX, SEG_MAX, BLK_SIZE (512), FLUSH, and RO for read-only images.
//! The queue holds 128 entries because SeaBIOS's legacy driver refuses larger queues.

mod request;

#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;
use std::sync::Arc;

use disk::{BlockDevice, SECTOR_SIZE};
use machine::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};

use crate::{device_type, ActivateError, Activation, VirtioDevice, VirtioInterrupt, Worker};
use request::{RequestContext, BOUNCE_LEN, ID_LEN};

/// virtio-blk feature bits.
pub mod features {
    /// `size_max` in the configuration bounds one segment.
    pub const SIZE_MAX: u64 = 1 << 1;
    /// `seg_max` in the configuration bounds the segments of one request.
    pub const SEG_MAX: u64 = 1 << 2;
    /// The device refuses writes.
    pub const RO: u64 = 1 << 5;
    /// `blk_size` in the configuration is the logical block size.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// The device has a write cache and understands FLUSH.
    pub const FLUSH: u64 = 1 << 9;
}

/// Entries in the request queue.
pub const QUEUE_SIZE: u16 = 128;
/// The largest single data segment a driver may use.
pub const SIZE_MAX: u32 = 1 << 20;
/// The configuration space: capacity, size_max, seg_max, geometry, blk_size, topology,
/// writeback, num_queues.
const CONFIG_LEN: usize = 0x24;

/// A virtio block device.
pub struct Block {
    disk: Arc<dyn BlockDevice>,
    serial: [u8; ID_LEN],
    config: [u8; CONFIG_LEN],
    queue_sizes: [u16; 1],
    worker: Option<Worker>,
}

impl Block {
    /// A block device on `disk`; `serial` (at most 20 bytes are kept) answers GET_ID.
    pub fn new(disk: Arc<dyn BlockDevice>, serial: &str) -> Self {
        let mut id = [0u8; ID_LEN];
        let bytes = serial.as_bytes();
        let n = bytes.len().min(ID_LEN);
        id[..n].copy_from_slice(&bytes[..n]);

        let mut config = [0u8; CONFIG_LEN];
        let capacity = disk.size() / SECTOR_SIZE;
        config[0x00..0x08].copy_from_slice(&capacity.to_le_bytes());
        config[0x08..0x0c].copy_from_slice(&SIZE_MAX.to_le_bytes());
        let seg_max = u32::from(QUEUE_SIZE - 2);
        config[0x0c..0x10].copy_from_slice(&seg_max.to_le_bytes());
        config[0x14..0x18].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        config[0x22..0x24].copy_from_slice(&1u16.to_le_bytes());
        Self { disk, serial: id, config, queue_sizes: [QUEUE_SIZE], worker: None }
    }

    /// The serial number chr-vmm gives an image: its file name, cut to the 20 bytes GET_ID has.
    pub fn serial_for(path: &Path) -> String {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut end = name.len().min(ID_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name[..end].to_string()
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u16 {
        device_type::BLOCK
    }

    fn features(&self) -> u64 {
        let ro = if self.disk.read_only() { features::RO } else { 0 };
        features::SIZE_MAX | features::SEG_MAX | features::BLK_SIZE | features::FLUSH | ro
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| self.config.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.reset();
        let Activation { memory, interrupt, queues, .. } = activation;
        let Some(active) = queues.into_iter().find(|q| q.index == 0) else {
            return Err(ActivateError::MissingQueue(0));
        };
        let mut server = QueueServer {
            memory,
            queue: active.queue,
            interrupt,
            disk: self.disk.clone(),
            serial: self.serial,
            bounce: vec![0; BOUNCE_LEN],
        };
        self.worker = Some(Worker::spawn("virtio-blk", vec![active.event], move |_| server.serve())?);
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.stop();
        }
    }
}

/// The worker's side: the queue and everything a request needs.
struct QueueServer {
    memory: GuestMemory,
    queue: Queue,
    interrupt: Arc<VirtioInterrupt>,
    disk: Arc<dyn BlockDevice>,
    serial: [u8; ID_LEN],
    bounce: Vec<u8>,
}

impl QueueServer {
    /// Serves every request the driver has made available, then re-enables notifications and
    /// looks again so that a request added meanwhile is not missed.
    fn serve(&mut self) {
        let mem = &self.memory;
        loop {
            if let Err(e) = self.queue.disable_notification(mem) {
                log::warn!("virtio-blk: the queue's rings are unusable: {e}");
                return;
            }
            let mut served = 0usize;
            while let Some(chain) = self.queue.pop_descriptor_chain(mem) {
                served += 1;
                let head = chain.head_index();
                let mut ctx = RequestContext {
                    memory: mem,
                    disk: self.disk.as_ref(),
                    serial: &self.serial,
                    bounce: &mut self.bounce,
                };
                let used = request::process(&mut ctx, chain);
                if let Err(e) = self.queue.add_used(mem, head, used) {
                    log::warn!("virtio-blk: cannot return request {head}: {e}");
                }
            }
            if served > 0 && crate::driver_wants_interrupt(&mut self.queue, mem) {
                self.interrupt.signal_queue(0);
            }
            // Loop only while something new arrived and the last pass made progress, so that a
            // corrupt available index cannot keep the thread spinning.
            match self.queue.enable_notification(mem) {
                Ok(true) if served > 0 => continue,
                _ => return,
            }
        }
    }
}
