//! The ACPI fixed-hardware registers: PM1 event and control blocks, the PM timer and GPE0.
//!
//! A PIIX4-PM-like block at fixed I/O ports (the FADT points at them; nothing on PCI moves them).
//! There is no SMI_CMD port: the FADT says ACPI is always enabled, so SCI_EN always reads set.
//! The SCI is a level-triggered ISA IRQ 9, high while any enabled status bit is set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::BusDevice;
use crate::irq::IrqLine;
use crate::power::{PowerControl, PowerEvent};

/// First port of the block; everything below is at a fixed offset from it.
pub const PM_BASE: u16 = 0x600;
/// Ports the device decodes, from [`PM_BASE`] (PM1 event, PM1 control, timer, GPE0).
pub const PM_LEN: u64 = 0x24;
/// PM1a_EVT_BLK: PM1 status (2 bytes) then PM1 enable (2 bytes).
pub const PM1A_EVT_BLK: u16 = PM_BASE;
/// Length of the PM1 event block.
pub const PM1_EVT_LEN: u8 = 4;
/// PM1a_CNT_BLK: PM1 control (2 bytes).
pub const PM1A_CNT_BLK: u16 = PM_BASE + 0x04;
/// Length of the PM1 control block.
pub const PM1_CNT_LEN: u8 = 2;
/// PM_TMR_BLK: the 32-bit power-management timer.
pub const PM_TMR_BLK: u16 = PM_BASE + 0x08;
/// Length of the timer block.
pub const PM_TMR_LEN: u8 = 4;
/// GPE0_BLK: GPE0 status (2 bytes) then GPE0 enable (2 bytes).
pub const GPE0_BLK: u16 = PM_BASE + 0x20;
/// Length of the GPE0 block (status and enable halves).
pub const GPE0_BLK_LEN: u8 = 4;
/// The ISA IRQ (and GSI) of the SCI.
pub const SCI_IRQ: u32 = 9;
/// The PM timer's rate.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// SLP_TYP value that means S5 (soft off), as on the PIIX4; the DSDT's `\_S5` carries it.
pub const SLP_TYP_S5: u16 = 0;

// Register offsets within the block.
const PM1_STS: u64 = 0x00;
const PM1_EN: u64 = 0x02;
const PM1_CNT: u64 = 0x04;
const PM_TMR: u64 = 0x08;
const GPE0_STS: u64 = 0x20;
const GPE0_EN: u64 = 0x22;

// PM1 status and enable bits.
const TMR_STS: u16 = 1 << 0;
const BM_STS: u16 = 1 << 4;
const GBL_STS: u16 = 1 << 5;
/// The power button was pressed (PM1 status bit 8).
pub const PWRBTN_STS: u16 = 1 << 8;
const SLPBTN_STS: u16 = 1 << 9;
const RTC_STS: u16 = 1 << 10;
const WAK_STS: u16 = 1 << 15;
const PM1_STS_BITS: u16 = TMR_STS | BM_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS | WAK_STS;
/// The power button raises the SCI (PM1 enable bit 8).
pub const PWRBTN_EN: u16 = 1 << 8;
const PM1_EN_BITS: u16 = TMR_STS | GBL_STS | PWRBTN_EN | SLPBTN_STS | RTC_STS;

// PM1 control bits.
const SCI_EN: u16 = 1 << 0;
const GBL_RLS: u16 = 1 << 2;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0x7 << SLP_TYP_SHIFT;
/// Writing this bit in PM1 control enters the sleep state in SLP_TYP.
pub const SLP_EN: u16 = 1 << 13;

/// The timer bit whose toggling sets TMR_STS (the FADT declares a 32-bit timer).
const TMR_CARRY_BIT: u32 = 1 << 31;

/// The PM registers, their SCI and the power-off path.
pub struct AcpiPm {
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe0_sts: u16,
    gpe0_en: u16,
    /// Timer carry bit as last seen, to set TMR_STS when it toggles.
    timer_carry: bool,
    start: Instant,
    sci: IrqLine,
    sci_level: bool,
    power: Arc<PowerControl>,
}

impl AcpiPm {
    /// Registers at reset, the SCI on `sci` (ISA IRQ [`SCI_IRQ`]) and S5 reported to `power`.
    /// Map it at [`PM_BASE`] with length [`PM_LEN`].
    pub fn new(sci: IrqLine, power: Arc<PowerControl>) -> Self {
        Self {
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: SCI_EN,
            gpe0_sts: 0,
            gpe0_en: 0,
            timer_carry: false,
            start: Instant::now(),
            sci,
            sci_level: false,
            power,
        }
    }

