//! The virtio state both register interfaces (legacy and modern) share: features, device
//! status, queue set-up, and the moment the device starts or resets.

use std::sync::Arc;

use machine::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use crate::{features, status, Activation, ActiveQueue, VirtioDevice, VirtioInterrupt};

/// Legacy queues are laid out with this alignment (the used ring starts on a page).
pub(crate) const LEGACY_VRING_ALIGN: u64 = 4096;
/// The legacy queue address register holds a page frame number of this shift.
pub(crate) const LEGACY_PFN_SHIFT: u32 = 12;

/// One queue as the driver has configured it so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueConfig {
    pub(crate) max_size: u16,
    pub(crate) size: u16,
    pub(crate) ready: bool,
    pub(crate) desc: u64,
    pub(crate) avail: u64,
    pub(crate) used: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        Self { max_size, size: max_size, ready: false, desc: 0, avail: 0, used: 0 }
    }

    /// Lays the queue out the legacy way from a page frame number (0 turns the queue off).
    pub(crate) fn set_legacy_pfn(&mut self, pfn: u32) {
        let size = u64::from(self.max_size);
        *self = Self::new(self.max_size);
        if pfn == 0 {
            return;
        }
        self.desc = u64::from(pfn) << LEGACY_PFN_SHIFT;
        self.avail = self.desc + 16 * size;
        let avail_end = self.avail + 4 + 2 * size + 2;
        self.used = avail_end.div_ceil(LEGACY_VRING_ALIGN) * LEGACY_VRING_ALIGN;
        self.ready = true;
    }

    /// The page frame number a legacy driver reads back.
    pub(crate) fn legacy_pfn(&self) -> u32 {
        if self.ready {
            // A PFN came from a u32, so the shifted-back value fits.
            (self.desc >> LEGACY_PFN_SHIFT) as u32
        } else {
            0
        }
    }

    fn build(&self, memory: &GuestMemory, event_idx: bool) -> Result<Queue, String> {
        let mut q = Queue::new(self.max_size).map_err(|e| e.to_string())?;
        q.try_set_size(self.size).map_err(|e| e.to_string())?;
        q.try_set_desc_table_address(GuestAddress(self.desc)).map_err(|e| e.to_string())?;
        q.try_set_avail_ring_address(GuestAddress(self.avail)).map_err(|e| e.to_string())?;
        q.try_set_used_ring_address(GuestAddress(self.used)).map_err(|e| e.to_string())?;
        q.set_event_idx(event_idx);
        q.set_ready(true);
        if !q.is_valid(memory) {
            return Err("its rings lie outside guest RAM".into());
        }
        Ok(q)
    }
}

/// The transport's view of one device.
pub(crate) struct Transport {
    pub(crate) device: Box<dyn VirtioDevice>,
    pub(crate) memory: GuestMemory,
    pub(crate) interrupt: Arc<VirtioInterrupt>,
    pub(crate) events: Vec<EventFd>,
    pub(crate) queues: Vec<QueueConfig>,
    pub(crate) queue_select: u16,
    pub(crate) device_feature_select: u32,
    pub(crate) driver_feature_select: u32,
    pub(crate) offered: u64,
    pub(crate) acked: u64,
    pub(crate) status: u8,
    pub(crate) active: bool,
}

impl Transport {
    pub(crate) fn new(
        device: Box<dyn VirtioDevice>,
        memory: GuestMemory,
        interrupt: Arc<VirtioInterrupt>,
        events: Vec<EventFd>,
    ) -> Self {
        let queues = device.queue_max_sizes().iter().map(|&m| QueueConfig::new(m)).collect();
        let offered =
            device.features() | features::VERSION_1 | features::RING_EVENT_IDX | features::RING_INDIRECT_DESC;
        Self {
            device,
            memory,
            interrupt,
            events,
            queues,
            queue_select: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            offered,
            acked: 0,
            status: 0,
            active: false,
        }
    }

