//! Pre-decoded basic blocks: a run of instructions decoded once, each turned into an [`Op`]
//! whose handler was chosen at decode time, cached per guest physical page and dropped when
//! that page is written.
//!
//! A block never crosses a page and ends at the first control transfer other than a
//! conditional jump (taken, that leaves the block early, and may be linked too). Decoded code carries
//! absolute addresses (next IPs, branch targets, RIP-relative operands), so a block is only
//! used at the RIP it was decoded for: one physical page can be mapped at several linear
//! addresses (the vDSO sits at a random address in every process) or reached through
//! different segment bases. It remembers its
//! bytes and compares them on its first entry in every slice of execution, so code changed
//! behind the CPU's back (device DMA, other vCPUs) is decoded again. A direct-mapped jump cache finds the block for a RIP without a page walk
//! or a map lookup; it and the blocks' successor links are valid for one `icache_gen`, which
//! changes whenever translations or decoded code are dropped.
//!
//! A block runs threaded: its ops are followed by an end op, and each handler that falls
//! through tail-calls the next op's handler ([`next`]), so the run loop sees the block again
//! only when it is left ([`leave`]) by a taken branch, a fault or the end op.

use crate::cpu::{Cpu, CS, R};
use crate::exec::Flow;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};
use std::collections::HashMap;

/// Executes one op and, threading, the ops after it: a handler that falls through calls the
/// next op's handler in tail position ([`next`]), so a block runs as a chain of jumps from
/// handler to handler, each with its own indirect branch (which the host predicts far better
/// than one shared call site), without returning to a loop in between. The chain ends at
/// the first op that leaves the block ([`leave`]): a taken branch, a fault, or the block's
/// end op.
pub(crate) type Handler = fn(&mut Cpu, &Op) -> Step;

/// How a chain of ops ended: a one-byte value, so that handlers return it in a register (a
/// `Result<Flow, Fault>` went through memory on every instruction). `Cpu::exit_op` says
/// which op ended it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Step {
    /// The block's end op was reached: every op ran and fell through.
    End = 1,
    /// The op at `exit_op` ran and left the block with RIP set.
    Branch = 2,
    /// The op at `exit_op` faulted; the fault is in `Cpu::fault`.
    Fault = 3,
}

/// Goes on with the op after `op`. Every block ends with an end op, which never calls this,
/// so `op + 1` is always inside the block.
#[inline(always)]
pub(crate) fn next(c: &mut Cpu, op: &Op) -> Step {
    // SAFETY: `op` is an op of a block other than its end op (only handlers of real ops
    // call this), and the block's ops are followed by the end op in one allocation.
    let n = unsafe { &*(op as *const Op).add(1) };
    (n.run)(c, n)
}

/// Goes on past the conditional jump fused into `op` (`Op::fused`): the jump is never the
/// last real op, so `op + 2` is at most the end op.
#[inline(always)]
pub(crate) fn skip(c: &mut Cpu, op: &Op) -> Step {
    // SAFETY: a fused op is followed by its jump's op and then at least the end op.
    let n = unsafe { &*(op as *const Op).add(2) };
    (n.run)(c, n)
}

/// Ends the chain at `op` with `s`.
#[inline(always)]
pub(crate) fn leave(c: &mut Cpu, op: &Op, s: Step) -> Step {
    c.exit_op = op as *const Op as usize;
    s
}

/// The handler of a block's end op.
fn end_of_block(c: &mut Cpu, op: &Op) -> Step {
    leave(c, op, Step::End)
}

/// A block's end op, for code that goes on at `next`.
fn end_op(next: u64) -> Op {
    Op {
        run: end_of_block,
        next,
        imm: 0,
        disp: 0,
        amask: u64::MAX,
        ins: None,
        d: NO_REG,
        s: NO_REG,
        base: NO_REG,
        index: NO_REG,
        scale: 0,
        seg: 0,
        flat: false,
        link: false,
        fused: false,
        len: 0,
    }
}

/// Runs a handler body written with `?`, parking a fault in `Cpu::fault`, and goes on with
/// the next op when it falls through.
#[inline(always)]
pub(crate) fn step(c: &mut Cpu, op: &Op, f: impl FnOnce(&mut Cpu) -> R<Flow>) -> Step {
    match f(c) {
        Ok(Flow::Next) => next(c, op),
        Ok(Flow::Branch) => leave(c, op, Step::Branch),
        Err(e) => {
            c.fault = e;
            leave(c, op, Step::Fault)
        }
    }
}

