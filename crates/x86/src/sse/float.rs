//! Floating-point SIMD arithmetic, packed and scalar: the four operations, SQRT, MIN/MAX,
//! the SSE3 ADDSUB and horizontal operations, the SSE4.1 dot products and ROUND, and the
//! RCP/RSQRT approximations. Every lane goes through `softfloat`, so results and MXCSR
//! flags are exact whatever the host.

use super::lanes::{from32, from64, lane, lanes32, lanes64, with_lane};
use super::softfloat::{self as sf, Env, Fmt, Op, F32, F64};
use crate::cpu::*;
use iced_x86::{Instruction, Mnemonic as M};

#[derive(Clone, Copy, PartialEq, Eq)]
enum K {
    Arith(Op),
    Sqrt,
    Min,
    Max,
    AddSub,
    HAdd,
    HSub,
    Dp,
    Round,
    Rcp,
    Rsqrt,
}

/// The operation, its format and whether it is packed.
fn kind(m: M) -> Option<(K, Fmt, bool)> {
    use K::*;
    Some(match m {
        M::Addps => (Arith(Op::Add), F32, true),
        M::Addpd => (Arith(Op::Add), F64, true),
        M::Addss => (Arith(Op::Add), F32, false),
        M::Addsd => (Arith(Op::Add), F64, false),
        M::Subps => (Arith(Op::Sub), F32, true),
        M::Subpd => (Arith(Op::Sub), F64, true),
        M::Subss => (Arith(Op::Sub), F32, false),
        M::Subsd => (Arith(Op::Sub), F64, false),
        M::Mulps => (Arith(Op::Mul), F32, true),
        M::Mulpd => (Arith(Op::Mul), F64, true),
        M::Mulss => (Arith(Op::Mul), F32, false),
        M::Mulsd => (Arith(Op::Mul), F64, false),
        M::Divps => (Arith(Op::Div), F32, true),
        M::Divpd => (Arith(Op::Div), F64, true),
        M::Divss => (Arith(Op::Div), F32, false),
        M::Divsd => (Arith(Op::Div), F64, false),
        M::Sqrtps => (Sqrt, F32, true),
        M::Sqrtpd => (Sqrt, F64, true),
        M::Sqrtss => (Sqrt, F32, false),
        M::Sqrtsd => (Sqrt, F64, false),
        M::Minps => (Min, F32, true),
        M::Minpd => (Min, F64, true),
        M::Minss => (Min, F32, false),
        M::Minsd => (Min, F64, false),
        M::Maxps => (Max, F32, true),
        M::Maxpd => (Max, F64, true),
        M::Maxss => (Max, F32, false),
        M::Maxsd => (Max, F64, false),
        M::Addsubps => (AddSub, F32, true),
        M::Addsubpd => (AddSub, F64, true),
        M::Haddps => (HAdd, F32, true),
        M::Haddpd => (HAdd, F64, true),
        M::Hsubps => (HSub, F32, true),
        M::Hsubpd => (HSub, F64, true),
        M::Dpps => (Dp, F32, true),
        M::Dppd => (Dp, F64, true),
        M::Roundps => (Round, F32, true),
        M::Roundpd => (Round, F64, true),
        M::Roundss => (Round, F32, false),
        M::Roundsd => (Round, F64, false),
        M::Rcpps => (Rcp, F32, true),
        M::Rcpss => (Rcp, F32, false),
        M::Rsqrtps => (Rsqrt, F32, true),
        M::Rsqrtss => (Rsqrt, F32, false),
        _ => return None,
    })
}

/// RCPPS/RSQRTPS: the exact reciprocal (square root) rounded to single, within the
/// architecture's 1.5*2^-12 relative error of the hardware's table approximation.
fn approx(x: u32, rsqrt: bool) -> u32 {
    let f = F32;
    let x = x as u64;
    if f.is_nan(x) {
        return f.quiet(x) as u32;
    }
    let neg = f.sign(x);
    if f.is_zero(x) || f.is_denormal(x) {
        return f.inf(neg) as u32;
    }
    if rsqrt && neg {
        return f.default_nan() as u32;
    }
    if f.is_inf(x) {
        return f.zero(neg) as u32;
    }
    let v = f32::from_bits(x as u32) as f64;
    let r = if rsqrt { 1.0 / v.sqrt() } else { 1.0 / v } as f32;
    if r.abs() < f32::MIN_POSITIVE {
        // Tiny results are flushed to zero.
        return f.zero(neg) as u32;
    }
    r.to_bits()
}

impl Cpu {
    pub(super) fn simd_float(&mut self, ins: &Instruction) -> R<bool> {
        if kind(ins.mnemonic()).is_none() {
            return Ok(false);
        }
        let d = self.vop(ins, 0);
        let a = self.vget(d);
        let b = self.vread(ins, 1)?;
        let r = self.float_op(ins.mnemonic(), a, b, ins.immediate8())?;
        self.vset(d, r);
        Ok(true)
    }

