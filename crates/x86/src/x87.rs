//! The x87 floating-point unit and the FXSAVE/FXRSTOR state image.

use crate::cpu::*;
use crate::exec::Flow;
use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

impl Cpu {
    /// The x87 instructions and FXSAVE/FXRSTOR.
    pub(crate) fn exec_x87(&mut self, ins: &Instruction) -> R<Flow> {
        let m = ins.mnemonic();
        match m {
            // ---- x87 control ----
            M::Fninit | M::Finit => {
                self.fpu_x87_check()?;
                self.fpu.fcw = 0x37f;
                self.fpu.fsw = 0;
                self.fpu.ftw = 0;
                self.fpu.top = 0;
            }
            M::Fnstsw | M::Fstsw => {
                self.fpu_x87_check()?;
                let v = self.fpu.fsw as u64 | ((self.fpu.top as u64) << 11);
                self.wr(ins, 0, v)?;
            }
            M::Fnstcw | M::Fstcw => {
                self.fpu_x87_check()?;
                let v = self.fpu.fcw as u64;
                self.wr(ins, 0, v)?;
            }
            M::Fldcw => {
                self.fpu_x87_check()?;
                self.fpu.fcw = self.rd(ins, 0)? as u16;
            }
            M::Fnclex | M::Fclex => {
                self.fpu_x87_check()?;
                self.fpu.fsw &= 0x7f00;
            }
            M::Fxsave | M::Fxsave64 => {
                self.sse_or_nm()?;
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                if self.lin(seg, ea) & 15 != 0 {
                    return Err(gp(0));
                }
                self.probe_write(self.lin(seg, ea), 512)?;
                let fsw = self.fpu.fsw as u64 | ((self.fpu.top as u64) << 11);
                self.write(seg, ea, 8, self.fpu.fcw as u64 | (fsw << 16) | ((self.fpu.ftw as u64) << 32))?;
                self.write(seg, ea + 8, 8, 0)?;
                self.write(seg, ea + 16, 8, 0)?;
                self.write(seg, ea + 24, 8, self.fpu.mxcsr as u64 | (0xffffu64 << 32))?;
                for i in 0..8 {
                    let st = self.fpu.st[i];
                    self.write(seg, ea + 32 + 16 * i as u64, 8, st as u64)?;
                    self.write(seg, ea + 40 + 16 * i as u64, 8, (st >> 64) as u64 & 0xffff)?;
                }
                let n = if self.mode64() { 16 } else { 8 };
                for i in 0..n {
                    let x = self.fpu.xmm[i];
                    self.write(seg, ea + 160 + 16 * i as u64, 8, x as u64)?;
                    self.write(seg, ea + 168 + 16 * i as u64, 8, (x >> 64) as u64)?;
                }
            }
            M::Fxrstor | M::Fxrstor64 => {
                self.sse_or_nm()?;
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                if self.lin(seg, ea) & 15 != 0 {
                    return Err(gp(0));
                }
                let w0 = self.read(seg, ea, 8)?;
                let mx = self.read(seg, ea + 24, 4)? as u32;
                if mx & !0xffff != 0 {
                    return Err(gp(0));
                }
                self.fpu.fcw = w0 as u16;
                let fsw = (w0 >> 16) as u16;
                self.fpu.fsw = fsw & !0x3800;
                self.fpu.top = ((fsw >> 11) & 7) as u8;
                self.fpu.ftw = (w0 >> 32) as u8;
                self.fpu.mxcsr = mx;
                for i in 0..8 {
                    let lo = self.read(seg, ea + 32 + 16 * i as u64, 8)?;
                    let hi = self.read(seg, ea + 40 + 16 * i as u64, 2)?;
                    self.fpu.st[i] = lo as u128 | ((hi as u128) << 64);
                }
                let n = if self.mode64() { 16 } else { 8 };
                for i in 0..n {
                    let lo = self.read(seg, ea + 160 + 16 * i as u64, 8)?;
                    let hi = self.read(seg, ea + 168 + 16 * i as u64, 8)?;
                    self.fpu.xmm[i] = lo as u128 | ((hi as u128) << 64);
                }
            }
            M::Fild
            | M::Fld
            | M::Fldz
            | M::Fld1
            | M::Fst
            | M::Fstp
            | M::Fistp
            | M::Fist
            | M::Ffree
            | M::Fxch
            | M::Fnop
            | M::Fincstp
            | M::Fdecstp => {
                self.fpu_x87_check()?;
                self.x87_move(ins)?;
            }
            _ => return self.unimplemented(ins),
        }
        Ok(Flow::Next)
    }

    fn st_index(&self, i: usize) -> usize {
        (self.fpu.top as usize + i) & 7
    }

    fn x87_push(&mut self, v: u128) {
        self.fpu.top = self.fpu.top.wrapping_sub(1) & 7;
        let t = self.fpu.top as usize;
        self.fpu.st[t] = v;
        self.fpu.ftw |= 1 << t;
    }

    fn x87_pop(&mut self) {
        let t = self.fpu.top as usize;
        self.fpu.ftw &= !(1 << t);
        self.fpu.top = (self.fpu.top + 1) & 7;
    }

