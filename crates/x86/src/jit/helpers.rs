//! What the generated code calls: the slow paths of memory accesses and the flag
//! evaluations it does not inline, and where it finds the CPU state (field offsets).

use crate::cpu::{on_stack, Cpu, Segment, TlbEntry};
use crate::fast_alu::condition;
use crate::flags::Lazy;
use std::mem::{offset_of, size_of};

/// Offsets of the lazy-flags record's fields inside `Cpu`.
#[derive(Clone, Copy)]
pub(crate) struct LazyLayout {
    pub(crate) op: i32,
    pub(crate) size: i32,
    pub(crate) a: i32,
    pub(crate) b: i32,
    pub(crate) res: i32,
    pub(crate) cin: i32,
}

/// Where the software TLB lies inside `Cpu` and how an entry is laid out.
#[derive(Clone, Copy)]
pub(crate) struct TlbLayout {
    pub(crate) base: i32,
    pub(crate) stride: usize,
    pub(crate) entries: usize,
    pub(crate) tag: i32,
    pub(crate) host: i32,
    pub(crate) user: i32,
    pub(crate) fast_write: i32,
}

/// Field offsets of `Cpu` that generated code reads and writes.
pub(crate) struct Layout {
    pub(crate) regs: i32,
    pub(crate) rip: i32,
    pub(crate) lazy: LazyLayout,
    pub(crate) icache_gen: i32,
    pub(crate) cpl: i32,
    pub(crate) segs: i32,
    pub(crate) tmp: i32,
    pub(crate) tlb: TlbLayout,
}

impl Layout {
    pub(crate) fn new() -> Self {
        let lz = offset_of!(Cpu, lazy) as i32;
        Self {
            regs: offset_of!(Cpu, regs) as i32,
            rip: offset_of!(Cpu, rip) as i32,
            lazy: LazyLayout {
                op: lz + offset_of!(Lazy, op) as i32,
                size: lz + offset_of!(Lazy, size) as i32,
                a: lz + offset_of!(Lazy, a) as i32,
                b: lz + offset_of!(Lazy, b) as i32,
                res: lz + offset_of!(Lazy, res) as i32,
                cin: lz + offset_of!(Lazy, cin) as i32,
            },
            icache_gen: offset_of!(Cpu, icache_gen) as i32,
            cpl: offset_of!(Cpu, cpl) as i32,
            segs: offset_of!(Cpu, segs) as i32,
            tmp: offset_of!(Cpu, jit_tmp) as i32,
            tlb: TlbLayout {
                base: offset_of!(Cpu, tlb) as i32,
                stride: size_of::<TlbEntry>(),
                entries: crate::cpu::TLB_SIZE,
                tag: offset_of!(TlbEntry, tag) as i32,
                host: offset_of!(TlbEntry, host) as i32,
                user: offset_of!(TlbEntry, user) as i32,
                fast_write: offset_of!(TlbEntry, fast_write) as i32,
            },
        }
    }

    /// The offset of segment register `seg`'s base.
    pub(crate) fn seg_base(&self, seg: usize) -> i32 {
        self.segs + (seg.min(5) * size_of::<Segment>() + offset_of!(Segment, base)) as i32
    }
}

/// Size (bits 0-7), through SS (bit 8), read-modify-write (bit 9) of a memory access.
fn unpack(info: u32) -> (usize, bool, bool) {
    ((info & 0xff) as usize, info & 0x100 != 0, info & 0x200 != 0)
}

/// Reads memory for generated code: the value goes to `jit_tmp`; 1 when it faulted (the
/// fault in `Cpu::fault`), else 0.
pub(crate) extern "C" fn jit_read(c: *mut Cpu, lin: u64, info: u32) -> u32 {
    // SAFETY: generated code passes the `&mut Cpu` it was called with, and holds no other
    // reference to it during the call.
    let c = unsafe { &mut *c };
    let (size, ss, rmw) = unpack(info);
    let r = if rmw { c.lin_read_rmw(lin, size) } else { c.lin_read(lin, size) };
    match r {
        Ok(v) => {
            c.jit_tmp = v;
            0
        }
        Err(f) => {
            c.fault = if ss { on_stack(f) } else { f };
            1
        }
    }
}

/// Writes memory for generated code; 1 when it faulted (the fault in `Cpu::fault`).
pub(crate) extern "C" fn jit_write(c: *mut Cpu, lin: u64, info: u32, v: u64) -> u32 {
    // SAFETY: as in `jit_read`.
    let c = unsafe { &mut *c };
    let (size, ss, _) = unpack(info);
    match c.lin_write(lin, size, v) {
        Ok(()) => 0,
        Err(f) => {
            c.fault = if ss { on_stack(f) } else { f };
            1
        }
    }
}

/// Condition `cc` (a `cc_index`) of the stored flags.
pub(crate) extern "C" fn jit_cond(c: *mut Cpu, cc: u32) -> u32 {
    // SAFETY: as in `jit_read`.
    let c = unsafe { &*c };
    c.cond(condition(cc as u8)) as u32
}

/// CF of the stored flags.
pub(crate) extern "C" fn jit_carry(c: *mut Cpu) -> u32 {
    // SAFETY: as in `jit_read`.
    let c = unsafe { &*c };
    c.carry() as u32
}
