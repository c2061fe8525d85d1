//! CPU state, linear and physical memory access, paging with a software TLB.

use crate::flags::{self, Lazy, LazyOp};
pub(crate) use crate::phys::{PhysMem, Place};
use machine::vcpu::IoHandler;
use std::sync::Arc;

/// A fault raised while executing an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An exception vector with an optional error code.
    Exc(u8, Option<u32>),
    /// Three faults in a row: the machine resets.
    TripleFault,
}

pub type R<T> = Result<T, Fault>;

pub const DE: u8 = 0;
pub const UD: u8 = 6;
pub const NM: u8 = 7;
pub const DF_V: u8 = 8;
pub const NP: u8 = 11;
pub const SS_V: u8 = 12;
pub const GP: u8 = 13;
pub const PF_V: u8 = 14;

#[inline]
pub fn gp(code: u32) -> Fault {
    Fault::Exc(GP, Some(code))
}
#[inline]
pub fn ud() -> Fault {
    Fault::Exc(UD, None)
}

/// The fault of an access through SS: a non-canonical address raises #SS(0) there, where
/// any other segment raises #GP(0) (the only #GP(0) a linear access raises).
#[inline]
pub fn on_stack(f: Fault) -> Fault {
    match f {
        Fault::Exc(GP, Some(0)) => Fault::Exc(SS_V, Some(0)),
        f => f,
    }
}

/// Whether `lin` is canonical with 48-bit linear addresses.
#[inline]
pub fn canonical(lin: u64) -> bool {
    ((lin as i64) << 16 >> 16) as u64 == lin
}

pub const CR0_PE: u64 = 1;
pub const CR0_MP: u64 = 2;
pub const CR0_EM: u64 = 4;
pub const CR0_TS: u64 = 8;
pub const CR0_ET: u64 = 0x10;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PSE: u64 = 1 << 4;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_PGE: u64 = 1 << 7;
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const EFER_SCE: u64 = 1;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const EFER_NXE: u64 = 1 << 11;

pub const ES: usize = 0;
pub const CS: usize = 1;
pub const SS: usize = 2;
pub const DS: usize = 3;
pub const FS: usize = 4;
pub const GS: usize = 5;

/// A segment register with its hidden descriptor cache.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    /// Descriptor byte 5 in bits 0-7 (type, S, DPL, P) and the flags nibble (AVL, L, D/B, G)
    /// in bits 12-15.
    pub attr: u16,
}

impl Segment {
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    pub fn long(&self) -> bool {
        self.attr & (1 << 13) != 0
    }
    pub fn big(&self) -> bool {
        self.attr & (1 << 14) != 0
    }
    pub fn present(&self) -> bool {
        self.attr & 0x80 != 0
    }
    /// A real-mode segment for `sel`.
    pub fn real(sel: u16, attr: u16) -> Self {
        Self { selector: sel, base: (sel as u64) << 4, limit: 0xffff, attr }
    }
}

/// A descriptor-table register.
#[derive(Clone, Copy, Default, Debug)]
pub struct TableReg {
    pub base: u64,
    pub limit: u32,
}

pub(crate) const TLB_SIZE: usize = 1024;

#[derive(Clone, Copy)]
pub(crate) struct TlbEntry {
    /// Linear page number + 1; 0 marks an empty entry.
    pub(crate) tag: u64,
    pub(crate) phys: u64,
    /// Host address of the page, or null when it is MMIO.
    pub(crate) host: *mut u8,
    pub(crate) writable: bool,
    pub(crate) user: bool,
    pub(crate) global: bool,
    pub(crate) read_only_rom: bool,
    pub(crate) nx: bool,
    /// Writable RAM (not ROM, not MMIO) that holds no decoded code: stores may go straight
    /// to `host` (`Cpu::mark_code` clears it when code is decoded from the page).
    pub(crate) fast_write: bool,
}

const EMPTY: TlbEntry = TlbEntry {
    tag: 0,
    phys: 0,
    host: std::ptr::null_mut(),
    writable: false,
    user: false,
    global: false,
    read_only_rom: false,
    nx: false,
    fast_write: false,
};

/// What kind of access a translation is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

/// x87 and SSE state.
#[derive(Clone, Debug)]
pub struct FpuState {
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    pub fcw: u16,
    pub fsw: u16,
    pub ftw: u8,
    /// The x87 registers as raw 80-bit values, by physical register number.
    pub st: [u128; 8],
    pub top: u8,
    /// The last non-control x87 instruction: opcode (11 bits), address and data pointer.
    pub fop: u16,
    pub fip: u64,
    pub fcs: u16,
    pub fdp: u64,
    pub fds: u16,
}

