//! The interpreter runner: the same linear layout in a guest with 4-level paging, user pages
//! and CPL 3 (so that page-fault error codes match the host's user-mode ones), the
//! inaccessible page not present. The FP state goes in and out through the interpreter's own
//! FXRSTOR and FXSAVE, run from a stub page the instruction never reaches.

use super::{
    Outcome, State, Trap, CODE, DATA, DATA_LEN, DATA_PAGES, HOLE, INSN, LANDING, LOW_DATA, LOW_WINDOW,
    READ_ONLY, WINDOW,
};
use crate::cpu::{self, Fault, Segment};
use crate::InterpVcpu;
use machine::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest-physical places of the page tables and the window's pages.
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const PT: u64 = 0x4000;
/// The low window's directory and table.
const LOW_PD: u64 = 0x5000;
const LOW_PT: u64 = 0x6000;
const CODE_PHYS: u64 = 0x10000;
const FX_PHYS: u64 = 0x12000;
const STUB_PHYS: u64 = 0x13000;
const DATA_PHYS: u64 = 0x20000;
/// Linear addresses of the FX image page and the FXRSTOR/FXSAVE stubs (interpreter only).
const FX_IN: u64 = WINDOW + 0x2000;
const FX_OUT: u64 = WINDOW + 0x2200;
const STUB: u64 = WINDOW + 0x3000;
const STUB_SAVE: u64 = STUB + 0x100;
/// Room for code before the instruction.
const PRE_ROOM: usize = 0x40;

/// Which way the interpreter runs the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Decoded into a block with its threaded handler (what `run_for` does).
    Block,
    /// The same with the data pages in the TLB: the handlers' host-pointer fast paths.
    BlockWarm,
    /// Fetched and executed alone through `Cpu::exec` (`step_uncached`).
    Single,
}

pub(crate) struct Interp {
    mem: GuestMemory,
    vcpu: InterpVcpu,
}

impl Interp {
    pub fn new() -> Self {
        let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let pte_with = |table: u64, index: u64, target: u64, bits: u64| {
            mem.write_obj::<u64>(target | bits, GuestAddress(table + 8 * index)).unwrap();
        };
        // Present, writable, user.
        let pte = |table: u64, index: u64, target: u64| pte_with(table, index, target, 7);
        pte(PML4, (WINDOW >> 39) & 511, PDPT);
        pte(PDPT, (WINDOW >> 30) & 511, PD);
        pte(PD, (WINDOW >> 21) & 511, PT);
        let page = |lin: u64| (lin >> 12) & 511;
        pte(PT, page(CODE), CODE_PHYS);
        pte(PT, page(FX_IN), FX_PHYS);
        pte(PT, page(STUB), STUB_PHYS);
        pte(PDPT, (LOW_WINDOW >> 30) & 511, LOW_PD);
        pte(LOW_PD, (LOW_WINDOW >> 21) & 511, LOW_PT);
        for i in (0..DATA_PAGES as u64).filter(|&i| i != HOLE as u64) {
            let bits = if i == READ_ONLY as u64 { 5 } else { 7 };
            pte_with(PT, page(DATA) + i, DATA_PHYS + i * 4096, bits);
            pte_with(LOW_PT, page(LOW_DATA) + i, DATA_PHYS + i * 4096, bits);
        }
        // fxrstor64 [rip+FX_IN] at STUB, fxsave64 [rip+FX_OUT] at STUB_SAVE.
        let rip_rel = |at: u64, op: u8, target: u64| {
            let disp = target.wrapping_sub(at + 8) as i32;
            let mut b = vec![0x48, 0x0f, 0xae, op];
            b.extend_from_slice(&disp.to_le_bytes());
            mem.write_slice(&b, GuestAddress(STUB_PHYS + (at - STUB))).unwrap();
        };
        rip_rel(STUB, 0x0d, FX_IN);
        rip_rel(STUB_SAVE, 0x05, FX_OUT);
        let mut vcpu = InterpVcpu::new(&mem, u64::MAX, 0, None);
        let c = vcpu.cpu();
        c.cr3 = PML4;
        c.cr4 = cpu::CR4_PAE | cpu::CR4_OSFXSR | (1 << 10);
        c.efer = cpu::EFER_LME | cpu::EFER_LMA | cpu::EFER_NXE | cpu::EFER_SCE;
        c.cr0 = cpu::CR0_PE | cpu::CR0_PG | cpu::CR0_WP | cpu::CR0_ET | cpu::CR0_MP | (1 << 5);
        Self { mem, vcpu }
    }

