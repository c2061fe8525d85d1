//! The I/O APIC at 0xFEC00000: 24 redirection entries turning GSIs into local APIC messages.

pub const PINS: usize = 24;

/// Where an interrupt must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub vector: u8,
    pub dest: u8,
    pub logical: bool,
    /// Delivery mode (0 fixed, 1 lowest priority, 4 NMI, 5 INIT, 7 ExtINT).
    pub mode: u8,
    pub level: bool,
}

pub struct IoApic {
    id: u8,
    sel: u8,
    redir: [u64; PINS],
    level: [bool; PINS],
}

impl Default for IoApic {
    fn default() -> Self {
        Self { id: 0, sel: 0, redir: [1 << 16; PINS], level: [false; PINS] }
    }
}

impl IoApic {
    fn message(&self, pin: usize) -> Message {
        let r = self.redir[pin];
        Message {
            vector: r as u8,
            dest: (r >> 56) as u8,
            logical: r & (1 << 11) != 0,
            mode: ((r >> 8) & 7) as u8,
            level: r & (1 << 15) != 0,
        }
    }

    /// Drives `pin`; returns a message to deliver when the pin fires.
    pub fn set_level(&mut self, pin: usize, high: bool) -> Option<Message> {
        if pin >= PINS {
            return None;
        }
        let was = self.level[pin];
        self.level[pin] = high;
        let r = self.redir[pin];
        if r & (1 << 16) != 0 || !high {
            return None;
        }
        let level = r & (1 << 15) != 0;
        if level {
            if r & (1 << 14) != 0 {
                return None;
            }
            self.redir[pin] |= 1 << 14;
            return Some(self.message(pin));
        }
        (!was).then(|| self.message(pin))
    }

    /// An EOI for `vector` from a local APIC: clears remote IRR and re-fires lines still high.
    pub fn eoi(&mut self, vector: u8) -> Vec<Message> {
        let mut out = Vec::new();
        for pin in 0..PINS {
            let r = self.redir[pin];
            if r as u8 == vector && r & (1 << 15) != 0 && r & (1 << 14) != 0 {
                self.redir[pin] &= !(1 << 14);
                if self.level[pin] && r & (1 << 16) == 0 {
                    self.redir[pin] |= 1 << 14;
                    out.push(self.message(pin));
                }
            }
        }
        out
    }

    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            0x00 => self.sel as u32,
            0x10 => match self.sel {
                0 => (self.id as u32) << 24,
                1 => 0x0017_0020 | ((PINS as u32 - 1) << 16),
                2 => 0,
                s if (0x10..0x10 + 2 * PINS as u8).contains(&s) => {
                    let i = ((s - 0x10) / 2) as usize;
                    let v = self.redir[i];
                    if s & 1 == 0 {
                        v as u32
                    } else {
                        (v >> 32) as u32
                    }
                }
                _ => 0,
            },
            _ => 0,
        }
    }

    /// A register write; returns messages for level lines unmasked while high.
    pub fn write(&mut self, offset: u64, v: u32) -> Vec<Message> {
        match offset {
            0x00 => self.sel = v as u8,
            0x10 => match self.sel {
                0 => self.id = ((v >> 24) & 0xf) as u8,
                s if (0x10..0x10 + 2 * PINS as u8).contains(&s) => {
                    let i = ((s - 0x10) / 2) as usize;
                    let old = self.redir[i];
                    // Delivery status (12) and remote IRR (14) are read-only.
                    let ro = old & ((1 << 12) | (1 << 14));
                    let nv = if s & 1 == 0 {
                        (old & !0xffff_ffff) | (v as u64 & !((1 << 12) | (1 << 14))) | ro
                    } else {
                        (old & 0xffff_ffff) | ((v as u64) << 32)
                    };
                    self.redir[i] = nv;
                    if self.level[i] && nv & (1 << 16) == 0 && nv & (1 << 15) != 0 && nv & (1 << 14) == 0 {
                        self.redir[i] |= 1 << 14;
                        return vec![self.message(i)];
                    }
                }
                _ => {}
            },
            0x40 => return self.eoi(v as u8),
            _ => {}
        }
        Vec::new()
    }
}
