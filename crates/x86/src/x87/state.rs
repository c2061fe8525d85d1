//! The x87 environment and state images: FNSTENV/FLDENV, FNSAVE/FRSTOR (16- and 32-bit,
//! real- and protected-mode layouts) and FXSAVE/FXRSTOR.

use super::float::{class, Class};
use crate::cpu::*;
use iced_x86::{Instruction, MemorySize, Mnemonic as M};

impl Cpu {
    /// The full tag word, derived from the registers' contents.
    pub(crate) fn full_tag(&self) -> u16 {
        let mut t = 0;
        for p in 0..8 {
            let tag = if self.fpu.ftw & (1 << p) == 0 {
                3
            } else {
                match class(self.fpu.st[p]) {
                    Class::Normal => 0,
                    Class::Zero => 1,
                    _ => 2,
                }
            };
            t |= tag << (2 * p);
        }
        t
    }

    fn env16(ins: &Instruction) -> bool {
        matches!(ins.memory_size(), MemorySize::FpuEnv14 | MemorySize::FpuState94)
    }

    fn real_layout(&self) -> bool {
        !self.protected() || self.v86()
    }

    /// The environment image as (offset, size, value) writes.
    fn env_image(&self, small: bool) -> Vec<(u64, usize, u64)> {
        let f = &self.fpu;
        let (cw, sw, tw) = (f.fcw as u64, self.fsw() as u64, self.full_tag() as u64);
        let fop = f.fop as u64 & 0x7ff;
        let real = self.real_layout();
        let lip = ((f.fcs as u64) << 4).wrapping_add(f.fip);
        let ldp = ((f.fds as u64) << 4).wrapping_add(f.fdp);
        if small {
            let (w3, w4, w5, w6) = if real {
                (lip & 0xffff, ((lip >> 4) & 0xf000) | fop, ldp & 0xffff, (ldp >> 4) & 0xf000)
            } else {
                (f.fip & 0xffff, f.fcs as u64, f.fdp & 0xffff, f.fds as u64)
            };
            vec![(0, 2, cw), (2, 2, sw), (4, 2, tw), (6, 2, w3), (8, 2, w4), (10, 2, w5), (12, 2, w6)]
        } else {
            let hi = 0xffff_0000;
            let (w3, w4, w5, w6) = if real {
                (
                    hi | (lip & 0xffff),
                    ((lip >> 4) & 0x0fff_f000) | fop,
                    hi | (ldp & 0xffff),
                    (ldp >> 4) & 0x0fff_f000,
                )
            } else {
                (f.fip & 0xffff_ffff, f.fcs as u64 | (fop << 16), f.fdp & 0xffff_ffff, hi | f.fds as u64)
            };
            vec![
                (0, 4, hi | cw),
                (4, 4, hi | sw),
                (8, 4, hi | tw),
                (12, 4, w3),
                (16, 4, w4),
                (20, 4, w5),
                (24, 4, w6),
            ]
        }
    }

    fn store_image(&mut self, ins: &Instruction, regs: bool) -> R<()> {
        let seg = self.mem_seg(ins);
        let ea = self.ea(ins);
        let small = Self::env16(ins);
        let env_len = if small { 14 } else { 28 };
        let len = if regs { env_len + 80 } else { env_len };
        self.x87_probe_image(seg, ea, len as usize, if small { 2 } else { 4 }, true)?;
        for (off, size, v) in self.env_image(small) {
            self.write(seg, ea.wrapping_add(off), size, v)?;
        }
        if regs {
            for i in 0..8 {
                let v = self.fpu.st[self.phys(i)];
                let off = ea.wrapping_add(env_len + 10 * i as u64);
                self.write(seg, off, 8, v as u64)?;
                self.write(seg, off.wrapping_add(8), 2, (v >> 64) as u64)?;
            }
        }
        Ok(())
    }

    pub(super) fn fnstenv(&mut self, ins: &Instruction) -> R<()> {
        self.store_image(ins, false)?;
        self.fpu.fcw |= 0x3f;
        Ok(())
    }

    pub(super) fn fnsave(&mut self, ins: &Instruction) -> R<()> {
        self.store_image(ins, true)?;
        self.fninit();
        Ok(())
    }

    /// Reads an environment (and the registers) then loads it all at once.
    fn load_image(&mut self, ins: &Instruction, regs: bool) -> R<()> {
        let seg = self.mem_seg(ins);
        let ea = self.ea(ins);
        let small = Self::env16(ins);
        let (step, size) = if small { (2u64, 2usize) } else { (4, 4) };
        let len = 7 * step + if regs { 80 } else { 0 };
        self.x87_probe_image(seg, ea, len as usize, size, false)?;
        let mut w = [0u64; 7];
        for (i, x) in w.iter_mut().enumerate() {
            *x = self.read(seg, ea.wrapping_add(step * i as u64), size)?;
        }
        let env_len = 7 * step;
        let mut st = [0u128; 8];
        if regs {
            for (i, r) in st.iter_mut().enumerate() {
                let off = ea.wrapping_add(env_len + 10 * i as u64);
                let lo = self.read(seg, off, 8)?;
                let hi = self.read(seg, off.wrapping_add(8), 2)?;
                *r = lo as u128 | ((hi as u128) << 64);
            }
        }
        let real = self.real_layout();
        let f = &mut self.fpu;
        f.fcw = super::fcw_bits(w[0] as u16);
        f.fsw = w[1] as u16 & !0x3800;
        f.top = ((w[1] >> 11) & 7) as u8;
        let tw = w[2] as u16;
        f.ftw = (0..8).filter(|p| (tw >> (2 * p)) & 3 != 3).fold(0, |a, p| a | (1 << p));
        if real {
            // The linear pointers' high bits sit above the opcode, from bit 12.
            f.fip = (w[3] & 0xffff) | ((w[4] & 0x0fff_f000) << 4);
            f.fop = (w[4] & 0x7ff) as u16;
            f.fdp = (w[5] & 0xffff) | ((w[6] & 0x0fff_f000) << 4);
            f.fcs = 0;
            f.fds = 0;
        } else {
            f.fip = w[3] & if small { 0xffff } else { 0xffff_ffff };
            f.fcs = w[4] as u16;
            f.fop = if small { 0 } else { ((w[4] >> 16) & 0x7ff) as u16 };
            f.fdp = w[5] & if small { 0xffff } else { 0xffff_ffff };
            f.fds = w[6] as u16;
        }
        if regs {
            for (i, v) in st.into_iter().enumerate() {
                let p = self.phys(i);
                self.fpu.st[p] = v;
            }
        }
        self.update_es();
        Ok(())
    }

