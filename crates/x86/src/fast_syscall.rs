//! The fast system-call instructions: SYSCALL/SYSRET (64-bit code) and SYSENTER/SYSEXIT (the
//! 32-bit vDSO's system call on an Intel CPU, from compatibility mode too).

use crate::cpu::*;
use crate::exec::Flow;
use crate::flags;
use iced_x86::{Instruction, Mnemonic as M};

/// Flat 4 GiB segments: 64-bit code, 32-bit code, and data, each at DPL 0 or 3.
const CODE64: u16 = 0xa09b;
const CODE32: u16 = 0xc09b;
const DATA: u16 = 0xc093;
const DPL3: u16 = 0x60;

fn flat(selector: u16, attr: u16) -> Segment {
    Segment { selector, base: 0, limit: 0xffff_ffff, attr }
}

fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

impl Cpu {
    pub(crate) fn fast_system_call(&mut self, ins: &Instruction) -> R<Flow> {
        match ins.mnemonic() {
            M::Syscall => self.syscall()?,
            M::Sysret | M::Sysretq => self.sysret(ins.mnemonic() == M::Sysretq)?,
            M::Sysenter => self.sysenter()?,
            _ => self.sysexit(ins.mnemonic() == M::Sysexitq)?,
        }
        Ok(Flow::Branch)
    }

    /// Intel's SYSCALL: 64-bit mode only (#UD in compatibility mode, unlike AMD's).
    fn syscall(&mut self) -> R<()> {
        if self.efer & EFER_SCE == 0 || !self.mode64() {
            return Err(ud());
        }
        self.regs[1] = self.rip;
        self.regs[11] = self.flags() & !flags::RF;
        let sel = ((self.star >> 32) & 0xfffc) as u16;
        self.segs[CS] = flat(sel, CODE64);
        self.segs[SS] = flat(sel.wrapping_add(8), DATA);
        self.cpl = 0;
        self.rip = self.lstar;
        let f = self.flags() & !self.fmask & !flags::RF;
        self.set_flags(f);
        Ok(())
    }

    fn sysret(&mut self, to64: bool) -> R<()> {
        if self.efer & EFER_SCE == 0 || !self.mode64() {
            return Err(ud());
        }
        self.check_cpl0()?;
        if to64 && !canonical(self.regs[1]) {
            return Err(gp(0));
        }
        let base = ((self.star >> 48) & 0xffff) as u16;
        if to64 {
            self.segs[CS] = flat(base.wrapping_add(16) | 3, CODE64 | DPL3);
            self.rip = self.regs[1];
        } else {
            self.segs[CS] = flat(base | 3, CODE32 | DPL3);
            self.rip = self.regs[1] & 0xffff_ffff;
        }
        self.segs[SS].selector = base.wrapping_add(8) | 3;
        self.segs[SS].attr = DATA | DPL3;
        self.cpl = 3;
        let f = (self.regs[11] & 0x3c_7fd7) | 2;
        self.set_flags(f);
        Ok(())
    }

    fn sysenter(&mut self) -> R<()> {
        let cs = (self.sysenter_cs & 0xfffc) as u16;
        if !self.protected() || cs == 0 {
            return Err(gp(0));
        }
        let f = self.flags() & !(flags::VM | flags::IF | flags::RF);
        self.set_flags(f);
        let long = self.long_mode();
        self.segs[CS] = flat(cs, if long { CODE64 } else { CODE32 });
        self.segs[SS] = flat(cs.wrapping_add(8), DATA);
        self.cpl = 0;
        let keep = if long { u64::MAX } else { 0xffff_ffff };
        self.regs[4] = self.sysenter_esp & keep;
        self.rip = self.sysenter_eip & keep;
        Ok(())
    }

