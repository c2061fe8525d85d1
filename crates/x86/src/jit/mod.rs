//! The compiling tier: blocks that ran more than a threshold are translated with Cranelift
//! into host functions `fn(&mut Cpu) -> exit`, which run the block's leading instructions
//! of the integer subset (`classify`) and hand the rest of the block to the interpreter.
//!
//! Compiled code lives with its decoded block (dropped with it on writes to the page, on
//! DMA seen by the byte comparison, on a cache flush) in a bounded arena per vCPU: when the
//! arena is full it is emptied and every block's code goes stale at once (`epoch`).

mod arena;
mod classify;
mod emit;
mod helpers;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use crate::block::{Op, Step};
use crate::cpu::Cpu;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{AbiParam, Function, Signature, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use iced_x86::{Decoder, DecoderOptions};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// A compiled block: returns `(op index << 8) | EXIT_*`.
pub(crate) type JitFn = unsafe extern "C" fn(*mut Cpu) -> u64;

/// Every op ran; RIP is the block's end.
pub(crate) const EXIT_END: u64 = 1;
/// The op left the block with RIP set.
pub(crate) const EXIT_BRANCH: u64 = 2;
/// The op faulted (the fault is in `Cpu::fault`); nothing of it was done.
pub(crate) const EXIT_FAULT: u64 = 3;
/// The interpreter goes on at the op.
pub(crate) const EXIT_INTERP: u64 = 4;

/// Executions of a block before it is compiled, when `--jit on`: compiling a block costs
/// about a millisecond, tens of thousands of interpreted instructions.
pub const DEFAULT_THRESHOLD: u32 = 1000;

/// Code arena per vCPU; when full it is emptied and compiling starts over.
const ARENA_BYTES: usize = 64 << 20;

/// The fewest leading instructions compiled for a block that goes on in the interpreter.
const MIN_HEAD: usize = 4;

const UNSET: u32 = u32::MAX;
const OFF: u32 = u32::MAX - 1;
static MODE: AtomicU32 = AtomicU32::new(UNSET);

/// Turns the compiled tier on (with the number of runs after which a block is compiled; 0
/// compiles every block at once) or off, for vCPUs created from now on.
pub fn set_jit(threshold: Option<u32>) {
    MODE.store(threshold.unwrap_or(OFF).min(OFF - 1), Ordering::Relaxed);
}

/// The threshold in force: `set_jit`, else the `CHR_JIT` environment variable (`on`, `off`
/// or a threshold), else off.
pub fn jit_threshold() -> Option<u32> {
    let m = MODE.load(Ordering::Relaxed);
    if m != UNSET {
        return (m != OFF).then_some(m);
    }
    let t = match std::env::var("CHR_JIT").as_deref() {
        Ok("on") => Some(DEFAULT_THRESHOLD),
        Ok(v) => v.parse::<u32>().ok(),
        Err(_) => None,
    };
    set_jit(t);
    t
}

static BLOCKS: AtomicU64 = AtomicU64::new(0);
static INSNS: AtomicU64 = AtomicU64::new(0);
static COMPILE_NS: AtomicU64 = AtomicU64::new(0);
static CODE_BYTES: AtomicU64 = AtomicU64::new(0);
static FLUSHES: AtomicU64 = AtomicU64::new(0);

/// What the compiled tier did in this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct JitStats {
    /// Blocks compiled.
    pub blocks: u64,
    /// Guest instructions in them.
    pub instructions: u64,
    /// Time spent compiling.
    pub compile_ns: u64,
    /// Bytes of host code generated (including code since evicted).
    pub code_bytes: u64,
    /// Times a code arena was emptied.
    pub flushes: u64,
}

pub fn jit_stats() -> JitStats {
    JitStats {
        blocks: BLOCKS.load(Ordering::Relaxed),
        instructions: INSNS.load(Ordering::Relaxed),
        compile_ns: COMPILE_NS.load(Ordering::Relaxed),
        code_bytes: CODE_BYTES.load(Ordering::Relaxed),
        flushes: FLUSHES.load(Ordering::Relaxed),
    }
}

/// One vCPU's compiler and code.
pub(crate) struct Jit {
    isa: OwnedTargetIsa,
    ctx: Context,
    fctx: FunctionBuilderContext,
    layout: helpers::Layout,
    arena: arena::Arena,
    /// Bumped when the arena is emptied: code of another epoch is gone.
    pub(crate) epoch: u32,
    pub(crate) threshold: u32,
}

impl Jit {
    /// A compiler for this host, if the tier is on and the host is supported.
    pub(crate) fn new_if_enabled() -> Option<Box<Self>> {
        Self::new(jit_threshold()?)
    }

    /// A compiler for this host compiling blocks after `threshold` runs; None when Cranelift
    /// does not support the host.
    pub(crate) fn new(threshold: u32) -> Option<Box<Self>> {
        let mut flags = settings::builder();
        // Cranelift's optimisation level: `none` unless `CHR_JIT_OPT=speed` (in the boot
        // it compiled 2.6 times faster, and compile time dominated the difference).
        let opt = match std::env::var("CHR_JIT_OPT").as_deref() {
            Ok("speed") => "speed",
            _ => "none",
        };
        flags.set("opt_level", opt).ok()?;
        let isa = cranelift_native::builder().ok()?.finish(settings::Flags::new(flags)).ok()?;
        let arena = arena::Arena::new(ARENA_BYTES)?;
        Some(Box::new(Self {
            isa,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
            layout: helpers::Layout::new(),
            arena,
            epoch: 1,
            threshold,
        }))
    }