/// `step` for handlers that may touch memory outside the fast paths (or do anything else):
/// when decoded code or translations changed under the block (a store into a code page, a
/// page walk setting accessed bits there), the block ends and RIP goes to the next
/// instruction. Handlers that only touch registers use `step`, and nothing is checked
/// after them.
#[inline(always)]
pub(crate) fn step_mem(c: &mut Cpu, op: &Op, f: impl FnOnce(&mut Cpu) -> R<Flow>) -> Step {
    let gen = c.icache_gen;
    match f(c) {
        Ok(Flow::Next) if c.icache_gen != gen => {
            c.rip = op.next;
            leave(c, op, Step::Branch)
        }
        Ok(Flow::Next) => next(c, op),
        Ok(Flow::Branch) => leave(c, op, Step::Branch),
        Err(e) => {
            c.fault = e;
            leave(c, op, Step::Fault)
        }
    }
}

/// "No register" in an op's register fields.
pub(crate) const NO_REG: u8 = 16;

/// The most instructions in one block.
const MAX_OPS: usize = 48;

/// Blocks kept before the whole cache is dropped and rebuilt.
const MAX_BLOCKS: usize = 1 << 15;

/// Ops kept (in all blocks) before the whole cache is dropped and rebuilt: 16 MiB of ops.
/// The Linux boot decodes about 2.5 M ops in all and drops the cache a handful of times.
const MAX_CACHED_OPS: usize = 1 << 18;

/// Words of a block's bytes kept inside the block.
const HEAD_WORDS: usize = 4;

/// Runs of code (the start and each followed JMP or CALL target) in one block.
const MAX_RUNS: usize = 4;

/// Successors remembered per block (its exits: taken conditional jumps and the end).
const LINKS: usize = 2;

/// Entries in the jump cache (a power of two).
const JUMP_SIZE: usize = 4096;

/// One decoded instruction with its operands picked apart for its handler: one cache line.
#[repr(align(64))]
pub(crate) struct Op {
    pub(crate) run: Handler,
    /// RIP of the next instruction (wrapped to the code size).
    pub(crate) next: u64,
    /// The immediate (zero-extended from the operand size) or the branch target.
    pub(crate) imm: u64,
    /// Memory operand: displacement (the absolute address for RIP-relative operands).
    pub(crate) disp: u64,
    /// Memory operand: the address-size mask.
    pub(crate) amask: u64,
    /// The decoded instruction, kept for the generic handler only.
    pub(crate) ins: Option<Box<Instruction>>,
    /// Destination (or only) register index, or `NO_REG`.
    pub(crate) d: u8,
    /// Source register index, or `NO_REG`.
    pub(crate) s: u8,
    /// Memory operand: base and index register indices (or `NO_REG`), and the index shift.
    pub(crate) base: u8,
    pub(crate) index: u8,
    pub(crate) scale: u8,
    /// Memory operand: the segment register index.
    pub(crate) seg: u8,
    /// Memory operand: the segment base is ignored (64-bit mode, not FS/GS).
    pub(crate) flat: bool,
    /// A plain near jump, call or return: the block may be linked to where it goes.
    pub(crate) link: bool,
    /// A CMP or TEST fused with the conditional jump in the next op: it does both (the
    /// jump's target is in `disp`), going on past the jump's op ([`skip`]) when the jump
    /// falls through. The jump's op stays, for exact budgets that end between the two (run
    /// outside the cache).
    pub(crate) fused: bool,
    /// The instruction's length in bytes.
    pub(crate) len: u8,
}

impl Op {
    /// RIP of this instruction, for code of `bitness`.
    #[inline]
    pub(crate) fn ip(&self, bitness: u32) -> u64 {
        self.next.wrapping_sub(self.len as u64) & ip_mask(bitness)
    }
}

/// Where a block went last time, and the block found there.
#[derive(Clone, Copy)]
struct Link {
    rip: u64,
    gen: u64,
    block: *const Block,
}

const NO_LINK: Link = Link { rip: u64::MAX, gen: u64::MAX, block: std::ptr::null() };

/// Bytes of a block after its head: a run of code in the page, as words.
struct Seg {
    host: *const u8,
    words: Box<[u64]>,
    len: usize,
    /// Whole words from `host` lie inside the page (so bytes after the run are compared
    /// too); otherwise `words` hold exactly the run's `len` bytes.
    wide: bool,
}