    /// Runs `insn` at `INSN` from `s`, through `path`, after `pre` (register-only code placed
    /// just before it: the same block on the block path, a step of its own otherwise).
    pub fn run(&mut self, pre: &[u8], insn: &[u8], s: &State, path: Path) -> Outcome {
        let mem = &self.mem;
        let start = INSN - pre.len() as u64;
        let mut head = vec![0u8; PRE_ROOM];
        head[PRE_ROOM - pre.len()..].copy_from_slice(pre);
        mem.write_slice(&head, GuestAddress(CODE_PHYS + (INSN - CODE) - PRE_ROOM as u64)).unwrap();
        let mut code = vec![0u8; 0x100];
        code[..insn.len()].copy_from_slice(insn);
        // UD2 after the instruction ends the block: its #UD there means the instruction ran.
        code[insn.len()..insn.len() + 2].copy_from_slice(&[0x0f, 0x0b]);
        // And at the landing of taken branches.
        let landing = (LANDING - INSN) as usize;
        code[landing..landing + 2].copy_from_slice(&[0x0f, 0x0b]);
        mem.write_slice(&code, GuestAddress(CODE_PHYS + (INSN - CODE))).unwrap();
        mem.write_slice(&s.fx[..], GuestAddress(FX_PHYS)).unwrap();
        for i in (0..DATA_PAGES).filter(|&i| i != HOLE) {
            let off = i * 4096;
            mem.write_slice(&s.data[off..off + 4096], GuestAddress(DATA_PHYS + off as u64)).unwrap();
        }
        let c = self.vcpu.cpu();
        c.invalidate_code(CODE_PHYS);
        c.flush_tlb(true);
        let code_seg = Segment { selector: 0x33, base: 0, limit: 0xffff_ffff, attr: 0xa0fb };
        let data_seg = Segment { selector: 0x2b, base: 0, limit: 0xffff_ffff, attr: 0xc0f3 };
        let null = Segment { selector: 0, base: 0, limit: 0, attr: 0 };
        c.segs = [null, code_seg, data_seg, null, null, null];
        c.cpl = 3;
        c.halted = false;
        c.inhibit_irq = false;
        c.regs = s.gpr;
        c.cr2 = 0;
        c.rip = STUB;
        c.step_uncached().expect("the interpreter's FXRSTOR takes the state");
        c.set_flags(s.rflags);
        if path == Path::BlockWarm {
            for i in (0..DATA_PAGES as u64).filter(|&i| i != HOLE as u64) {
                if i == READ_ONLY as u64 {
                    c.probe_read(DATA + i * 4096).expect("the read-only page is readable");
                } else {
                    c.probe_write(DATA + i * 4096, 1).expect("the data pages are writable");
                }
            }
        }
        c.rip = start;
        if path == Path::Single && !pre.is_empty() {
            c.step_uncached().expect("register-only code runs");
        }
        let r = match path {
            Path::Block | Path::BlockWarm => match c.find_block() {
                Ok(Some(b)) => c.run_blocks(b, 1, false).1,
                Ok(None) => panic!("the instruction at {INSN:#x} does not make a block"),
                Err(f) => {
                    c.cur_ip = c.rip;
                    Err(f)
                }
            },
            Path::Single => c.step_uncached(),
        };
        let ud2_at = INSN + insn.len() as u64;
        let trap = match r {
            Ok(_) => None,
            Err(Fault::Exc(6, None)) if c.cur_ip == ud2_at || c.cur_ip == LANDING => {
                c.rip = c.cur_ip;
                None
            }
            Err(Fault::Exc(v, e)) => {
                c.rip = c.cur_ip;
                Some(Trap { vector: v, error: e.unwrap_or(0), cr2: if v == cpu::PF_V { c.cr2 } else { 0 } })
            }
            Err(Fault::TripleFault) => Some(Trap { vector: 0xff, error: 0, cr2: 0 }),
        };
        let mut out = State {
            gpr: c.regs,
            rip: c.rip,
            rflags: c.flags(),
            fx: Box::new([0; 512]),
            data: vec![0; DATA_LEN],
        };
        // FXSAVE at CPL 3 with the flags and registers it found (it changes neither).
        let (cpl, regs) = (c.cpl, c.regs);
        c.cpl = 3;
        c.segs[cpu::CS] = code_seg;
        c.rip = STUB_SAVE;
        c.step_uncached().expect("the interpreter's FXSAVE writes the state");
        c.cpl = cpl;
        c.regs = regs;
        mem.read_slice(&mut out.fx[..], GuestAddress(FX_PHYS + (FX_OUT - FX_IN))).unwrap();
        for i in (0..DATA_PAGES).filter(|&i| i != HOLE) {
            let off = i * 4096;
            mem.read_slice(&mut out.data[off..off + 4096], GuestAddress(DATA_PHYS + off as u64)).unwrap();
        }
        Outcome { state: out, trap }
    }
}
