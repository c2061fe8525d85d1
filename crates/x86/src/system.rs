//! Segmentation, far transfers, interrupts and exceptions, control registers.

use crate::cpu::*;
use crate::exec::Flow;
use crate::flags::{self, mask};
use iced_x86::{Instruction, Mnemonic as M, Register};

/// How an interrupt was raised.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IntKind {
    /// A fault or trap raised by the CPU.
    Exception,
    /// INT n, INT3, INTO.
    Software,
    /// A device interrupt.
    External,
}

impl Cpu {
    fn desc_table(&self, sel: u16) -> (u64, u32) {
        if sel & 4 != 0 {
            (self.ldtr.base, self.ldtr.limit)
        } else {
            (self.gdtr.base, self.gdtr.limit)
        }
    }

    /// Reads the 8-byte descriptor for `sel`; #GP(sel) when it lies outside its table.
    pub fn read_desc(&mut self, sel: u16) -> R<u64> {
        let (base, limit) = self.desc_table(sel);
        let idx = (sel & !7) as u64;
        if idx + 7 > limit as u64 {
            return Err(gp(sel as u32 & !3));
        }
        self.sys_read(base + idx, 8)
    }

    fn desc_to_seg(sel: u16, d: u64) -> Segment {
        let lo = d as u32 as u64;
        let hi = d >> 32;
        let base = (lo >> 16) | ((hi & 0xff) << 16) | (hi & 0xff00_0000);
        let mut limit = ((lo & 0xffff) | (hi & 0xf_0000)) as u32;
        if hi & (1 << 23) != 0 {
            limit = (limit << 12) | 0xfff;
        }
        let attr = (((hi >> 8) & 0xff) | (((hi >> 20) & 0xf) << 12)) as u16;
        Segment { selector: sel, base, limit, attr }
    }

    /// Loads segment register `s` with `sel` as MOV/POP/LxS do.
    pub fn load_seg(&mut self, s: usize, sel: u16) -> R<()> {
        if !self.protected() || self.v86() {
            let attr = self.segs[s].attr;
            self.segs[s].selector = sel;
            self.segs[s].base = (sel as u64) << 4;
            if self.v86() {
                self.segs[s].limit = 0xffff;
                self.segs[s].attr = attr | 0x80;
            }
            return Ok(());
        }
        if sel & !3 == 0 {
            if s == SS && !(self.mode64() && self.cpl != 3) {
                return Err(gp(0));
            }
            self.segs[s] =
                Segment { selector: sel, base: 0, limit: 0, attr: if s == SS { 0x4093 } else { 0 } };
            return Ok(());
        }
        let d = self.read_desc(sel)?;
        let seg = Self::desc_to_seg(sel, d);
        if seg.attr & 0x10 == 0 {
            return Err(gp(sel as u32 & !3));
        }
        if !seg.present() {
            return Err(Fault::Exc(if s == SS { SS_V } else { NP }, Some(sel as u32 & !3)));
        }
        self.set_accessed(sel, d)?;
        self.segs[s] = seg;
        Ok(())
    }

    fn set_accessed(&mut self, sel: u16, d: u64) -> R<()> {
        if d & (1 << 40) == 0 {
            let (base, _) = self.desc_table(sel);
            self.sys_write(base + (sel & !7) as u64 + 5, 1, (d >> 40) | 1)?;
        }
        Ok(())
    }

    /// Loads CS for a transfer to privilege level `cpl`.
    fn load_cs(&mut self, sel: u16, cpl: u8) -> R<()> {
        if !self.protected() || self.v86() {
            self.segs[CS].selector = sel;
            self.segs[CS].base = (sel as u64) << 4;
            return Ok(());
        }
        if sel & !3 == 0 {
            return Err(gp(0));
        }
        let d = self.read_desc(sel)?;
        let seg = Self::desc_to_seg(sel, d);
        if seg.attr & 0x18 != 0x18 {
            return Err(gp(sel as u32 & !3));
        }
        if !seg.present() {
            return Err(Fault::Exc(NP, Some(sel as u32 & !3)));
        }
        self.set_accessed(sel, d)?;
        self.segs[CS] = seg;
        self.segs[CS].selector = (sel & !3) | cpl as u16;
        self.cpl = cpl;
        Ok(())
    }

