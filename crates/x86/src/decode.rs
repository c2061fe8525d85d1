//! The decoded-instruction cache: instructions decoded once per guest physical page and
//! dropped when the page is written.
//!
//! A decoded instruction carries absolute addresses (its own IP, its next IP, branch targets,
//! RIP-relative operands), so a cached one is only used at the IP it was decoded for: one
//! physical page can be mapped at several linear addresses (the vDSO sits at a random address
//! in every process) or reached through different segment bases.

use crate::cpu::{Cpu, Fault, CS, R};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};
use std::collections::HashMap;

/// Decoded instructions of one physical page for one code size.
pub(crate) struct PageCode {
    /// Index + 1 into `ins` for each byte offset; 0 when nothing is decoded there.
    slots: Box<[u16; 4096]>,
    ins: Vec<(Instruction, u64)>,
}

/// A multiplicative hasher for page keys (the std hasher dominated fetch time).
#[derive(Default, Clone, Copy)]
pub(crate) struct PageHasher(u64);

impl std::hash::Hasher for PageHasher {
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

const MEMO_WAYS: usize = 16;

type Build = std::hash::BuildHasherDefault<PageHasher>;

/// Recently used code pages (direct-mapped by linear page), so that straight-line fetches skip the TLB and the map.
#[derive(Clone, Copy)]
pub(crate) struct Memo {
    /// Linear page | code-size tag | CPL tag; u64::MAX when empty.
    key: u64,
    gen: u64,
    host: *const u8,
    page: *mut PageCode,
}

impl Default for Memo {
    fn default() -> Self {
        Self { key: u64::MAX, gen: 0, host: std::ptr::null(), page: std::ptr::null_mut() }
    }
}

/// The cache, keyed by physical page | code-size tag.
#[derive(Default)]
pub struct ICache {
    pages: HashMap<u64, Box<PageCode>, Build>,
    pub(crate) memo: [Memo; MEMO_WAYS],
}

fn tag(bitness: u32) -> u64 {
    match bitness {
        16 => 0,
        32 => 1,
        _ => 2,
    }
}

impl ICache {
    pub(crate) fn invalidate(&mut self, page: u64) {
        for t in 0..3 {
            self.pages.remove(&(page | t));
        }
    }
}

/// The first up-to-8 instruction bytes, to notice pages changed behind our back (device DMA).
#[inline]
fn head(bytes: &[u8]) -> u64 {
    if bytes.len() >= 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        return u64::from_le_bytes(b);
    }
    bytes.iter().rev().fold(0u64, |a, b| (a << 8) | *b as u64)
}

/// `head` of the `len` bytes at `p`, reading one word when the page allows.
///
/// # Safety
/// `p` must point at offset `off` of a mapped 4 KiB page.
#[inline]
unsafe fn head_at(p: *const u8, off: usize, len: usize) -> u64 {
    if off + 8 <= 4096 {
        // SAFETY: 8 bytes from `p` stay inside the page (caller's contract).
        let v = u64::from_le(unsafe { std::ptr::read_unaligned(p as *const u64) });
        if len >= 8 {
            v
        } else {
            v & ((1u64 << (8 * len)) - 1)
        }
    } else {
        // SAFETY: at most up to the page end.
        head(unsafe { std::slice::from_raw_parts(p, len.min(4096 - off)) })
    }
}

impl Cpu {
    pub(crate) fn invalidate_code(&mut self, page: u64) {
        self.icache.invalidate(page);
        // The memo may point at a page just dropped.
        self.icache_gen = self.icache_gen.wrapping_add(1);
    }

