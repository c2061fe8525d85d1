//! Exact IEEE single and double arithmetic as SSE does it: MXCSR rounding, the six exception
//! flags, DAZ/FTZ, x86 NaN rules and tininess after rounding, in portable integer code.
//!
//! Values are raw bit patterns (`u64`; singles in the low 32 bits). Finite values unpack to
//! `sig * 2^exp`; the one rounding routine, `round_pack`, turns an exact (or sticky) result
//! back into a format, so every operation is correctly rounded in every mode.

pub(crate) use super::rounding::*;

/// The arithmetic operations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// `a op b` in format `f`, exactly as SSE computes it.
#[inline(always)]
pub(crate) fn arith(f: Fmt, env: &mut Env, op: Op, a: u64, b: u64) -> u64 {
    // Ordinary operands (never NaN or denormal) first.
    if let Some(r) = super::fastfp::arith(f, env, op, a, b) {
        return r;
    }
    arith_exact(f, env, op, a, b)
}

/// `a op b` by the integer path alone (after NaN handling in `arith`).
#[inline(never)]
pub(crate) fn arith_exact(f: Fmt, env: &mut Env, op: Op, a: u64, b: u64) -> u64 {
    let a = env.daz(f, a);
    let b = env.daz(f, b);
    if f.is_nan(a) || f.is_nan(b) {
        return env.nan2(f, a, b);
    }
    match op {
        Op::Add => add(f, env, a, b),
        Op::Sub => add(f, env, a, b ^ f.sign_bit()),
        Op::Mul => mul(f, env, a, b),
        Op::Div => div(f, env, a, b),
    }
}

fn add(f: Fmt, env: &mut Env, a: u64, b: u64) -> u64 {
    let (ai, bi) = (f.is_inf(a), f.is_inf(b));
    if ai && bi && f.sign(a) != f.sign(b) {
        return env.invalid(f);
    }
    env.denormal_check(f, a, b);
    if ai {
        return a;
    }
    if bi {
        return b;
    }
    let (sa, ea, ma) = f.unpack(a);
    let (sb, eb, mb) = f.unpack(b);
    if ma == 0 && mb == 0 {
        return f.zero(if sa == sb { sa } else { env.rc == 1 });
    }
    if ma == 0 {
        return round_pack(f, env, sb, eb, mb as u128, false);
    }
    if mb == 0 {
        return round_pack(f, env, sa, ea, ma as u128, false);
    }
    // Larger exponent first.
    let ((sa, ea, ma), (sb, eb, mb)) =
        if ea >= eb { ((sa, ea, ma), (sb, eb, mb)) } else { ((sb, eb, mb), (sa, ea, ma)) };
    let d = (ea - eb) as u32;
    let (mut x, mut y, exp, sticky) = if d <= 64 {
        ((ma as u128) << d, mb as u128, eb, false)
    } else {
        // b lies far below a's last bit: only whether it is nonzero matters.
        let s = d - 64;
        let (y, lost) = if s >= 64 { (0, mb != 0) } else { ((mb >> s) as u128, mb & ((1u64 << s) - 1) != 0) };
        ((ma as u128) << 64, y, ea - 64, lost)
    };
    let mut neg = sa;
    if sa == sb {
        return round_pack(f, env, neg, exp, x + y, sticky);
    }
    if y > x {
        std::mem::swap(&mut x, &mut y);
        neg = sb;
    }
    let mut s = x - y;
    if sticky {
        // x - (y + t) with 0 < t < 1 is (x - y - 1) + (1 - t).
        s -= 1;
    }
    if s == 0 && !sticky {
        return f.zero(env.rc == 1);
    }
    round_pack(f, env, neg, exp, s, sticky)
}

