//! SSE/SSE2 (the integer and move subset that Linux and libc string routines use, plus scalar
//! double/single arithmetic), FXSAVE/FXRSTOR and the x87 control instructions.

use crate::cpu::*;
use crate::exec::Flow;
use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

fn xmm_index(r: Register) -> usize {
    (r as usize - Register::XMM0 as usize) & 15
}

fn lanes8(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}
fn from8(b: [u8; 16]) -> u128 {
    u128::from_le_bytes(b)
}
fn lanes16(v: u128) -> [u16; 8] {
    let b = v.to_le_bytes();
    std::array::from_fn(|i| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]))
}
fn from16(l: [u16; 8]) -> u128 {
    let mut b = [0u8; 16];
    for i in 0..8 {
        b[2 * i..2 * i + 2].copy_from_slice(&l[i].to_le_bytes());
    }
    u128::from_le_bytes(b)
}
fn lanes32(v: u128) -> [u32; 4] {
    std::array::from_fn(|i| (v >> (32 * i)) as u32)
}
fn from32(l: [u32; 4]) -> u128 {
    l.iter().enumerate().fold(0u128, |a, (i, x)| a | ((*x as u128) << (32 * i)))
}
fn lanes64(v: u128) -> [u64; 2] {
    [v as u64, (v >> 64) as u64]
}
fn from64(l: [u64; 2]) -> u128 {
    l[0] as u128 | ((l[1] as u128) << 64)
}

impl Cpu {
    fn sse_check(&self) -> R<()> {
        if self.cr0 & CR0_EM != 0 || self.cr4 & CR4_OSFXSR == 0 {
            return Err(ud());
        }
        if self.cr0 & CR0_TS != 0 {
            return Err(Fault::Exc(NM, None));
        }
        Ok(())
    }

