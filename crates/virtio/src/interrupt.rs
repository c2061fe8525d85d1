//! How a virtio-pci function interrupts the guest: the ISR byte behind a level-triggered INTx
//! line, or MSI-X vectors (one for configuration changes, one per queue) with the function mask,
//! per-vector masks and pending bits of the PCI spec.
//!
//! Shared between the vCPU side (register accesses) and the device's worker thread (queue
//! completions), so all state sits behind one mutex.

use std::sync::{Arc, Mutex, MutexGuard};

use machine::irq::{InterruptController, IrqLine};

/// The vector number that means "no interrupt" in the virtio vector registers.
pub const NO_VECTOR: u16 = 0xffff;

/// ISR bit: a queue has used buffers.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: the device configuration changed.
pub const ISR_CONFIG: u8 = 2;

/// Size of one MSI-X table entry.
pub const MSIX_ENTRY_SIZE: usize = 16;
const MSIX_CONTROL_MASKED: u32 = 1;

struct State {
    isr: u8,
    intx_level: bool,
    intx_disabled: bool,
    msix_enabled: bool,
    msix_function_masked: bool,
    table: Vec<[u8; MSIX_ENTRY_SIZE]>,
    pending: Vec<bool>,
    config_vector: u16,
    queue_vectors: Vec<u16>,
}

/// The interrupt side of one virtio-pci function.
pub struct VirtioInterrupt {
    state: Mutex<State>,
    intx: IrqLine,
    msi: Arc<dyn InterruptController>,
}

fn entry_u32(entry: &[u8; MSIX_ENTRY_SIZE], offset: usize) -> u32 {
    u32::from_le_bytes([entry[offset], entry[offset + 1], entry[offset + 2], entry[offset + 3]])
}

impl State {
    fn update_intx(&mut self, intx: &IrqLine) {
        let level = self.isr != 0 && !self.msix_enabled && !self.intx_disabled;
        if level != self.intx_level {
            self.intx_level = level;
            intx.set_level(level);
        }
    }

    fn vector_masked(&self, vector: usize) -> bool {
        self.msix_function_masked
            || self.table.get(vector).is_none_or(|e| entry_u32(e, 12) & MSIX_CONTROL_MASKED != 0)
    }

    fn deliver(&mut self, vector: u16, msi: &dyn InterruptController) {
        let v = usize::from(vector);
        if vector == NO_VECTOR || v >= self.table.len() {
            return;
        }
        if self.vector_masked(v) {
            self.pending[v] = true;
            return;
        }
        let e = &self.table[v];
        let address = u64::from(entry_u32(e, 0)) | (u64::from(entry_u32(e, 4)) << 32);
        msi.signal_msi(address, entry_u32(e, 8));
    }

    /// Delivers every pending vector that is no longer masked.
    fn flush_pending(&mut self, msi: &dyn InterruptController) {
        if !self.msix_enabled || self.msix_function_masked {
            return;
        }
        for v in 0..self.table.len() {
            if self.pending[v] && !self.vector_masked(v) {
                self.pending[v] = false;
                // `v` indexes a table of at most 2048 entries, so it fits a u16.
                self.deliver(v as u16, msi);
            }
        }
    }

    fn checked_vector(&self, vector: u16) -> u16 {
        if usize::from(vector) < self.table.len() {
            vector
        } else {
            NO_VECTOR
        }
    }
}