impl Default for FpuState {
    fn default() -> Self {
        Self {
            xmm: [0; 16],
            mxcsr: 0x1f80,
            fcw: 0x37f,
            fsw: 0,
            ftw: 0,
            st: [0; 8],
            top: 0,
            fop: 0,
            fip: 0,
            fcs: 0,
            fdp: 0,
            fds: 0,
        }
    }
}

/// One x86-64 CPU.
pub struct Cpu {
    pub regs: [u64; 16],
    pub rip: u64,
    /// RFLAGS; the status bits are stale while `lazy.op` is not `None`.
    pub(crate) rflags: u64,
    pub(crate) lazy: Lazy,
    pub segs: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: TableReg,
    pub idtr: TableReg,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub dr: [u64; 8],
    pub cpl: u8,
    pub fpu: FpuState,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub fmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub pat: u64,
    /// IA32_SPEC_CTRL, kept for reads back (nothing speculates here).
    pub spec_ctrl: u64,
    pub apic_base: u64,
    pub tsc_aux: u64,
    pub misc_enable: u64,
    pub mtrr: std::collections::HashMap<u32, u64>,
    pub tsc_offset: i64,
    /// IA32_TSC_ADJUST.
    pub tsc_adjust: u64,
    pub halted: bool,
    /// A PAUSE ran (a spin-wait): vCPUs that take turns hand the turn on.
    pub paused: bool,
    /// Interrupts are held off for one instruction (after STI, MOV SS, POP SS).
    pub inhibit_irq: bool,
    /// The vCPU index (APIC ID).
    pub id: u32,
    pub(crate) phys: PhysMem,
    pub(crate) tlb: [TlbEntry; TLB_SIZE],
    pub(crate) io: Option<*const (dyn IoHandler + 'static)>,
    pub(crate) apic: Option<Arc<irqchip::LocalApic>>,
    /// RIP of the instruction being executed (faults restart it).
    pub(crate) cur_ip: u64,
    /// The fault a block handler stopped with.
    pub(crate) fault: Fault,
    /// The op that ended the last chain of ops (`block::leave`), as an address.
    pub(crate) exit_op: usize,
    /// The code of the running instruction's decoder (16, 32 or 64).
    pub(crate) bitness: u32,
    pub(crate) icache_gen: u64,
    pub(crate) icache: crate::block::BlockCache,
    pub(crate) start: std::time::Instant,
    /// The compiling tier, when on.
    #[cfg(feature = "jit")]
    pub(crate) jit: Option<Box<crate::jit::Jit>>,
    /// A value a compiled block's slow-path helper hands back.
    #[cfg(feature = "jit")]
    pub(crate) jit_tmp: u64,
}

// SAFETY: `io` is only set while `run` holds the `&dyn IoHandler` it points to (which is Sync)
// and is cleared before `run` returns; the TLB's host pointers point into `phys`' mappings.
unsafe impl Send for Cpu {}

impl Cpu {
    /// A CPU in the reset state over `phys`.
    pub fn new(phys: PhysMem, id: u32) -> Self {
        let mut c = Self {
            regs: [0; 16],
            rip: 0,
            rflags: 2,
            lazy: Lazy::default(),
            segs: [Segment::default(); 6],
            ldtr: Segment::default(),
            tr: Segment::default(),
            gdtr: TableReg::default(),
            idtr: TableReg::default(),
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            dr: [0; 8],
            cpl: 0,
            fpu: FpuState::default(),
            star: 0,
            lstar: 0,
            cstar: 0,
            fmask: 0,
            kernel_gs_base: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            pat: 0x0007_0406_0007_0406,
            spec_ctrl: 0,
            apic_base: 0,
            tsc_aux: 0,
            misc_enable: 1,
            mtrr: Default::default(),
            tsc_offset: 0,
            tsc_adjust: 0,
            halted: false,
            paused: false,
            inhibit_irq: false,
            id,
            phys,
            tlb: [EMPTY; TLB_SIZE],
            io: None,
            apic: None,
            cur_ip: 0,
            fault: Fault::TripleFault,
            exit_op: 0,
            bitness: 16,
            icache_gen: 0,
            icache: Default::default(),
            start: std::time::Instant::now(),
            #[cfg(feature = "jit")]
            jit: crate::jit::Jit::new_if_enabled(),
            #[cfg(feature = "jit")]
            jit_tmp: 0,
        };
        c.reset();
        c
    }

