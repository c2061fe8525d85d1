//! virtio-net: queue 0 receives, queue 1 transmits, over any [`::net::Backend`].
//!
//! Offered features: MAC, STATUS (the link is always up), MTU (68..9000) and MRG_RXBUF, so that
//! jumbo frames fit in Linux's ordinary receive buffers. When the backend carries a virtio-net
//! header (the tap), also checksum and TCP segmentation offloads both ways (CSUM, HOST_TSO4/6,
//! HOST_ECN; GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN): headers then pass between the guest and the
//! backend, each checked against what was negotiated ([`header`]), and the backend is told which
//! offloads the guest accepts. Otherwise frames cross the backend complete, and a header asking
//! for an offload is refused.
//!
//! The header before each frame is 12 bytes when the driver accepted VERSION_1 or MRG_RXBUF and
//! 10 bytes otherwise (a legacy driver without mergeable buffers); the backend's is always 12.

mod datapath;
mod header;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::{device_type, ActivateError, Activation, VirtioDevice};
use datapath::DataPath;

/// virtio-net feature bits.
pub mod features {
    /// The device finishes partial checksums of the driver's frames (NEEDS_CSUM).
    pub const CSUM: u64 = 1 << 0;
    /// The driver accepts frames with partial checksums.
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// `mtu` in the configuration is the largest MTU the driver should use.
    pub const MTU: u64 = 1 << 3;
    /// `mac` in the configuration is the card's address.
    pub const MAC: u64 = 1 << 5;
    /// The driver accepts TCP/IPv4 frames still to be segmented.
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// The driver accepts TCP/IPv6 frames still to be segmented.
    pub const GUEST_TSO6: u64 = 1 << 8;
    /// The driver accepts TCP frames still to be segmented that use ECN.
    pub const GUEST_ECN: u64 = 1 << 9;
    /// The device segments the driver's TCP/IPv4 frames.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// The device segments the driver's TCP/IPv6 frames.
    pub const HOST_TSO6: u64 = 1 << 12;
    /// The device segments the driver's TCP frames that use ECN.
    pub const HOST_ECN: u64 = 1 << 13;
    /// The driver can merge receive buffers (and the header carries `num_buffers`).
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// `status` in the configuration reports the link.
    pub const STATUS: u64 = 1 << 16;
}

/// Entries in each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The receive queue.
pub const RX_QUEUE: usize = 0;
/// The transmit queue.
pub const TX_QUEUE: usize = 1;
/// Configuration: mac[6], status u16, max_virtqueue_pairs u16, mtu u16.
const CONFIG_LEN: usize = 12;
const LINK_UP: u16 = 1;

/// Counters of one card; the worker updates them, anyone may read them.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Frames sent from the guest to the backend.
    pub tx_frames: AtomicU64,
    /// Their bytes.
    pub tx_bytes: AtomicU64,
    /// Guest frames dropped as malformed: truncated chains, short frames, headers asking for
    /// offloads that were not negotiated or that do not fit the frame.
    pub tx_malformed: AtomicU64,
    /// Guest frames dropped as longer than the MTU allows.
    pub tx_oversized: AtomicU64,
    /// Guest frames the backend refused or failed to send.
    pub tx_backend_errors: AtomicU64,
    /// Frames delivered to the guest.
    pub rx_frames: AtomicU64,
    /// Their bytes.
    pub rx_bytes: AtomicU64,
    /// Frames for the guest dropped: too long for the MTU or for the guest's buffers, or behind a
    /// header asking for an offload the guest did not accept.
    pub rx_dropped: AtomicU64,
    /// Receive buffers the guest offered that could not be used (unwritable, outside RAM).
    pub rx_bad_buffers: AtomicU64,
    /// Receive errors of the backend.
    pub rx_backend_errors: AtomicU64,
}