    /// Whether the driver speaks the legacy interface (it never accepted VERSION_1).
    pub(crate) fn is_legacy(&self) -> bool {
        self.acked & features::VERSION_1 == 0
    }

    pub(crate) fn selected(&self) -> Option<&QueueConfig> {
        self.queues.get(usize::from(self.queue_select))
    }

    pub(crate) fn selected_mut(&mut self) -> Option<&mut QueueConfig> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    /// Accepts driver features (32 bits at `word`), keeping only offered ones.
    pub(crate) fn set_driver_features(&mut self, word: u32, value: u32) {
        if self.status & status::FEATURES_OK != 0 || word > 1 {
            return;
        }
        let shift = 32 * word;
        let mask = 0xffff_ffffu64 << shift;
        self.acked = (self.acked & !mask) | ((u64::from(value) << shift) & self.offered);
    }

    /// A write of the device status register.
    pub(crate) fn set_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        self.status = value;
        if value & status::DRIVER_OK != 0 {
            self.activate();
        }
    }

    /// The legacy driver gave queue `index` an address: start the device once the queues a
    /// legacy driver sets up before its first request are all there.
    pub(crate) fn legacy_queue_set(&mut self) {
        if self.active || self.status & status::DRIVER == 0 {
            return;
        }
        let wanted = self.device.legacy_queues_before_kick(self.acked);
        let ready = self.queues.iter().take_while(|q| q.ready).count();
        if ready >= wanted.min(self.queues.len()) {
            self.activate();
        }
    }

    /// The driver notified queue `index` through a register (not through a bound ioeventfd).
    pub(crate) fn notify(&mut self, index: usize) {
        if !self.active && self.is_legacy() && self.status & status::DRIVER != 0 {
            // Linux before 3.13 sends requests before DRIVER_OK.
            self.activate();
        }
        if let Some(event) = self.events.get(index) {
            if let Err(e) = event.write(1) {
                log::error!("virtio: cannot signal queue {index}: {e}");
            }
        }
    }

    fn activate(&mut self) {
        // A device that failed to start waits for the driver's reset.
        if self.active || self.status & status::NEEDS_RESET != 0 {
            return;
        }
        let event_idx = self.acked & features::RING_EVENT_IDX != 0;
        let mut queues = Vec::new();
        for (index, cfg) in self.queues.iter().enumerate() {
            if !cfg.ready {
                continue;
            }
            let queue = match cfg.build(&self.memory, event_idx) {
                Ok(q) => q,
                Err(e) => {
                    log::warn!("virtio: the guest set up queue {index} badly ({e}); it stays off");
                    continue;
                }
            };
            let event = match self.events[index].try_clone() {
                Ok(ev) => ev,
                Err(e) => {
                    log::error!("virtio: cannot clone the eventfd of queue {index}: {e}");
                    continue;
                }
            };
            queues.push(ActiveQueue { index, queue, event });
        }
        let activation = Activation {
            memory: self.memory.clone(),
            interrupt: self.interrupt.clone(),
            queues,
            acked_features: self.acked,
        };
        match self.device.activate(activation) {
            Ok(()) => self.active = true,
            Err(e) => {
                log::warn!("virtio: device type {} not started: {e}", self.device.device_type());
                self.status |= status::NEEDS_RESET;
                self.interrupt.signal_config();
            }
        }
    }

    /// Stops the device's worker; the driver's set-up stays.
    pub(crate) fn stop_device(&mut self) {
        if self.active {
            self.device.reset();
            self.active = false;
        }
    }

    /// A device reset: the worker stops, the queues and features are forgotten.
    pub(crate) fn reset(&mut self) {
        self.stop_device();
        for q in &mut self.queues {
            *q = QueueConfig::new(q.max_size);
        }
        for ev in &self.events {
            // Drop notifications that were meant for the old queues.
            let _ = ev.read();
        }
        self.interrupt.reset();
        self.queue_select = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.acked = 0;
        self.status = 0;
    }
}
