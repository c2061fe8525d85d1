//! Cranelift IR for one block: a straight main path through the instructions, with side
//! exits (taken jumps, faults, slow paths that changed decoded code) that write the guest
//! state back and return.
//!
//! Guest registers and the lazy-flags record are read once into SSA values and written
//! through to `Cpu` as instructions change them. Every instruction does its memory accesses
//! before it changes any of that state, so at an exit taken on a fault memory holds the
//! state from before the faulting instruction: it restarts exactly.

use super::classify::{JOp, Kind, Mem, Val, ADD, AND, CMP, OR, SUB, TEST, XOR};
use super::helpers::Layout;
use super::{EXIT_BRANCH, EXIT_END, EXIT_FAULT};
use crate::block::NO_REG;
use crate::flags::{mask, sign, LazyOp};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I32, I64, I8};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, SigRef, Value};
use cranelift_frontend::FunctionBuilder;

/// The lazy-flags record as the compiled code last set it.
#[derive(Clone, Copy)]
struct LazyV {
    op: LazyOp,
    size: u8,
    a: Value,
    b: Value,
    res: Value,
    cin: Value,
}

/// Signatures of the helpers the generated code calls.
pub(crate) struct Sigs {
    pub(crate) read: SigRef,
    pub(crate) write: SigRef,
    pub(crate) cond: SigRef,
    pub(crate) carry: SigRef,
}

pub(crate) struct Emit<'a, 'b> {
    pub(crate) b: &'a mut FunctionBuilder<'b>,
    pub(crate) cpu: Value,
    pub(crate) l: &'a Layout,
    pub(crate) sigs: Sigs,
    pub(crate) bitness: u32,
    regs: [Option<Value>; 16],
    lazy: Option<LazyV>,
    gen0: Value,
    /// 1 when the CPL is not 3 (user pages and supervisor pages are both accessible).
    kernel: Value,
}

fn mem_flags() -> MemFlagsData {
    let mut f = MemFlagsData::new();
    f.set_notrap();
    f
}

impl<'a, 'b> Emit<'a, 'b> {
    pub(crate) fn new(
        b: &'a mut FunctionBuilder<'b>,
        cpu: Value,
        l: &'a Layout,
        sigs: Sigs,
        bitness: u32,
    ) -> Self {
        let f = mem_flags();
        let gen0 = b.ins().load(I64, f, cpu, l.icache_gen);
        let cpl = b.ins().uload8(I64, f, cpu, l.cpl);
        let kernel = b.ins().icmp_imm_s(IntCC::NotEqual, cpl, 3);
        let kernel = b.ins().uextend(I64, kernel);
        Self { b, cpu, l, sigs, bitness, regs: [None; 16], lazy: None, gen0, kernel }
    }

    fn k(&mut self, v: u64) -> Value {
        self.b.ins().iconst(I64, v as i64)
    }

    /// Register `r`, all 64 bits.
    fn get(&mut self, r: u8) -> Value {
        let r = r as usize & 15;
        if let Some(v) = self.regs[r] {
            return v;
        }
        let v = self.b.ins().load(I64, mem_flags(), self.cpu, self.l.regs + 8 * r as i32);
        self.regs[r] = Some(v);
        v
    }

    /// Register `r` zero-extended from `s` bytes.
    fn rd(&mut self, r: u8, s: u8) -> Value {
        let v = self.get(r);
        self.trunc(v, s)
    }

    fn trunc(&mut self, v: Value, s: u8) -> Value {
        if s >= 8 {
            v
        } else {
            self.b.ins().band_imm_s(v, mask(s) as i64)
        }
    }

    /// Writes register `r` at size `s` as `Cpu::set_reg` does.
    fn set(&mut self, r: u8, s: u8, v: Value) {
        let v = match s {
            1 | 2 => {
                let old = self.get(r);
                let keep = self.b.ins().band_imm_s(old, !mask(s) as i64);
                let low = self.b.ins().band_imm_s(v, mask(s) as i64);
                self.b.ins().bor(keep, low)
            }
            4 => self.b.ins().band_imm_s(v, 0xffff_ffff),
            _ => v,
        };
        let r = r as usize & 15;
        self.regs[r] = Some(v);
        // Written through at once: an instruction changes state only after its last access
        // that can fault, so memory always holds the state an exit needs.
        self.b.ins().store(mem_flags(), v, self.cpu, self.l.regs + 8 * r as i32);
    }