    fn sysexit(&mut self, to64: bool) -> R<()> {
        let cs = (self.sysenter_cs & 0xfffc) as u16;
        if !self.protected() || cs == 0 || self.cpl != 0 {
            return Err(gp(0));
        }
        if to64 {
            if !canonical(self.regs[2]) {
                return Err(gp(0));
            }
            self.segs[CS] = flat(cs.wrapping_add(32) | 3, CODE64 | DPL3);
            self.segs[SS] = flat(cs.wrapping_add(40) | 3, DATA | DPL3);
            self.regs[4] = self.regs[1];
            self.rip = self.regs[2];
        } else {
            self.segs[CS] = flat(cs.wrapping_add(16) | 3, CODE32 | DPL3);
            self.segs[SS] = flat(cs.wrapping_add(24) | 3, DATA | DPL3);
            self.regs[4] = self.regs[1] & 0xffff_ffff;
            self.rip = self.regs[2] & 0xffff_ffff;
        }
        self.cpl = 3;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests::{real_mode_vcpu, Recorder};

    /// A CPU in long mode whose code at 0x1000 runs in compatibility mode at CPL `cpl`.
    fn compat_vcpu(code: &[u8], cpl: u8) -> crate::InterpVcpu {
        let mut v = real_mode_vcpu(code);
        let c = v.cpu();
        c.efer = EFER_LME | EFER_LMA | EFER_SCE;
        c.cr0 |= CR0_PE;
        c.segs[CS] = flat(0x23, CODE32 | if cpl == 3 { DPL3 } else { 0 });
        c.cpl = cpl;
        c.sysenter_cs = 0x10;
        c.sysenter_esp = 0xffff_8000_0000_7000;
        c.sysenter_eip = 0x2000;
        v
    }

    #[test]
    fn sysenter_from_compatibility_mode_enters_64_bit_code_and_sysexit_returns() {
        // 0x1000 (compat): sysenter. The 64-bit handler it reaches at 0x2000 is written below:
        // mov edx, 0x1100; mov ecx, 0x5000; sysexit (to 32-bit code).
        let mut v = compat_vcpu(&[0x0f, 0x34], 3);
        let io = Recorder::default();
        let handler = [0xba, 0x00, 0x11, 0, 0, 0xb9, 0x00, 0x50, 0, 0, 0x0f, 0x35];
        for (i, b) in handler.iter().enumerate() {
            v.cpu().phys_write(0x2000 + i as u64, 1, *b as u64);
        }
        v.cpu().set_flags(0x202);
        v.run_for(&io, 1).unwrap();
        let c = v.cpu();
        assert_eq!((c.segs[CS].selector, c.segs[SS].selector, c.cpl), (0x10, 0x18, 0));
        assert!(c.mode64(), "SYSENTER in IA-32e mode enters 64-bit code");
        assert_eq!((c.rip, c.regs[4]), (0x2000, 0xffff_8000_0000_7000));
        assert!(!c.flag(flags::IF), "SYSENTER clears IF");
        v.run_for(&io, 3).unwrap();
        let c = v.cpu();
        assert_eq!((c.segs[CS].selector, c.segs[SS].selector, c.cpl), (0x23, 0x2b, 3));
        assert!(!c.mode64() && c.code_bitness() == 32);
        assert_eq!((c.rip, c.regs[4]), (0x1100, 0x5000));
    }

    #[test]
    fn syscall_outside_64_bit_mode_is_undefined_as_on_intel() {
        let mut v = compat_vcpu(&[0x0f, 0x05], 3);
        assert_eq!(v.cpu().syscall(), Err(ud()));
    }

    #[test]
    fn sysexit_needs_cpl_0_and_a_sysenter_selector() {
        let mut v = compat_vcpu(&[], 3);
        assert_eq!(v.cpu().sysexit(false), Err(gp(0)));
        let mut v = compat_vcpu(&[], 0);
        v.cpu().sysenter_cs = 0;
        assert_eq!(v.cpu().sysexit(false), Err(gp(0)));
        assert_eq!(v.cpu().sysenter(), Err(gp(0)));
    }
}