    fn read128(&mut self, ins: &Instruction, i: u32, aligned: bool) -> R<u128> {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                if r.is_xmm() {
                    Ok(self.fpu.xmm[xmm_index(r)])
                } else {
                    Ok(self.get_reg(r) as u128)
                }
            }
            OpKind::Memory => {
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                let size = ins.memory_size().size();
                if aligned && size == 16 && self.lin(seg, ea) & 15 != 0 {
                    return Err(gp(0));
                }
                match size {
                    16 => {
                        let lo = self.read(seg, ea, 8)?;
                        let hi = self.read(seg, ea + 8, 8)?;
                        Ok(lo as u128 | ((hi as u128) << 64))
                    }
                    s => Ok(self.read(seg, ea, s.min(8))? as u128),
                }
            }
            _ => Ok(self.rd(ins, i)? as u128),
        }
    }

    fn write128(&mut self, ins: &Instruction, i: u32, v: u128, aligned: bool) -> R<()> {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                if r.is_xmm() {
                    self.fpu.xmm[xmm_index(r)] = v;
                } else {
                    self.put_reg(r, v as u64);
                }
                Ok(())
            }
            OpKind::Memory => {
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                let size = ins.memory_size().size();
                if aligned && size == 16 && self.lin(seg, ea) & 15 != 0 {
                    return Err(gp(0));
                }
                if size == 16 {
                    self.probe_write(self.lin(seg, ea), 16)?;
                    self.write(seg, ea, 8, v as u64)?;
                    self.write(seg, ea + 8, 8, (v >> 64) as u64)
                } else {
                    self.write(seg, ea, size.min(8), v as u64)
                }
            }
            _ => Ok(()),
        }
    }

    fn xmm_dst(&self, ins: &Instruction) -> usize {
        xmm_index(ins.op0_register())
    }

    /// x87, MMX, SSE and the state-saving instructions: routed by the CPUID feature that
    /// iced-x86 says each instruction needs.
    pub(crate) fn exec_fpu_sse(&mut self, ins: &Instruction) -> R<Flow> {
        use iced_x86::CpuidFeature as F;
        let feats = ins.cpuid_features();
        if feats.iter().any(|f| matches!(f, F::FPU | F::FPU287 | F::FPU387 | F::FXSR)) {
            return self.exec_x87(ins);
        }
        match ins.mnemonic() {
            M::Ldmxcsr => {
                self.sse_check()?;
                let v = self.rd(ins, 0)? as u32;
                if v & !0xffff != 0 {
                    return Err(gp(0));
                }
                self.fpu.mxcsr = v;
            }
            M::Stmxcsr => {
                self.sse_check()?;
                let v = self.fpu.mxcsr as u64;
                self.wr(ins, 0, v)?;
            }
            M::Emms => {}
            _ => return self.exec_sse(ins),
        }
        Ok(Flow::Next)
    }

    pub(crate) fn sse_or_nm(&self) -> R<()> {
        if self.cr0 & CR0_TS != 0 {
            return Err(Fault::Exc(NM, None));
        }
        if self.cr0 & CR0_EM != 0 {
            return Err(ud());
        }
        Ok(())
    }

    fn exec_sse(&mut self, ins: &Instruction) -> R<Flow> {
        let m = ins.mnemonic();
        // Only the legacy-SSE encodings: VEX/EVEX forms are not promised by CPUID.
        let is_sse = ins.op_count() > 0
            && (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Register && ins.op_register(i).is_xmm());
        if !is_sse && !matches!(m, M::Movnti) {
            return self.unimplemented(ins);
        }
        if ins.op_count() > 0
            && (0..ins.op_count()).any(|i| {
                ins.op_kind(i) == OpKind::Register
                    && (ins.op_register(i).is_ymm() || ins.op_register(i).is_zmm())
            })
        {
            return self.unimplemented(ins);
        }
        self.sse_check()?;
        match m {
            M::Movaps | M::Movapd | M::Movdqa | M::Movntdq | M::Movntps | M::Movntpd => {
                let v = self.read128(ins, 1, true)?;
                self.write128(ins, 0, v, true)?;
            }
            M::Movups | M::Movupd | M::Movdqu | M::Lddqu => {
                let v = self.read128(ins, 1, false)?;
                self.write128(ins, 0, v, false)?;
            }
            M::Movnti => {
                let v = self.rd(ins, 1)?;
                self.wr(ins, 0, v)?;
            }
            M::Movd | M::Movq => {
                let v = self.read128(ins, 1, false)?;
                let size = self.op_size(ins, 1).min(8);
                let v = if size >= 8 { v as u64 as u128 } else { v as u32 as u128 };
                if ins.op0_kind() == OpKind::Register && ins.op0_register().is_xmm() {
                    self.write128(ins, 0, v, false)?;
                } else {
                    self.wr(ins, 0, v as u64)?;
                }
            }
            M::Movss | M::Movsd => {
                let w = if m == M::Movss { 32 } else { 64 };
                let lm = (1u128 << w) - 1;
                let v = self.read128(ins, 1, false)?;
                if ins.op0_kind() == OpKind::Memory || ins.op1_kind() == OpKind::Memory {
                    self.write128(ins, 0, v & lm, false)?;
                } else {
                    let d = self.xmm_dst(ins);
                    self.fpu.xmm[d] = (self.fpu.xmm[d] & !lm) | (v & lm);
                }
            }
            M::Movlps | M::Movlpd | M::Movhps | M::Movhpd => {
                let high = matches!(m, M::Movhps | M::Movhpd);
                if ins.op0_kind() == OpKind::Memory {
                    let v = self.read128(ins, 1, false)?;
                    let part = if high { (v >> 64) as u64 } else { v as u64 };
                    self.wr(ins, 0, part)?;
                } else {
                    let v = self.read128(ins, 1, false)? as u64 as u128;
                    let d = self.xmm_dst(ins);
                    let x = self.fpu.xmm[d];
                    self.fpu.xmm[d] =
                        if high { (x & u64::MAX as u128) | (v << 64) } else { (x & !(u64::MAX as u128)) | v };
                }
            }
            M::Movhlps | M::Movlhps => {
                let s = self.read128(ins, 1, false)?;
                let d = self.xmm_dst(ins);
                let x = self.fpu.xmm[d];
                self.fpu.xmm[d] = if m == M::Movhlps {
                    (x & !(u64::MAX as u128)) | (s >> 64)
                } else {
                    (x & u64::MAX as u128) | (s << 64)
                };
            }
            M::Pmovmskb | M::Movmskps | M::Movmskpd => {
                let v = self.read128(ins, 1, false)?;
                let r = match m {
                    M::Pmovmskb => {
                        lanes8(v).iter().enumerate().fold(0u64, |a, (i, b)| a | (((b >> 7) as u64) << i))
                    }
                    M::Movmskps => {
                        lanes32(v).iter().enumerate().fold(0u64, |a, (i, b)| a | (((b >> 31) as u64) << i))
                    }
                    _ => lanes64(v).iter().enumerate().fold(0u64, |a, (i, b)| a | ((b >> 63) << i)),
                };
                self.wr(ins, 0, r)?;
            }
            M::Pxor
            | M::Xorps
            | M::Xorpd
            | M::Por
            | M::Orps
            | M::Orpd
            | M::Pand
            | M::Andps
            | M::Andpd
            | M::Pandn
            | M::Andnps
            | M::Andnpd => {
                let d = self.xmm_dst(ins);
                let s = self.read128(ins, 1, true)?;
                let a = self.fpu.xmm[d];
                self.fpu.xmm[d] = match m {
                    M::Pxor | M::Xorps | M::Xorpd => a ^ s,
                    M::Por | M::Orps | M::Orpd => a | s,
                    M::Pand | M::Andps | M::Andpd => a & s,
                    _ => !a & s,
                };
            }
            M::Paddb
            | M::Psubb
            | M::Pcmpeqb
            | M::Pcmpgtb
            | M::Pminub
            | M::Pmaxub
            | M::Pavgb
            | M::Paddusb
            | M::Psubusb
            | M::Paddsb
            | M::Psubsb
            | M::Pminsb
            | M::Pmaxsb => {
                let d = self.xmm_dst(ins);
                let s = lanes8(self.read128(ins, 1, true)?);
                let a = lanes8(self.fpu.xmm[d]);
                let r: [u8; 16] = std::array::from_fn(|i| {
                    let (x, y) = (a[i], s[i]);
                    match m {
                        M::Paddb => x.wrapping_add(y),
                        M::Psubb => x.wrapping_sub(y),
                        M::Pcmpeqb => {
                            if x == y {
                                0xff
                            } else {
                                0
                            }
                        }
                        M::Pcmpgtb => {
                            if (x as i8) > (y as i8) {
                                0xff
                            } else {
                                0
                            }
                        }
                        M::Pminub => x.min(y),
                        M::Pmaxub => x.max(y),
                        M::Pavgb => ((x as u16 + y as u16 + 1) >> 1) as u8,
                        M::Paddusb => x.saturating_add(y),
                        M::Psubusb => x.saturating_sub(y),
                        M::Paddsb => (x as i8).saturating_add(y as i8) as u8,
                        M::Psubsb => (x as i8).saturating_sub(y as i8) as u8,
                        M::Pminsb => (x as i8).min(y as i8) as u8,
                        _ => (x as i8).max(y as i8) as u8,
                    }
                });
                self.fpu.xmm[d] = from8(r);
            }
            M::Paddw
            | M::Psubw
            | M::Pcmpeqw
            | M::Pcmpgtw
            | M::Pmullw
            | M::Pmulhw
            | M::Pmulhuw
            | M::Pminsw
            | M::Pmaxsw
            | M::Paddusw
            | M::Psubusw
            | M::Paddsw
            | M::Psubsw
            | M::Pavgw => {
                let d = self.xmm_dst(ins);
                let s = lanes16(self.read128(ins, 1, true)?);
                let a = lanes16(self.fpu.xmm[d]);
                let r: [u16; 8] = std::array::from_fn(|i| {
                    let (x, y) = (a[i], s[i]);
                    match m {
                        M::Paddw => x.wrapping_add(y),
                        M::Psubw => x.wrapping_sub(y),
                        M::Pcmpeqw => {
                            if x == y {
                                0xffff
                            } else {
                                0
                            }
                        }
                        M::Pcmpgtw => {
                            if (x as i16) > (y as i16) {
                                0xffff
                            } else {
                                0
                            }
                        }
                        M::Pmullw => x.wrapping_mul(y),
                        M::Pmulhw => (((x as i16 as i32) * (y as i16 as i32)) >> 16) as u16,
                        M::Pmulhuw => (((x as u32) * (y as u32)) >> 16) as u16,
                        M::Pminsw => (x as i16).min(y as i16) as u16,
                        M::Pmaxsw => (x as i16).max(y as i16) as u16,
                        M::Paddusw => x.saturating_add(y),
                        M::Psubusw => x.saturating_sub(y),
                        M::Paddsw => (x as i16).saturating_add(y as i16) as u16,
                        M::Psubsw => (x as i16).saturating_sub(y as i16) as u16,
                        _ => ((x as u32 + y as u32 + 1) >> 1) as u16,
                    }
                });
                self.fpu.xmm[d] = from16(r);
            }
            M::Paddd | M::Psubd | M::Pcmpeqd | M::Pcmpgtd => {
                let d = self.xmm_dst(ins);
                let s = lanes32(self.read128(ins, 1, true)?);
                let a = lanes32(self.fpu.xmm[d]);
                let r: [u32; 4] = std::array::from_fn(|i| {
                    let (x, y) = (a[i], s[i]);
                    match m {
                        M::Paddd => x.wrapping_add(y),
                        M::Psubd => x.wrapping_sub(y),
                        M::Pcmpeqd => {
                            if x == y {
                                u32::MAX
                            } else {
                                0
                            }
                        }
                        _ => {
                            if (x as i32) > (y as i32) {
                                u32::MAX
                            } else {
                                0
                            }
                        }
                    }
                });
                self.fpu.xmm[d] = from32(r);
            }
            M::Paddq | M::Psubq | M::Pmuludq => {
                let d = self.xmm_dst(ins);
                let s = lanes64(self.read128(ins, 1, true)?);
                let a = lanes64(self.fpu.xmm[d]);
                let r: [u64; 2] = std::array::from_fn(|i| match m {
                    M::Paddq => a[i].wrapping_add(s[i]),
                    M::Psubq => a[i].wrapping_sub(s[i]),
                    _ => (a[i] as u32 as u64) * (s[i] as u32 as u64),
                });
                self.fpu.xmm[d] = from64(r);
            }
            M::Psllw | M::Pslld | M::Psllq | M::Psrlw | M::Psrld | M::Psrlq | M::Psraw | M::Psrad => {
                let d = self.xmm_dst(ins);
                let c = if matches!(ins.op1_kind(), OpKind::Immediate8) {
                    ins.immediate8() as u64
                } else {
                    self.read128(ins, 1, true)? as u64
                };
                let a = self.fpu.xmm[d];
                self.fpu.xmm[d] = match m {
                    M::Psllw => from16(lanes16(a).map(|x| if c > 15 { 0 } else { x << c })),
                    M::Psrlw => from16(lanes16(a).map(|x| if c > 15 { 0 } else { x >> c })),
                    M::Psraw => from16(lanes16(a).map(|x| ((x as i16) >> c.min(15)) as u16)),
                    M::Pslld => from32(lanes32(a).map(|x| if c > 31 { 0 } else { x << c })),
                    M::Psrld => from32(lanes32(a).map(|x| if c > 31 { 0 } else { x >> c })),
                    M::Psrad => from32(lanes32(a).map(|x| ((x as i32) >> c.min(31)) as u32)),
                    M::Psllq => from64(lanes64(a).map(|x| if c > 63 { 0 } else { x << c })),
                    _ => from64(lanes64(a).map(|x| if c > 63 { 0 } else { x >> c })),
                };
            }
            M::Pslldq | M::Psrldq => {
                let d = self.xmm_dst(ins);
                let c = (ins.immediate8() as u32).min(16) * 8;
                let a = self.fpu.xmm[d];
                self.fpu.xmm[d] = if c >= 128 {
                    0
                } else if m == M::Pslldq {
                    a << c
                } else {
                    a >> c
                };
            }
            M::Pshufd | M::Shufps => {
                let d = self.xmm_dst(ins);
                let s = lanes32(self.read128(ins, 1, true)?);
                let imm = ins.immediate8();
                let a = if m == M::Shufps { lanes32(self.fpu.xmm[d]) } else { s };
                let r: [u32; 4] = std::array::from_fn(|i| {
                    let sel = ((imm >> (2 * i)) & 3) as usize;
                    if i < 2 {
                        a[sel]
                    } else {
                        s[sel]
                    }
                });
                self.fpu.xmm[d] = from32(r);
            }
            M::Shufpd => {
                let d = self.xmm_dst(ins);
                let s = lanes64(self.read128(ins, 1, true)?);
                let a = lanes64(self.fpu.xmm[d]);
                let imm = ins.immediate8();
                self.fpu.xmm[d] = from64([a[(imm & 1) as usize], s[((imm >> 1) & 1) as usize]]);
            }
            M::Pshuflw | M::Pshufhw => {
                let d = self.xmm_dst(ins);
                let s = lanes16(self.read128(ins, 1, true)?);
                let imm = ins.immediate8();
                let off = if m == M::Pshuflw { 0 } else { 4 };
                let mut r = s;
                for i in 0..4 {
                    r[off + i] = s[off + ((imm >> (2 * i)) & 3) as usize];
                }
                self.fpu.xmm[d] = from16(r);
            }
            M::Punpcklbw | M::Punpckhbw => {
                let d = self.xmm_dst(ins);
                let s = lanes8(self.read128(ins, 1, true)?);
                let a = lanes8(self.fpu.xmm[d]);
                let o = if m == M::Punpcklbw { 0 } else { 8 };
                let r: [u8; 16] =
                    std::array::from_fn(|i| if i % 2 == 0 { a[o + i / 2] } else { s[o + i / 2] });
                self.fpu.xmm[d] = from8(r);
            }
            M::Punpcklwd | M::Punpckhwd => {
                let d = self.xmm_dst(ins);
                let s = lanes16(self.read128(ins, 1, true)?);
                let a = lanes16(self.fpu.xmm[d]);
                let o = if m == M::Punpcklwd { 0 } else { 4 };
                let r: [u16; 8] =
                    std::array::from_fn(|i| if i % 2 == 0 { a[o + i / 2] } else { s[o + i / 2] });
                self.fpu.xmm[d] = from16(r);
            }
            M::Punpckldq | M::Punpckhdq | M::Unpcklps | M::Unpckhps => {
                let d = self.xmm_dst(ins);
                let s = lanes32(self.read128(ins, 1, true)?);
                let a = lanes32(self.fpu.xmm[d]);
                let o = if matches!(m, M::Punpckldq | M::Unpcklps) { 0 } else { 2 };
                let r: [u32; 4] =
                    std::array::from_fn(|i| if i % 2 == 0 { a[o + i / 2] } else { s[o + i / 2] });
                self.fpu.xmm[d] = from32(r);
            }
            M::Punpcklqdq | M::Punpckhqdq | M::Unpcklpd | M::Unpckhpd => {
                let d = self.xmm_dst(ins);
                let s = lanes64(self.read128(ins, 1, true)?);
                let a = lanes64(self.fpu.xmm[d]);
                let o = if matches!(m, M::Punpcklqdq | M::Unpcklpd) { 0 } else { 1 };
                self.fpu.xmm[d] = from64([a[o], s[o]]);
            }
            M::Packuswb | M::Packsswb => {
                let d = self.xmm_dst(ins);
                let s = lanes16(self.read128(ins, 1, true)?);
                let a = lanes16(self.fpu.xmm[d]);
                let sat = |x: u16| -> u8 {
                    let v = x as i16;
                    if m == M::Packuswb {
                        v.clamp(0, 255) as u8
                    } else {
                        v.clamp(-128, 127) as i8 as u8
                    }
                };
                let r: [u8; 16] = std::array::from_fn(|i| if i < 8 { sat(a[i]) } else { sat(s[i - 8]) });
                self.fpu.xmm[d] = from8(r);
            }
            M::Packssdw => {
                let d = self.xmm_dst(ins);
                let s = lanes32(self.read128(ins, 1, true)?);
                let a = lanes32(self.fpu.xmm[d]);
                let sat = |x: u32| (x as i32).clamp(-32768, 32767) as i16 as u16;
                let r: [u16; 8] = std::array::from_fn(|i| if i < 4 { sat(a[i]) } else { sat(s[i - 4]) });
                self.fpu.xmm[d] = from16(r);
            }
            M::Psadbw => {
                let d = self.xmm_dst(ins);
                let s = lanes8(self.read128(ins, 1, true)?);
                let a = lanes8(self.fpu.xmm[d]);
                let sum = |r: std::ops::Range<usize>| {
                    r.map(|i| (a[i] as i32 - s[i] as i32).unsigned_abs() as u64).sum::<u64>()
                };
                self.fpu.xmm[d] = from64([sum(0..8), sum(8..16)]);
            }
            M::Pmaddwd => {
                let d = self.xmm_dst(ins);
                let s = lanes16(self.read128(ins, 1, true)?);
                let a = lanes16(self.fpu.xmm[d]);
                let r: [u32; 4] = std::array::from_fn(|i| {
                    ((a[2 * i] as i16 as i32) * (s[2 * i] as i16 as i32))
                        .wrapping_add((a[2 * i + 1] as i16 as i32) * (s[2 * i + 1] as i16 as i32))
                        as u32
                });
                self.fpu.xmm[d] = from32(r);
            }
            M::Pextrw => {
                let s = lanes16(self.read128(ins, 1, false)?);
                let v = s[(ins.immediate8() & 7) as usize] as u64;
                self.wr(ins, 0, v)?;
            }
            M::Pinsrw => {
                let d = self.xmm_dst(ins);
                let v = self.rd(ins, 1)? as u16;
                let mut a = lanes16(self.fpu.xmm[d]);
                a[(ins.immediate8() & 7) as usize] = v;
                self.fpu.xmm[d] = from16(a);
            }
            _ => return self.exec_sse_float(ins),
        }
        Ok(Flow::Next)
    }

    fn exec_sse_float(&mut self, ins: &Instruction) -> R<Flow> {
        let m = ins.mnemonic();
        match m {
            M::Addsd | M::Subsd | M::Mulsd | M::Divsd | M::Minsd | M::Maxsd | M::Sqrtsd => {
                let d = self.xmm_dst(ins);
                let b = f64::from_bits(self.read128(ins, 1, false)? as u64);
                let a = f64::from_bits(self.fpu.xmm[d] as u64);
                let r = match m {
                    M::Addsd => a + b,
                    M::Subsd => a - b,
                    M::Mulsd => a * b,
                    M::Divsd => a / b,
                    M::Minsd => {
                        if a < b {
                            a
                        } else {
                            b
                        }
                    }
                    M::Maxsd => {
                        if a > b {
                            a
                        } else {
                            b
                        }
                    }
                    _ => b.sqrt(),
                };
                self.fpu.xmm[d] = (self.fpu.xmm[d] & !(u64::MAX as u128)) | r.to_bits() as u128;
            }
            M::Addss | M::Subss | M::Mulss | M::Divss | M::Minss | M::Maxss | M::Sqrtss => {
                let d = self.xmm_dst(ins);
                let b = f32::from_bits(self.read128(ins, 1, false)? as u32);
                let a = f32::from_bits(self.fpu.xmm[d] as u32);
                let r = match m {
                    M::Addss => a + b,
                    M::Subss => a - b,
                    M::Mulss => a * b,
                    M::Divss => a / b,
                    M::Minss => {
                        if a < b {
                            a
                        } else {
                            b
                        }
                    }
                    M::Maxss => {
                        if a > b {
                            a
                        } else {
                            b
                        }
                    }
                    _ => b.sqrt(),
                };
                self.fpu.xmm[d] = (self.fpu.xmm[d] & !(u32::MAX as u128)) | r.to_bits() as u128;
            }
            M::Addpd | M::Subpd | M::Mulpd | M::Divpd => {
                let d = self.xmm_dst(ins);
                let b = lanes64(self.read128(ins, 1, true)?).map(f64::from_bits);
                let a = lanes64(self.fpu.xmm[d]).map(f64::from_bits);
                let r: [u64; 2] = std::array::from_fn(|i| {
                    (match m {
                        M::Addpd => a[i] + b[i],
                        M::Subpd => a[i] - b[i],
                        M::Mulpd => a[i] * b[i],
                        _ => a[i] / b[i],
                    })
                    .to_bits()
                });
                self.fpu.xmm[d] = from64(r);
            }
            M::Addps | M::Subps | M::Mulps | M::Divps => {
                let d = self.xmm_dst(ins);
                let b = lanes32(self.read128(ins, 1, true)?).map(f32::from_bits);
                let a = lanes32(self.fpu.xmm[d]).map(f32::from_bits);
                let r: [u32; 4] = std::array::from_fn(|i| {
                    (match m {
                        M::Addps => a[i] + b[i],
                        M::Subps => a[i] - b[i],
                        M::Mulps => a[i] * b[i],
                        _ => a[i] / b[i],
                    })
                    .to_bits()
                });
                self.fpu.xmm[d] = from32(r);
            }
            M::Ucomisd | M::Comisd | M::Ucomiss | M::Comiss => {
                let d = self.xmm_dst(ins);
                let (a, b) = if matches!(m, M::Ucomisd | M::Comisd) {
                    (
                        f64::from_bits(self.fpu.xmm[d] as u64),
                        f64::from_bits(self.read128(ins, 1, false)? as u64),
                    )
                } else {
                    (
                        f32::from_bits(self.fpu.xmm[d] as u32) as f64,
                        f32::from_bits(self.read128(ins, 1, false)? as u32) as f64,
                    )
                };
                use crate::flags::{CF, PF, STATUS, ZF};
                let f = if a.is_nan() || b.is_nan() {
                    ZF | PF | CF
                } else if a < b {
                    CF
                } else if a == b {
                    ZF
                } else {
                    0
                };
                self.set_status(STATUS, f);
            }
            M::Cvtsi2sd | M::Cvtsi2ss => {
                let d = self.xmm_dst(ins);
                let size = self.op_size(ins, 1);
                let v = self.rd(ins, 1)?;
                let i = if size == 8 { v as i64 } else { v as u32 as i32 as i64 };
                if m == M::Cvtsi2sd {
                    self.fpu.xmm[d] = (self.fpu.xmm[d] & !(u64::MAX as u128)) | (i as f64).to_bits() as u128;
                } else {
                    self.fpu.xmm[d] = (self.fpu.xmm[d] & !(u32::MAX as u128)) | (i as f32).to_bits() as u128;
                }
            }
            M::Cvttsd2si | M::Cvtsd2si | M::Cvttss2si | M::Cvtss2si => {
                let size = self.op_size(ins, 0);
                let src = self.read128(ins, 1, false)?;
                let f = if matches!(m, M::Cvttsd2si | M::Cvtsd2si) {
                    f64::from_bits(src as u64)
                } else {
                    f32::from_bits(src as u32) as f64
                };
                let f = if matches!(m, M::Cvtsd2si | M::Cvtss2si) { f.round_ties_even() } else { f.trunc() };
                let v = if size == 8 {
                    if f.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
                        i64::MIN as u64
                    } else {
                        f as i64 as u64
                    }
                } else if f.is_nan() || !(-2147483648.0..2147483648.0).contains(&f) {
                    0x8000_0000
                } else {
                    f as i32 as u32 as u64
                };
                self.wr(ins, 0, v)?;
            }
            M::Cvtsd2ss => {
                let d = self.xmm_dst(ins);
                let f = f64::from_bits(self.read128(ins, 1, false)? as u64) as f32;
                self.fpu.xmm[d] = (self.fpu.xmm[d] & !(u32::MAX as u128)) | f.to_bits() as u128;
            }
            M::Cvtss2sd => {
                let d = self.xmm_dst(ins);
                let f = f32::from_bits(self.read128(ins, 1, false)? as u32) as f64;
                self.fpu.xmm[d] = (self.fpu.xmm[d] & !(u64::MAX as u128)) | f.to_bits() as u128;
            }
            _ => return self.unimplemented(ins),
        }
        Ok(Flow::Next)
    }
}
