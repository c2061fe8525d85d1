//! The 8259A programmable interrupt controller pair (master at 0x20, slave at 0xA0) with the
//! PIIX edge/level control registers at 0x4D0/0x4D1.

#[derive(Default, Clone, Copy)]
struct Chip {
    irr: u8,
    imr: u8,
    isr: u8,
    /// Lines currently high (edge detection and level-triggered IRR).
    level: u8,
    elcr: u8,
    vector_base: u8,
    /// Next initialisation word expected (0 = none, 2..4 = ICW2..ICW4).
    init_step: u8,
    icw4_needed: bool,
    read_isr: bool,
    auto_eoi: bool,
}

impl Chip {
    fn set_line(&mut self, line: u8, high: bool) {
        let bit = 1 << line;
        if self.elcr & bit != 0 {
            if high {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if high && self.level & bit == 0 {
            self.irr |= bit;
        }
        if high {
            self.level |= bit;
        } else {
            self.level &= !bit;
        }
    }

    /// The highest-priority requested line that is not masked or blocked by one in service.
    fn pending(&self) -> Option<u8> {
        let req = self.irr & !self.imr;
        if req == 0 {
            return None;
        }
        let line = req.trailing_zeros() as u8;
        let blocking = if self.isr == 0 { 8 } else { self.isr.trailing_zeros() as u8 };
        (line < blocking).then_some(line)
    }

    fn ack(&mut self, line: u8) {
        let bit = 1 << line;
        if self.elcr & bit == 0 {
            self.irr &= !bit;
        }
        if !self.auto_eoi {
            self.isr |= bit;
        }
    }

    fn write(&mut self, port: u8, v: u8) {
        if port == 0 {
            if v & 0x10 != 0 {
                // ICW1.
                self.init_step = 2;
                self.icw4_needed = v & 1 != 0;
                self.imr = 0;
                self.isr = 0;
                self.irr = 0;
                self.read_isr = false;
            } else if v & 0x18 == 0 {
                // OCW2: EOI.
                let cmd = v >> 5;
                match cmd {
                    1 | 5 if self.isr != 0 => self.isr &= self.isr - 1,
                    3 | 7 => self.isr &= !(1 << (v & 7)),
                    _ => {}
                }
            } else if v & 0x18 == 0x08 {
                // OCW3.
                if v & 2 != 0 {
                    self.read_isr = v & 1 != 0;
                }
            }
        } else {
            match self.init_step {
                2 => {
                    self.vector_base = v & 0xf8;
                    self.init_step = 3;
                }
                3 => self.init_step = if self.icw4_needed { 4 } else { 0 },
                4 => {
                    self.auto_eoi = v & 2 != 0;
                    self.init_step = 0;
                }
                _ => self.imr = v,
            }
        }
    }

    fn read(&self, port: u8) -> u8 {
        if port == 0 {
            if self.read_isr {
                self.isr
            } else {
                self.irr
            }
        } else {
            self.imr
        }
    }
}

/// The master/slave pair.
pub struct Pic {
    chips: [Chip; 2],
}

impl Default for Pic {
    fn default() -> Self {
        let mut p = Self { chips: [Chip::default(); 2] };
        p.chips[0].vector_base = 0x08;
        p.chips[1].vector_base = 0x70;
        p
    }
}

impl Pic {
    /// Drives ISA line `irq` (0-15).
    pub fn set_irq(&mut self, irq: u32, high: bool) {
        if irq < 8 {
            self.chips[0].set_line(irq as u8, high);
        } else if irq < 16 {
            self.chips[1].set_line((irq - 8) as u8, high);
        }
        self.cascade();
    }

    fn cascade(&mut self) {
        let s = self.chips[1].pending().is_some();
        self.chips[0].set_line(2, s);
    }

    /// Whether the master's INTR output is asserted.
    pub fn output(&self) -> bool {
        self.chips[0].pending().is_some()
    }

    /// The INTA cycle: the vector of the highest-priority request (spurious 7/15 if none).
    pub fn ack(&mut self) -> u8 {
        let Some(line) = self.chips[0].pending() else { return self.chips[0].vector_base | 7 };
        self.chips[0].ack(line);
        let v = if line == 2 {
            match self.chips[1].pending() {
                Some(l2) => {
                    self.chips[1].ack(l2);
                    self.chips[1].vector_base | l2
                }
                None => self.chips[1].vector_base | 7,
            }
        } else {
            self.chips[0].vector_base | line
        };
        self.cascade();
        v
    }

    /// A port access: `chip` 0 = master, 1 = slave; `port` 0 = command, 1 = data.
    pub fn write(&mut self, chip: usize, port: u8, v: u8) {
        self.chips[chip].write(port, v);
        self.cascade();
    }

    pub fn read(&self, chip: usize, port: u8) -> u8 {
        self.chips[chip].read(port)
    }

    pub fn write_elcr(&mut self, chip: usize, v: u8) {
        // IRQ 0, 1, 2, 8 and 13 are always edge-triggered.
        self.chips[chip].elcr = v & if chip == 0 { 0xf8 } else { 0xde };
    }

    pub fn read_elcr(&self, chip: usize) -> u8 {
        self.chips[chip].elcr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialises_and_delivers_by_priority() {
        let mut p = Pic::default();
        for (chip, base) in [(0, 0x20u8), (1, 0x28)] {
            p.write(chip, 0, 0x11);
            p.write(chip, 1, base);
            p.write(chip, 1, if chip == 0 { 4 } else { 2 });
            p.write(chip, 1, 1);
            p.write(chip, 1, 0);
        }
        p.set_irq(4, true);
        p.set_irq(9, true);
        assert!(p.output());
        // IRQ 9 arrives through the cascade on line 2, which outranks line 4.
        assert_eq!(p.ack(), 0x29);
        // Line 4 has lower priority than the in-service cascade line.
        assert!(!p.output());
        p.write(1, 0, 0x20);
        p.write(0, 0, 0x20);
        assert_eq!(p.ack(), 0x24);
        p.write(0, 0, 0x20);
        assert!(!p.output());
    }
}
