//! The fast path of `softfloat`: ordinary operands and results computed by the host in
//! round-to-nearest (correctly rounded on every IEEE host), with the exact error from an
//! error-free transform deciding inexactness and the one-ulp step of directed rounding.
//! Anything near the edges of the range (denormals, zeros, overflow) returns None and takes
//! the integer path.

use super::softfloat::{Env, Fmt, Op, F32, PE};

macro_rules! fast {
    ($name:ident, $sqrt:ident, $t:ty, $lo:expr, $hi:expr, $fms:ident) => {
        /// Far from overflow, underflow and the error-free transforms' limits.
        #[inline]
        fn in_range(x: $t) -> bool {
            (<$t>::from_bits($lo)..=<$t>::from_bits($hi)).contains(&x.abs())
        }

        /// Applies MXCSR's rounding to `s`, the nearest result, whose exact value lies on the
        /// side of `s` given by `dir`.
        #[inline]
        fn finish(env: &mut Env, s: $t, dir: $t) -> Option<u64> {
            if !in_range(s) {
                return None;
            }
            if dir == 0.0 {
                return Some(s.to_bits() as u64);
            }
            env.flags |= PE;
            let r = match env.rc {
                1 if dir < 0.0 => s.next_down(),
                2 if dir > 0.0 => s.next_up(),
                3 if s > 0.0 && dir < 0.0 => s.next_down(),
                3 if s < 0.0 && dir > 0.0 => s.next_up(),
                _ => s,
            };
            Some(r.to_bits() as u64)
        }

        #[inline]
        fn $name(env: &mut Env, op: Op, a: u64, b: u64) -> Option<u64> {
            let x = <$t>::from_bits(a as _);
            let y = <$t>::from_bits(b as _);
            if !in_range(x) || !in_range(y) {
                return None;
            }
            let (s, dir) = match op {
                Op::Add | Op::Sub => {
                    let y = if op == Op::Sub { -y } else { y };
                    // TwoSum: s + e is exactly x + y.
                    let s = x + y;
                    let bb = s - x;
                    let e = (x - (s - bb)) + (y - bb);
                    (s, e)
                }
                Op::Mul => {
                    let s = x * y;
                    (s, $fms(x, y, s))
                }
                Op::Div => {
                    let s = x / y;
                    // x - s*y has the sign of x/y - s times the sign of y.
                    let r = -$fms(s, y, x);
                    (s, if y < 0.0 { -r } else { r })
                }
            };
            finish(env, s, dir)
        }

        #[inline]
        fn $sqrt(env: &mut Env, b: u64) -> Option<u64> {
            let x = <$t>::from_bits(b as _);
            if !in_range(x) {
                return None;
            }
            let s = x.sqrt();
            finish(env, s, -$fms(s, s, x))
        }
    };
}

/// The sign of `x*y - z` exactly (its value when representable): singles' products are
/// exact in double, and the difference of two nearby doubles is exact (Sterbenz).
#[inline]
fn fms32(x: f32, y: f32, z: f32) -> f32 {
    let d = x as f64 * y as f64 - z as f64;
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// `x*y - z` with one rounding (its sign is exact).
#[inline]
fn fms64(x: f64, y: f64, z: f64) -> f64 {
    x.mul_add(y, -z)
}

mod single {
    use super::*;
    fast!(arith32, sqrt32, f32, 27 << 23, 227 << 23, fms32); // 2^-100..=2^100
    #[inline(always)]
    pub(super) fn arith(env: &mut Env, op: Op, a: u64, b: u64) -> Option<u64> {
        arith32(env, op, a, b)
    }
    #[inline]
    pub(super) fn sqrt(env: &mut Env, b: u64) -> Option<u64> {
        sqrt32(env, b)
    }
}

mod double {
    use super::*;
    fast!(arith64, sqrt64, f64, 63 << 52, 1983 << 52, fms64); // 2^-960..=2^960
    #[inline(always)]
    pub(super) fn arith(env: &mut Env, op: Op, a: u64, b: u64) -> Option<u64> {
        arith64(env, op, a, b)
    }
    #[inline]
    pub(super) fn sqrt(env: &mut Env, b: u64) -> Option<u64> {
        sqrt64(env, b)
    }
}

/// `a op b` for ordinary operands, or None for the exact integer path.
#[inline(always)]
pub(crate) fn arith(f: Fmt, env: &mut Env, op: Op, a: u64, b: u64) -> Option<u64> {
    if f == F32 {
        single::arith(env, op, a, b)
    } else {
        double::arith(env, op, a, b)
    }
}

/// The square root of an ordinary positive `b`, or None.
#[inline]
pub(crate) fn sqrt(f: Fmt, env: &mut Env, b: u64) -> Option<u64> {
    if f == F32 {
        single::sqrt(env, b)
    } else {
        double::sqrt(env, b)
    }
}