impl Seg {
    /// The run of `len` bytes at `off` in `page`.
    fn new(page: &[u8], off: usize, len: usize) -> Self {
        let whole = len.div_ceil(8) * 8;
        let wide = off + whole <= page.len();
        let bytes = &page[off..if wide { off + whole } else { off + len }];
        // SAFETY: off <= 4096, inside or just at the end of the page.
        let host = unsafe { page.as_ptr().add(off) };
        Self { host, words: bytes.chunks(8).map(word).collect(), len, wide }
    }

    fn matches(&self) -> bool {
        if self.wide {
            let p = self.host as *const u64;
            let mut diff = 0;
            for (i, w) in self.words.iter().enumerate() {
                // SAFETY: all words of a `wide` run lie inside the page.
                diff |= u64::from_le(unsafe { std::ptr::read_unaligned(p.add(i)) }) ^ w;
            }
            return diff == 0;
        }
        // SAFETY: `len` bytes from `host` lie inside the page (the code was decoded from
        // them).
        let b = unsafe { std::slice::from_raw_parts(self.host, self.len) };
        b.chunks(8).zip(self.words.iter()).all(|(c, w)| word(c) == *w)
    }
}

/// A decoded run of instructions inside one physical page: straight-line code that may go
/// on past conditional jumps (their taken side leaves the block) and through direct JMPs
/// and CALLs whose target is in the same page (the code then lies in several runs).
///
/// The fields the entry check and the run loop read come first, so that entering a block
/// touches as few cache lines as possible.
#[repr(C, align(64))]
pub(crate) struct Block {
    // First cache line: what following a link into the block and running it read.
    /// The last successors, for chaining.
    links: [std::cell::Cell<Link>; LINKS],
    /// The slice (`BlockCache::slice`) in which the bytes were last found unchanged.
    checked: std::cell::Cell<u32>,
    /// The number of ops.
    n_ops: u32,
    /// The first op (of `ops`).
    first: *const Op,
    // The rest.
    /// Host address of the first byte.
    host: *const u8,
    /// The first HEAD_WORDS words of the page from `host` (little-endian). Whole words are
    /// kept, so bytes just after the code are compared too: that only costs a needless
    /// re-decode when a device writes right behind the code (CPU writes to a code page drop
    /// all its blocks anyway).
    head: [u64; HEAD_WORDS],
    /// `head` is in use (HEAD_WORDS words from `host` lie inside the page).
    wide: bool,
    /// The code not covered by `head`.
    rest: Box<[Seg]>,
    /// RIP of the first instruction.
    rip: u64,
    /// The ops, owned (from `Box::into_raw`, freed on drop; a raw pointer so that `first`
    /// stays valid however the block moves).
    ops: *mut [Op],
    /// The offset of the first byte in its page.
    page_off: u16,
    /// Runs so far, towards the compiling threshold (`u32::MAX`: never compiled).
    #[cfg(feature = "jit")]
    hits: std::cell::Cell<u32>,
    /// The compiled code and the code-arena epoch it belongs to.
    #[cfg(feature = "jit")]
    code: std::cell::Cell<Option<(crate::jit::JitFn, u32)>>,
}

#[cfg(feature = "jit")]
impl Block {
    /// The compiled code, if it is live in `epoch`.
    #[inline(always)]
    pub(crate) fn jit_code(&self, epoch: u32) -> Option<crate::jit::JitFn> {
        match self.code.get() {
            Some((f, e)) if e == epoch => Some(f),
            _ => None,
        }
    }

    /// Counts a run; true when the block is due to be compiled.
    #[inline(always)]
    pub(crate) fn jit_due(&self, threshold: u32) -> bool {
        let h = self.hits.get();
        if h == u32::MAX {
            return false;
        }
        self.hits.set(h + 1);
        h >= threshold
    }

    pub(crate) fn set_jit_code(&self, f: crate::jit::JitFn, epoch: u32) {
        self.code.set(Some((f, epoch)));
    }

    /// Marks the block as one the compiler does not handle.
    pub(crate) fn jit_never(&self) {
        self.hits.set(u32::MAX);
    }