    /// Presses the power button: sets PWRBTN_STS and raises the SCI if the guest enabled it.
    /// The VMM calls this on SIGTERM; an ACPI guest answers by powering off through S5.
    pub fn press_power_button(&mut self) {
        self.pm1_sts |= PWRBTN_STS;
        self.update_sci();
    }

    /// Whether the guest enabled the power-button event (an ACPI OS is listening).
    pub fn power_button_enabled(&self) -> bool {
        self.pm1_en & PWRBTN_EN != 0
    }

    /// The timer value `elapsed` after the device was created, wrapping at 32 bits.
    fn ticks_at(elapsed: Duration) -> u32 {
        let ticks = elapsed.as_nanos() * u128::from(PM_TIMER_HZ) / 1_000_000_000;
        (ticks & u128::from(u32::MAX)) as u32
    }

    /// Samples the timer and latches TMR_STS when its top bit toggled since the last sample.
    /// The overflow event is therefore only seen at the guest's next access, not on time.
    fn sample_timer(&mut self) -> u32 {
        let now = Self::ticks_at(self.start.elapsed());
        let carry = now & TMR_CARRY_BIT != 0;
        if carry != self.timer_carry {
            self.timer_carry = carry;
            self.pm1_sts |= TMR_STS;
        }
        now
    }