    /// The architectural reset state: CS F000 with base FFFF0000, IP FFF0.
    pub fn reset(&mut self) {
        self.regs = [0; 16];
        self.regs[2] = 0x663; // EDX: family 6 model 6 stepping 3
        self.rip = 0xfff0;
        self.rflags = 2;
        self.lazy = Lazy::default();
        for s in self.segs.iter_mut() {
            *s = Segment::real(0, 0x93);
        }
        self.segs[CS] = Segment { selector: 0xf000, base: 0xffff_0000, limit: 0xffff, attr: 0x9b };
        self.ldtr = Segment { selector: 0, base: 0, limit: 0xffff, attr: 0x82 };
        self.tr = Segment { selector: 0, base: 0, limit: 0xffff, attr: 0x8b };
        self.gdtr = TableReg { base: 0, limit: 0xffff };
        self.idtr = TableReg { base: 0, limit: 0xffff };
        self.cr0 = CR0_ET | 0x6000_0000;
        self.cr2 = 0;
        self.cr3 = 0;
        self.cr4 = 0;
        self.efer = 0;
        self.cpl = 0;
        self.fpu = FpuState::default();
        self.apic_base = 0xfee0_0000 | (1 << 11) | if self.id == 0 { 1 << 8 } else { 0 };
        self.halted = false;
        self.inhibit_irq = false;
        self.flush_tlb(true);
    }

    // ---- flags ----

    /// The full RFLAGS value.
    #[inline]
    pub fn flags(&self) -> u64 {
        if self.lazy.op == LazyOp::None {
            self.rflags
        } else {
            (self.rflags & !flags::STATUS) | self.lazy.status(self.rflags)
        }
    }

    /// Replaces RFLAGS entirely.
    #[inline]
    pub fn set_flags(&mut self, v: u64) {
        self.lazy.op = LazyOp::None;
        self.rflags = (v & 0x3f_7fd5) | 2;
    }

    /// Sets the status flags in `bits` to the values in `vals`.
    #[inline]
    pub fn set_status(&mut self, bits: u64, vals: u64) {
        let f = self.flags();
        self.set_flags((f & !bits) | (vals & bits));
    }

    #[inline]
    pub fn flag(&self, bit: u64) -> bool {
        if bit == flags::CF {
            return self.carry();
        }
        if bit & flags::STATUS == 0 || self.lazy.op == LazyOp::None {
            self.rflags & bit != 0
        } else {
            self.lazy.status(self.rflags) & bit != 0
        }
    }

    /// Records an operation's flags; INC and DEC keep the current CF (`cin` is ignored).
    #[inline]
    pub(crate) fn set_lazy(&mut self, op: LazyOp, size: u8, a: u64, b: u64, res: u64, cin: bool) {
        let cin = if matches!(op, LazyOp::Inc | LazyOp::Dec) { self.carry() } else { cin };
        self.lazy = Lazy::new(op, size, a, b, res, cin);
    }

    /// CF, computed without materialising the other flags.
    #[inline]
    pub fn carry(&self) -> bool {
        self.lazy.carry(self.rflags)
    }

    // ---- modes ----

    #[inline]
    pub fn long_mode(&self) -> bool {
        self.efer & EFER_LMA != 0
    }
    #[inline]
    pub fn protected(&self) -> bool {
        self.cr0 & CR0_PE != 0
    }
    #[inline]
    pub fn v86(&self) -> bool {
        self.rflags & flags::VM != 0
    }
    /// Whether code runs in 64-bit mode.
    #[inline]
    pub fn mode64(&self) -> bool {
        self.long_mode() && self.segs[CS].long()
    }
    /// The decoder bitness for the current CS.
    pub fn code_bitness(&self) -> u32 {
        if self.mode64() {
            64
        } else if self.protected() && !self.v86() && self.segs[CS].big() {
            32
        } else {
            16
        }
    }
    /// The stack width in bytes.
    #[inline]
    pub fn stack_size(&self) -> u8 {
        if self.mode64() {
            8
        } else if self.segs[SS].big() && self.protected() {
            4
        } else {
            2
        }
    }

    // ---- registers ----

    #[inline]
    pub fn reg(&self, i: usize, size: u8) -> u64 {
        self.regs[i] & flags::mask(size)
    }
    #[inline]
    pub fn set_reg(&mut self, i: usize, size: u8, v: u64) {
        self.regs[i] = match size {
            1 => (self.regs[i] & !0xff) | (v & 0xff),
            2 => (self.regs[i] & !0xffff) | (v & 0xffff),
            4 => v & 0xffff_ffff,
            _ => v,
        };
    }