fn mul(f: Fmt, env: &mut Env, a: u64, b: u64) -> u64 {
    let neg = f.sign(a) != f.sign(b);
    let (ai, bi, az, bz) = (f.is_inf(a), f.is_inf(b), f.is_zero(a), f.is_zero(b));
    if (ai && bz) || (bi && az) {
        return env.invalid(f);
    }
    env.denormal_check(f, a, b);
    if ai || bi {
        return f.inf(neg);
    }
    if az || bz {
        return f.zero(neg);
    }
    let (_, ea, ma) = f.unpack(a);
    let (_, eb, mb) = f.unpack(b);
    round_pack(f, env, neg, ea + eb, ma as u128 * mb as u128, false)
}

/// `sig` shifted so that its top bit is bit `frac`, and the exponent adjusted to match.
fn normalize(f: Fmt, e: i32, m: u64) -> (i32, u64) {
    let shift = m.leading_zeros() as i32 - (63 - f.frac as i32);
    if shift > 0 {
        (e - shift, m << shift)
    } else {
        (e, m)
    }
}

fn div(f: Fmt, env: &mut Env, a: u64, b: u64) -> u64 {
    let neg = f.sign(a) != f.sign(b);
    let (ai, bi, az, bz) = (f.is_inf(a), f.is_inf(b), f.is_zero(a), f.is_zero(b));
    if (ai && bi) || (az && bz) {
        return env.invalid(f);
    }
    if bz && !ai {
        env.flags |= ZE;
        return f.inf(neg);
    }
    env.denormal_check(f, a, b);
    if ai || bz {
        return f.inf(neg);
    }
    if az || bi {
        return f.zero(neg);
    }
    let (_, ea, ma) = f.unpack(a);
    let (_, eb, mb) = f.unpack(b);
    let (ea, ma) = normalize(f, ea, ma);
    let (eb, mb) = normalize(f, eb, mb);
    let n = (ma as u128) << 74;
    let q = n / mb as u128;
    let rem = n % mb as u128;
    round_pack(f, env, neg, ea - eb - 74, q, rem != 0)
}

/// The square root of `b`, exactly as SSE computes it.
#[inline]
pub(crate) fn sqrt(f: Fmt, env: &mut Env, b: u64) -> u64 {
    if !f.sign(b) {
        if let Some(r) = super::fastfp::sqrt(f, env, b) {
            return r;
        }
    }
    sqrt_exact(f, env, b)
}

/// The square root by the integer path alone.
pub(crate) fn sqrt_exact(f: Fmt, env: &mut Env, b: u64) -> u64 {
    let b = env.daz(f, b);
    if f.is_nan(b) {
        return env.nan2(f, b, b);
    }
    if f.is_zero(b) {
        return b;
    }
    if f.sign(b) {
        return env.invalid(f);
    }
    if f.is_inf(b) {
        return b;
    }
    env.denormal_check(f, b, 0);
    let (_, e, m) = f.unpack(b);
    let (mut e, mut m) = normalize(f, e, m);
    if e & 1 != 0 {
        m <<= 1;
        e -= 1;
    }
    let n = (m as u128) << 72;
    let r = n.isqrt();
    round_pack(f, env, false, (e - 72) / 2, r, r * r != n)
}

/// Converts between formats (`from` to `to`), with SSE's NaN and denormal rules.
pub(crate) fn convert(from: Fmt, to: Fmt, env: &mut Env, x: u64) -> u64 {
    let x = env.daz(from, x);
    if from.is_nan(x) {
        if from.is_snan(x) {
            env.flags |= IE;
        }
        let payload = x & from.frac_mask() | (1 << (from.frac - 1));
        let p = if to.frac >= from.frac {
            payload << (to.frac - from.frac)
        } else {
            payload >> (from.frac - to.frac)
        };
        return to.inf(from.sign(x)) | p;
    }
    if from.is_inf(x) {
        return to.inf(from.sign(x));
    }
    env.denormal_check(from, x, 0);
    let (s, e, m) = from.unpack(x);
    if m == 0 {
        return to.zero(s);
    }
    round_pack(to, env, s, e, m as u128, false)
}