    /// Records an operation's flags, written through like registers (the operation and size
    /// only when they differ from the last record this block stored).
    fn set_lazy(&mut self, op: LazyOp, size: u8, a: Value, b: Value, res: Value, cin: Value) {
        let f = mem_flags();
        let lz = self.l.lazy;
        let same = self.lazy.is_some_and(|l| l.op == op && l.size == size);
        if !same {
            let o = self.k(op as u64);
            let sz = self.k(size as u64);
            self.b.ins().store(f, o, self.cpu, lz.op);
            self.b.ins().store(f, sz, self.cpu, lz.size);
        }
        self.b.ins().store(f, a, self.cpu, lz.a);
        self.b.ins().store(f, b, self.cpu, lz.b);
        self.b.ins().store(f, res, self.cpu, lz.res);
        self.b.ins().store(f, cin, self.cpu, lz.cin);
        self.lazy = Some(LazyV { op, size, a, b, res, cin });
    }

    /// Returns `kind` for op `i` (setting RIP when given); the rest of the state is in memory.
    fn exit_here(&mut self, kind: u64, i: usize, rip: Option<Value>) {
        if let Some(rip) = rip {
            self.b.ins().store(mem_flags(), rip, self.cpu, self.l.rip);
        }
        let code = self.k((i as u64) << 8 | kind);
        self.b.ins().return_(&[code]);
    }

    /// Leaves with `kind` for op `i` when `cond` holds; goes on otherwise.
    fn side_exit(&mut self, cond: Value, kind: u64, i: usize, rip: Option<Value>) {
        let out = self.b.create_block();
        let on = self.b.create_block();
        self.b.ins().brif(cond, out, &[], on, &[]);
        self.b.switch_to_block(out);
        self.exit_here(kind, i, rip);
        self.b.switch_to_block(on);
    }

    /// The main path's last exit.
    pub(crate) fn finish(&mut self, kind: u64, i: usize, rip: Option<u64>) {
        let rip = rip.map(|r| self.k(r));
        self.exit_here(kind, i, rip);
    }

    /// The effective address of the memory operand.
    fn ea(&mut self, m: &Mem) -> Value {
        let mut a = self.k(m.disp);
        if m.base < NO_REG {
            let v = self.get(m.base);
            a = self.b.ins().iadd(a, v);
        }
        if m.index < NO_REG {
            let v = self.get(m.index);
            let v = self.b.ins().ishl_imm_s(v, m.scale as i64);
            a = self.b.ins().iadd(a, v);
        }
        if m.amask != u64::MAX {
            a = self.b.ins().band_imm_s(a, m.amask as i64);
        }
        a
    }

    /// The linear address of the memory operand, as `Cpu::lin` forms it.
    fn lin(&mut self, m: &Mem) -> Value {
        let ea = self.ea(m);
        if m.flat {
            return ea;
        }
        let base = self.b.ins().load(I64, mem_flags(), self.cpu, self.l.seg_base(m.seg as usize));
        let a = self.b.ins().iadd(base, ea);
        if self.bitness == 64 {
            a
        } else {
            self.b.ins().band_imm_s(a, 0xffff_ffff)
        }
    }

