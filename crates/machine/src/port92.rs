//! System control port A (0x92): fast A20 and a reset bit.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::power::{PowerControl, PowerEvent};

/// The port's address.
pub const PORT92: u64 = 0x92;

/// Port 0x92. The A20 gate is always open in our machine; the bit only reads back.
pub struct Port92 {
    value: u8,
    power: Arc<PowerControl>,
}

impl Port92 {
    /// A port that resets the machine through `power`.
    pub fn new(power: Arc<PowerControl>) -> Self {
        Self { value: 0x02, power }
    }
}

impl BusDevice for Port92 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.value);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        if v & 1 != 0 && self.value & 1 == 0 {
            self.power.request(PowerEvent::Reset);
        }
        self.value = v & 0x03;
    }
}
