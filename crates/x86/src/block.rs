//! Pre-decoded basic blocks: a run of instructions decoded once, each turned into an [`Op`]
//! whose handler was chosen at decode time, cached per guest physical page and dropped when
//! that page is written.
//!
//! A block never crosses a page and ends at the first control transfer. Decoded code carries
//! absolute addresses (next IPs, branch targets, RIP-relative operands), so a block is only
//! used at the RIP it was decoded for: one physical page can be mapped at several linear
//! addresses (the vDSO sits at a random address in every process) or reached through
//! different segment bases. It remembers its
//! bytes and compares them on every entry, so code changed behind the CPU's back (device DMA)
//! is decoded again. A direct-mapped jump cache finds the block for a RIP without a page walk
//! or a map lookup; it and the blocks' successor links are valid for one `icache_gen`, which
//! changes whenever translations or decoded code are dropped.

use crate::cpu::{Cpu, CS, R};
use crate::exec::Flow;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};
use std::collections::HashMap;

/// Executes one op: `Next` falls through to the following op, `Branch` ends the block with
/// RIP already set, `Fault` leaves the fault in `Cpu::fault`.
pub(crate) type Handler = fn(&mut Cpu, &Op) -> Step;

/// How an op ended: a one-byte value, so that handlers return it in a register (a
/// `Result<Flow, Fault>` went through memory on every instruction).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Step {
    Next,
    Branch,
    Fault,
}

/// Runs a handler body written with `?`, parking a fault in `Cpu::fault`.
#[inline(always)]
pub(crate) fn step(c: &mut Cpu, f: impl FnOnce(&mut Cpu) -> R<Flow>) -> Step {
    match f(c) {
        Ok(Flow::Next) => Step::Next,
        Ok(Flow::Branch) => Step::Branch,
        Err(e) => {
            c.fault = e;
            Step::Fault
        }
    }
}

/// "No register" in an op's register fields.
pub(crate) const NO_REG: u8 = 16;

/// The most instructions in one block.
const MAX_OPS: usize = 48;

/// Blocks kept before the whole cache is dropped and rebuilt.
const MAX_BLOCKS: usize = 1 << 18;

/// Words of a block's bytes kept inside the block.
const HEAD_WORDS: usize = 4;

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

/// A decoded run of instructions inside one physical page.
pub(crate) struct Block {
    /// RIP of the first instruction.
    rip: u64,
    /// Host address of the first byte.
    host: *const u8,
    /// The block's first bytes as little-endian words (zero-padded), kept inline so that the
    /// check on entry touches no other memory; `more` holds the words after them.
    head: [u64; HEAD_WORDS],
    more: Box<[u64]>,
    /// The block's length in bytes.
    len: usize,
    /// Which bytes of each head word belong to the block, and of the last of `more`.
    head_mask: [u64; HEAD_WORDS],
    more_mask: u64,
    /// All words (at least HEAD_WORDS) from `host` lie inside the page: the entry check
    /// reads whole words and masks.
    wide: bool,
    ops: Box<[Op]>,
    /// The last two successors (taken and fall-through), for chaining.
    links: [std::cell::Cell<Link>; 2],
}

impl Block {
    /// Whether guest memory still holds the bytes this block was decoded from.
    #[inline(always)]
    fn bytes_match(&self) -> bool {
        if !self.wide {
            return self.bytes_match_bytewise();
        }
        let p = self.host as *const u64;
        let mut diff = 0;
        for i in 0..HEAD_WORDS {
            // SAFETY: `wide` blocks have all their words, and at least HEAD_WORDS words,
            // from `host` inside the page.
            let v = u64::from_le(unsafe { std::ptr::read_unaligned(p.add(i)) });
            diff |= (v & self.head_mask[i]) ^ self.head[i];
        }
        if let Some((last, full)) = self.more.split_last() {
            for (i, w) in full.iter().enumerate() {
                // SAFETY: as above.
                diff |= u64::from_le(unsafe { std::ptr::read_unaligned(p.add(HEAD_WORDS + i)) }) ^ w;
            }
            // SAFETY: as above.
            let v = u64::from_le(unsafe { std::ptr::read_unaligned(p.add(HEAD_WORDS + full.len())) });
            diff |= (v & self.more_mask) ^ last;
        }
        diff == 0
    }