    /// The page the block was decoded from, the offset of its first byte, its RIP.
    pub(crate) fn jit_source(&self) -> (*const u8, usize, u64) {
        // SAFETY: `host` is `page_off` bytes into its page.
        (unsafe { self.host.sub(self.page_off as usize) }, self.page_off as usize, self.rip)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: `ops` came from `Box::into_raw` in `decode_block` and is freed only here.
        drop(unsafe { Box::from_raw(self.ops) });
    }
}

impl Block {
    /// Whether guest memory still holds the bytes this block was decoded from, compared at
    /// most once per slice of execution.
    #[inline(always)]
    fn unchanged(&self, slice: u32) -> bool {
        if self.checked.get() == slice {
            return true;
        }
        let ok = self.bytes_match();
        if ok {
            self.checked.set(slice);
        }
        ok
    }

    /// The end op, just after the ops.
    #[inline(always)]
    fn end(&self) -> &Op {
        // SAFETY: `ops` holds `n_ops` ops and then the end op.
        unsafe { &*self.first.add(self.n_ops as usize) }
    }

    /// The ops (without the end op).
    #[inline(always)]
    fn ops(&self) -> &[Op] {
        // SAFETY: `first` and `n_ops` describe `ops`, which the block owns, never changes
        // and frees only when dropped.
        unsafe { std::slice::from_raw_parts(self.first, self.n_ops as usize) }
    }

    /// Whether guest memory still holds the bytes this block was decoded from.
    #[inline(always)]
    fn bytes_match(&self) -> bool {
        if self.wide {
            let p = self.host as *const u64;
            let mut diff = 0;
            for i in 0..HEAD_WORDS {
                // SAFETY: HEAD_WORDS words from `host` lie inside the page (`wide`).
                diff |= u64::from_le(unsafe { std::ptr::read_unaligned(p.add(i)) }) ^ self.head[i];
            }
            if diff != 0 {
                return false;
            }
        }
        self.rest.is_empty() || self.rest_match()
    }

    #[inline(never)]
    fn rest_match(&self) -> bool {
        self.rest.iter().all(Seg::matches)
    }
}

/// Up to 8 bytes as a little-endian word.
fn word(c: &[u8]) -> u64 {
    c.iter().rev().fold(0u64, |a, b| (a << 8) | *b as u64)
}

/// A jump-cache entry: the block for a RIP in one mode, valid for one generation.
#[derive(Clone, Copy)]
struct Jump {
    rip: u64,
    lin: u64,
    mode: u32,
    gen: u64,
    block: *const Block,
}

const NO_JUMP: Jump = Jump { rip: u64::MAX, lin: 0, mode: 0, gen: u64::MAX, block: std::ptr::null() };

/// A multiplicative hasher for physical-address keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Build = std::hash::BuildHasherDefault<KeyHasher>;

/// The decoded blocks of all code pages.
pub struct BlockCache {
    /// Keyed by physical address << 2 | code-size tag.
    blocks: HashMap<u64, Box<Block>, Build>,
    /// The keys of the blocks in each physical page.
    pages: HashMap<u64, Vec<u64>, Build>,
    jump: Box<[Jump; JUMP_SIZE]>,
    /// Dropped blocks, freed only between blocks (one may still be running). Boxed because
    /// running code holds pointers to them: they must not move.
    #[allow(clippy::vec_box)]
    graveyard: Vec<Box<Block>>,
    /// Ops in `blocks`.
    ops: usize,
    /// The current slice of execution: a block's bytes are compared on its first entry in
    /// each slice (see `Cpu::new_slice`). Never 0, which new blocks hold.
    slice: u32,
}

impl Default for BlockCache {
    fn default() -> Self {
        Self {
            blocks: HashMap::default(),
            pages: HashMap::default(),
            jump: Box::new([NO_JUMP; JUMP_SIZE]),
            graveyard: Vec::new(),
            slice: 1,
            ops: 0,
        }
    }
}

fn tag(bitness: u32) -> u64 {
    match bitness {
        16 => 0,
        32 => 1,
        _ => 2,
    }
}