/// A signed integer to format `f`.
pub(crate) fn from_int(f: Fmt, env: &mut Env, v: i64) -> u64 {
    if v == 0 {
        return 0;
    }
    round_pack(f, env, v < 0, 0, v.unsigned_abs() as u128, false)
}

/// `x` to a signed integer of `bits` bits, rounded by `rc` (3 truncates); the integer
/// indefinite on NaN or overflow.
pub(crate) fn to_int(f: Fmt, env: &mut Env, x: u64, bits: u32, rc: u32) -> u64 {
    let indefinite = 1u64 << (bits - 1);
    let x = env.daz(f, x);
    if f.is_nan(x) || f.is_inf(x) {
        env.flags |= IE;
        return indefinite;
    }
    let (s, e, m) = f.unpack(x);
    if m == 0 {
        return 0;
    }
    let (mut k, r) = if e >= 0 {
        if e > 64 {
            env.flags |= IE;
            return indefinite;
        }
        ((m as u128) << e, Rem::Exact)
    } else {
        split(m as u128, -e, false)
    };
    if increment(k, r, rc, s) {
        k += 1;
    }
    let limit = if s { 1u128 << (bits - 1) } else { (1u128 << (bits - 1)) - 1 };
    if k > limit {
        env.flags |= IE;
        return indefinite;
    }
    if r != Rem::Exact {
        env.flags |= PE;
    }
    let v = if s { (k as u64).wrapping_neg() } else { k as u64 };
    if bits == 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

/// `x` rounded to an integral value by `rc` (ROUNDPS and friends); `quiet_pe` suppresses PE.
pub(crate) fn round_int(f: Fmt, env: &mut Env, x: u64, rc: u32, quiet_pe: bool) -> u64 {
    let x = env.daz(f, x);
    if f.is_nan(x) {
        return env.nan2(f, x, x);
    }
    if f.is_inf(x) || f.is_zero(x) {
        return x;
    }
    let (s, e, m) = f.unpack(x);
    if e >= 0 {
        return x;
    }
    let (mut k, r) = split(m as u128, -e, false);
    if increment(k, r, rc, s) {
        k += 1;
    }
    if r != Rem::Exact && !quiet_pe {
        env.flags |= PE;
    }
    if k == 0 {
        return f.zero(s);
    }
    let mut scratch = *env;
    round_pack(f, &mut scratch, s, 0, k, false)
}

/// Ordering of two non-NaN values: -1, 0, 1 (±0 equal).
fn order(f: Fmt, a: u64, b: u64) -> i32 {
    let key = |x: u64| -> i128 {
        if f.is_zero(x) {
            0
        } else if f.sign(x) {
            -((x & !f.sign_bit()) as i128)
        } else {
            x as i128
        }
    };
    key(a).cmp(&key(b)) as i32
}

/// The result of comparing `a` with `b`: less, equal, greater, or unordered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Cmp {
    Lt,
    Eq,
    Gt,
    Un,
}

/// Compares after DAZ; IE for SNaN, or any NaN when `signaling`; DE for denormals.
pub(crate) fn compare(f: Fmt, env: &mut Env, a: u64, b: u64, signaling: bool) -> Cmp {
    let a = env.daz(f, a);
    let b = env.daz(f, b);
    if f.is_nan(a) || f.is_nan(b) {
        if signaling || f.is_snan(a) || f.is_snan(b) {
            env.flags |= IE;
        }
        return Cmp::Un;
    }
    env.denormal_check(f, a, b);
    match order(f, a, b) {
        -1 => Cmp::Lt,
        0 => Cmp::Eq,
        _ => Cmp::Gt,
    }
}

/// MINPS/MAXPS: the source (`b`) unless `a` is strictly smaller (larger).
pub(crate) fn min_max(f: Fmt, env: &mut Env, a: u64, b: u64, max: bool) -> u64 {
    let (da, db) = (env.daz(f, a), env.daz(f, b));
    match compare(f, env, da, db, true) {
        Cmp::Lt if !max => da,
        Cmp::Gt if max => da,
        _ => db,
    }
}