    fn ip_mask(&self) -> u64 {
        if self.mode64() {
            u64::MAX
        } else if self.segs[CS].big() && self.protected() && !self.v86() {
            0xffff_ffff
        } else {
            0xffff
        }
    }

    pub fn far_jump(&mut self, sel: u16, off: u64) -> R<()> {
        let cpl = self.cpl;
        self.load_cs(sel, cpl)?;
        self.rip = off & self.ip_mask();
        Ok(())
    }

    pub fn far_call(&mut self, sel: u16, off: u64, os: usize) -> R<()> {
        let cs = self.segs[CS].selector as u64;
        let ip = self.rip;
        let sp = self.regs[4];
        self.push(os, cs)?;
        self.push(os, ip)?;
        if let Err(e) = self.far_jump(sel, off) {
            self.regs[4] = sp;
            return Err(e);
        }
        Ok(())
    }

    pub fn far_ret(&mut self, os: usize, imm: u64) -> R<()> {
        let ss = self.stack_size();
        let sp = self.reg(4, ss);
        let ip = self.read(SS, sp, os)?;
        let cs = self.read(SS, sp.wrapping_add(os as u64) & mask(ss), os)? as u16;
        let mut nsp = sp.wrapping_add(2 * os as u64 + imm) & mask(ss);
        let rpl = (cs & 3) as u8;
        if self.protected() && !self.v86() && rpl > self.cpl {
            let new_sp = self.read(SS, nsp, os)?;
            let new_ss = self.read(SS, nsp.wrapping_add(os as u64) & mask(ss), os)? as u16;
            self.load_cs(cs, rpl)?;
            self.load_seg(SS, new_ss)?;
            nsp = new_sp.wrapping_add(imm);
            let ss2 = self.stack_size();
            self.set_reg(4, ss2.max(os as u8), nsp);
        } else {
            let cpl = if self.protected() && !self.v86() { rpl } else { 0 };
            self.load_cs(cs, cpl)?;
            self.set_reg(4, ss, nsp);
        }
        self.rip = ip & self.ip_mask();
        Ok(())
    }

    fn iret_flags(&mut self, v: u64, os: usize) {
        let mut changeable =
            flags::STATUS | flags::TF | flags::DF | flags::NT | flags::AC | flags::ID | flags::RF;
        if self.cpl == 0 || !self.protected() {
            changeable |= flags::IOPL | flags::IF;
        } else if self.cpl as u64 <= (self.rflags >> 12) & 3 {
            changeable |= flags::IF;
        }
        if os == 2 {
            changeable &= 0xffff;
        }
        let old = self.flags();
        self.set_flags((old & !changeable) | (v & changeable));
    }

