//! The MC146818 CMOS RAM and real-time clock at ports 0x70/0x71.
//!
//! The clock reads the host's wall-clock time; the RAM carries the memory sizes and CPU count
//! that firmware reads when fw_cfg does not say otherwise.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

/// The index port; the data port follows it.
pub const CMOS_PORT: u64 = 0x70;

const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;
const B_24H: u8 = 1 << 1;
const B_BINARY: u8 = 1 << 2;

/// CMOS RAM with its clock.
pub struct Cmos {
    index: usize,
    ram: [u8; 128],
    now: fn() -> u64,
}

fn host_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// (year, month 1-12, day 1-31) for a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's well-known days-to-civil conversion, restated.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Cmos {
    /// CMOS for a machine with RAM ending at `low_end` below 4 GiB, `high` bytes above 4 GiB,
    /// and `cpus` processors.
    pub fn new(low_end: u64, high: u64, cpus: u8) -> Self {
        Self::with_clock(low_end, high, cpus, host_seconds)
    }

    fn with_clock(low_end: u64, high: u64, cpus: u8, now: fn() -> u64) -> Self {
        let mut ram = [0u8; 128];
        ram[REG_A] = 0x26;
        ram[REG_B] = B_24H;
        ram[REG_D] = 0x80;
        // Base memory 640 KiB.
        ram[0x15] = 0x80;
        ram[0x16] = 0x02;
        // Extended memory in KiB above 1 MiB (capped at 63 MiB).
        let ext_kib = (low_end.saturating_sub(1 << 20) >> 10).min(0xfc00) as u16;
        ram[0x17..0x19].copy_from_slice(&ext_kib.to_le_bytes());
        ram[0x30..0x32].copy_from_slice(&ext_kib.to_le_bytes());
        // Memory above 16 MiB in 64 KiB units.
        let above_16m = (low_end.saturating_sub(16 << 20) >> 16).min(0xffff) as u16;
        ram[0x34..0x36].copy_from_slice(&above_16m.to_le_bytes());
        // Memory above 4 GiB in 64 KiB units (24 bits).
        let high_units = (high >> 16).min(0xff_ffff) as u32;
        ram[0x5b..0x5e].copy_from_slice(&high_units.to_le_bytes()[..3]);
        ram[0x5f] = cpus.saturating_sub(1);
        // Boot from the hard disk first.
        ram[0x3d] = 0x02;
        Self { index: 0, ram, now }
    }

    fn encode(&self, v: u32) -> u8 {
        if self.ram[REG_B] & B_BINARY != 0 {
            v as u8
        } else {
            ((v / 10) << 4 | (v % 10)) as u8
        }
    }

    fn clock_register(&self, index: usize) -> Option<u8> {
        let secs = (self.now)();
        let days = (secs / 86_400) as i64;
        let tod = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let weekday = ((days + 4).rem_euclid(7) + 1) as u32; // 1970-01-01 was a Thursday.
        let v = match index {
            0x00 => (tod % 60) as u32,
            0x02 => (tod / 60 % 60) as u32,
            0x04 => {
                let h = (tod / 3600) as u32;
                if self.ram[REG_B] & B_24H != 0 {
                    h
                } else {
                    // 12-hour mode: 12, 1..11 with bit 7 for PM.
                    let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
                    return Some(self.encode(h12) | if h >= 12 { 0x80 } else { 0 });
                }
            }
            0x06 => weekday,
            0x07 => day,
            0x08 => month,
            0x09 => (year.rem_euclid(100)) as u32,
            0x32 => (year / 100) as u32,
            _ => return None,
        };
        Some(self.encode(v))
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            1 => match self.index {
                // Update-in-progress is never set: our clock is always consistent.
                REG_A => self.ram[REG_A] & 0x7f,
                REG_C => 0,
                i => self.clock_register(i).unwrap_or(self.ram[i]),
            },
            _ => 0xff,
        };
        data.fill(v);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            0 => self.index = usize::from(v & 0x7f),
            1 => match self.index {
                REG_C | REG_D => {}
                0x00 | 0x02 | 0x04 | 0x06..=0x09 | 0x32 => {} // The clock follows the host.
                i => self.ram[i] = v,
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(c: &mut Cmos, index: u8) -> u8 {
        c.write(0, &[index]);
        let mut b = [0u8];
        c.read(1, &mut b);
        b[0]
    }

    // 2026-11-28 05:16:49 UTC, a Saturday.
    fn fixed() -> u64 {
        1_795_843_009
    }

    #[test]
    fn clock_in_bcd_and_binary() {
        let mut c = Cmos::with_clock(256 << 20, 0, 2, fixed);
        assert_eq!(read(&mut c, 0x00), 0x49);
        assert_eq!(read(&mut c, 0x02), 0x16);
        assert_eq!(read(&mut c, 0x04), 0x05);
        assert_eq!(read(&mut c, 0x07), 0x28);
        assert_eq!(read(&mut c, 0x08), 0x11);
        assert_eq!(read(&mut c, 0x09), 0x26);
        assert_eq!(read(&mut c, 0x32), 0x20);
        assert_eq!(read(&mut c, 0x06), 7, "Saturday");
        c.write(0, &[REG_B as u8]);
        c.write(1, &[B_24H | B_BINARY]);
        assert_eq!(read(&mut c, 0x07), 28);
        assert_eq!(read(&mut c, 0x0d), 0x80);
    }

    #[test]
    fn memory_sizes_and_cpus() {
        let mut c = Cmos::with_clock(256 << 20, 1 << 30, 4, fixed);
        let above16 = u16::from_le_bytes([read(&mut c, 0x34), read(&mut c, 0x35)]);
        assert_eq!(u64::from(above16) << 16, (256 << 20) - (16 << 20));
        assert_eq!(read(&mut c, 0x5d), 0x00);
        assert_eq!(read(&mut c, 0x5c), 0x40);
        assert_eq!(read(&mut c, 0x5f), 3);
        // The shutdown-status byte is ordinary RAM; the index ignores the NMI bit.
        c.write(0, &[0x8f]);
        c.write(1, &[0x0a]);
        assert_eq!(read(&mut c, 0x0f), 0x0a);
    }
}