    /// The x87 data movement instructions (values kept as raw 80-bit extended numbers;
    /// x87 arithmetic is not implemented).
    fn x87_move(&mut self, ins: &Instruction) -> R<()> {
        let m = ins.mnemonic();
        let mem = ins.op_count() > 0 && ins.op0_kind() == OpKind::Memory;
        let st_reg = |i: u32| ins.op_register(i) as usize - Register::ST0 as usize;
        match m {
            M::Fild => {
                let size = ins.memory_size().size();
                let v = self.rd(ins, 0)?;
                let i = match size {
                    2 => v as u16 as i16 as i64,
                    4 => v as u32 as i32 as i64,
                    _ => v as i64,
                };
                self.x87_push(int_to_ext(i));
            }
            M::Fldz => self.x87_push(0),
            M::Fld1 => self.x87_push(int_to_ext(1)),
            M::Fld => {
                let v = if mem {
                    let seg = self.mem_seg(ins);
                    let ea = self.ea(ins);
                    match ins.memory_size().size() {
                        4 => f64_to_ext(f32::from_bits(self.read(seg, ea, 4)? as u32) as f64),
                        8 => f64_to_ext(f64::from_bits(self.read(seg, ea, 8)?)),
                        _ => {
                            let lo = self.read(seg, ea, 8)?;
                            let hi = self.read(seg, ea + 8, 2)?;
                            lo as u128 | ((hi as u128) << 64)
                        }
                    }
                } else {
                    self.fpu.st[self.st_index(st_reg(0))]
                };
                self.x87_push(v);
            }
            M::Fst | M::Fstp | M::Fist | M::Fistp => {
                let v = self.fpu.st[self.st_index(0)];
                if mem {
                    let seg = self.mem_seg(ins);
                    let ea = self.ea(ins);
                    let size = ins.memory_size().size();
                    if matches!(m, M::Fist | M::Fistp) {
                        let f = ext_to_f64(v).round_ties_even();
                        let i = f as i64;
                        self.write(seg, ea, size, i as u64)?;
                    } else {
                        match size {
                            4 => self.write(seg, ea, 4, (ext_to_f64(v) as f32).to_bits() as u64)?,
                            8 => self.write(seg, ea, 8, ext_to_f64(v).to_bits())?,
                            _ => {
                                self.write(seg, ea, 8, v as u64)?;
                                self.write(seg, ea + 8, 2, (v >> 64) as u64)?;
                            }
                        }
                    }
                } else {
                    let d = self.st_index(st_reg(0));
                    self.fpu.st[d] = v;
                }
                if matches!(m, M::Fstp | M::Fistp) {
                    self.x87_pop();
                }
            }
            M::Ffree => {
                let d = self.st_index(st_reg(0));
                self.fpu.ftw &= !(1 << d);
            }
            M::Fxch => {
                let a = self.st_index(0);
                let b = self.st_index(if ins.op_count() > 1 { st_reg(1) } else { 1 });
                self.fpu.st.swap(a, b);
            }
            M::Fincstp => self.fpu.top = (self.fpu.top + 1) & 7,
            M::Fdecstp => self.fpu.top = self.fpu.top.wrapping_sub(1) & 7,
            _ => {}
        }
        Ok(())
    }

    fn fpu_x87_check(&self) -> R<()> {
        if self.cr0 & CR0_EM != 0 {
            return Err(Fault::Exc(NM, None));
        }
        if self.cr0 & CR0_TS != 0 {
            return Err(Fault::Exc(NM, None));
        }
        Ok(())
    }
}

/// An integer as an 80-bit extended-precision value.
fn int_to_ext(i: i64) -> u128 {
    if i == 0 {
        return 0;
    }
    let sign = (i < 0) as u128;
    let m = i.unsigned_abs();
    let lz = m.leading_zeros();
    let exp = 16383 + 63 - lz as u128;
    ((m << lz) as u128) | (exp << 64) | (sign << 79)
}

fn f64_to_ext(f: f64) -> u128 {
    let b = f.to_bits();
    let sign = (b >> 63) as u128;
    let exp = ((b >> 52) & 0x7ff) as i64;
    let frac = b & ((1 << 52) - 1);
    if exp == 0 && frac == 0 {
        return sign << 79;
    }
    if exp == 0x7ff {
        return (sign << 79) | (0x7fffu128 << 64) | (1u128 << 63) | ((frac as u128) << 11);
    }
    let (e, m) = if exp == 0 {
        let lz = frac.leading_zeros() - 11;
        (1 - 1023 - lz as i64, frac << (lz + 11))
    } else {
        (exp - 1023, (1u64 << 63) | (frac << 11))
    };
    (sign << 79) | (((e + 16383) as u128) << 64) | m as u128
}

fn ext_to_f64(v: u128) -> f64 {
    let sign = if (v >> 79) & 1 != 0 { -1.0 } else { 1.0 };
    let exp = ((v >> 64) & 0x7fff) as i32;
    let m = v as u64;
    if exp == 0 && m == 0 {
        return 0.0 * sign;
    }
    if exp == 0x7fff {
        return if m << 1 == 0 { sign * f64::INFINITY } else { f64::NAN };
    }
    // Scale in two steps: 2^e alone over- or underflows for the extremes of f64's range.
    let e = exp - 16383 - 63;
    sign * (m as f64) * 2f64.powi(e / 2) * 2f64.powi(e - e / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_precision_conversions_round_trip() {
        for f in [0.0, 1.0, -2.5, 1e300, -3.25e-300, 123456789.0] {
            assert_eq!(ext_to_f64(f64_to_ext(f)), f);
        }
        assert_eq!(ext_to_f64(int_to_ext(-12345)), -12345.0);
        assert_eq!(int_to_ext(1), f64_to_ext(1.0));
    }
}