impl NetStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A virtio network card.
pub struct Net {
    backend: Option<Box<dyn ::net::Backend>>,
    /// The backend carries a virtio-net header, so offloads can be offered.
    vnet_hdr: bool,
    config: [u8; CONFIG_LEN],
    mtu: u16,
    queue_sizes: [u16; 2],
    stats: Arc<NetStats>,
    worker: Option<(EventFd, JoinHandle<Box<dyn ::net::Backend>>)>,
}

impl Net {
    /// A card with address `mac` and MTU `mtu` (clamped to 68..=9000) on `backend`.
    pub fn new(backend: Box<dyn ::net::Backend>, mac: [u8; 6], mtu: u16) -> Self {
        let mtu = mtu.clamp(::net::MIN_MTU, ::net::MAX_MTU);
        let mut config = [0u8; CONFIG_LEN];
        config[0..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        config[10..12].copy_from_slice(&mtu.to_le_bytes());
        Self {
            vnet_hdr: backend.vnet_hdr(),
            backend: Some(backend),
            config,
            mtu,
            queue_sizes: [QUEUE_SIZE; 2],
            stats: Arc::new(NetStats::default()),
            worker: None,
        }
    }

    /// The card's counters.
    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    /// The longest frame the card passes either way: the MTU, the Ethernet header and two VLAN
    /// tags (QinQ labs).
    pub fn max_frame(&self) -> usize {
        usize::from(self.mtu) + 14 + 8
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u16 {
        device_type::NET
    }

    fn features(&self) -> u64 {
        let base = features::MAC | features::STATUS | features::MTU | features::MRG_RXBUF;
        if self.vnet_hdr {
            base | header::OFFLOAD_FEATURES
        } else {
            base
        }
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
        let Activation { memory, interrupt, queues, acked_features } = activation;
        let mut rx = None;
        let mut tx = None;
        for q in queues {
            match q.index {
                RX_QUEUE => rx = Some(q),
                TX_QUEUE => tx = Some(q),
                _ => {}
            }
        }
        let rx = rx.ok_or(ActivateError::MissingQueue(RX_QUEUE))?;
        let tx = tx.ok_or(ActivateError::MissingQueue(TX_QUEUE))?;
        let mut backend = match self.backend.take() {
            Some(b) => b,
            None => Box::new(::net::NullBackend::new()?),
        };
        if backend.vnet_hdr() {
            let offloads = header::guest_offloads(header::effective_offloads(acked_features));
            if let Err(e) = backend.set_guest_offloads(offloads) {
                // The backend then finishes frames itself, which the guest takes either way.
                log::warn!(
                    "virtio-net: {} refused the guest's offloads {offloads:?}: {e}",
                    backend.describe()
                );
            }
        }
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let mut path = DataPath::new(
            memory,
            interrupt,
            rx,
            tx,
            backend,
            acked_features,
            self.max_frame(),
            self.stats.clone(),
        );
        let thread_stop = stop.try_clone()?;
        let thread = std::thread::Builder::new().name("virtio-net".into()).spawn(move || {
            path.run(&thread_stop);
            path.into_backend()
        })?;
        self.worker = Some((stop, thread));
        Ok(())
    }

    fn reset(&mut self) {
        if let Some((stop, thread)) = self.worker.take() {
            if let Err(e) = stop.write(1) {
                log::error!("virtio-net: cannot signal the worker to stop: {e}");
            }
            match thread.join() {
                Ok(mut backend) => {
                    // The next driver may accept fewer offloads: none until it says.
                    if backend.vnet_hdr() {
                        if let Err(e) = backend.set_guest_offloads(::net::GuestOffloads::default()) {
                            log::warn!(
                                "virtio-net: {} cannot turn its offloads off: {e}",
                                backend.describe()
                            );
                        }
                    }
                    self.backend = Some(backend);
                }
                Err(_) => log::error!("virtio-net: the worker panicked; the card has no backend now"),
            }
        }
    }

    fn legacy_queues_before_kick(&self, _acked_features: u64) -> usize {
        2
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.reset();
    }
}
