//! The 8254 programmable interval timer at 0x40-0x43, clocked from the host's monotonic clock,
//! and the port 0x61 gate/output bits of channel 2 that TSC calibration polls.

/// The PIT input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

#[derive(Clone, Copy, Default)]
struct Channel {
    mode: u8,
    /// Access mode: 1 = LSB, 2 = MSB, 3 = LSB then MSB.
    rw: u8,
    reload: u32,
    /// When the current count was loaded (ns of platform time).
    start: u64,
    /// Latched count for reads.
    latch: Option<u16>,
    read_hi: bool,
    write_hi: bool,
    write_lo: u8,
    gate: bool,
    armed: bool,
    bcd: bool,
}

impl Channel {
    fn period(&self) -> u64 {
        if self.reload == 0 {
            0x10000
        } else {
            self.reload as u64
        }
    }

    fn ticks(&self, now: u64) -> u64 {
        (now.saturating_sub(self.start) as u128 * PIT_HZ as u128 / 1_000_000_000) as u64
    }

    fn count(&self, now: u64) -> u16 {
        if !self.armed {
            return self.reload as u16;
        }
        let t = self.ticks(now);
        let p = self.period();
        match self.mode {
            2 | 3 => {
                let c = p - t % p;
                if self.mode == 3 {
                    // Square wave counts down by two each half period.
                    ((c * 2) % p) as u16
                } else {
                    c as u16
                }
            }
            _ => (p.wrapping_sub(t) & 0xffff) as u16,
        }
    }

    fn output(&self, now: u64) -> bool {
        if !self.armed {
            return self.mode != 0;
        }
        let t = self.ticks(now);
        let p = self.period();
        match self.mode {
            0 => t >= p,
            1 => t >= p,
            2 => t % p != p - 1,
            3 => t % p < p.div_ceil(2),
            4 | 5 => t != p,
            _ => true,
        }
    }

    /// The platform time (ns) of the next IRQ edge after `now`, for periodic or one-shot modes.
    fn next_edge(&self, now: u64) -> Option<u64> {
        if !self.armed {
            return None;
        }
        let p = self.period();
        let t = self.ticks(now);
        let k = match self.mode {
            2 | 3 => t / p + 1,
            0 | 4 => {
                if t >= p {
                    return None;
                }
                1
            }
            _ => return None,
        };
        Some(self.start + ((k * p) as u128 * 1_000_000_000 / PIT_HZ as u128) as u64)
    }
}

/// The three counters.
pub struct Pit {
    ch: [Channel; 3],
    /// Channel 0 periods already signalled.
    fired: u64,
    speaker: u8,
}

impl Default for Pit {
    fn default() -> Self {
        let mut p = Self { ch: [Channel::default(); 3], fired: 0, speaker: 0 };
        p.ch[0].gate = true;
        p.ch[1].gate = true;
        p
    }
}

impl Pit {
    pub fn read(&mut self, port: u8, now: u64) -> u8 {
        if port == 3 {
            return 0xff;
        }
        let c = &mut self.ch[port as usize];
        let v = c.latch.unwrap_or_else(|| c.count(now));
        let bytes = if c.bcd { to_bcd(v) } else { v };
        match c.rw {
            1 => {
                c.latch = None;
                bytes as u8
            }
            2 => {
                c.latch = None;
                (bytes >> 8) as u8
            }
            _ => {
                if c.read_hi {
                    c.read_hi = false;
                    c.latch = None;
                    (bytes >> 8) as u8
                } else {
                    c.read_hi = true;
                    if c.latch.is_none() {
                        c.latch = Some(v);
                    }
                    bytes as u8
                }
            }
        }
    }

