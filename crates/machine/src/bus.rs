//! Address buses: an ordered map from address ranges to devices.
//!
//! The same `Bus` serves port I/O and MMIO. A device sees only offsets into its own range and
//! never learns which accelerator (KVM or the interpreter) performed the access.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device reachable through a bus range.
pub trait BusDevice: Send {
    /// Reads `data.len()` bytes at `offset` within the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset` within the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A shared, lockable device as the bus holds it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Why a range could not be added to a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range {base:#x}+{len:#x} overlaps a device already on the bus.
    #[error("the range {base:#x}+{len:#x} overlaps a device already on the bus")]
    Overlap { base: u64, len: u64 },
    /// A zero-length range cannot be mapped.
    #[error("a zero-length range at {0:#x} cannot be mapped")]
    Empty(u64),
}

#[derive(Clone)]
struct Entry {
    len: u64,
    device: SharedDevice,
}

/// An address space made of non-overlapping device ranges.
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Entry>>,
}

impl Bus {
    /// Creates an empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `device` at `[base, base + len)`.
    pub fn insert(&self, base: u64, len: u64, device: SharedDevice) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty(base));
        }
        let end = base.checked_add(len).ok_or(BusError::Overlap { base, len })?;
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        if let Some((b, e)) = ranges.range(..end).next_back() {
            if b + e.len > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        ranges.insert(base, Entry { len, device });
        Ok(())
    }

    /// Removes the range that starts at `base`; returns whether one was there.
    pub fn remove(&self, base: u64) -> bool {
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        ranges.remove(&base).is_some()
    }

    /// Removes every range. The PCI root holds the buses it maps BARs onto while sitting on the
    /// port bus itself, so a machine being torn down clears its buses to break that cycle.
    pub fn clear(&self) {
        self.ranges.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn find(&self, addr: u64, size: usize) -> Option<(u64, SharedDevice)> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let (base, entry) = ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        // The whole access must fall inside the range.
        if offset.checked_add(size as u64)? > entry.len {
            return None;
        }
        Some((offset, entry.device.clone()))
    }

    /// Reads from the device at `addr`; returns false (and fills 0xff) when nothing is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((offset, device)) => {
                device.lock().unwrap_or_else(|e| e.into_inner()).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Writes to the device at `addr`; returns false when nothing is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((offset, device)) => {
                device.lock().unwrap_or_else(|e| e.into_inner()).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Presents a device at a shifted offset, so that one device can own several separate port
/// ranges (e.g. the i8042's 0x60 and 0x64) and still see its own register offsets.
pub struct Offset {
    inner: SharedDevice,
    add: u64,
}

impl Offset {
    /// Forwards accesses to `inner` with `add` added to their offset.
    pub fn new(inner: SharedDevice, add: u64) -> Self {
        Self { inner, add }
    }
}

impl BusDevice for Offset {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).read(offset + self.add, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).write(offset + self.add, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<u8>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = self.0[offset as usize + i];
            }
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        }
    }

    #[test]
    fn routes_by_offset_and_rejects_overlap() {
        let bus = Bus::new();
        let dev: SharedDevice = Arc::new(Mutex::new(Echo(vec![0; 8])));
        bus.insert(0x100, 8, dev.clone()).unwrap();
        assert_eq!(bus.insert(0x104, 8, dev.clone()), Err(BusError::Overlap { base: 0x104, len: 8 }));
        assert_eq!(bus.insert(0xfc, 8, dev.clone()), Err(BusError::Overlap { base: 0xfc, len: 8 }));
        bus.insert(0x108, 8, dev).unwrap();
        assert!(bus.write(0x102, &[1, 2]));
        let mut buf = [0u8; 2];
        assert!(bus.read(0x102, &mut buf));
        assert_eq!(buf, [1, 2]);
        // An access that straddles the end of a range reaches nothing.
        assert!(!bus.read(0x10f, &mut buf));
        assert_eq!(buf, [0xff, 0xff]);
        assert!(bus.remove(0x100));
        assert!(!bus.read(0x100, &mut buf));
    }
}