    #[inline(never)]
    fn bytes_match_bytewise(&self) -> bool {
        // SAFETY: `len` bytes from `host` lie inside the page (the block was decoded from
        // them).
        let b = unsafe { std::slice::from_raw_parts(self.host, self.len) };
        b.chunks(8).zip(self.head.iter().chain(self.more.iter())).all(|(c, w)| word(c) == *w)
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
}

impl Default for BlockCache {
    fn default() -> Self {
        Self {
            blocks: HashMap::default(),
            pages: HashMap::default(),
            jump: Box::new([NO_JUMP; JUMP_SIZE]),
            graveyard: Vec::new(),
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
                    self.graveyard.push(b);
                }
            }
        }
    }

    /// Adds a block; true when others were dropped to make room (the generation must change).
    fn insert(&mut self, key: u64, b: Box<Block>) -> bool {
        let mut dropped = false;
        if self.blocks.len() >= MAX_BLOCKS {
            self.graveyard.extend(self.blocks.drain().map(|(_, b)| b));
            self.pages.clear();
            dropped = true;
        }
        match self.blocks.insert(key, b) {
            Some(old) => {
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
    ins.flow_control() != FlowControl::Next
        || matches!(
            ins.mnemonic(),
            M::Hlt
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
            if unsafe { (*b).bytes_match() } {
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
            Some(b) if b.rip == rip && b.bytes_match() => Some(&**b as *const Block),
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
                self.phys.mark_code(phys);
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
    pub(crate) fn run_blocks(&mut self, mut b: *const Block, max: u64) -> (u64, R<Flow>) {
        let mut done = 0u64;
        loop {
            // SAFETY: `b` came from the cache in this generation; blocks dropped while it runs
            // stay in the graveyard until the next slow lookup, which cannot happen before
            // this function returns.
            let block = unsafe { &*b };
            let gen = self.icache_gen;
            let n = (block.ops.len() as u64).min(max - done) as usize;
            let ops = &block.ops[..n];
            let mut ended_by_branch = false;
            for (i, op) in ops.iter().enumerate() {
                match (op.run)(self, op) {
                    Step::Next => {
                        if self.icache_gen != gen {
                            // Code or translations changed under the block.
                            self.rip = op.next;
                            return (done + i as u64 + 1, Ok(Flow::Branch));
                        }
                    }
                    Step::Branch => {
                        done += i as u64 + 1;
                        // Only the block's own last instruction may lead to a link.
                        // Only a plain jump, call or return at the block's end may lead to a
                        // link: anything else may have changed the mode.
                        if self.icache_gen != gen
                            || self.halted
                            || self.inhibit_irq
                            || i + 1 != block.ops.len()
                            || !op.link
                        {
                            return (done, Ok(Flow::Branch));
                        }
                        ended_by_branch = true;
                        break;
                    }
                    Step::Fault => {
                        let ip = op.ip(self.bitness);
                        self.cur_ip = ip;
                        self.rip = ip;
                        return (done + i as u64 + 1, Err(self.fault));
                    }
                }
            }
            if !ended_by_branch {
                done += n as u64;
                let Some(last) = ops.last() else { return (done, Ok(Flow::Next)) };
                self.rip = last.next;
                if n < block.ops.len() {
                    return (done, Ok(Flow::Next));
                }
            }
            if done >= max {
                return (done, Ok(Flow::Next));
            }
            // Follow a link to the successor, or find it and remember it.
            let rip = self.rip;
            let slot = if block.links[0].get().rip == rip { 0 } else { 1 };
            let l = block.links[slot].get();
            if l.rip == rip && l.gen == self.icache_gen {
                // SAFETY: links of the current generation point at live blocks.
                if unsafe { (*l.block).bytes_match() } {
                    b = l.block;
                    continue;
                }
            }
            match self.find_block() {
                Ok(Some(nb)) => {
                    let old = block.links[0].get();
                    block.links[1].set(old);
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
    let mut len = 0usize;
    while ops.len() < MAX_OPS && d.can_decode() {
        let ins = d.decode();
        if ins.is_invalid() {
            break;
        }
        let next = ins.next_ip() & mask;
        ops.push(crate::compile::compile(&ins, bitness, next));
        len += ins.len();
        // Stop at control transfers, and where the IP wraps around.
        if ends_block(&ins) || next != ins.next_ip() {
            break;
        }
    }
    if ops.is_empty() {
        return None;
    }
    let words: Vec<u64> = bytes[off..off + len].chunks(8).map(word).collect();
    let mut head = [0u64; HEAD_WORDS];
    for (h, w) in head.iter_mut().zip(words.iter()) {
        *h = *w;
    }
    let more = words.get(HEAD_WORDS..).unwrap_or_default().into();
    let mut head_mask = [0u64; HEAD_WORDS];
    for (i, m) in head_mask.iter_mut().enumerate() {
        let bytes = len.saturating_sub(i * 8).min(8);
        *m = if bytes == 8 { u64::MAX } else { (1u64 << (8 * bytes)) - 1 };
    }
    Some(Block {
        rip,
        // SAFETY: off < 4096, inside the page.
        host: unsafe { page.add(off) },
        head,
        more,
        len,
        head_mask,
        more_mask: if len.is_multiple_of(8) { u64::MAX } else { (1u64 << (8 * (len % 8))) - 1 },
        wide: off + (len.div_ceil(8) * 8).max(HEAD_WORDS * 8) <= 4096,
        ops: ops.into_boxed_slice(),
        links: [std::cell::Cell::new(NO_LINK), std::cell::Cell::new(NO_LINK)],
    })
}