impl VirtioInterrupt {
    /// Interrupts for a function with `queues` queues and `vectors` MSI-X vectors, wired to
    /// `intx` and delivering MSIs through `msi`.
    pub fn new(intx: IrqLine, msi: Arc<dyn InterruptController>, queues: usize, vectors: usize) -> Self {
        let mut masked = [0u8; MSIX_ENTRY_SIZE];
        masked[12] = MSIX_CONTROL_MASKED as u8;
        Self {
            state: Mutex::new(State {
                isr: 0,
                intx_level: false,
                intx_disabled: false,
                msix_enabled: false,
                msix_function_masked: false,
                table: vec![masked; vectors],
                pending: vec![false; vectors],
                config_vector: NO_VECTOR,
                queue_vectors: vec![NO_VECTOR; queues],
            }),
            intx,
            msi,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the driver that queue `index` has used buffers.
    pub fn signal_queue(&self, index: usize) {
        let mut s = self.lock();
        if s.msix_enabled {
            let vector = s.queue_vectors.get(index).copied().unwrap_or(NO_VECTOR);
            s.deliver(vector, self.msi.as_ref());
        } else {
            s.isr |= ISR_QUEUE;
            s.update_intx(&self.intx);
        }
    }

    /// Tells the driver that the device configuration changed.
    pub fn signal_config(&self) {
        let mut s = self.lock();
        if s.msix_enabled {
            let vector = s.config_vector;
            s.deliver(vector, self.msi.as_ref());
        } else {
            s.isr |= ISR_CONFIG;
            s.update_intx(&self.intx);
        }
    }

    /// A driver read of the ISR: returns it, clears it and lowers INTx.
    pub fn read_isr(&self) -> u8 {
        let mut s = self.lock();
        let isr = std::mem::take(&mut s.isr);
        s.update_intx(&self.intx);
        isr
    }

    /// Whether the guest has enabled MSI-X.
    pub fn msix_enabled(&self) -> bool {
        self.lock().msix_enabled
    }

    /// Follows the MSI-X capability's message control (enable and function mask bits).
    pub fn set_msix_control(&self, enabled: bool, function_masked: bool) {
        let mut s = self.lock();
        s.msix_enabled = enabled;
        s.msix_function_masked = function_masked;
        s.update_intx(&self.intx);
        s.flush_pending(self.msi.as_ref());
    }

    /// Follows the INTx-disable bit of the PCI command register.
    pub fn set_intx_disabled(&self, disabled: bool) {
        let mut s = self.lock();
        s.intx_disabled = disabled;
        s.update_intx(&self.intx);
    }

    /// The configuration-change vector.
    pub fn config_vector(&self) -> u16 {
        self.lock().config_vector
    }

    /// Sets the configuration-change vector; a vector the table lacks reads back as
    /// [`NO_VECTOR`], which is how the driver learns it was refused.
    pub fn set_config_vector(&self, vector: u16) {
        let mut s = self.lock();
        s.config_vector = s.checked_vector(vector);
    }

    /// The vector of queue `index` ([`NO_VECTOR`] for a queue that does not exist).
    pub fn queue_vector(&self, index: usize) -> u16 {
        self.lock().queue_vectors.get(index).copied().unwrap_or(NO_VECTOR)
    }

    /// Sets the vector of queue `index`, like [`Self::set_config_vector`].
    pub fn set_queue_vector(&self, index: usize, vector: u16) {
        let mut s = self.lock();
        let vector = s.checked_vector(vector);
        if let Some(v) = s.queue_vectors.get_mut(index) {
            *v = vector;
        }
    }

    /// A virtio reset: the ISR and the vector assignments go; the MSI-X table (PCI state) stays.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.isr = 0;
        s.config_vector = NO_VECTOR;
        s.queue_vectors.iter_mut().for_each(|v| *v = NO_VECTOR);
        s.update_intx(&self.intx);
    }

    /// Reads the MSI-X table at byte `offset`; bytes outside it read as zero.
    pub fn read_msix_table(&self, offset: u64, data: &mut [u8]) {
        let s = self.lock();
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| s.table.get(o / MSIX_ENTRY_SIZE).map(|e| e[o % MSIX_ENTRY_SIZE]))
                .unwrap_or(0);
        }
    }

    /// Writes the MSI-X table; unmasking a vector delivers its pending message.
    pub fn write_msix_table(&self, offset: u64, data: &[u8]) {
        let mut s = self.lock();
        for (i, &b) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i as u64).and_then(|o| usize::try_from(o).ok()) else {
                break;
            };
            if let Some(e) = s.table.get_mut(o / MSIX_ENTRY_SIZE) {
                let byte = o % MSIX_ENTRY_SIZE;
                // Only the mask bit of the vector control word is writable.
                e[byte] = match byte {
                    12 => b & MSIX_CONTROL_MASKED as u8,
                    13..=15 => 0,
                    _ => b,
                };
            }
        }
        s.flush_pending(self.msi.as_ref());
    }

    /// Reads the pending bit array at byte `offset`.
    pub fn read_msix_pba(&self, offset: u64, data: &mut [u8]) {
        let s = self.lock();
        for (i, b) in data.iter_mut().enumerate() {
            let first = offset.saturating_add(i as u64).saturating_mul(8);
            *b = (0..8u64)
                .filter(|bit| {
                    first
                        .checked_add(*bit)
                        .and_then(|v| usize::try_from(v).ok())
                        .and_then(|v| s.pending.get(v))
                        .copied()
                        .unwrap_or(false)
                })
                .fold(0u8, |acc, bit| acc | (1 << bit));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Records every interrupt request, for tests across the crate.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) levels: Mutex<Vec<(u32, bool)>>,
        pub(crate) msis: Mutex<Vec<(u64, u32)>>,
    }

    impl InterruptController for Recorder {
        fn set_level(&self, gsi: u32, level: bool) {
            self.levels.lock().unwrap().push((gsi, level));
        }
        fn signal_msi(&self, address: u64, data: u32) {
            self.msis.lock().unwrap().push((address, data));
        }
    }

    impl Recorder {
        pub(crate) fn take_levels(&self) -> Vec<(u32, bool)> {
            std::mem::take(&mut self.levels.lock().unwrap())
        }
        pub(crate) fn take_msis(&self) -> Vec<(u64, u32)> {
            std::mem::take(&mut self.msis.lock().unwrap())
        }
    }

    fn setup() -> (Arc<Recorder>, VirtioInterrupt) {
        let rec = Arc::new(Recorder::default());
        let irq = VirtioInterrupt::new(IrqLine::new(rec.clone(), 11), rec.clone(), 1, 2);
        (rec, irq)
    }

    fn program(irq: &VirtioInterrupt, vector: u64, address: u64, data: u32, masked: bool) {
        let base = vector * MSIX_ENTRY_SIZE as u64;
        irq.write_msix_table(base, &(address as u32).to_le_bytes());
        irq.write_msix_table(base + 4, &((address >> 32) as u32).to_le_bytes());
        irq.write_msix_table(base + 8, &data.to_le_bytes());
        irq.write_msix_table(base + 12, &u32::from(masked).to_le_bytes());
    }

    #[test]
    fn intx_follows_the_isr() {
        let (rec, irq) = setup();
        irq.signal_queue(0);
        irq.signal_queue(0);
        assert_eq!(rec.take_levels(), vec![(11, true)], "level, raised once");
        assert_eq!(irq.read_isr(), ISR_QUEUE);
        assert_eq!(rec.take_levels(), vec![(11, false)]);
        assert_eq!(irq.read_isr(), 0);
        irq.signal_config();
        assert_eq!(irq.read_isr(), ISR_CONFIG);
        // INTx disable holds the line low while the ISR keeps its bit.
        irq.set_intx_disabled(true);
        rec.take_levels();
        irq.signal_queue(0);
        assert!(rec.take_levels().is_empty());
        irq.set_intx_disabled(false);
        assert_eq!(rec.take_levels(), vec![(11, true)]);
        irq.reset();
        assert_eq!(rec.take_levels(), vec![(11, false)]);
        assert!(rec.take_msis().is_empty());
    }

    #[test]
    fn msix_vectors_masks_and_pending_bits() {
        let (rec, irq) = setup();
        program(&irq, 0, 0xfee0_0000, 0x41, false);
        program(&irq, 1, 0xfee0_1000, 0x42, true);
        irq.set_config_vector(0);
        irq.set_queue_vector(0, 1);
        irq.set_queue_vector(5, 1);
        assert_eq!(irq.queue_vector(0), 1);
        irq.set_queue_vector(0, 7);
        assert_eq!(irq.queue_vector(0), NO_VECTOR, "refused: no such vector");
        irq.set_queue_vector(0, 1);

        irq.set_msix_control(true, false);
        irq.signal_config();
        assert_eq!(rec.take_msis(), vec![(0xfee0_0000, 0x41)]);
        // Vector 1 is masked: the message waits in the PBA.
        irq.signal_queue(0);
        assert!(rec.take_msis().is_empty());
        let mut pba = [0u8; 8];
        irq.read_msix_pba(0, &mut pba);
        assert_eq!(pba[0], 0b10);
        // Unmasking delivers it and clears the pending bit.
        irq.write_msix_table(16 + 12, &0u32.to_le_bytes());
        assert_eq!(rec.take_msis(), vec![(0xfee0_1000, 0x42)]);
        irq.read_msix_pba(0, &mut pba);
        assert_eq!(pba[0], 0);

        // The function mask holds back every vector.
        irq.set_msix_control(true, true);
        irq.signal_queue(0);
        irq.signal_config();
        assert!(rec.take_msis().is_empty());
        irq.set_msix_control(true, false);
        assert_eq!(rec.take_msis(), vec![(0xfee0_0000, 0x41), (0xfee0_1000, 0x42)]);
        // No INTx and no ISR bit while MSI-X is on.
        assert!(rec.take_levels().is_empty());
        assert_eq!(irq.read_isr(), 0);
        // A queue without a vector raises nothing.
        irq.set_queue_vector(0, NO_VECTOR);
        irq.signal_queue(0);
        assert!(rec.take_msis().is_empty());
    }

    #[test]
    fn table_reads_back_and_odd_accesses_are_harmless() {
        let (_rec, irq) = setup();
        program(&irq, 1, 0x1_2345_6780, 0xabcd, false);
        let mut b = [0u8; 4];
        irq.read_msix_table(16, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x2345_6780);
        irq.read_msix_table(28, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0);
        irq.read_msix_table(12, &mut b);
        assert_eq!(u32::from_le_bytes(b), 1, "vectors start masked");
        irq.write_msix_table(12, &0xffff_ffffu32.to_le_bytes());
        irq.read_msix_table(12, &mut b);
        assert_eq!(u32::from_le_bytes(b), 1, "only the mask bit is writable");
        irq.write_msix_table(u64::MAX - 1, &[1, 2, 3, 4]);
        irq.read_msix_table(u64::MAX - 1, &mut b);
        irq.read_msix_pba(u64::MAX, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