    pub fn iret(&mut self, os: usize) -> R<()> {
        if !self.protected() {
            let ip = self.pop(os)?;
            let cs = self.pop(os)? as u16;
            let f = self.pop(os)?;
            self.load_cs(cs, 0)?;
            self.rip = ip & 0xffff;
            self.iret_flags(f, os);
            return Ok(());
        }
        if self.rflags & flags::NT != 0 && !self.long_mode() {
            log::warn!("x86: IRET to a nested task is not implemented");
            return Err(gp(0));
        }
        let ss = self.stack_size();
        let sp = self.reg(4, ss);
        let m = mask(ss);
        let ip = self.read(SS, sp, os)?;
        let cs = self.read(SS, sp.wrapping_add(os as u64) & m, os)? as u16;
        let f = self.read(SS, sp.wrapping_add(2 * os as u64) & m, os)?;
        let rpl = (cs & 3) as u8;
        if f & flags::VM != 0 && self.cpl == 0 && !self.long_mode() && os == 4 {
            log::warn!("x86: virtual-8086 mode is not implemented");
            return Err(gp(0));
        }
        let old_cpl = self.cpl;
        if rpl > self.cpl || self.mode64() {
            let nsp = self.read(SS, sp.wrapping_add(3 * os as u64) & m, os)?;
            let nss = self.read(SS, sp.wrapping_add(4 * os as u64) & m, os)? as u16;
            self.load_cs(cs, rpl)?;
            self.iret_flags_at(f, os, old_cpl);
            if nss & !3 == 0 && self.long_mode() {
                self.segs[SS] =
                    Segment { selector: nss, base: 0, limit: 0, attr: 0x4093 | ((rpl as u16) << 5) };
            } else {
                self.load_seg(SS, nss)?;
            }
            if self.mode64() {
                self.regs[4] = nsp;
            } else {
                let ss2 = self.stack_size();
                self.set_reg(4, ss2, nsp);
            }
            if rpl > old_cpl {
                for s in [ES, DS, FS, GS] {
                    let a = self.segs[s].attr;
                    // Data segments the outer level may not use become null.
                    if a & 0x1c != 0x1c && ((a >> 5) & 3) < rpl as u16 {
                        self.segs[s].selector = 0;
                        self.segs[s].attr = 0;
                    }
                }
            }
        } else {
            self.load_cs(cs, rpl)?;
            self.iret_flags_at(f, os, old_cpl);
            self.set_reg(4, ss, sp.wrapping_add(3 * os as u64) & m);
        }
        self.rip = ip & self.ip_mask();
        Ok(())
    }

    fn iret_flags_at(&mut self, f: u64, os: usize, cpl: u8) {
        let now = self.cpl;
        self.cpl = cpl;
        self.iret_flags(f, os);
        self.cpl = now;
    }

    pub fn software_interrupt(&mut self, v: u8) -> R<()> {
        if self.v86() && (self.rflags >> 12) & 3 != 3 {
            return Err(gp(0));
        }
        let next = self.rip;
        self.deliver(v, None, IntKind::Software, next)
    }