    pub(super) fn fldenv(&mut self, ins: &Instruction) -> R<()> {
        self.load_image(ins, false)
    }

    pub(super) fn frstor(&mut self, ins: &Instruction) -> R<()> {
        self.load_image(ins, true)
    }

    pub(super) fn fxsave(&mut self, ins: &Instruction) -> R<()> {
        let seg = self.mem_seg(ins);
        let ea = self.ea(ins);
        self.x87_probe_fx(seg, ea, true)?;
        let f = self.fpu.clone();
        let w0 = f.fcw as u64
            | ((self.fsw() as u64) << 16)
            | ((f.ftw as u64) << 32)
            | ((f.fop as u64 & 0x7ff) << 48);
        self.write(seg, ea, 8, w0)?;
        if ins.mnemonic() == M::Fxsave64 {
            self.write(seg, ea.wrapping_add(8), 8, f.fip)?;
            self.write(seg, ea.wrapping_add(16), 8, f.fdp)?;
        } else {
            self.write(seg, ea.wrapping_add(8), 8, (f.fip & 0xffff_ffff) | ((f.fcs as u64) << 32))?;
            self.write(seg, ea.wrapping_add(16), 8, (f.fdp & 0xffff_ffff) | ((f.fds as u64) << 32))?;
        }
        self.write(seg, ea.wrapping_add(24), 8, f.mxcsr as u64 | (0xffffu64 << 32))?;
        for i in 0..8 {
            let st = f.st[self.phys(i)];
            let off = ea.wrapping_add(32 + 16 * i as u64);
            self.write(seg, off, 8, st as u64)?;
            self.write(seg, off.wrapping_add(8), 8, (st >> 64) as u64 & 0xffff)?;
        }
        let n = if self.mode64() { 16 } else { 8 };
        for (i, x) in f.xmm.iter().take(n).enumerate() {
            let off = ea.wrapping_add(160 + 16 * i as u64);
            self.write(seg, off, 8, *x as u64)?;
            self.write(seg, off.wrapping_add(8), 8, (x >> 64) as u64)?;
        }
        Ok(())
    }

    pub(super) fn fxrstor(&mut self, ins: &Instruction) -> R<()> {
        let seg = self.mem_seg(ins);
        let ea = self.ea(ins);
        self.x87_probe_fx(seg, ea, false)?;
        let w0 = self.read(seg, ea, 8)?;
        let w1 = self.read(seg, ea.wrapping_add(8), 8)?;
        let w2 = self.read(seg, ea.wrapping_add(16), 8)?;
        let mx = self.read(seg, ea.wrapping_add(24), 4)? as u32;
        if mx & !0xffff != 0 {
            return Err(gp(0));
        }
        let mut st = [0u128; 8];
        for (i, r) in st.iter_mut().enumerate() {
            let off = ea.wrapping_add(32 + 16 * i as u64);
            let lo = self.read(seg, off, 8)?;
            let hi = self.read(seg, off.wrapping_add(8), 2)?;
            *r = lo as u128 | ((hi as u128) << 64);
        }
        let n = if self.mode64() { 16 } else { 8 };
        let mut xmm = [0u128; 16];
        for (i, x) in xmm.iter_mut().take(n).enumerate() {
            let off = ea.wrapping_add(160 + 16 * i as u64);
            let lo = self.read(seg, off, 8)?;
            let hi = self.read(seg, off.wrapping_add(8), 8)?;
            *x = lo as u128 | ((hi as u128) << 64);
        }
        let wide = ins.mnemonic() == M::Fxrstor64;
        let f = &mut self.fpu;
        f.fcw = super::fcw_bits(w0 as u16);
        let fsw = (w0 >> 16) as u16;
        f.fsw = fsw & !0x3800;
        f.top = ((fsw >> 11) & 7) as u8;
        f.ftw = (w0 >> 32) as u8;
        f.fop = ((w0 >> 48) & 0x7ff) as u16;
        if wide {
            f.fip = w1;
            f.fdp = w2;
        } else {
            f.fip = w1 & 0xffff_ffff;
            f.fcs = (w1 >> 32) as u16;
            f.fdp = w2 & 0xffff_ffff;
            f.fds = (w2 >> 32) as u16;
        }
        f.mxcsr = mx;
        f.xmm[..n].copy_from_slice(&xmm[..n]);
        for (i, v) in st.into_iter().enumerate() {
            let p = self.phys(i);
            self.fpu.st[p] = v;
        }
        self.update_es();
        Ok(())
    }
}