    // ---- TLB and paging ----

    /// Drops cached translations; global ones too when `all`.
    pub fn flush_tlb(&mut self, all: bool) {
        let keep_global = !all && self.cr4 & CR4_PGE != 0 && self.cr0 & CR0_PG != 0;
        for e in self.tlb.iter_mut() {
            if !(keep_global && e.global) {
                e.tag = 0;
            }
        }
        self.icache_gen = self.icache_gen.wrapping_add(1);
    }

    /// Drops the translation of one linear page.
    pub fn flush_page(&mut self, lin: u64) {
        let e = &mut self.tlb[((lin >> 12) as usize) % TLB_SIZE];
        if e.tag == (lin >> 12) + 1 {
            e.tag = 0;
        }
        self.icache_gen = self.icache_gen.wrapping_add(1);
    }

    fn user_access(&self) -> bool {
        self.cpl == 3
    }

    #[inline]
    pub(crate) fn tlb_lookup(&mut self, lin: u64, acc: Access) -> R<TlbEntry> {
        let vpn = lin >> 12;
        let e = self.tlb[(vpn as usize) % TLB_SIZE];
        if e.tag == vpn + 1 {
            let user = self.user_access();
            let ok = match acc {
                Access::Read => !user || e.user,
                Access::Write => e.writable && (!user || e.user),
                Access::Exec => (!user || e.user) && !e.nx,
            };
            if ok {
                return Ok(e);
            }
        }
        self.tlb_fill(lin, acc)
    }

    #[cold]
    fn tlb_fill(&mut self, lin: u64, acc: Access) -> R<TlbEntry> {
        // A non-canonical address never reaches the TLB: its tag matches no entry's.
        if self.long_mode() && !canonical(lin) {
            return Err(gp(0));
        }
        let user = self.user_access();
        let (phys, writable, user_ok, global, nx) = if self.cr0 & CR0_PG == 0 {
            (lin & 0xffff_f000, true, true, false, false)
        } else {
            self.walk(lin, acc, user)?
        };
        let (host, rom) = match self.phys.place(phys) {
            Place::Ram(p, ro, _) => (p, ro),
            Place::Mmio => (std::ptr::null_mut(), false),
        };
        let e = TlbEntry {
            tag: (lin >> 12) + 1,
            phys,
            host,
            writable,
            user: user_ok,
            global,
            read_only_rom: rom,
            nx,
            fast_write: writable && !host.is_null() && !rom && !self.phys.is_code(phys),
        };
        self.tlb[((lin >> 12) as usize) % TLB_SIZE] = e;
        Ok(e)
    }

    fn read_pte(&mut self, addr: u64, wide: bool) -> u64 {
        if wide {
            self.phys_read(addr, 8)
        } else {
            self.phys_read(addr, 4)
        }
    }

    fn write_pte(&mut self, addr: u64, wide: bool, v: u64) {
        self.phys_write(addr, if wide { 8 } else { 4 }, v);
    }