    pub fn write(&mut self, port: u8, v: u8, now: u64) {
        if port == 3 {
            let sel = (v >> 6) as usize;
            if sel == 3 {
                // Read-back: latch counts of the selected channels.
                for i in 0..3 {
                    if v & (2 << i) != 0 && v & 0x20 == 0 {
                        let c = &mut self.ch[i];
                        c.latch = Some(c.count(now));
                    }
                }
                return;
            }
            let c = &mut self.ch[sel];
            let rw = (v >> 4) & 3;
            if rw == 0 {
                c.latch = Some(c.count(now));
                return;
            }
            c.rw = rw;
            c.mode = (v >> 1) & 7;
            if c.mode > 5 {
                c.mode &= 3;
            }
            c.bcd = v & 1 != 0;
            c.read_hi = false;
            c.write_hi = false;
            c.armed = false;
            return;
        }
        let i = port as usize;
        let c = &mut self.ch[i];
        let load = match c.rw {
            1 => Some(v as u32),
            2 => Some((v as u32) << 8),
            _ => {
                if c.write_hi {
                    c.write_hi = false;
                    Some(c.write_lo as u32 | ((v as u32) << 8))
                } else {
                    c.write_hi = true;
                    c.write_lo = v;
                    None
                }
            }
        };
        if let Some(r) = load {
            c.reload = r;
            c.start = now;
            c.armed = true;
            if i == 0 {
                self.fired = 0;
            }
        }
    }

    /// Port 0x61: bit 0 gates channel 2, bit 1 enables the speaker, bit 5 reads channel 2's
    /// output, bit 4 toggles with DRAM refresh.
    pub fn read_port61(&self, now: u64) -> u8 {
        let out = self.ch[2].gate && self.ch[2].output(now);
        let refresh = (now / 15_000) & 1 == 1;
        (self.speaker & 3) | if out { 0x20 } else { 0 } | if refresh { 0x10 } else { 0 }
    }

    pub fn write_port61(&mut self, v: u8, now: u64) {
        let gate = v & 1 != 0;
        let c = &mut self.ch[2];
        if gate && !c.gate && c.armed {
            // A rising gate restarts the count.
            c.start = now;
        }
        c.gate = gate;
        self.speaker = v & 3;
    }

    /// Whether channel 0 has completed a period not yet signalled; advances the record.
    pub fn take_irq0(&mut self, now: u64) -> bool {
        let c = &self.ch[0];
        if !c.armed {
            return false;
        }
        let periods = c.ticks(now) / c.period();
        let due = match c.mode {
            2 | 3 => periods > self.fired,
            0 | 4 => periods >= 1 && self.fired == 0,
            _ => false,
        };
        if due {
            self.fired = periods.max(1);
        }
        due
    }

    /// When channel 0 next raises IRQ 0.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        self.ch[0].next_edge(now)
    }
}

fn to_bcd(v: u16) -> u16 {
    let v = v % 10000;
    (v % 10) | ((v / 10 % 10) << 4) | ((v / 100 % 10) << 8) | ((v / 1000) << 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel2_mode0_output_rises_after_the_count() {
        let mut p = Pit::default();
        p.write_port61(1, 0);
        p.write(3, 0b1011_0000, 0); // channel 2, lobyte/hibyte, mode 0
        p.write(2, 0xff, 0);
        p.write(2, 0x0f, 0); // 0x0fff ticks = about 3.4 ms
        assert_eq!(p.read_port61(1_000_000) & 0x20, 0);
        assert_eq!(p.read_port61(4_000_000) & 0x20, 0x20);
        // The count runs down with time.
        let lo = p.read(2, 1_000_000) as u16;
        let hi = p.read(2, 1_000_000) as u16;
        let c = lo | (hi << 8);
        assert!(c < 0x0fff && c > 0x0fff - 1300, "count {c:#x}");
    }

    #[test]
    fn channel0_rate_generator_ticks() {
        let mut p = Pit::default();
        p.write(3, 0b0011_0100, 0);
        p.write(0, 0x9c, 0);
        p.write(0, 0x2e, 0); // 11932 ticks = 10 ms
        assert!(!p.take_irq0(5_000_000));
        assert!(p.take_irq0(10_100_000));
        assert!(!p.take_irq0(10_200_000));
        let d = p.next_deadline(10_200_000).unwrap();
        assert!((19_900_000..20_100_000).contains(&d), "{d}");
    }
}