    /// Whether the TLB gives a host pointer for `size` bytes at `lin`: (condition, pointer).
    /// `write` asks for a writable page without decoded code.
    fn tlb(&mut self, lin: Value, size: u8, write: bool) -> (Value, Value) {
        let f = mem_flags();
        let t = self.l.tlb;
        let vpn = self.b.ins().ushr_imm_s(lin, 12);
        let idx = self.b.ins().band_imm_s(vpn, (t.entries - 1) as i64);
        let eoff = self.b.ins().imul_imm_s(idx, t.stride as i64);
        let e = self.b.ins().iadd(self.cpu, eoff);
        let tag = self.b.ins().load(I64, f, e, t.base + t.tag);
        let want = self.b.ins().iadd_imm_s(vpn, 1);
        let hit = self.b.ins().icmp(IntCC::Equal, tag, want);
        let off = self.b.ins().band_imm_s(lin, 0xfff);
        let fits = self.b.ins().icmp_imm_s(IntCC::UnsignedLessThanOrEqual, off, 4096 - size as i64);
        let host = self.b.ins().load(I64, f, e, t.base + t.host);
        let usable = if write {
            let fw = self.b.ins().uload8(I64, f, e, t.base + t.fast_write);
            self.b.ins().icmp_imm_s(IntCC::NotEqual, fw, 0)
        } else {
            self.b.ins().icmp_imm_s(IntCC::NotEqual, host, 0)
        };
        let user = self.b.ins().uload8(I64, f, e, t.base + t.user);
        let allowed = self.b.ins().bor(user, self.kernel);
        let allowed = self.b.ins().icmp_imm_s(IntCC::NotEqual, allowed, 0);
        let c = self.b.ins().band(hit, fits);
        let c = self.b.ins().band(c, usable);
        let c = self.b.ins().band(c, allowed);
        let p = self.b.ins().iadd(host, off);
        (c, p)
    }

    fn info(size: u8, seg: u8, rmw: bool) -> i64 {
        size as i64 | ((seg == crate::cpu::SS as u8) as i64) << 8 | (rmw as i64) << 9
    }

    /// Reads `size` bytes at `lin` (zero-extended); a fault leaves at op `i`.
    fn load(&mut self, lin: Value, size: u8, seg: u8, rmw: bool, i: usize) -> Value {
        let (ok, p) = self.tlb(lin, size, rmw);
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        let v = self.b.append_block_param(join, I64);
        self.b.ins().brif(ok, fast, &[], slow, &[]);
        self.b.switch_to_block(fast);
        let f = mem_flags();
        let x = match size {
            1 => self.b.ins().uload8(I64, f, p, 0),
            2 => self.b.ins().uload16(I64, f, p, 0),
            4 => self.b.ins().uload32(f, p, 0),
            _ => self.b.ins().load(I64, f, p, 0),
        };
        self.b.ins().jump(join, &[x.into()]);
        self.b.switch_to_block(slow);
        self.b.set_cold_block(slow);
        let info = self.b.ins().iconst(I32, Self::info(size, seg, rmw));
        let callee = self.k(super::helpers::jit_read as *const () as usize as u64);
        let call = self.b.ins().call_indirect(self.sigs.read, callee, &[self.cpu, lin, info]);
        let st = self.b.inst_results(call)[0];
        self.side_exit(st, EXIT_FAULT, i, None);
        let x = self.b.ins().load(I64, f, self.cpu, self.l.tmp);
        self.b.ins().jump(join, &[x.into()]);
        self.b.switch_to_block(join);
        v
    }

    /// Writes the low `size` bytes of `v` at `lin`; a fault leaves at op `i`.
    fn store(&mut self, lin: Value, size: u8, seg: u8, v: Value, i: usize) {
        let (ok, p) = self.tlb(lin, size, true);
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        self.b.ins().brif(ok, fast, &[], slow, &[]);
        self.b.switch_to_block(fast);
        let f = mem_flags();
        match size {
            1 => _ = self.b.ins().istore8(f, v, p, 0),
            2 => _ = self.b.ins().istore16(f, v, p, 0),
            4 => _ = self.b.ins().istore32(f, v, p, 0),
            _ => _ = self.b.ins().store(f, v, p, 0),
        }
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(slow);
        self.b.set_cold_block(slow);
        let info = self.b.ins().iconst(I32, Self::info(size, seg, false));
        let callee = self.k(super::helpers::jit_write as *const () as usize as u64);
        let call = self.b.ins().call_indirect(self.sigs.write, callee, &[self.cpu, lin, info, v]);
        let st = self.b.inst_results(call)[0];
        self.side_exit(st, EXIT_FAULT, i, None);
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(join);
    }