    /// Walks the page tables: (physical page, writable, user, global, no-execute).
    fn walk(&mut self, lin: u64, acc: Access, user: bool) -> R<(u64, bool, bool, bool, bool)> {
        let write = acc == Access::Write;
        let nxe = self.efer & EFER_NXE != 0;
        let pf = |cpu: &mut Cpu, present: bool, rsvd: bool| {
            cpu.cr2 = lin;
            let mut code = present as u32;
            if write {
                code |= 2;
            }
            if user {
                code |= 4;
            }
            if rsvd {
                code |= 8;
            }
            if acc == Access::Exec && nxe {
                code |= 16;
            }
            Fault::Exc(PF_V, Some(code))
        };
        let addr_mask: u64 = 0x000f_ffff_ffff_f000;
        let mut w = true;
        let mut u = true;
        let mut nx = false;
        let (mut table, levels, wide): (u64, u32, bool) = if self.long_mode() {
            (self.cr3 & addr_mask, 4, true)
        } else if self.cr4 & CR4_PAE != 0 {
            let idx = (lin >> 30) & 3;
            let pdpte = self.read_pte((self.cr3 & 0xffff_ffe0) + idx * 8, true);
            if pdpte & 1 == 0 {
                return Err(pf(self, false, false));
            }
            (pdpte & addr_mask, 2, true)
        } else {
            (self.cr3 & 0xffff_f000, 2, false)
        };
        let mut level = levels;
        loop {
            let shift = if wide { 12 + 9 * (level - 1) } else { 12 + 10 * (level - 1) };
            let idx = if wide { (lin >> shift) & 0x1ff } else { (lin >> shift) & 0x3ff };
            let eaddr = table + idx * if wide { 8 } else { 4 };
            let mut e = self.read_pte(eaddr, wide);
            if e & 1 == 0 {
                return Err(pf(self, false, false));
            }
            w &= e & 2 != 0;
            u &= e & 4 != 0;
            if wide && nxe && e >> 63 != 0 {
                nx = true;
            }
            let large = level > 1 && e & 0x80 != 0 && (wide || self.cr4 & CR4_PSE != 0) && level <= 3;
            let leaf = level == 1 || large;
            // Permission check before setting accessed/dirty bits.
            if leaf {
                let wp = self.cr0 & CR0_WP != 0;
                let denied = (user && !u) || (write && !w && (user || wp)) || (acc == Access::Exec && nx);
                if denied {
                    return Err(pf(self, true, false));
                }
            }
            let mut ne = e | 0x20;
            if leaf && write {
                ne |= 0x40;
            }
            if ne != e {
                self.write_pte(eaddr, wide, ne);
                e = ne;
            }
            if leaf {
                let global = e & 0x100 != 0;
                let phys = if large {
                    let size_shift = shift;
                    let base = if wide {
                        e & addr_mask & !((1u64 << size_shift) - 1)
                    } else {
                        // PSE-36: bits 13-16 of the entry give physical bits 32-35.
                        (e & 0xffc0_0000) | ((e >> 13) & 0xf) << 32
                    };
                    base | (lin & ((1u64 << size_shift) - 1) & !0xfff)
                } else if wide {
                    e & addr_mask
                } else {
                    e & 0xffff_f000
                };
                // A page is writable for the supervisor when CR0.WP is clear. Such an entry
                // is cached as supervisor-only, so that a later CPL3 access misses and walks
                // again instead of inheriting the supervisor's writability.
                let wp_override = !w && !user && self.cr0 & CR0_WP == 0;
                let eff_w = w || wp_override;
                // Only cache writability once the dirty bit is set.
                return Ok((phys, eff_w && (e & 0x40 != 0), u && !wp_override, global, nx));
            }
            table = if wide { e & addr_mask } else { e & 0xffff_f000 };
            level -= 1;
        }
    }

    // ---- physical access ----

    fn io(&self) -> &dyn IoHandler {
        match self.io {
            // SAFETY: set by `run` from a reference that outlives the call, cleared at its end.
            Some(p) => unsafe { &*p },
            None => &NO_IO,
        }
    }

    fn is_apic(&self, addr: u64) -> bool {
        self.apic.is_some() && self.apic_base & (1 << 11) != 0 && (addr & !0xfff) == (self.apic_base & !0xfff)
    }