fn ip_mask(bitness: u32) -> u64 {
    match bitness {
        16 => 0xffff,
        32 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

impl BlockCache {
    fn invalidate(&mut self, page: u64) {
        if let Some(keys) = self.pages.remove(&(page >> 12)) {
            for k in keys {
                if let Some(b) = self.blocks.remove(&k) {
                    self.ops -= b.n_ops as usize;
                    self.graveyard.push(b);
                }
            }
        }
    }

    /// Adds a block; true when others were dropped to make room (the generation must change).
    fn insert(&mut self, key: u64, b: Box<Block>) -> bool {
        let mut dropped = false;
        if self.blocks.len() >= MAX_BLOCKS || self.ops + b.n_ops as usize > MAX_CACHED_OPS {
            self.graveyard.extend(self.blocks.drain().map(|(_, b)| b));
            self.pages.clear();
            // The maps keep their capacity otherwise.
            self.blocks.shrink_to_fit();
            self.pages.shrink_to_fit();
            self.ops = 0;
            dropped = true;
        }
        self.ops += b.n_ops as usize;
        match self.blocks.insert(key, b) {
            Some(old) => {
                self.ops -= old.n_ops as usize;
                self.graveyard.push(old);
                dropped = true;
            }
            None => self.pages.entry(key >> 14).or_default().push(key),
        }
        dropped
    }
}

/// Whether decoding should stop after `ins` even though it falls through: it may change how
/// the following bytes decode or run.
fn ends_block(ins: &Instruction) -> bool {
    use Mnemonic as M;
    !matches!(ins.flow_control(), FlowControl::Next | FlowControl::ConditionalBranch)
        || matches!(
            ins.mnemonic(),
            M::Hlt
                | M::Pause
                | M::Sti
                | M::Popf
                | M::Popfd
                | M::Popfq
                | M::Wrmsr
                | M::Lmsw
                | M::Clts
                | M::Invlpg
                | M::Lgdt
                | M::Lidt
                | M::Lldt
                | M::Ltr
                | M::Out
                | M::Outsb
                | M::Outsw
                | M::Outsd
        )
        || (ins.op_count() > 0
            && ins.op0_kind() == iced_x86::OpKind::Register
            && (ins.op0_register().is_segment_register()
                || ins.op0_register().is_cr()
                || ins.op0_register().is_dr()))
}

impl Cpu {
    /// Starts a new slice of execution (the run loop does, between batches of at most a
    /// few hundred instructions, where it also takes interrupts).
    ///
    /// Writes by this CPU drop the decoded code of the page at once (`code_write`). Device
    /// DMA and other vCPUs write guest memory behind its back: those are caught by comparing
    /// a block's bytes with memory on its first entry in every slice. So code written that
    /// way is seen within one slice, and always after an interrupt (the way a guest learns
    /// that a transfer finished, or that another CPU patched code; on real CPUs too such
    /// cross-modified code is only guaranteed to be seen after a serialising event).
    #[inline]
    pub(crate) fn new_slice(&mut self) {
        self.icache.slice = self.icache.slice.wrapping_add(1);
        if self.icache.slice == 0 {
            // Wrapped: a block checked 2^32 slices ago must not pass for checked now.
            self.icache.slice = 1;
            for b in self.icache.blocks.values() {
                b.checked.set(0);
            }
        }
    }

    pub(crate) fn invalidate_code(&mut self, page: u64) {
        self.icache.invalidate(page);
        // Jump-cache entries and links may point at blocks just dropped.
        self.icache_gen = self.icache_gen.wrapping_add(1);
    }

    /// The block at CS:RIP, through the jump cache; None when the code is not in RAM or the
    /// first instruction cannot be cached (it crosses a page, or does not decode).
    #[inline]
    pub(crate) fn find_block(&mut self) -> R<Option<*const Block>> {
        let bitness = self.code_bitness();
        self.bitness = bitness;
        let rip = self.rip;
        let lin = self.lin(CS, rip);
        let mode = bitness | (self.cpl as u32) << 8;
        let j = &self.icache.jump[((rip ^ (rip >> 12)) as usize) & (JUMP_SIZE - 1)];
        if j.rip == rip && j.lin == lin && j.mode == mode && j.gen == self.icache_gen {
            let b = j.block;
            // SAFETY: entries of the current generation point at live blocks (dropping any
            // block changes the generation).
            if unsafe { (*b).unchanged(self.icache.slice) } {
                return Ok(Some(b));
            }
        }
        self.find_block_slow(rip, lin, bitness, mode)
    }

    #[inline(never)]
    fn find_block_slow(&mut self, rip: u64, lin: u64, bitness: u32, mode: u32) -> R<Option<*const Block>> {
        // No block is running now: the dropped ones can go.
        self.icache.graveyard.clear();
        let (phys, host) = self.fetch_translate(lin)?;
        if host.is_null() {
            return Ok(None);
        }
        let key = phys << 2 | tag(bitness);
        let off = (phys & 0xfff) as usize;
        // `host` is the TLB's pointer to the start of the mapped 4 KiB page.
        let page_host = host as *const u8;
        let cached = match self.icache.blocks.get(&key) {
            Some(b) if b.rip == rip && b.bytes_match() => {
                b.checked.set(self.icache.slice);
                Some(&**b as *const Block)
            }
            _ => None,
        };
        let b = match cached {
            Some(b) => b,
            None => {
                let Some(block) = decode_block(page_host, off, rip, bitness) else { return Ok(None) };
                let block = Box::new(block);
                let p = &*block as *const Block;
                if self.icache.insert(key, block) {
                    // Links and jump entries may point at the blocks dropped.
                    self.icache_gen = self.icache_gen.wrapping_add(1);
                }
                self.mark_code(phys);
                p
            }
        };
        self.icache.jump[((rip ^ (rip >> 12)) as usize) & (JUMP_SIZE - 1)] =
            Jump { rip, lin, mode, gen: self.icache_gen, block: b };
        Ok(Some(b))
    }

    /// Runs up to `max` instructions of block `b` (and the blocks it leads to, while they are
    /// linked and the budget lasts). Returns the instructions run and how the last one ended;
    /// on a fault RIP and `cur_ip` point at the faulting instruction.
    pub(crate) fn run_blocks(&mut self, mut b: *const Block, max: u64, precise: bool) -> (u64, R<Flow>) {
        let mut done = 0u64;
        loop {
            // SAFETY: `b` came from the cache in this generation; blocks dropped while it runs
            // stay in the graveyard until the next slow lookup, which cannot happen before
            // this function returns.
            let block = unsafe { &*b };
            let gen = self.icache_gen;
            let all = block.ops();
            let n = all.len();
            if precise && max - done < n as u64 {
                // An exact budget (after STI, or a harness's limit) ends inside the block: run
                // one instruction outside the cache.
                if done > 0 {
                    return (done, Ok(Flow::Next));
                }
                self.rip = all[0].ip(self.bitness);
                return (1, self.step_uncached());
            }
            // Otherwise the budget is a hint for when to look for interrupts: a block always
            // runs whole (at most MAX_OPS instructions past it).
            let first = &all[0];
            #[cfg(feature = "jit")]
            let s = match self.jit_enter(block, all) {
                Some(s) => s,
                None => (first.run)(self, first),
            };
            #[cfg(not(feature = "jit"))]
            let s = (first.run)(self, first);
            // SAFETY: the op that ended the chain is one of this block's ops or its end op,
            // all in one allocation starting at `all`.
            let i = unsafe { (self.exit_op as *const Op).offset_from(all.as_ptr()) } as usize;
            match s {
                Step::End => {
                    done += n as u64;
                    self.rip = block.end().next;
                }
                Step::Branch => {
                    let op = &all[i];
                    done += (i + 1 + op.fused as usize) as u64;
                    // Only a plain jump, call or return (at the end, or a conditional jump
                    // taken inside the block) may lead to a link: anything else may have
                    // changed the mode.
                    if self.icache_gen != gen || self.halted || self.inhibit_irq || !op.link {
                        return (done, Ok(Flow::Branch));
                    }
                }
                Step::Fault => {
                    let ip = all[i].ip(self.bitness);
                    self.cur_ip = ip;
                    self.rip = ip;
                    return (done + i as u64 + 1, Err(self.fault));
                }
            }
            if done >= max {
                return (done, Ok(Flow::Next));
            }
            // Follow a link to the successor, or find it and remember it.
            let rip = self.rip;
            if let Some(l) = block.links.iter().map(|l| l.get()).find(|l| l.rip == rip) {
                if l.gen == self.icache_gen {
                    // SAFETY: links of the current generation point at live blocks.
                    if unsafe { (*l.block).unchanged(self.icache.slice) } {
                        b = l.block;
                        continue;
                    }
                }
            }
            match self.find_block() {
                Ok(Some(nb)) => {
                    for i in (1..LINKS).rev() {
                        block.links[i].set(block.links[i - 1].get());
                    }
                    block.links[0].set(Link { rip, gen: self.icache_gen, block: nb });
                    b = nb;
                }
                _ => return (done, Ok(Flow::Next)),
            }
        }
    }
}

/// Decodes the block at `off` in the page at `page` (RIP `rip`); None when not even the
/// first instruction decodes inside the page.
fn decode_block(page: *const u8, off: usize, rip: u64, bitness: u32) -> Option<Block> {
    // SAFETY: `page` is a mapped 4 KiB page (from the TLB).
    let bytes = unsafe { std::slice::from_raw_parts(page, 4096) };
    let mut d = Decoder::with_ip(bitness, &bytes[off..], rip, DecoderOptions::NONE);
    let mask = ip_mask(bitness);
    let mut ops = Vec::new();
    // Runs of code decoded so far (offset, length); the last one is being extended.
    let mut runs = vec![(off, 0usize)];
    // The instruction of the last op, while a conditional jump right after it may fuse.
    let mut prev: Option<Instruction> = None;
    while ops.len() < MAX_OPS && d.can_decode() {
        let ins = d.decode();
        if ins.is_invalid() {
            break;
        }
        let next = ins.next_ip() & mask;
        let mut op = crate::compile::compile(&ins, bitness, next);
        if let (Some(p), Some(pi)) = (ops.last_mut(), &prev) {
            crate::compile::fuse(pi, &ins, bitness, p);
        }
        prev = Some(ins);
        let Some(run) = runs.last_mut() else { break };
        run.1 += ins.len();
        let end = run.0 + run.1;
        if next != ins.next_ip() {
            // The IP wraps around.
            ops.push(op);
            break;
        }
        if !ends_block(&ins) {
            ops.push(op);
            continue;
        }
        // A direct JMP or CALL to code in the same page not yet in the block: go on there
        // (when at least one more instruction fits and decodes).
        let mut target = None;
        if runs.len() < MAX_RUNS && ops.len() + 2 < MAX_OPS {
            let mut o = Op { ins: None, ..op };
            if let Some(t) = crate::compile::follow(&ins, &mut o) {
                let t_off = (end as i64).wrapping_add(t.wrapping_sub(next) as i64);
                let fresh = (0..4096).contains(&t_off)
                    && !runs.iter().any(|r| (r.0..r.0 + r.1).contains(&(t_off as usize)));
                if fresh && decodes(&bytes[t_off as usize..], t, bitness) {
                    op = o;
                    target = Some((t_off as usize, t));
                }
            }
        }
        ops.push(op);
        let Some((t_off, t)) = target else { break };
        runs.push((t_off, 0));
        prev = None;
        d = Decoder::with_ip(bitness, &bytes[t_off..], t, DecoderOptions::NONE);
    }
    if ops.is_empty() {
        return None;
    }
    let wide = off + HEAD_WORDS * 8 <= 4096;
    let mut head = [0u64; HEAD_WORDS];
    let mut rest = Vec::new();
    for (i, &(o, len)) in runs.iter().enumerate() {
        if len == 0 {
            continue;
        }
        if i == 0 && wide {
            for (h, c) in head.iter_mut().zip(bytes[o..o + HEAD_WORDS * 8].chunks(8)) {
                *h = word(c);
            }
            if len > HEAD_WORDS * 8 {
                rest.push(Seg::new(bytes, o + HEAD_WORDS * 8, len - HEAD_WORDS * 8));
            }
        } else {
            rest.push(Seg::new(bytes, o, len));
        }
    }
    let n_ops = ops.len() as u32;
    // The end op: where the chain of a block that runs to its end stops; its `next` is where
    // the code goes on.
    let last_next = ops.last().map_or(rip, |o| o.next);
    ops.push(end_op(last_next));
    let ops = Box::into_raw(ops.into_boxed_slice());
    Some(Block {
        n_ops,
        first: ops as *const Op,
        rip,
        // SAFETY: off < 4096, inside the page.
        host: unsafe { page.add(off) },
        head,
        rest: rest.into_boxed_slice(),
        wide,
        ops,
        links: [const { std::cell::Cell::new(NO_LINK) }; LINKS],
        checked: std::cell::Cell::new(0),
        page_off: off as u16,
        #[cfg(feature = "jit")]
        hits: std::cell::Cell::new(0),
        #[cfg(feature = "jit")]
        code: std::cell::Cell::new(None),
    })
}

/// Whether an instruction decodes at the start of `bytes`.
fn decodes(bytes: &[u8], ip: u64, bitness: u32) -> bool {
    !Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE).decode().is_invalid()
}