    /// Fetches and decodes the instruction at CS:RIP, through the cache.
    pub(crate) fn fetch(&mut self) -> R<Instruction> {
        let bitness = self.code_bitness();
        self.bitness = bitness;
        let lin = self.lin(CS, self.rip);
        let memo_key = (lin & !0xfff) | tag(bitness) | ((self.cpl as u64) << 2);
        let off = (lin & 0xfff) as usize;
        let way = ((lin >> 12) as usize) % MEMO_WAYS;
        let m = self.icache.memo[way];
        if m.key == memo_key && m.gen == self.icache_gen {
            // SAFETY: the memo is reset (generation bump) whenever its page is dropped or
            // translations change, so `page` points at a live boxed PageCode and `host` at a
            // mapped 4 KiB page.
            let pc = unsafe { &*m.page };
            let s = pc.slots[off];
            if s != 0 {
                let (ins, h) = pc.ins[s as usize - 1];
                let len = ins.len();
                // SAFETY: as above; `off` is inside the page.
                if ins.ip() == self.rip && unsafe { head_at(m.host.add(off), off, len) } == h {
                    return Ok(ins);
                }
            }
        }
        let (phys, host) = self.fetch_translate(lin)?;
        let key = (phys & !0xfff) | tag(bitness);
        if !host.is_null() {
            // SAFETY: `host` points at a mapped 4 KiB page (from the TLB).
            let page = unsafe { std::slice::from_raw_parts(host as *const u8, 4096) };
            if let Some(pc) = self.icache.pages.get_mut(&key) {
                self.icache.memo[way] = Memo {
                    key: memo_key,
                    gen: self.icache_gen,
                    host: host as *const u8,
                    page: &mut **pc as *mut PageCode,
                };
                let s = pc.slots[off];
                if s != 0 {
                    let (ins, h) = pc.ins[s as usize - 1];
                    let len = ins.len();
                    if ins.ip() == self.rip && head(&page[off..(off + len).min(4096)]) == h {
                        return Ok(ins);
                    }
                }
            }
            if off + 15 <= 4096 {
                let ins = decode_bytes(&page[off..off + 15], bitness, self.rip)?;
                let len = ins.len();
                let h = head(&page[off..off + len]);
                let pc =
                    self.icache.pages.entry(key).or_insert_with(|| {
                        Box::new(PageCode { slots: Box::new([0; 4096]), ins: Vec::new() })
                    });
                self.icache.memo[way] = Memo {
                    key: memo_key,
                    gen: self.icache_gen,
                    host: host as *const u8,
                    page: &mut **pc as *mut PageCode,
                };
                // A slot decoded for another address (a page mapped at several linear addresses,
                // like the vDSO in every process) is replaced in place.
                match pc.slots[off] {
                    0 if pc.ins.len() < u16::MAX as usize - 1 => {
                        pc.ins.push((ins, h));
                        pc.slots[off] = pc.ins.len() as u16;
                    }
                    0 => {}
                    s => pc.ins[s as usize - 1] = (ins, h),
                }
                self.phys.mark_code(phys);
                return Ok(ins);
            }
        }
        // Near a page end or in MMIO: gather the bytes one by one, uncached.
        let mut buf = [0u8; 15];
        let mut n = 0;
        let mut fault = None;
        for (i, b) in buf.iter_mut().enumerate() {
            let l = self.lin(CS, self.rip.wrapping_add(i as u64));
            match self.fetch_translate(l) {
                Ok((p, h)) => {
                    *b = if !h.is_null() {
                        // SAFETY: `h` is a mapped page and the offset is below 4096.
                        unsafe { *h.add((p & 0xfff) as usize) }
                    } else {
                        self.phys_read(p, 1) as u8
                    };
                    n += 1;
                }
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            }
        }
        match decode_bytes(&buf[..n], bitness, self.rip) {
            Err(Fault::Exc(6, None)) if n < 15 => Err(fault.unwrap_or(Fault::Exc(6, None))),
            r => r,
        }
    }
}

fn decode_bytes(bytes: &[u8], bitness: u32, ip: u64) -> R<Instruction> {
    let mut d = Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE);
    let ins = d.decode();
    if ins.is_invalid() {
        if d.last_error() == DecoderError::NoMoreBytes {
            return Err(Fault::Exc(6, None));
        }
        log::debug!("x86: invalid opcode {:02x?} at {ip:#x}", &bytes[..bytes.len().min(8)]);
        return Err(Fault::Exc(6, None));
    }
    Ok(ins)
}

#[cfg(test)]
mod tests {
    use crate::cpu::{Segment, CS};
    use crate::tests::{real_mode_vcpu, Recorder};

    #[test]
    fn a_page_reached_at_another_address_is_decoded_for_that_address() {
        // call next; next: pop ax; out 0x10, ax; hlt -- AX is the IP of `next`, which depends
        // on where the page is reached from (like the vDSO at a different address per process).
        let code = [0xe8, 0x00, 0x00, 0x58, 0xe7, 0x10, 0xf4];
        let mut v = real_mode_vcpu(&code);
        let io = Recorder::default();
        v.run_for(&io, 100).unwrap();
        let c = v.cpu();
        c.halted = false;
        c.segs[CS] = Segment::real(0x100, 0x9b);
        c.rip = 0;
        v.run_for(&io, 100).unwrap();
        assert_eq!(*io.out.lock().unwrap(), vec![(0x10, 0x1003), (0x10, 0x0003)]);
    }
}
