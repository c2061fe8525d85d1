//! The decoded-instruction cache: instructions decoded once per guest physical page and
//! dropped when the page is written.

use crate::cpu::{Cpu, Fault, CS, R};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};
use std::collections::HashMap;

/// Decoded instructions of one physical page for one code size.
pub(crate) struct PageCode {
    /// Index + 1 into `ins` for each byte offset; 0 when nothing is decoded there.
    slots: Box<[u16; 4096]>,
    ins: Vec<(Instruction, u64)>,
}

/// The cache, keyed by physical page | code-size tag.
#[derive(Default)]
pub struct ICache {
    pages: HashMap<u64, PageCode>,
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
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(b)
}

impl Cpu {
    pub(crate) fn invalidate_code(&mut self, page: u64) {
        self.icache.invalidate(page);
    }

    /// Fetches and decodes the instruction at CS:RIP, through the cache.
    pub(crate) fn fetch(&mut self) -> R<Instruction> {
        let bitness = self.code_bitness();
        self.bitness = bitness;
        let lin = self.lin(CS, self.rip);
        let (phys, host) = self.fetch_translate(lin)?;
        let off = (phys & 0xfff) as usize;
        let key = (phys & !0xfff) | tag(bitness);
        if !host.is_null() {
            // SAFETY: `host` points at a mapped 4 KiB page (from the TLB).
            let page = unsafe { std::slice::from_raw_parts(host as *const u8, 4096) };
            if let Some(pc) = self.icache.pages.get(&key) {
                let s = pc.slots[off];
                if s != 0 {
                    let (ins, h) = pc.ins[s as usize - 1];
                    let len = ins.len();
                    if head(&page[off..(off + len).min(4096)]) == h {
                        return Ok(ins);
                    }
                }
            }
            if off + 15 <= 4096 {
                let ins = decode_bytes(&page[off..off + 15], bitness, self.rip)?;
                let len = ins.len();
                let h = head(&page[off..off + len]);
                let pc = self
                    .icache
                    .pages
                    .entry(key)
                    .or_insert_with(|| PageCode { slots: Box::new([0; 4096]), ins: Vec::new() });
                if pc.ins.len() < u16::MAX as usize - 1 {
                    pc.ins.push((ins, h));
                    pc.slots[off] = pc.ins.len() as u16;
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