    /// Compiles the leading ops of the block whose ops are `ops` (decoded at `bitness` from
    /// the page at `page`, the first at offset `off`, RIP `rip`); None when fewer than
    /// `MIN_HEAD` leading ops (and not all) are in the compiled subset.
    pub(crate) fn compile(
        &mut self,
        ops: &[Op],
        page: *const u8,
        off: usize,
        rip: u64,
        bitness: u32,
    ) -> Option<JitFn> {
        let t0 = Instant::now();
        // SAFETY: `page` is the mapped 4 KiB page the block was decoded from.
        let bytes = unsafe { std::slice::from_raw_parts(page, 4096) };
        let mut jops = Vec::new();
        for op in ops {
            let ip = op.ip(bitness);
            let o = (off as i64).wrapping_add(ip.wrapping_sub(rip) as i64);
            if !(0..4096).contains(&o) {
                break;
            }
            let ins = Decoder::with_ip(bitness, &bytes[o as usize..], ip, DecoderOptions::NONE).decode();
            if ins.is_invalid() || ins.len() != op.len as usize {
                break;
            }
            match classify::classify(&ins, bitness, op) {
                Some(j) => jops.push(j),
                None => break,
            }
        }
        // A short compiled head before interpreted ops saves less than the call costs (the
        // forced mode of tests compiles any head, so that every form runs compiled).
        let min_head = if self.threshold == 0 { 1 } else { MIN_HEAD };
        if jops.len() < ops.len().min(min_head) {
            return None;
        }
        let call_conv = self.isa.default_call_conv();
        let mut sig = Signature::new(call_conv);
        sig.params.push(AbiParam::new(I64));
        sig.returns.push(AbiParam::new(I64));
        let mut func = Function::with_name_signature(UserFuncName::user(0, 0), sig);
        let helper = |params: &[cranelift_codegen::ir::Type]| {
            let mut s = Signature::new(call_conv);
            s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
            s.returns.push(AbiParam::new(I32));
            s
        };
        {
            let mut b = FunctionBuilder::new(&mut func, &mut self.fctx);
            let sigs = emit::Sigs {
                read: b.import_signature(helper(&[I64, I64, I32])),
                write: b.import_signature(helper(&[I64, I64, I32, I64])),
                cond: b.import_signature(helper(&[I64, I32])),
                carry: b.import_signature(helper(&[I64])),
            };
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let cpu = b.block_params(entry)[0];
            let mut e = emit::Emit::new(&mut b, cpu, &self.layout, sigs, bitness);
            let mut open = true;
            for (i, j) in jops.iter().enumerate() {
                if !e.op(i, j) {
                    open = false;
                    break;
                }
            }
            if open {
                let n = jops.len();
                e.finish(emit::end_kind(n == ops.len()), n, None);
            }
            b.seal_all_blocks();
            b.finalize(self.isa.frontend_config());
        }
        self.ctx.clear();
        self.ctx.func = func;
        let code = match self.ctx.compile(&*self.isa, &mut Default::default()) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("jit: compiling the block at {rip:#x} failed: {:?}", e.inner);
                return None;
            }
        };
        if !code.buffer.relocs().is_empty() {
            return None;
        }
        let bytes = code.code_buffer().to_vec();
        let p = match self.arena.add(&bytes) {
            Some(p) => p,
            None => {
                // Full: every block's code goes stale, and the arena starts over.
                self.arena.clear();
                self.epoch = self.epoch.wrapping_add(1).max(1);
                FLUSHES.fetch_add(1, Ordering::Relaxed);
                self.arena.add(&bytes)?
            }
        };
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        INSNS.fetch_add(jops.len() as u64, Ordering::Relaxed);
        CODE_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        COMPILE_NS.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // SAFETY: `p` holds the function just compiled for this host with the signature of
        // `JitFn`, and stays executable until the arena is cleared (which changes `epoch`,
        // after which the pointer is never called).
        Some(unsafe { std::mem::transmute::<*const u8, JitFn>(p) })
    }
}

impl Cpu {
    /// Runs block `block` (ops `all`) through its compiled code, compiling it once it is
    /// hot; None when the interpreter should run it. Sets `exit_op` as the interpreter's
    /// chain would.
    #[inline]
    pub(crate) fn jit_enter(&mut self, block: &crate::block::Block, all: &[Op]) -> Option<Step> {
        let jit = self.jit.as_deref_mut()?;
        let f = match block.jit_code(jit.epoch) {
            Some(f) => f,
            None => {
                if !block.jit_due(jit.threshold) {
                    return None;
                }
                let (page, off, rip) = block.jit_source();
                match jit.compile(all, page, off, rip, self.bitness) {
                    Some(f) => {
                        block.set_jit_code(f, jit.epoch);
                        f
                    }
                    None => {
                        block.jit_never();
                        return None;
                    }
                }
            }
        };
        // SAFETY: `f` was compiled for this block's ops at this bitness (blocks are keyed by
        // it) and is live in this epoch; it gets the CPU it may change.
        let r = unsafe { f(self as *mut Cpu) };
        let i = ((r >> 8) as usize).min(all.len());
        let end = all.as_ptr_range().end;
        Some(match r & 0xff {
            EXIT_BRANCH => {
                self.exit_op = &all[i.min(all.len() - 1)] as *const Op as usize;
                Step::Branch
            }
            EXIT_FAULT => {
                self.exit_op = &all[i.min(all.len() - 1)] as *const Op as usize;
                Step::Fault
            }
            EXIT_INTERP if i < all.len() => (all[i].run)(self, &all[i]),
            _ => {
                self.exit_op = end as usize;
                Step::End
            }
        })
    }
}