    /// Delivers interrupt `v`; `ret` is the RIP pushed as the return address.
    pub fn deliver(&mut self, v: u8, err: Option<u32>, kind: IntKind, ret: u64) -> R<()> {
        let f = self.flags();
        if !self.protected() {
            let idx = self.idtr.base + v as u64 * 4;
            let vec = self.sys_read(idx, 4)?;
            self.push(2, f)?;
            self.push(2, self.segs[CS].selector as u64)?;
            self.push(2, ret)?;
            self.load_cs((vec >> 16) as u16, 0)?;
            self.rip = vec & 0xffff;
            self.rflags &= !(flags::IF | flags::TF | flags::AC | flags::RF);
            return Ok(());
        }
        let ext = if kind == IntKind::Software { 0 } else { 1 };
        let gsz = if self.long_mode() { 16 } else { 8 };
        let off = v as u64 * gsz;
        if off + gsz - 1 > self.idtr.limit as u64 {
            return Err(gp(off as u32 + 2 + ext));
        }
        let lo = self.sys_read(self.idtr.base + off, 8)?;
        let hi = if gsz == 16 { self.sys_read(self.idtr.base + off + 8, 8)? } else { 0 };
        let typ = (lo >> 40) & 0xf;
        let dpl = ((lo >> 45) & 3) as u8;
        if kind == IntKind::Software && dpl < self.cpl {
            return Err(gp(off as u32 + 2));
        }
        if lo & (1 << 47) == 0 {
            return Err(Fault::Exc(NP, Some(off as u32 + 2 + ext)));
        }
        if !matches!(typ, 0x6 | 0x7 | 0xe | 0xf) {
            log::warn!("x86: IDT vector {v:#x} has gate type {typ:#x} (task gates are not implemented)");
            return Err(gp(off as u32 + 2 + ext));
        }
        let sel = (lo >> 16) as u16;
        let mut target = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000);
        if gsz == 16 {
            target |= hi << 32;
        }
        let gate32 = typ & 8 != 0;
        let trap = typ & 1 != 0;
        let d = self.read_desc(sel)?;
        let cseg = Self::desc_to_seg(sel, d);
        if cseg.attr & 0x18 != 0x18 {
            return Err(gp(sel as u32 & !3));
        }
        let conforming = cseg.attr & 4 != 0;
        let new_cpl = if conforming { self.cpl } else { cseg.dpl() };
        let old_ss = self.segs[SS].selector as u64;
        let old_sp = self.regs[4];
        let old_cs = self.segs[CS].selector as u64;
        if self.long_mode() {
            let ist = (lo >> 32) & 7;
            let mut rsp = if ist != 0 {
                self.sys_read(self.tr.base + 0x24 + (ist - 1) * 8, 8)?
            } else if new_cpl < self.cpl {
                self.sys_read(self.tr.base + 4 + new_cpl as u64 * 8, 8)?
            } else {
                old_sp
            };
            rsp &= !0xf;
            let frame: [u64; 5] = [ret, old_cs, f, old_sp, old_ss];
            let mut words: Vec<u64> = frame.to_vec();
            if let Some(e) = err {
                words.insert(0, e as u64);
            }
            let changed = new_cpl < self.cpl;
            let saved_cpl = self.cpl;
            self.cpl = new_cpl;
            for (i, w) in words.iter().enumerate().rev() {
                let _ = i;
                rsp = rsp.wrapping_sub(8);
                if let Err(e) = self.lin_write(rsp, 8, *w) {
                    self.cpl = saved_cpl;
                    return Err(e);
                }
            }
            self.cpl = saved_cpl;
            self.load_cs(sel, new_cpl)?;
            if changed {
                self.segs[SS] = Segment { selector: new_cpl as u16, base: 0, limit: 0, attr: 0x4093 };
            }
            self.regs[4] = rsp;
            self.rip = target;
        } else {
            let os = if gate32 { 4 } else { 2 };
            if new_cpl < self.cpl {
                let (nsp, nss) = if self.tr.attr & 0xf == 0x9 || self.tr.attr & 0xf == 0xb {
                    let sp = self.sys_read(self.tr.base + 4 + new_cpl as u64 * 8, 4)?;
                    let ss = self.sys_read(self.tr.base + 8 + new_cpl as u64 * 8, 2)?;
                    (sp, ss as u16)
                } else {
                    let sp = self.sys_read(self.tr.base + 2 + new_cpl as u64 * 4, 2)?;
                    let ss = self.sys_read(self.tr.base + 4 + new_cpl as u64 * 4, 2)?;
                    (sp, ss as u16)
                };
                let saved_cpl = self.cpl;
                self.cpl = new_cpl;
                if let Err(e) = self.load_seg(SS, nss) {
                    self.cpl = saved_cpl;
                    return Err(e);
                }
                let ss = self.stack_size();
                self.set_reg(4, ss, nsp);
                let r = (|| {
                    self.push(os, old_ss)?;
                    self.push(os, old_sp)?;
                    self.push(os, f)?;
                    self.push(os, old_cs)?;
                    self.push(os, ret)?;
                    if let Some(e) = err {
                        self.push(os, e as u64)?;
                    }
                    Ok(())
                })();
                if let Err(e) = r {
                    self.cpl = saved_cpl;
                    return Err(e);
                }
            } else {
                self.push(os, f)?;
                self.push(os, old_cs)?;
                self.push(os, ret)?;
                if let Some(e) = err {
                    self.push(os, e as u64)?;
                }
            }
            self.load_cs(sel, new_cpl)?;
            self.rip = target & if gate32 { 0xffff_ffff } else { 0xffff };
        }
        let mut clear = flags::TF | flags::NT | flags::RF | flags::VM;
        if !trap {
            clear |= flags::IF;
        }
        self.rflags &= !clear;
        Ok(())
    }

    /// Raises an exception for a fault, escalating to #DF and to a triple fault.
    pub fn raise(&mut self, fault: Fault) -> Result<(), Fault> {
        let Fault::Exc(v, err) = fault else { return Err(Fault::TripleFault) };
        let ret = self.cur_ip;
        let mut v = v;
        let mut err = err;
        let mut depth = 0;
        loop {
            match self.deliver(v, err, IntKind::Exception, ret) {
                Ok(()) => return Ok(()),
                Err(Fault::Exc(..)) if depth == 0 && v != DF_V => {
                    v = DF_V;
                    err = Some(0);
                    depth = 1;
                }
                Err(_) => return Err(Fault::TripleFault),
            }
        }
    }

    // ---- control registers ----

    pub fn set_cr0(&mut self, v: u64) -> R<()> {
        let v = v | CR0_ET;
        if v & CR0_PG != 0 && v & CR0_PE == 0 {
            return Err(gp(0));
        }
        let old = self.cr0;
        if v & CR0_PG != 0 && old & CR0_PG == 0 && self.efer & EFER_LME != 0 {
            if self.cr4 & CR4_PAE == 0 {
                return Err(gp(0));
            }
            self.efer |= EFER_LMA;
        }
        if v & CR0_PG == 0 && old & CR0_PG != 0 {
            self.efer &= !EFER_LMA;
        }
        self.cr0 = v & 0xffff_ffff;
        if (old ^ v) & (CR0_PG | CR0_PE | CR0_WP) != 0 {
            self.flush_tlb(true);
        }
        if (old ^ v) & CR0_PE != 0 && v & CR0_PE == 0 {
            self.cpl = 0;
        }
        Ok(())
    }

    pub fn set_cr4(&mut self, v: u64) -> R<()> {
        // PSE, PAE, MCE-less, PGE, OSFXSR, OSXMMEXCPT, TSD, DE, PVI-less.
        let allowed = 0x4 | 0x8 | CR4_PSE | CR4_PAE | CR4_PGE | 0x100 | CR4_OSFXSR | (1 << 10) | 0x40;
        if v & !allowed != 0 {
            return Err(gp(0));
        }
        if self.long_mode() && v & CR4_PAE == 0 {
            return Err(gp(0));
        }
        let old = self.cr4;
        self.cr4 = v;
        if (old ^ v) & (CR4_PSE | CR4_PAE | CR4_PGE) != 0 {
            self.flush_tlb(true);
        }
        Ok(())
    }

    pub fn set_cr3(&mut self, v: u64) {
        self.cr3 = v;
        self.flush_tlb(false);
    }

    pub(crate) fn mov_to_control(&mut self, ins: &Instruction) -> R<Flow> {
        self.check_cpl0()?;
        let r = ins.op0_register();
        let v = self.rd(ins, 1)?;
        if r.is_cr() {
            match r as usize - Register::CR0 as usize {
                0 => self.set_cr0(v)?,
                2 => self.cr2 = v,
                3 => self.set_cr3(v),
                4 => self.set_cr4(v)?,
                8 => self.cr8 = v & 0xf,
                _ => return Err(ud()),
            }
        } else {
            let i = r as usize - Register::DR0 as usize;
            if i < 8 {
                self.dr[i] = v;
            }
        }
        Ok(Flow::Branch)
    }

    pub(crate) fn mov_from_control(&mut self, ins: &Instruction) -> R<Flow> {
        self.check_cpl0()?;
        let r = ins.op1_register();
        let v = if r.is_cr() {
            match r as usize - Register::CR0 as usize {
                0 => self.cr0,
                2 => self.cr2,
                3 => self.cr3,
                4 => self.cr4,
                8 => self.cr8,
                _ => return Err(ud()),
            }
        } else {
            let i = r as usize - Register::DR0 as usize;
            match i {
                6 => 0xffff_0ff0 | (self.dr[6] & 0xf),
                7 => 0x400 | self.dr[7],
                i if i < 8 => self.dr[i],
                _ => 0,
            }
        };
        self.wr(ins, 0, v)?;
        Ok(Flow::Next)
    }

    pub(crate) fn fpu_check(&self) -> R<()> {
        if self.cr0 & (CR0_TS | CR0_MP) == (CR0_TS | CR0_MP) {
            return Err(Fault::Exc(NM, None));
        }
        Ok(())
    }

    /// System instructions and everything the integer core does not handle.
    pub(crate) fn exec_system(&mut self, ins: &Instruction) -> R<Flow> {
        let m = ins.mnemonic();
        match m {
            M::Cpuid => {
                let r = self.cpuid(self.regs[0] as u32, self.regs[1] as u32);
                for (i, reg) in [0usize, 3, 1, 2].iter().enumerate() {
                    self.regs[*reg] = r[i] as u64;
                }
            }
            M::Rdtsc | M::Rdtscp => {
                if self.cr4 & 4 != 0 && self.cpl != 0 {
                    return Err(gp(0));
                }
                let t = self.tsc();
                self.regs[0] = t & 0xffff_ffff;
                self.regs[2] = t >> 32;
                if m == M::Rdtscp {
                    self.regs[1] = self.tsc_aux & 0xffff_ffff;
                }
            }
            M::Rdrand => {
                // Host randomness (the OS's CSPRNG), so that the guest's RNG is ready at once.
                let size = self.op_size(ins, 0);
                match host_random() {
                    Some(v) => {
                        self.wr(ins, 0, v & flags::mask(size))?;
                        self.set_status(flags::STATUS, flags::CF);
                    }
                    None => {
                        self.wr(ins, 0, 0)?;
                        self.set_status(flags::STATUS, 0);
                    }
                }
            }
            M::Rdmsr => {
                self.check_cpl0()?;
                let v = self.rdmsr(self.regs[1] as u32)?;
                self.regs[0] = v & 0xffff_ffff;
                self.regs[2] = v >> 32;
            }
            M::Wrmsr => {
                self.check_cpl0()?;
                let v = (self.regs[0] & 0xffff_ffff) | (self.regs[2] << 32);
                self.wrmsr(self.regs[1] as u32, v)?;
                return Ok(Flow::Branch);
            }
            M::Lgdt | M::Lidt => {
                self.check_cpl0()?;
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                let limit = self.read(seg, ea, 2)? as u32;
                let base = if self.mode64() {
                    self.read(seg, ea + 2, 8)?
                } else {
                    let b = self.read(seg, ea + 2, 4)?;
                    if self.op_size_prefix16(ins) {
                        b & 0xff_ffff
                    } else {
                        b
                    }
                };
                let t = TableReg { base, limit };
                if m == M::Lgdt {
                    self.gdtr = t;
                } else {
                    self.idtr = t;
                }
            }
            M::Sgdt | M::Sidt => {
                let t = if m == M::Sgdt { self.gdtr } else { self.idtr };
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                self.write(seg, ea, 2, t.limit as u64)?;
                if self.mode64() {
                    self.write(seg, ea + 2, 8, t.base)?;
                } else {
                    self.write(seg, ea + 2, 4, t.base)?;
                }
            }
            M::Lldt | M::Ltr => {
                self.check_cpl0()?;
                if !self.protected() {
                    return Err(ud());
                }
                let sel = self.rd(ins, 0)? as u16;
                let seg = if sel & !3 == 0 {
                    Segment::default()
                } else {
                    let (base, limit) = (self.gdtr.base, self.gdtr.limit);
                    let idx = (sel & !7) as u64;
                    if sel & 4 != 0 || idx + 7 > limit as u64 {
                        return Err(gp(sel as u32 & !3));
                    }
                    let d = self.sys_read(base + idx, 8)?;
                    let mut s = Self::desc_to_seg(sel, d);
                    if self.long_mode() {
                        let hi = self.sys_read(base + idx + 8, 4)?;
                        s.base |= hi << 32;
                    }
                    if !s.present() {
                        return Err(Fault::Exc(NP, Some(sel as u32 & !3)));
                    }
                    if m == M::Ltr {
                        // Mark the TSS busy.
                        self.sys_write(base + idx + 5, 1, (d >> 40) | 2)?;
                        s.attr |= 2;
                    }
                    s
                };
                if m == M::Lldt {
                    self.ldtr = seg;
                } else {
                    self.tr = seg;
                }
            }
            M::Sldt => self.wr(ins, 0, self.ldtr.selector as u64)?,
            M::Str => self.wr(ins, 0, self.tr.selector as u64)?,
            M::Smsw => self.wr(ins, 0, self.cr0 & 0xffff)?,
            M::Lmsw => {
                self.check_cpl0()?;
                let v = self.rd(ins, 0)? & 0xf;
                // LMSW can set PE but never clear it.
                let nv = (self.cr0 & !0xe) | v | (self.cr0 & 1);
                self.set_cr0(nv)?;
                return Ok(Flow::Branch);
            }
            M::Clts => {
                self.check_cpl0()?;
                self.cr0 &= !CR0_TS;
            }
            M::Invlpg => {
                self.check_cpl0()?;
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                let l = self.lin(seg, ea);
                self.flush_page(l);
                return Ok(Flow::Branch);
            }
            M::Wbinvd | M::Invd => self.check_cpl0()?,
            M::Lar | M::Lsl => {
                let sel = self.rd(ins, 1)? as u16;
                let ok = sel & !3 != 0 && self.protected();
                let d = if ok { self.read_desc(sel).ok() } else { None };
                match d {
                    Some(d) => {
                        let v = if m == M::Lar {
                            (d >> 32) & 0x00f0_ff00
                        } else {
                            Self::desc_to_seg(sel, d).limit as u64
                        };
                        self.wr(ins, 0, v)?;
                        self.set_status(flags::ZF, flags::ZF);
                    }
                    None => self.set_status(flags::ZF, 0),
                }
            }
            M::Verr | M::Verw => {
                let sel = self.rd(ins, 0)? as u16;
                let ok = sel & !3 != 0 && self.read_desc(sel).is_ok();
                self.set_status(flags::ZF, if ok { flags::ZF } else { 0 });
            }
            M::Arpl => {
                let a = self.rd(ins, 0)?;
                let b = self.rd(ins, 1)?;
                if a & 3 < b & 3 {
                    self.wr(ins, 0, (a & !3) | (b & 3))?;
                    self.set_status(flags::ZF, flags::ZF);
                } else {
                    self.set_status(flags::ZF, 0);
                }
            }
            M::Swapgs => {
                if !self.mode64() {
                    return Err(ud());
                }
                self.check_cpl0()?;
                std::mem::swap(&mut self.segs[GS].base, &mut self.kernel_gs_base);
            }
            M::Syscall | M::Sysret | M::Sysretq | M::Sysenter | M::Sysexit | M::Sysexitq => {
                return self.fast_system_call(ins)
            }
            _ => return self.exec_fpu_sse(ins),
        }
        Ok(Flow::Next)
    }

    /// Whether LGDT/LIDT runs with a 16-bit operand size (only 24 bits of base).
    fn op_size_prefix16(&self, ins: &Instruction) -> bool {
        matches!(ins.code(), iced_x86::Code::Lgdt_m1632_16 | iced_x86::Code::Lidt_m1632_16)
    }

    /// Reports an instruction the interpreter does not implement (once per opcode) and
    /// raises #UD in the guest.
    pub(crate) fn unimplemented(&mut self, ins: &Instruction) -> R<Flow> {
        static SEEN: std::sync::Mutex<Vec<iced_x86::Code>> = std::sync::Mutex::new(Vec::new());
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&ins.code()) {
            seen.push(ins.code());
            log::warn!(
                "x86: unimplemented instruction {:?} at {:04x}:{:x}; the guest gets #UD",
                ins.code(),
                self.segs[CS].selector,
                self.cur_ip
            );
        }
        Err(ud())
    }
}

/// Eight bytes from the host's random device, read through a small buffer.
fn host_random() -> Option<u64> {
    use std::io::Read;
    use std::sync::Mutex;
    static POOL: Mutex<(Vec<u8>, Option<std::fs::File>)> = Mutex::new((Vec::new(), None));
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.0.len() < 8 {
        if pool.1.is_none() {
            pool.1 = std::fs::File::open("/dev/urandom").ok();
        }
        let mut buf = [0u8; 512];
        pool.1.as_mut()?.read_exact(&mut buf).ok()?;
        pool.0.extend_from_slice(&buf);
    }
    let n = pool.0.len();
    let mut b = [0u8; 8];
    b.copy_from_slice(&pool.0[n - 8..]);
    pool.0.truncate(n - 8);
    Some(u64::from_le_bytes(b))
}