    fn update_sci(&mut self) {
        let level = (self.pm1_sts & self.pm1_en & PM1_EN_BITS) != 0 || (self.gpe0_sts & self.gpe0_en) != 0;
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set_level(level);
        }
    }

    fn write_pm1_cnt(&mut self, value: u16, mask: u16) {
        let written = (self.pm1_cnt & !mask) | (value & mask);
        if mask & SLP_EN != 0 && written & SLP_EN != 0 {
            let slp_typ = (written & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
            if slp_typ == SLP_TYP_S5 {
                log::info!("acpi: the guest entered S5 (soft off)");
                self.power.request(PowerEvent::PowerOff);
            } else {
                log::warn!(
                    "acpi: the guest asked for sleep type {slp_typ}, which this machine does not offer"
                );
            }
        }
        // SLP_EN and GBL_RLS are write-only; SCI_EN stays set (ACPI mode is fixed).
        self.pm1_cnt = (written & !(SLP_EN | GBL_RLS)) | SCI_EN;
    }

    /// Applies a write of `value` to the 16-bit register at `reg`; `mask` marks the bytes written.
    fn write_register(&mut self, reg: u64, value: u16, mask: u16) {
        match reg {
            PM1_STS => self.pm1_sts &= !(value & mask & PM1_STS_BITS),
            PM1_EN => self.pm1_en = (self.pm1_en & !mask) | (value & mask & PM1_EN_BITS),
            PM1_CNT => self.write_pm1_cnt(value, mask),
            GPE0_STS => self.gpe0_sts &= !(value & mask),
            GPE0_EN => self.gpe0_en = (self.gpe0_en & !mask) | (value & mask),
            _ => {} // The timer and the gaps are read-only.
        }
    }

    /// The block's bytes as the guest sees them now.
    fn snapshot(&mut self) -> [u8; PM_LEN as usize] {
        let timer = self.sample_timer();
        let mut regs = [0u8; PM_LEN as usize];
        let mut put = |offset: u64, bytes: &[u8]| {
            let start = offset as usize;
            regs[start..start + bytes.len()].copy_from_slice(bytes);
        };
        put(PM1_STS, &self.pm1_sts.to_le_bytes());
        put(PM1_EN, &self.pm1_en.to_le_bytes());
        put(PM1_CNT, &self.pm1_cnt.to_le_bytes());
        put(PM_TMR, &timer.to_le_bytes());
        put(GPE0_STS, &self.gpe0_sts.to_le_bytes());
        put(GPE0_EN, &self.gpe0_en.to_le_bytes());
        regs
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let regs = self.snapshot();
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset.checked_add(i as u64).and_then(|o| usize::try_from(o).ok());
            *byte = at.and_then(|o| regs.get(o)).copied().unwrap_or(0xff);
        }
        // A timer carry seen by this read may have raised an enabled event.
        self.update_sci();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.sample_timer();
        // Split the access into the 16-bit registers it touches, keeping which bytes it wrote.
        for reg in [PM1_STS, PM1_EN, PM1_CNT, GPE0_STS, GPE0_EN] {
            let (mut value, mut mask) = (0u16, 0u16);
            for (i, &byte) in data.iter().enumerate() {
                let Some(at) = offset.checked_add(i as u64) else { break };
                if (reg..reg + 2).contains(&at) {
                    let shift = 8 * (at - reg);
                    value |= u16::from(byte) << shift;
                    mask |= 0xff << shift;
                }
            }
            if mask != 0 {
                self.write_register(reg, value, mask);
            }
        }
        self.update_sci();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::irq::InterruptController;

    /// Remembers the level of every GSI and how many times each was driven.
    #[derive(Default)]
    struct Lines(Mutex<Vec<(u32, bool)>>);

    impl Lines {
        fn level(&self, gsi: u32) -> bool {
            let calls = self.0.lock().unwrap();
            calls.iter().rev().find(|(g, _)| *g == gsi).is_some_and(|(_, l)| *l)
        }
        fn calls(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl InterruptController for Lines {
        fn set_level(&self, gsi: u32, level: bool) {
            self.0.lock().unwrap().push((gsi, level));
        }
        fn signal_msi(&self, _address: u64, _data: u32) {}
    }

    fn device() -> (AcpiPm, Arc<Lines>, Arc<PowerControl>) {
        let lines = Arc::new(Lines::default());
        let power = Arc::new(PowerControl::new());
        let pm = AcpiPm::new(IrqLine::new(lines.clone(), SCI_IRQ), power.clone());
        (pm, lines, power)
    }

    fn read16(pm: &mut AcpiPm, offset: u64) -> u16 {
        let mut b = [0u8; 2];
        pm.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    fn read32(pm: &mut AcpiPm, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        pm.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn write16(pm: &mut AcpiPm, offset: u64, value: u16) {
        pm.write(offset, &value.to_le_bytes());
    }

    #[test]
    fn ports_match_the_block_layout() {
        assert_eq!(u64::from(PM1A_EVT_BLK - PM_BASE), PM1_STS);
        assert_eq!(u64::from(PM1A_CNT_BLK - PM_BASE), PM1_CNT);
        assert_eq!(u64::from(PM_TMR_BLK - PM_BASE), PM_TMR);
        assert_eq!(u64::from(GPE0_BLK - PM_BASE), GPE0_STS);
        assert_eq!(u64::from(GPE0_BLK - PM_BASE) + u64::from(GPE0_BLK_LEN), PM_LEN);
    }

    #[test]
    fn timer_counts_at_3_579545_mhz_and_wraps_at_32_bits() {
        assert_eq!(AcpiPm::ticks_at(Duration::ZERO), 0);
        assert_eq!(AcpiPm::ticks_at(Duration::from_secs(1)), 3_579_545);
        assert_eq!(AcpiPm::ticks_at(Duration::from_millis(10)), 35_795);
        assert_eq!(AcpiPm::ticks_at(Duration::from_micros(1)), 3);
        // 2^32 ticks take 1199.86 s; just after that the counter starts again near zero.
        let wrap = Duration::from_nanos(((1u128 << 32) * 1_000_000_000).div_ceil(3_579_545) as u64);
        assert!(AcpiPm::ticks_at(wrap) < 4);
        assert!(AcpiPm::ticks_at(wrap - Duration::from_micros(1)) > u32::MAX - 4);
    }

    #[test]
    fn timer_follows_the_host_clock() {
        let (mut pm, _, _) = device();
        let first = read32(&mut pm, PM_TMR);
        let mut last = first;
        for _ in 0..1000 {
            let now = read32(&mut pm, PM_TMR);
            assert!(now >= last, "timer went back from {last} to {now}");
            last = now;
        }
        let before = read32(&mut pm, PM_TMR);
        std::thread::sleep(Duration::from_millis(20));
        let after = read32(&mut pm, PM_TMR);
        let ticks = after.wrapping_sub(before);
        // At least 20 ms worth; at most a few seconds even on a loaded machine.
        assert!(ticks >= 71_590, "{ticks} ticks in 20 ms");
        assert!(ticks < 10 * 3_579_545, "{ticks} ticks in 20 ms");
        // A byte read sees the same counter.
        let mut low = [0u8; 1];
        pm.read(PM_TMR + 3, &mut low);
        assert_eq!(low[0], (read32(&mut pm, PM_TMR) >> 24) as u8);
    }

    #[test]
    fn sci_en_reads_set_and_slp_en_reads_clear() {
        let (mut pm, _, power) = device();
        assert_eq!(read16(&mut pm, PM1_CNT) & SCI_EN, SCI_EN);
        write16(&mut pm, PM1_CNT, 0);
        assert_eq!(read16(&mut pm, PM1_CNT), SCI_EN);
        // An S3 request is refused (not offered in the DSDT) and leaves SLP_EN clear.
        write16(&mut pm, PM1_CNT, SCI_EN | (1 << SLP_TYP_SHIFT) | SLP_EN);
        assert_eq!(read16(&mut pm, PM1_CNT), SCI_EN | (1 << SLP_TYP_SHIFT));
        assert_eq!(power.pending(), None);
    }

    #[test]
    fn power_button_raises_the_sci_only_when_enabled() {
        let (mut pm, lines, _) = device();
        pm.press_power_button();
        assert_eq!(read16(&mut pm, PM1_STS) & PWRBTN_STS, PWRBTN_STS);
        assert!(!lines.level(SCI_IRQ));
        assert!(!pm.power_button_enabled());

        // Enabling the event with the status already set raises the line at once.
        write16(&mut pm, PM1_EN, PWRBTN_EN);
        assert!(pm.power_button_enabled());
        assert!(lines.level(SCI_IRQ));
        // It stays high (one edge, no repeats) until the status bit is cleared.
        let calls = lines.calls();
        let _ = read16(&mut pm, PM1_STS);
        write16(&mut pm, PM1_EN, PWRBTN_EN);
        assert_eq!(lines.calls(), calls);

        // Writing zero bits clears nothing; writing the bit clears it and lowers the line.
        write16(&mut pm, PM1_STS, 0);
        assert!(lines.level(SCI_IRQ));
        write16(&mut pm, PM1_STS, PWRBTN_STS);
        assert_eq!(read16(&mut pm, PM1_STS) & PWRBTN_STS, 0);
        assert!(!lines.level(SCI_IRQ));

        // A second press with the event enabled raises it directly.
        pm.press_power_button();
        assert!(lines.level(SCI_IRQ));
        // Disabling the event lowers the line but keeps the status.
        write16(&mut pm, PM1_EN, 0);
        assert!(!lines.level(SCI_IRQ));
        assert_eq!(read16(&mut pm, PM1_STS) & PWRBTN_STS, PWRBTN_STS);
    }

    #[test]
    fn status_is_write_one_to_clear_bytewise() {
        let (mut pm, lines, _) = device();
        write16(&mut pm, PM1_EN, PWRBTN_EN);
        pm.press_power_button();
        // A write to the low byte alone does not touch PWRBTN_STS (bit 8).
        pm.write(PM1_STS, &[0xff]);
        assert_eq!(read16(&mut pm, PM1_STS) & PWRBTN_STS, PWRBTN_STS);
        assert!(lines.level(SCI_IRQ));
        // The high byte does.
        pm.write(PM1_STS + 1, &[0x01]);
        assert_eq!(read16(&mut pm, PM1_STS) & PWRBTN_STS, 0);
        assert!(!lines.level(SCI_IRQ));
        // A 32-bit write over status and enable clears status and sets enable together.
        pm.press_power_button();
        pm.write(PM1_STS, &(u32::from(PWRBTN_STS) | (u32::from(PWRBTN_EN) << 16)).to_le_bytes());
        assert_eq!(read32(&mut pm, PM1_STS), u32::from(PWRBTN_EN) << 16);
    }

    #[test]
    fn gpe0_status_and_enable() {
        let (mut pm, lines, _) = device();
        write16(&mut pm, GPE0_EN, 0x0003);
        assert_eq!(read16(&mut pm, GPE0_EN), 0x0003);
        pm.gpe0_sts = 0x0002;
        pm.update_sci();
        assert!(lines.level(SCI_IRQ));
        write16(&mut pm, GPE0_STS, 0x0002);
        assert_eq!(read16(&mut pm, GPE0_STS), 0);
        assert!(!lines.level(SCI_IRQ));
    }

    #[test]
    fn s5_powers_off() {
        let (mut pm, _, power) = device();
        write16(&mut pm, PM1_CNT, SCI_EN | (SLP_TYP_S5 << SLP_TYP_SHIFT));
        assert_eq!(power.pending(), None, "SLP_TYP alone must not sleep");
        write16(&mut pm, PM1_CNT, SCI_EN | (SLP_TYP_S5 << SLP_TYP_SHIFT) | SLP_EN);
        assert_eq!(power.pending(), Some(PowerEvent::PowerOff));
    }

    #[test]
    fn s5_through_a_high_byte_write() {
        let (mut pm, _, power) = device();
        pm.write(PM1_CNT + 1, &[((SLP_TYP_S5 << SLP_TYP_SHIFT | SLP_EN) >> 8) as u8]);
        assert_eq!(power.pending(), Some(PowerEvent::PowerOff));
    }

    #[test]
    fn odd_accesses_stay_in_range() {
        let (mut pm, _, _) = device();
        let mut wide = [0u8; 8];
        pm.read(PM_LEN - 2, &mut wide);
        assert_eq!(&wide[2..], &[0xff; 6]);
        pm.read(u64::MAX, &mut wide);
        pm.write(u64::MAX - 1, &[0xff; 8]);
        pm.write(PM_TMR, &[0xff; 4]);
        assert_eq!(read16(&mut pm, PM1_CNT), SCI_EN);
    }
}
