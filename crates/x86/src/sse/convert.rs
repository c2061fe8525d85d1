//! Conversions between single, double and 32/64-bit integers, packed and scalar, including
//! the truncating forms and the MMX-register ones (CVTPI2PS and friends).

use super::lanes::{lane, with_lane};
use super::softfloat::{self as sf, Env, F32, F64};
use crate::cpu::*;
use iced_x86::{Instruction, Mnemonic as M};

impl Cpu {
    pub(super) fn simd_convert(&mut self, ins: &Instruction) -> R<bool> {
        let m = ins.mnemonic();
        if !matches!(
            m,
            M::Cvtps2pd
                | M::Cvtpd2ps
                | M::Cvtss2sd
                | M::Cvtsd2ss
                | M::Cvtdq2ps
                | M::Cvtdq2pd
                | M::Cvtps2dq
                | M::Cvttps2dq
                | M::Cvtpd2dq
                | M::Cvttpd2dq
                | M::Cvtpi2ps
                | M::Cvtpi2pd
                | M::Cvtps2pi
                | M::Cvttps2pi
                | M::Cvtpd2pi
                | M::Cvttpd2pi
                | M::Cvtsi2ss
                | M::Cvtsi2sd
                | M::Cvtss2si
                | M::Cvttss2si
                | M::Cvtsd2si
                | M::Cvttsd2si
        ) {
            return Ok(false);
        }
        let b = self.vread(ins, 1)?;
        if matches!(m, M::Cvtss2si | M::Cvttss2si | M::Cvtsd2si | M::Cvttsd2si) {
            let v = self.cvt_to_int(m, b, self.op_size(ins, 0) as u32 * 8)?;
            self.wr(ins, 0, v)?;
            return Ok(true);
        }
        let d = self.vop(ins, 0);
        let a = self.vget(d);
        let r = match m {
            M::Cvtsi2ss | M::Cvtsi2sd => {
                let v = if self.op_size(ins, 1) == 8 { b as u64 as i64 } else { b as u32 as i32 as i64 };
                self.cvt_from_int(m == M::Cvtsi2sd, a, v)?
            }
            _ => self.cvt_lanes(m, a, b)?,
        };
        self.vset(d, r);
        Ok(true)
    }

    /// CVT(T)SS2SI/SD2SI (`m`): the low lane of `b` as an integer of `bits` bits.
    #[inline]
    pub(crate) fn cvt_to_int(&mut self, m: M, b: u128, bits: u32) -> R<u64> {
        let mut env = self.fp_env();
        let f = if matches!(m, M::Cvtss2si | M::Cvttss2si) { F32 } else { F64 };
        let rc = if matches!(m, M::Cvttss2si | M::Cvttsd2si) { 3 } else { env.rc };
        let v = sf::to_int(f, &mut env, b as u64 & mask(f.bits()), bits, rc);
        self.fp_commit(&env)?;
        Ok(v)
    }

    /// CVTSI2SD (`double`) or CVTSI2SS: `a` with its low lane replaced by `v` converted.
    #[inline]
    pub(crate) fn cvt_from_int(&mut self, double: bool, a: u128, v: i64) -> R<u128> {
        let mut env = self.fp_env();
        let (f, bits) = if double { (F64, 64) } else { (F32, 32) };
        let r = with_lane(a, bits, 0, sf::from_int(f, &mut env, v));
        self.fp_commit(&env)?;
        Ok(r)
    }

    /// The float-to-float and packed conversions (`m`) of `b` into destination `a`.
    #[inline]
    pub(crate) fn cvt_lanes(&mut self, m: M, a: u128, b: u128) -> R<u128> {
        let mut env = self.fp_env();
        let r = packed(m, &mut env, a, b);
        self.fp_commit(&env)?;
        Ok(r)
    }
}

fn mask(bits: u32) -> u64 {
    if bits == 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// `n` lanes of `from_bits` in `b` converted by `f` into lanes of `to_bits` over `base`.
fn lanes(b: u128, base: u128, n: usize, from_bits: u32, to_bits: u32, mut f: impl FnMut(u64) -> u64) -> u128 {
    let mut r = base;
    for i in 0..n {
        r = with_lane(r, to_bits, i, f(lane(b, from_bits, i)));
    }
    r
}

fn packed(m: M, env: &mut Env, a: u128, b: u128) -> u128 {
    let rc = env.rc;
    match m {
        M::Cvtps2pd => lanes(b, 0, 2, 32, 64, |x| sf::convert(F32, F64, env, x)),
        M::Cvtpd2ps => lanes(b, 0, 2, 64, 32, |x| sf::convert(F64, F32, env, x)),
        M::Cvtss2sd => lanes(b, a, 1, 32, 64, |x| sf::convert(F32, F64, env, x)),
        M::Cvtsd2ss => lanes(b, a, 1, 64, 32, |x| sf::convert(F64, F32, env, x)),
        M::Cvtdq2ps => lanes(b, 0, 4, 32, 32, |x| sf::from_int(F32, env, x as u32 as i32 as i64)),
        M::Cvtdq2pd | M::Cvtpi2pd => {
            lanes(b, 0, 2, 32, 64, |x| sf::from_int(F64, env, x as u32 as i32 as i64))
        }
        M::Cvtpi2ps => lanes(b, a, 2, 32, 32, |x| sf::from_int(F32, env, x as u32 as i32 as i64)),
        M::Cvtps2dq => lanes(b, 0, 4, 32, 32, |x| sf::to_int(F32, env, x, 32, rc)),
        M::Cvttps2dq => lanes(b, 0, 4, 32, 32, |x| sf::to_int(F32, env, x, 32, 3)),
        M::Cvtps2pi => lanes(b, 0, 2, 32, 32, |x| sf::to_int(F32, env, x, 32, rc)),
        M::Cvttps2pi => lanes(b, 0, 2, 32, 32, |x| sf::to_int(F32, env, x, 32, 3)),
        M::Cvtpd2dq | M::Cvtpd2pi => lanes(b, 0, 2, 64, 32, |x| sf::to_int(F64, env, x, 32, rc)),
        M::Cvttpd2dq | M::Cvttpd2pi => lanes(b, 0, 2, 64, 32, |x| sf::to_int(F64, env, x, 32, 3)),
        _ => a,
    }
}
