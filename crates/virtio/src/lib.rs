//! virtio devices for chr-vmm: a transitional virtio-pci transport and the devices behind it.
//!
//! A device implements [`VirtioDevice`]: it says what it is (type, features, queue sizes, its
//! configuration space) and, once the driver has set it up, receives its queues in
//! [`VirtioDevice::activate`] and runs them on a worker thread of its own. The transport
//! ([`pci::VirtioPci`]) speaks both the legacy (virtio 0.9.5) I/O BAR that RouterOS v6's Linux 3.x
//! and SeaBIOS drive, and the virtio 1.x capabilities in a memory BAR.
//!
//! Queue notifications never run device code on the vCPU thread: a notify write only signals
//! the queue's [`EventFd`](vmm_sys_util::eventfd::EventFd), which the KVM accelerator can also
//! bind as an ioeventfd ([`pci::VirtioPci::ioevents`]) so that the write does not exit at all.

pub mod block;
mod interrupt;
pub mod net;
pub mod pci;
mod worker;

pub use interrupt::VirtioInterrupt;
pub use worker::Worker;

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use machine::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

/// virtio device types (virtio 1.x section 5).
pub mod device_type {
    /// A network card.
    pub const NET: u16 = 1;
    /// A block device.
    pub const BLOCK: u16 = 2;
}

/// Feature bits that belong to the transport rather than to a device type.
pub mod features {
    /// The driver may use indirect descriptor tables.
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// The used_event / avail_event fields suppress notifications.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// The device follows virtio 1.0 or later (a modern driver must accept it).
    pub const VERSION_1: u64 = 1 << 32;
}

/// Device status bits (virtio 1.x section 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is set up and ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const NEEDS_RESET: u8 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// One queue handed to a device when the driver starts it.
pub struct ActiveQueue {
    /// The queue's index in the device (0 = first queue).
    pub index: usize,
    /// The queue, with its addresses, size and event-index setting already applied.
    pub queue: Queue,
    /// Signalled (by the transport or by KVM) whenever the driver notifies this queue.
    pub event: EventFd,
}

/// Why a device refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver did not set up a queue the device cannot work without.
    #[error("the guest driver did not set up queue {0}, which the device needs")]
    MissingQueue(usize),
    /// The worker thread could not be started.
    #[error("cannot start the device's worker thread: {0}")]
    Worker(#[from] std::io::Error),
}

/// What the guest starts a device with.
pub struct Activation {
    /// Guest memory, for the queues and the buffers they point to.
    pub memory: GuestMemory,
    /// Raises the device's interrupts (INTx or MSI-X, whichever the guest enabled).
    pub interrupt: Arc<VirtioInterrupt>,
    /// The queues the driver set up, in index order.
    pub queues: Vec<ActiveQueue>,
    /// The features the driver accepted.
    pub acked_features: u64,
}

/// A virtio device as its transport sees it.
pub trait VirtioDevice: Send {
    /// The virtio device type ([`device_type`]).
    fn device_type(&self) -> u16;
    /// The device-specific feature bits it offers (the transport adds its own ring features and
    /// [`features::VERSION_1`]).
    fn features(&self) -> u64;
    /// The maximum size of each queue (powers of two); the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The size in bytes of the device-specific configuration space.
    fn config_len(&self) -> usize;
    /// Reads the device configuration space; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// A driver write to the device configuration space (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts the device: from now on it owns the queues and serves them on its own thread.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Stops the device's worker and forgets its queues (the driver wrote status 0). Returns
    /// once no thread of the device touches guest memory any more.
    fn reset(&mut self);
    /// How many queues a legacy driver sets up before its first notification. Linux before 3.13
    /// submits requests before it sets DRIVER_OK, so a legacy device starts as soon as these
    /// queues have an address, which keeps KVM-bound ioeventfds working for such guests.
    fn legacy_queues_before_kick(&self, _acked_features: u64) -> usize {
        self.queue_max_sizes().len()
    }
}

/// Whether the driver wants an interrupt for the buffers just put in `queue`'s used ring.
///
/// With EVENT_IDX this is the queue's `used_event` test; without it, the avail ring's
/// NO_INTERRUPT flag (which `virtio-queue` does not look at), so that SeaBIOS, which polls,
/// and Linux, while it has callbacks off, get no interrupts they did not ask for.
pub fn driver_wants_interrupt(queue: &mut Queue, memory: &GuestMemory) -> bool {
    const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
    if queue.event_idx_enabled() {
        return queue.needs_notification(memory).unwrap_or(true);
    }
    // Order the used-ring writes before the flag read, as the driver orders the other way.
    fence(Ordering::SeqCst);
    match memory.read_obj::<u16>(GuestAddress(queue.avail_ring())) {
        Ok(flags) => u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT == 0,
        Err(_) => true,
    }
}
