//! The i8042 keyboard controller at 0x60/0x64, with a PS/2 keyboard behind it.
//!
//! It answers the self tests that SeaBIOS and Linux run, pulses the reset line on command 0xFE
//! (how many kernels reboot), and feeds scancodes queued by the display to the guest on IRQ 1.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::bus::BusDevice;
use crate::irq::IrqLine;
use crate::power::{PowerControl, PowerEvent};

/// The data port; the status/command port is at +4.
pub const I8042_PORT: u64 = 0x60;
/// The keyboard's ISA interrupt.
pub const KEYBOARD_IRQ: u32 = 1;

const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM: u8 = 0x04;
const STATUS_COMMAND: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
const CMD_BYTE_KBD_INT: u8 = 0x01;
const CMD_BYTE_KBD_DISABLED: u8 = 0x10;
const CMD_BYTE_AUX_DISABLED: u8 = 0x20;
const CMD_BYTE_TRANSLATE: u8 = 0x40;
const MAX_QUEUE: usize = 256;

/// What the next data-port write means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    CommandByte,
    OutputPort,
    KeyboardArg,
    AuxByte,
}

/// The controller and its keyboard.
pub struct I8042 {
    queue: VecDeque<u8>,
    command_byte: u8,
    status_last_command: bool,
    pending: Pending,
    irq: IrqLine,
    power: Arc<PowerControl>,
}

impl I8042 {
    /// A controller that interrupts on `irq` and resets through `power`.
    pub fn new(irq: IrqLine, power: Arc<PowerControl>) -> Self {
        Self {
            queue: VecDeque::new(),
            command_byte: CMD_BYTE_KBD_INT | CMD_BYTE_TRANSLATE | CMD_BYTE_AUX_DISABLED,
            status_last_command: false,
            pending: Pending::None,
            irq,
            power,
        }
    }

    fn push(&mut self, b: u8) {
        let was_empty = self.queue.is_empty();
        if self.queue.len() < MAX_QUEUE {
            self.queue.push_back(b);
        }
        // One interrupt per byte the guest can see: the next one is raised when it reads this.
        if was_empty {
            self.update_irq();
        }
    }

    fn update_irq(&self) {
        if !self.queue.is_empty() && self.command_byte & CMD_BYTE_KBD_INT != 0 {
            self.irq.pulse();
        }
    }

    /// Queues keyboard scancodes (set 1, as the controller delivers them after translation).
    pub fn queue_scancodes(&mut self, codes: &[u8]) {
        if self.command_byte & CMD_BYTE_KBD_DISABLED != 0 {
            return;
        }
        for &c in codes {
            self.push(c);
        }
    }

    fn controller_command(&mut self, cmd: u8) {
        match cmd {
            0x20 => self.push(self.command_byte),
            0x60 => self.pending = Pending::CommandByte,
            0xa7 => self.command_byte |= CMD_BYTE_AUX_DISABLED,
            0xa8 => self.command_byte &= !CMD_BYTE_AUX_DISABLED,
            0xa9 => self.push(0x00),
            0xaa => self.push(0x55),
            0xab => self.push(0x00),
            0xad => self.command_byte |= CMD_BYTE_KBD_DISABLED,
            0xae => self.command_byte &= !CMD_BYTE_KBD_DISABLED,
            0xc0 => self.push(0x00),
            0xd0 => self.push(0x01),
            0xd1 => self.pending = Pending::OutputPort,
            0xd4 => self.pending = Pending::AuxByte,
            0xfe => self.power.request(PowerEvent::Reset),
            _ => log::debug!("i8042: ignoring controller command {cmd:#x}"),
        }
    }

    fn keyboard_command(&mut self, cmd: u8) {
        match cmd {
            0xff => {
                self.queue.clear();
                self.push(0xfa);
                self.push(0xaa);
            }
            0xf2 => {
                self.push(0xfa);
                self.push(0xab);
                self.push(0x41);
            }
            0xed | 0xf0 | 0xf3 => {
                self.pending = Pending::KeyboardArg;
                self.push(0xfa);
            }
            0xee => self.push(0xee),
            _ => self.push(0xfa),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            0 => {
                let v = self.queue.pop_front().unwrap_or(0);
                self.update_irq();
                v
            }
            4 => {
                let mut s = STATUS_SYSTEM | STATUS_UNLOCKED;
                if !self.queue.is_empty() {
                    s |= STATUS_OUTPUT_FULL;
                }
                if self.status_last_command {
                    s |= STATUS_COMMAND;
                }
                s
            }
            _ => 0xff,
        };
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            0 => {
                self.status_last_command = false;
                match std::mem::replace(&mut self.pending, Pending::None) {
                    Pending::CommandByte => self.command_byte = v,
                    Pending::OutputPort => {
                        if v & 1 == 0 {
                            self.power.request(PowerEvent::Reset);
                        }
                    }
                    Pending::KeyboardArg => self.push(0xfa),
                    // No mouse: the byte is swallowed.
                    Pending::AuxByte => {}
                    Pending::None => self.keyboard_command(v),
                }
            }
            4 => {
                self.status_last_command = true;
                self.controller_command(v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::NoInterrupts;

    fn dev() -> (I8042, Arc<PowerControl>) {
        let power = Arc::new(PowerControl::new());
        (I8042::new(IrqLine::new(Arc::new(NoInterrupts), 1), power.clone()), power)
    }

    fn read(d: &mut I8042, off: u64) -> u8 {
        let mut b = [0u8];
        d.read(off, &mut b);
        b[0]
    }

    #[test]
    fn self_tests_and_reset() {
        let (mut d, power) = dev();
        d.write(4, &[0xaa]);
        assert_eq!(read(&mut d, 4) & STATUS_OUTPUT_FULL, 1);
        assert_eq!(read(&mut d, 0), 0x55);
        d.write(0, &[0xff]);
        assert_eq!(read(&mut d, 0), 0xfa);
        assert_eq!(read(&mut d, 0), 0xaa);
        assert_eq!(read(&mut d, 4) & STATUS_OUTPUT_FULL, 0);
        d.write(4, &[0x60]);
        d.write(0, &[0x45]);
        d.write(4, &[0x20]);
        assert_eq!(read(&mut d, 0), 0x45);
        assert_eq!(power.pending(), None);
        d.write(4, &[0xfe]);
        assert_eq!(power.pending(), Some(PowerEvent::Reset));
    }
}