    /// Float operation `m` on destination `a` and source `b`: the result, with MXCSR's flags
    /// updated, or the SIMD exception (nothing else changed). Inlined for the threaded
    /// handlers' constant mnemonics.
    #[inline(always)]
    pub(crate) fn float_op(&mut self, m: M, a: u128, b: u128, imm: u8) -> R<u128> {
        let Some((k, f, packed)) = kind(m) else { return Ok(a) };
        let mut env = self.fp_env();
        let r = match k {
            // The common case, with the format a constant: a tight loop over the lanes.
            K::Arith(op) if f == F32 => arith32(&mut env, op, packed, a, b),
            K::Arith(op) => arith64(&mut env, op, packed, a, b),
            _ => compute(&mut env, k, f, packed, a, b, imm),
        };
        self.fp_commit(&env)?;
        Ok(r)
    }
}

pub(crate) fn arith32(env: &mut Env, op: Op, packed: bool, a: u128, b: u128) -> u128 {
    let (x, y, mut o) = (lanes32(a), lanes32(b), lanes32(a));
    let n = if packed { 4 } else { 1 };
    for i in 0..n {
        o[i] = sf::arith(F32, env, op, x[i] as u64, y[i] as u64) as u32;
    }
    from32(o)
}

pub(crate) fn arith64(env: &mut Env, op: Op, packed: bool, a: u128, b: u128) -> u128 {
    let (x, y, mut o) = (lanes64(a), lanes64(b), lanes64(a));
    let n = if packed { 2 } else { 1 };
    for i in 0..n {
        o[i] = sf::arith(F64, env, op, x[i], y[i]);
    }
    from64(o)
}

fn compute(env: &mut Env, k: K, f: Fmt, packed: bool, a: u128, b: u128, imm: u8) -> u128 {
    let bits = f.bits();
    let n = if packed { 128 / bits as usize } else { 1 };
    let la = |i: usize| lane(a, bits, i);
    let lb = |i: usize| lane(b, bits, i);
    let mut r = a;
    match k {
        K::HAdd | K::HSub => {
            let op = if k == K::HAdd { Op::Add } else { Op::Sub };
            for i in 0..n {
                let (src, j) = if i < n / 2 { (a, 2 * i) } else { (b, 2 * (i - n / 2)) };
                let v = sf::arith(f, env, op, lane(src, bits, j), lane(src, bits, j + 1));
                r = with_lane(r, bits, i, v);
            }
        }
        K::Dp => {
            let mut p = [0u64; 4];
            for (i, pi) in p.iter_mut().enumerate().take(n) {
                if imm >> (4 + i) & 1 != 0 {
                    *pi = sf::arith(f, env, Op::Mul, la(i), lb(i));
                }
            }
            // The multiplies, the pairwise sums and the last sum are stages: an unmasked
            // exception in one stops the instruction before the next.
            env.end_stage();
            if env.fault {
                return r;
            }
            let s = if n == 4 {
                let t0 = sf::arith(f, env, Op::Add, p[0], p[1]);
                let t1 = sf::arith(f, env, Op::Add, p[2], p[3]);
                env.end_stage();
                if env.fault {
                    return r;
                }
                sf::arith(f, env, Op::Add, t0, t1)
            } else {
                sf::arith(f, env, Op::Add, p[0], p[1])
            };
            for i in 0..n {
                r = with_lane(r, bits, i, if imm >> i & 1 != 0 { s } else { 0 });
            }
        }
        _ => {
            let lane_op = |env: &mut Env, i: usize, x: u64, y: u64| match k {
                K::Arith(op) => sf::arith(f, env, op, x, y),
                K::AddSub => sf::arith(f, env, if i.is_multiple_of(2) { Op::Sub } else { Op::Add }, x, y),
                K::Sqrt => sf::sqrt(f, env, y),
                K::Min => sf::min_max(f, env, x, y, false),
                K::Max => sf::min_max(f, env, x, y, true),
                K::Round => {
                    let rc = if imm & 4 != 0 { env.rc } else { (imm & 3) as u32 };
                    sf::round_int(f, env, y, rc, imm & 8 != 0)
                }
                K::Rcp => approx(y as u32, false) as u64,
                _ => approx(y as u32, true) as u64,
            };
            // Whole arrays of lanes: no per-lane 128-bit shifting.
            return if bits == 32 {
                let (x, y, mut o) = (lanes32(a), lanes32(b), lanes32(a));
                for i in 0..n {
                    o[i] = lane_op(env, i, x[i] as u64, y[i] as u64) as u32;
                }
                from32(o)
            } else {
                let (x, y, mut o) = (lanes64(a), lanes64(b), lanes64(a));
                for i in 0..n {
                    o[i] = lane_op(env, i, x[i], y[i]);
                }
                from64(o)
            };
        }
    }
    r
}