    /// Reads `size` (1-8) bytes at physical `addr`.
    pub fn phys_read(&mut self, addr: u64, size: usize) -> u64 {
        match self.phys.place(addr) {
            Place::Ram(p, _, left) if left >= size as u64 => {
                let mut b = [0u8; 8];
                // SAFETY: `left` bytes are mapped from `p`; size <= left.
                unsafe { std::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), size) };
                u64::from_le_bytes(b)
            }
            Place::Ram(..) => {
                let mut v = 0;
                for i in 0..size {
                    v |= self.phys_read(addr + i as u64, 1) << (8 * i);
                }
                v
            }
            Place::Mmio => {
                if self.is_apic(addr) {
                    if let Some(a) = &self.apic {
                        return a.mmio_read(addr & 0xfff) as u64;
                    }
                }
                let mut b = [0u8; 8];
                self.new_slice();
                self.io().mmio_read(addr, &mut b[..size]);
                u64::from_le_bytes(b)
            }
        }
    }

    /// Writes `size` (1-8) bytes at physical `addr`.
    pub fn phys_write(&mut self, addr: u64, size: usize, v: u64) {
        match self.phys.place(addr) {
            Place::Ram(p, ro, left) if left >= size as u64 => {
                if ro {
                    return;
                }
                self.code_write(addr, size);
                let b = v.to_le_bytes();
                // SAFETY: `left` bytes are mapped from `p`; size <= left.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), p, size) };
            }
            Place::Ram(..) => {
                for i in 0..size {
                    self.phys_write(addr + i as u64, 1, v >> (8 * i));
                }
            }
            Place::Mmio => {
                if self.is_apic(addr) {
                    if let Some(a) = self.apic.clone() {
                        a.mmio_write(addr & 0xfff, v as u32);
                        return;
                    }
                }
                let b = v.to_le_bytes();
                self.new_slice();
                self.io().mmio_write(addr, &b[..size]);
            }
        }
    }

    /// Marks the physical page of `addr` as holding decoded code: stores to it must go
    /// through `code_write` from now on.
    pub(crate) fn mark_code(&mut self, addr: u64) {
        if self.phys.mark_code(addr) {
            let page = addr & !0xfff;
            for e in self.tlb.iter_mut() {
                if e.phys == page {
                    e.fast_write = false;
                }
            }
        }
    }

    #[inline]
    pub(crate) fn code_write(&mut self, addr: u64, size: usize) {
        if self.phys.take_code(addr) {
            self.invalidate_code(addr & !0xfff);
        }
        let end = addr + size as u64 - 1;
        if (end ^ addr) >> 12 != 0 && self.phys.take_code(end) {
            self.invalidate_code(end & !0xfff);
        }
    }

    // ---- linear access ----

    /// Reads `size` bytes (1, 2, 4 or 8) at linear `lin`: a TLB hit on RAM inside one page
    /// is read here, everything else in `lin_read_slow`.
    #[inline(always)]
    pub fn lin_read(&mut self, lin: u64, size: usize) -> R<u64> {
        if let Some(p) = self.read_ptr(lin, size) {
            // SAFETY: `read_ptr` gives `size` readable bytes.
            return Ok(unsafe { load(p, size) });
        }
        self.lin_read_slow(lin, size)
    }

    /// Where `size` bytes at linear `lin` can be read straight from host memory: a TLB hit on
    /// RAM inside one page, readable at the current privilege; None otherwise.
    #[inline(always)]
    pub(crate) fn read_ptr(&self, lin: u64, size: usize) -> Option<*const u8> {
        let off = (lin & 0xfff) as usize;
        let vpn = lin >> 12;
        let e = &self.tlb[(vpn as usize) % TLB_SIZE];
        if e.tag == vpn + 1 && off + size <= 4096 && !e.host.is_null() && (e.user || self.cpl != 3) {
            // SAFETY: the entry's host page is mapped for 4096 bytes and off < 4096.
            return Some(unsafe { e.host.add(off) });
        }
        None
    }

    /// Where `size` bytes at linear `lin` can be written straight to host memory: a TLB hit
    /// on writable RAM without decoded code, inside one page, writable at the current
    /// privilege; None otherwise.
    #[inline(always)]
    pub(crate) fn write_ptr(&self, lin: u64, size: usize) -> Option<*mut u8> {
        let off = (lin & 0xfff) as usize;
        let vpn = lin >> 12;
        let e = &self.tlb[(vpn as usize) % TLB_SIZE];
        if e.tag == vpn + 1 && off + size <= 4096 && e.fast_write && (e.user || self.cpl != 3) {
            // SAFETY: `fast_write` entries have a host page mapped for 4096 bytes; off < 4096.
            return Some(unsafe { e.host.add(off) });
        }
        None
    }

    #[inline(never)]
    fn lin_read_slow(&mut self, lin: u64, size: usize) -> R<u64> {
        let off = (lin & 0xfff) as usize;
        if off + size <= 4096 {
            let e = self.tlb_lookup(lin, Access::Read)?;
            if !e.host.is_null() {
                // SAFETY: the entry's host page is mapped for 4096 bytes and off + size <= 4096.
                return Ok(unsafe { load(e.host.add(off), size) });
            }
            return Ok(self.phys_read(e.phys | off as u64, size));
        }
        self.check_span(lin, size)?;
        let mut v = 0;
        for i in 0..size {
            v |= self.lin_read(lin.wrapping_add(i as u64), 1)? << (8 * i);
        }
        Ok(v)
    }

    /// Writes `size` bytes at linear `lin`: a TLB hit on writable RAM without decoded code,
    /// inside one page, is written here, the rest in `lin_write_slow`.
    #[inline(always)]
    pub fn lin_write(&mut self, lin: u64, size: usize, v: u64) -> R<()> {
        if let Some(p) = self.write_ptr(lin, size) {
            // SAFETY: `write_ptr` gives `size` writable bytes of a page without decoded code.
            unsafe { store(p, size, v) };
            return Ok(());
        }
        self.lin_write_slow(lin, size, v)
    }

    #[inline(never)]
    fn lin_write_slow(&mut self, lin: u64, size: usize, v: u64) -> R<()> {
        let off = (lin & 0xfff) as usize;
        if off + size <= 4096 {
            let e = self.tlb_lookup(lin, Access::Write)?;
            if !e.host.is_null() {
                if e.read_only_rom {
                    return Ok(());
                }
                self.code_write(e.phys | off as u64, size);
                // SAFETY: the entry's host page is mapped for 4096 bytes and off + size <= 4096.
                unsafe { store(e.host.add(off), size, v) };
                // The page's code is gone now: the next stores may take the fast path.
                let t = &mut self.tlb[((lin >> 12) as usize) % TLB_SIZE];
                if t.tag == (lin >> 12) + 1 && t.writable && !self.phys.is_code(e.phys) {
                    t.fast_write = true;
                }
                return Ok(());
            }
            self.phys_write(e.phys | off as u64, size, v);
            return Ok(());
        }
        // Check both pages before writing anything.
        self.check_span(lin, size)?;
        self.tlb_lookup(lin, Access::Write)?;
        self.probe_second_page(lin, size)?;
        for i in 0..size {
            self.lin_write(lin.wrapping_add(i as u64), 1, v >> (8 * i))?;
        }
        Ok(())
    }

    /// Checks that a read of the byte at `lin` would succeed (without reading: MMIO has
    /// side effects).
    pub fn probe_read(&mut self, lin: u64) -> R<()> {
        self.tlb_lookup(lin, Access::Read).map(|_| ())
    }

    /// Checks that a write to `lin` would succeed (for instructions that must not fault
    /// half-way).
    pub fn probe_write(&mut self, lin: u64, size: usize) -> R<()> {
        self.check_span(lin, size)?;
        self.tlb_lookup(lin, Access::Write)?;
        self.probe_second_page(lin, size)?;
        Ok(())
    }

    /// Translates the second page of an access that crosses into it for writing (the fault
    /// names its first byte, as CR2 on a real CPU does).
    #[inline]
    fn probe_second_page(&mut self, lin: u64, size: usize) -> R<()> {
        let last = lin.wrapping_add(size.max(1) as u64 - 1);
        if (last ^ lin) >> 12 != 0 {
            self.tlb_lookup(last & !0xfff, Access::Write)?;
        }
        Ok(())
    }

    /// A page-crossing access whose last byte is non-canonical raises #GP before either
    /// page is translated.
    #[inline]
    fn check_span(&self, lin: u64, size: usize) -> R<()> {
        if self.long_mode() && !(canonical(lin) && canonical(lin.wrapping_add(size.max(1) as u64 - 1))) {
            return Err(gp(0));
        }
        Ok(())
    }

    /// Reads the destination of a read-modify-write instruction: translated for writing, so
    /// that a fault reports a write and nothing is read from a page that cannot be written.
    #[inline]
    pub fn read_rmw(&mut self, seg: usize, off: u64, size: usize) -> R<u64> {
        let l = self.lin(seg, off);
        if let Some(p) = self.write_ptr(l, size) {
            // SAFETY: `write_ptr` gives `size` writable (so readable) bytes.
            return Ok(unsafe { load(p, size) });
        }
        self.lin_read_rmw(l, size).map_err(|f| if seg == SS { on_stack(f) } else { f })
    }

    /// `read_rmw` on a linear address.
    #[inline(never)]
    pub(crate) fn lin_read_rmw(&mut self, lin: u64, size: usize) -> R<u64> {
        self.probe_write(lin, size)?;
        self.lin_read(lin, size)
    }

    /// The linear address of `seg:off`.
    #[inline]
    pub fn lin(&self, seg: usize, off: u64) -> u64 {
        if self.mode64() {
            if seg >= FS {
                self.segs[seg].base.wrapping_add(off)
            } else {
                off
            }
        } else {
            self.segs[seg].base.wrapping_add(off) & 0xffff_ffff
        }
    }

    #[inline]
    pub fn read(&mut self, seg: usize, off: u64, size: usize) -> R<u64> {
        let l = self.lin(seg, off);
        self.lin_read(l, size).map_err(|f| if seg == SS { on_stack(f) } else { f })
    }
    #[inline]
    pub fn write(&mut self, seg: usize, off: u64, size: usize, v: u64) -> R<()> {
        let l = self.lin(seg, off);
        self.lin_write(l, size, v).map_err(|f| if seg == SS { on_stack(f) } else { f })
    }

    /// Reads a system structure (GDT, IDT, TSS) at linear `lin` with supervisor rights.
    pub fn sys_read(&mut self, lin: u64, size: usize) -> R<u64> {
        let cpl = self.cpl;
        self.cpl = 0;
        let r = self.lin_read(lin, size);
        self.cpl = cpl;
        r
    }
    pub fn sys_write(&mut self, lin: u64, size: usize, v: u64) -> R<()> {
        let cpl = self.cpl;
        self.cpl = 0;
        let r = self.lin_write(lin, size, v);
        self.cpl = cpl;
        r
    }

    /// Translates linear `lin` for an instruction fetch: (physical address, host pointer or
    /// null, bytes readable in that page).
    pub(crate) fn fetch_translate(&mut self, lin: u64) -> R<(u64, *mut u8)> {
        let e = self.tlb_lookup(lin, Access::Exec)?;
        Ok((e.phys | (lin & 0xfff), e.host))
    }

    // ---- stack ----

    /// PUSH when the stack slot is plain RAM (`write_ptr`); false (and nothing done)
    /// otherwise.
    #[inline(always)]
    pub(crate) fn push_fast(&mut self, size: usize, v: u64) -> bool {
        let ss = self.stack_size();
        let sp = self.reg(4, ss).wrapping_sub(size as u64) & flags::mask(ss);
        let Some(p) = self.write_ptr(self.lin(SS, sp), size) else { return false };
        // SAFETY: `write_ptr` gives `size` writable bytes.
        unsafe { store(p, size, v) };
        self.set_reg(4, ss, sp);
        true
    }

    /// POP when the stack slot is plain RAM (`read_ptr`); None (and nothing done) otherwise.
    #[inline(always)]
    pub(crate) fn pop_fast(&mut self, size: usize) -> Option<u64> {
        let ss = self.stack_size();
        let sp = self.reg(4, ss);
        let p = self.read_ptr(self.lin(SS, sp), size)?;
        // SAFETY: `read_ptr` gives `size` readable bytes.
        let v = unsafe { load(p, size) };
        self.set_reg(4, ss, sp.wrapping_add(size as u64));
        Some(v)
    }

    pub fn push(&mut self, size: usize, v: u64) -> R<()> {
        let ss = self.stack_size();
        let sp = self.reg(4, ss).wrapping_sub(size as u64) & flags::mask(ss);
        self.write(SS, sp, size, v)?;
        self.set_reg(4, ss, sp);
        Ok(())
    }

    pub fn pop(&mut self, size: usize) -> R<u64> {
        let ss = self.stack_size();
        let sp = self.reg(4, ss);
        let v = self.read(SS, sp, size)?;
        self.set_reg(4, ss, sp.wrapping_add(size as u64));
        Ok(v)
    }

    /// Reads the time-stamp counter (nanoseconds of host monotonic time since start).
    pub fn tsc(&self) -> u64 {
        (self.start.elapsed().as_nanos() as u64).wrapping_add(self.tsc_offset as u64)
    }
}