    /// Leaves with RIP at `rip` when a slow path changed decoded code or translations (as
    /// `block::step_mem` does).
    fn gen_check(&mut self, i: usize, rip: u64) {
        let g = self.b.ins().load(I64, mem_flags(), self.cpu, self.l.icache_gen);
        let changed = self.b.ins().icmp(IntCC::NotEqual, g, self.gen0);
        let rip = self.k(rip);
        self.side_exit(changed, EXIT_BRANCH, i, Some(rip));
    }

    /// Sign-extends the low `s` bytes of `v`.
    fn sx(&mut self, v: Value, s: u8) -> Value {
        if s >= 8 {
            return v;
        }
        let sh = 64 - 8 * s as i64;
        let x = self.b.ins().ishl_imm_s(v, sh);
        self.b.ins().sshr_imm_s(x, sh)
    }

    /// CF of the current lazy record, as 0 or 1.
    fn carry(&mut self) -> Value {
        if let Some(l) = self.lazy {
            let c = match l.op {
                LazyOp::Add => Some(self.b.ins().icmp(IntCC::UnsignedLessThan, l.res, l.a)),
                LazyOp::Sub => Some(self.b.ins().icmp(IntCC::UnsignedLessThan, l.a, l.b)),
                LazyOp::Logic => return self.k(0),
                LazyOp::Inc | LazyOp::Dec => return l.cin,
                _ => None,
            };
            if let Some(c) = c {
                return self.b.ins().uextend(I64, c);
            }
        }
        let callee = self.k(super::helpers::jit_carry as *const () as usize as u64);
        let call = self.b.ins().call_indirect(self.sigs.carry, callee, &[self.cpu]);
        let r = self.b.inst_results(call)[0];
        self.b.ins().uextend(I64, r)
    }

