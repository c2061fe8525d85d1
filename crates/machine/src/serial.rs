//! The 16550 UART at COM1 (0x3F8, IRQ 4), on vm-superio.

use std::io::Write;

use vm_superio::{Serial, Trigger};

use crate::bus::BusDevice;
use crate::irq::IrqLine;

/// COM1's base port.
pub const COM1_PORT: u64 = 0x3f8;
/// COM1's ISA interrupt.
pub const COM1_IRQ: u32 = 4;

/// Pulses the UART's interrupt line (ISA interrupts are edge-triggered).
pub struct IrqTrigger(IrqLine);

impl Trigger for IrqTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.pulse();
        Ok(())
    }
}

/// Where the guest's serial output goes.
pub type SerialOut = Box<dyn Write + Send>;

/// A 16550 UART on the port bus.
pub struct SerialPort {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, SerialOut>,
}

impl SerialPort {
    /// A UART that raises `irq` and writes the guest's output to `out`.
    pub fn new(irq: IrqLine, out: SerialOut) -> Self {
        Self { uart: Serial::new(IrqTrigger(irq), out) }
    }

    /// Queues host input for the guest; returns how many bytes fit in the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.uart.fifo_capacity();
        let n = bytes.len().min(room);
        if n == 0 {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(&bytes[..n]) {
            Ok(done) => done,
            Err(e) => {
                log::debug!("serial input dropped: {e:?}");
                0
            }
        }
    }
}

impl BusDevice for SerialPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = self.uart.read(offset as u8);
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(&v) = data.first() {
            if let Err(e) = self.uart.write(offset as u8, v) {
                log::debug!("serial output failed: {e:?}");
            }
        }
    }
}
