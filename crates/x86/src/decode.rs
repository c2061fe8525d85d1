//! Instruction fetch outside the block cache: code that crosses a page boundary or runs
//! from MMIO is gathered byte by byte and decoded every time.

use crate::cpu::{Cpu, Fault, CS, R};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};

impl Cpu {
    /// Fetches and decodes the instruction at CS:RIP without caching it.
    pub(crate) fn fetch_uncached(&mut self) -> R<Instruction> {
        let bitness = self.code_bitness();
        self.bitness = bitness;
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

    /// Runs one instruction fetched with `fetch_uncached`.
    pub(crate) fn step_uncached(&mut self) -> R<crate::exec::Flow> {
        self.cur_ip = self.rip;
        let ins = self.fetch_uncached()?;
        let next = ins.next_ip();
        self.rip = match self.bitness {
            16 => next & 0xffff,
            32 => next & 0xffff_ffff,
            _ => next,
        };
        self.exec(&ins)
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