    /// Condition `cc` (a `cc_index`) of the current flags, as an i8 truth value.
    fn cond(&mut self, cc: u8) -> Value {
        if let Some(l) = self.lazy {
            let z = |e: &mut Self, neg: bool| {
                e.b.ins().icmp_imm_s(if neg { IntCC::NotEqual } else { IntCC::Equal }, l.res, 0)
            };
            let s = |e: &mut Self, neg: bool| {
                let x = e.b.ins().band_imm_s(l.res, sign(l.size) as i64);
                e.b.ins().icmp_imm_s(if neg { IntCC::Equal } else { IntCC::NotEqual }, x, 0)
            };
            match cc {
                4 => return z(self, false),
                5 => return z(self, true),
                8 => return s(self, false),
                9 => return s(self, true),
                _ => {}
            }
            match l.op {
                LazyOp::Sub if matches!(cc, 2 | 3 | 6 | 7) => {
                    let c = [
                        IntCC::UnsignedLessThan,
                        IntCC::UnsignedGreaterThanOrEqual,
                        IntCC::UnsignedLessThanOrEqual,
                        IntCC::UnsignedGreaterThan,
                    ][match cc {
                        2 => 0,
                        3 => 1,
                        6 => 2,
                        _ => 3,
                    }];
                    return self.b.ins().icmp(c, l.a, l.b);
                }
                LazyOp::Sub if cc >= 12 => {
                    let c = [
                        IntCC::SignedLessThan,
                        IntCC::SignedGreaterThanOrEqual,
                        IntCC::SignedLessThanOrEqual,
                        IntCC::SignedGreaterThan,
                    ][(cc - 12) as usize];
                    let a = self.sx(l.a, l.size);
                    let b = self.sx(l.b, l.size);
                    return self.b.ins().icmp(c, a, b);
                }
                LazyOp::Logic if matches!(cc, 0..=3 | 6 | 7 | 12..=15) => {
                    return match cc {
                        0 | 2 => self.b.ins().iconst(I8, 0),
                        1 | 3 => self.b.ins().iconst(I8, 1),
                        6 => z(self, false),
                        7 => z(self, true),
                        12 => s(self, false),
                        13 => s(self, true),
                        14 => {
                            let a = z(self, false);
                            let b = s(self, false);
                            self.b.ins().bor(a, b)
                        }
                        _ => {
                            let a = z(self, true);
                            let b = s(self, true);
                            self.b.ins().band(a, b)
                        }
                    };
                }
                LazyOp::Add if matches!(cc, 2 | 3) => {
                    let c = if cc == 2 { IntCC::UnsignedLessThan } else { IntCC::UnsignedGreaterThanOrEqual };
                    return self.b.ins().icmp(c, l.res, l.a);
                }
                _ => {}
            }
        }
        let callee = self.k(super::helpers::jit_cond as *const () as usize as u64);
        let c = self.b.ins().iconst(I32, cc as i64);
        let call = self.b.ins().call_indirect(self.sigs.cond, callee, &[self.cpu, c]);
        let r = self.b.inst_results(call)[0];
        self.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0)
    }

    /// A register or immediate operand at size `s` (never memory).
    fn operand(&mut self, v: Val, s: u8) -> Value {
        match v {
            Val::R(r) => self.rd(r, s),
            Val::I(x) => self.k(x & mask(s)),
            Val::M => self.k(0),
        }
    }

    /// Pushes `v` (`s` bytes) in 64-bit code; returns the new RSP, to be set once the
    /// instruction cannot fault any more.
    fn push(&mut self, v: Value, s: u8, i: usize) -> Value {
        let sp = self.get(4);
        let sp = self.b.ins().iadd_imm_s(sp, -(s as i64));
        self.store(sp, s, crate::cpu::SS as u8, v, i);
        sp
    }

    /// Emits op `i`; false when the main path has ended (an unconditional exit).
    pub(crate) fn op(&mut self, i: usize, j: &JOp) -> bool {
        let m = j.mem;
        match j.kind {
            Kind::Alu { k, s, dst, src } => {
                let writes = k != CMP && k != TEST;
                let (a, b) = match dst {
                    Val::M => {
                        let lin = self.lin(&m);
                        let b = self.operand(src, s);
                        let a = self.load(lin, s, m.seg, writes, i);
                        (a, Some((lin, b)))
                    }
                    _ => (self.operand(dst, s), None),
                };
                let (a, b, store_at) = match b {
                    Some((lin, b)) => (a, b, Some(lin)),
                    None if src == Val::M => {
                        let lin = self.lin(&m);
                        (a, self.load(lin, s, m.seg, false, i), None)
                    }
                    None => (a, self.operand(src, s), None),
                };
                let (r, op) = match k {
                    ADD => (self.b.ins().iadd(a, b), LazyOp::Add),
                    SUB | CMP => (self.b.ins().isub(a, b), LazyOp::Sub),
                    AND | TEST => (self.b.ins().band(a, b), LazyOp::Logic),
                    OR => (self.b.ins().bor(a, b), LazyOp::Logic),
                    XOR => (self.b.ins().bxor(a, b), LazyOp::Logic),
                    _ => return false,
                };
                let r = self.trunc(r, s);
                if writes {
                    match (store_at, dst) {
                        (Some(lin), _) => self.store(lin, s, m.seg, r, i),
                        (None, Val::R(d)) => self.set(d, s, r),
                        _ => {}
                    }
                }
                let zero = self.k(0);
                self.set_lazy(op, s, a, b, r, zero);
                if dst == Val::M || src == Val::M {
                    self.gen_check(i, j.next);
                }
            }
            Kind::Mov { s, dst, src } => match (dst, src) {
                (Val::R(d), Val::M) => {
                    let lin = self.lin(&m);
                    let v = self.load(lin, s, m.seg, false, i);
                    self.set(d, s, v);
                    self.gen_check(i, j.next);
                }
                (Val::R(d), _) => {
                    let v = self.operand(src, s);
                    self.set(d, s, v);
                }
                (Val::M, _) => {
                    let lin = self.lin(&m);
                    let v = self.operand(src, s);
                    self.store(lin, s, m.seg, v, i);
                    self.gen_check(i, j.next);
                }
                _ => return false,
            },
            Kind::Movx { sign, ss, ds, d, src } => {
                let v = match src {
                    Val::M => {
                        let lin = self.lin(&m);
                        self.load(lin, ss, m.seg, false, i)
                    }
                    _ => self.operand(src, ss),
                };
                let v = if sign { self.sx(v, ss) } else { v };
                self.set(d, ds, v);
                if src == Val::M {
                    self.gen_check(i, j.next);
                }
            }
            Kind::Lea { s, d } => {
                let ea = self.ea(&m);
                self.set(d, s, ea);
            }
            Kind::IncDec { inc, s, dst } => {
                let one = self.k(1);
                let (a, lin) = match dst {
                    Val::M => {
                        let lin = self.lin(&m);
                        (self.load(lin, s, m.seg, true, i), Some(lin))
                    }
                    _ => (self.operand(dst, s), None),
                };
                let r = if inc { self.b.ins().iadd_imm_s(a, 1) } else { self.b.ins().iadd_imm_s(a, -1) };
                let r = self.trunc(r, s);
                let cin = self.carry();
                match (lin, dst) {
                    (Some(lin), _) => self.store(lin, s, m.seg, r, i),
                    (None, Val::R(d)) => self.set(d, s, r),
                    _ => {}
                }
                self.set_lazy(if inc { LazyOp::Inc } else { LazyOp::Dec }, s, a, one, r, cin);
                if lin.is_some() {
                    self.gen_check(i, j.next);
                }
            }
            Kind::Neg { s, d } => {
                let b = self.rd(d, s);
                let zero = self.k(0);
                let r = self.b.ins().isub(zero, b);
                let r = self.trunc(r, s);
                self.set(d, s, r);
                self.set_lazy(LazyOp::Sub, s, zero, b, r, zero);
            }
            Kind::Not { s, d } => {
                let v = self.rd(d, s);
                let r = self.b.ins().bnot(v);
                let r = self.trunc(r, s);
                self.set(d, s, r);
            }
            Kind::Jcc { cc, target } => {
                let c = self.cond(cc);
                let t = self.k(target);
                self.side_exit(c, EXIT_BRANCH, i, Some(t));
            }
            Kind::Jmp { target, followed } => {
                if !followed {
                    self.finish(EXIT_BRANCH, i, Some(target));
                    return false;
                }
            }
            Kind::JmpInd { s, src } => {
                let t = match src {
                    Val::M => {
                        let lin = self.lin(&m);
                        self.load(lin, s, m.seg, false, i)
                    }
                    _ => self.operand(src, s),
                };
                self.exit_here(EXIT_BRANCH, i, Some(t));
                return false;
            }
            Kind::Call { os, target, followed } => {
                let ret = self.k(j.next);
                let sp = self.push(ret, os, i);
                self.set(4, 8, sp);
                if !followed {
                    self.finish(EXIT_BRANCH, i, Some(target));
                    return false;
                }
                self.gen_check(i, target);
            }
            Kind::CallInd { os, src } => {
                let t = match src {
                    Val::M => {
                        let lin = self.lin(&m);
                        self.load(lin, os, m.seg, false, i)
                    }
                    _ => self.operand(src, os),
                };
                let ret = self.k(j.next);
                let sp = self.push(ret, os, i);
                self.set(4, 8, sp);
                self.exit_here(EXIT_BRANCH, i, Some(t));
                return false;
            }
            Kind::Ret { os, imm } => {
                let sp = self.get(4);
                let t = self.load(sp, os, crate::cpu::SS as u8, false, i);
                let sp = self.b.ins().iadd_imm_s(sp, (os as u64).wrapping_add(imm) as i64);
                self.set(4, 8, sp);
                self.exit_here(EXIT_BRANCH, i, Some(t));
                return false;
            }
            Kind::Push { s, src } => {
                let v = self.operand(src, s);
                let sp = self.push(v, s, i);
                self.set(4, 8, sp);
                self.gen_check(i, j.next);
            }
            Kind::Pop { s, d } => {
                let sp = self.get(4);
                let v = self.load(sp, s, crate::cpu::SS as u8, false, i);
                let nsp = self.b.ins().iadd_imm_s(sp, s as i64);
                self.set(4, 8, nsp);
                self.set(d, s, v);
                self.gen_check(i, j.next);
            }
            Kind::Nop => {}
        }
        true
    }
}

/// The end of a block's compiled part: every op ran (`EXIT_END`), or the interpreter goes on
/// at op `i`.
pub(crate) fn end_kind(all: bool) -> u64 {
    if all {
        EXIT_END
    } else {
        super::EXIT_INTERP
    }
}