/// Reads `size` (1, 2, 4 or 8; else 8) little-endian bytes at `p`.
///
/// # Safety
/// `size` bytes from `p` must be mapped and readable.
#[inline(always)]
pub(crate) unsafe fn load(p: *const u8, size: usize) -> u64 {
    // SAFETY: the caller guarantees `size` readable bytes; unaligned reads are allowed.
    unsafe {
        match size {
            1 => *p as u64,
            2 => u16::from_le(std::ptr::read_unaligned(p as *const u16)) as u64,
            4 => u32::from_le(std::ptr::read_unaligned(p as *const u32)) as u64,
            _ => u64::from_le(std::ptr::read_unaligned(p as *const u64)),
        }
    }
}

/// Writes the low `size` (1, 2, 4 or 8; else 8) bytes of `v` at `p`, little-endian.
///
/// # Safety
/// `size` bytes from `p` must be mapped and writable.
#[inline(always)]
pub(crate) unsafe fn store(p: *mut u8, size: usize, v: u64) {
    // SAFETY: the caller guarantees `size` writable bytes; unaligned writes are allowed.
    unsafe {
        match size {
            1 => *p = v as u8,
            2 => std::ptr::write_unaligned(p as *mut u16, (v as u16).to_le()),
            4 => std::ptr::write_unaligned(p as *mut u32, (v as u32).to_le()),
            _ => std::ptr::write_unaligned(p as *mut u64, v.to_le()),
        }
    }
}

struct NoIo;
impl IoHandler for NoIo {
    fn pio_read(&self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&self, _port: u16, _data: &[u8]) {}
    fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _addr: u64, _data: &[u8]) {}
}
static NO_IO: NoIo = NoIo;
