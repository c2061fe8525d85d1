//! Exact x87 arithmetic on 80-bit values: each result is computed exactly (or with a sticky
//! bit) in 128-bit integers and rounded once by `float::round`.

use super::float::*;
use std::cmp::Ordering;

/// An arithmetic result for a register destination.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Res {
    pub v: u128,
    pub flags: u16,
    /// Rounded up (C1).
    pub up: bool,
}

impl Res {
    pub fn exact(v: u128) -> Self {
        Self { v, flags: 0, up: false }
    }
    pub fn invalid() -> Self {
        Self { v: INDEFINITE, flags: IE, up: false }
    }
    fn flagged(v: u128, flags: u16) -> Self {
        Self { v, flags, up: false }
    }
    pub fn rounded(r: Rounded) -> Self {
        Self { v: r.ext(), flags: r.flags, up: r.up }
    }
}

/// The checks every operation starts with: unsupported operands and NaNs decide the
/// result; a denormal operand raises DE (and an unmasked DE stops the operation).
/// `extra_de`: a memory operand was a denormal before conversion.
pub fn precheck(ctl: Ctl, a: u128, b: Option<u128>, extra_de: bool) -> Result<u16, Res> {
    let ca = class(a);
    let cb = b.map(class);
    if ca == Class::Unsupported || cb == Some(Class::Unsupported) {
        return Err(Res::invalid());
    }
    match b {
        Some(b) if is_nan(ca) || is_nan(class(b)) => {
            let (v, f) = pick_nan(a, b);
            return Err(Res::flagged(v, f));
        }
        None if is_nan(ca) => {
            return Err(Res::flagged(quiet(a), if ca == Class::SNan { IE } else { 0 }));
        }
        _ => {}
    }
    let _ = ctl;
    let de = extra_de || ca == Class::Denormal || cb == Some(Class::Denormal);
    Ok(if de { DE } else { 0 })
}

/// Adds the denormal-operand flag of `precheck` to a result: an invalid operation reports
/// IE alone, a division by zero ZE alone, and an unmasked DE stops the operation.
pub fn with(ctl: Ctl, flags: u16, mut r: Res) -> Res {
    if r.flags & (IE | ZE) != 0 || flags == 0 {
        return r;
    }
    if ctl.masks & DE == 0 {
        return Res::flagged(r.v, DE);
    }
    r.flags |= flags;
    r
}

/// a + b (b negated first when `sub`).
pub fn add(ctl: Ctl, a: u128, b: u128, de: bool) -> Res {
    let f = match precheck(ctl, a, Some(b), de) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (ca, cb) = (class(a), class(b));
    let r = match (ca, cb) {
        (Class::Inf, Class::Inf) if sign(a) != sign(b) => Res::invalid(),
        (Class::Inf, _) => Res::exact(a),
        (_, Class::Inf) => Res::exact(b),
        (Class::Zero, Class::Zero) => Res::exact(if sign(a) == sign(b) { a } else { zero(ctl.rc == 1) }),
        (Class::Zero, _) => round_ext(ctl, ctl.fmt(), b),
        (_, Class::Zero) => round_ext(ctl, ctl.fmt(), a),
        _ => add_finite(ctl, a, b),
    };
    with(ctl, f, r)
}

pub fn sub(ctl: Ctl, a: u128, b: u128, de: bool) -> Res {
    // The NaN rules look at the operands as given, so only a non-NaN b is negated.
    let nb = if is_nan(class(b)) { b } else { neg(b) };
    add(ctl, a, nb, de)
}

/// A finite value rounded into `f` (a register destination).
pub fn round_ext(ctl: Ctl, f: Fmt, v: u128) -> Res {
    let (s, e, m) = unpack(v);
    Res::rounded(round(ctl, f, true, s, e, (m as u128) << 64, false))
}

fn add_finite(ctl: Ctl, a: u128, b: u128) -> Res {
    let (mut sa, mut ea, mut ma) = unpack(a);
    let (mut sb, mut eb, mut mb) = unpack(b);
    if (eb, mb) > (ea, ma) {
        std::mem::swap(&mut sa, &mut sb);
        std::mem::swap(&mut ea, &mut eb);
        std::mem::swap(&mut ma, &mut mb);
    }
    let d = (ea - eb) as u32;
    let big = (ma as u128) << 62;
    let (small, st) = shr_jam((mb as u128) << 62, d, false);
    let small = small | st as u128;
    let s = if sa == sb { big + small } else { big - small };
    if s == 0 {
        return Res::exact(zero(ctl.rc == 1));
    }
    Res::rounded(round(ctl, ctl.fmt(), true, sa, ea + 2, s, false))
}

pub fn mul(ctl: Ctl, a: u128, b: u128, de: bool) -> Res {
    let f = match precheck(ctl, a, Some(b), de) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let s = sign(a) != sign(b);
    let r = match (class(a), class(b)) {
        (Class::Inf, Class::Zero) | (Class::Zero, Class::Inf) => Res::invalid(),
        (Class::Inf, _) | (_, Class::Inf) => Res::exact(inf(s)),
        (Class::Zero, _) | (_, Class::Zero) => Res::exact(zero(s)),
        _ => {
            let (_, ea, ma) = unpack(a);
            let (_, eb, mb) = unpack(b);
            Res::rounded(round(ctl, ctl.fmt(), true, s, ea + eb + 1, ma as u128 * mb as u128, false))
        }
    };
    with(ctl, f, r)
}

/// a / b.
pub fn div(ctl: Ctl, a: u128, b: u128, de: bool) -> Res {
    let f = match precheck(ctl, a, Some(b), de) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let s = sign(a) != sign(b);
    let r = match (class(a), class(b)) {
        (Class::Inf, Class::Inf) | (Class::Zero, Class::Zero) => Res::invalid(),
        (Class::Inf, _) => Res::exact(inf(s)),
        (_, Class::Inf) | (Class::Zero, _) => Res::exact(zero(s)),
        (_, Class::Zero) => Res::flagged(inf(s), ZE),
        _ => {
            let (_, ea, ma) = unpack(a);
            let (_, eb, mb) = unpack(b);
            let sh = if ma < mb { 64 } else { 63 };
            let n = (ma as u128) << sh;
            let (q1, r1) = (n / mb as u128, n % mb as u128);
            let n2 = r1 << 64;
            let (q2, r2) = (n2 / mb as u128, n2 % mb as u128);
            let q = (q1 << 64) | q2;
            Res::rounded(round(ctl, ctl.fmt(), true, s, ea - eb - sh + 63, q, r2 != 0))
        }
    };
    with(ctl, f, r)
}

/// The integer square root of `n` and whether it was exact.
fn isqrt(n: u128) -> (u128, u128) {
    let mut x: u128 = 0;
    let mut rem = n;
    let mut bit = 1u128 << 126;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= x + bit {
            rem -= x + bit;
            x = (x >> 1) + bit;
        } else {
            x >>= 1;
        }
        bit >>= 2;
    }
    (x, rem)
}

pub fn sqrt(ctl: Ctl, a: u128) -> Res {
    let f = match precheck(ctl, a, None, false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let r = match class(a) {
        Class::Zero => Res::exact(a),
        _ if sign(a) => Res::invalid(),
        Class::Inf => Res::exact(a),
        _ => {
            let (_, e, m) = unpack(a);
            let s = if (e - 63 - 64) & 1 == 0 { 64 } else { 63 };
            let (q, r) = isqrt((m as u128) << s);
            let round_bit = r > q;
            let sticky = round_bit || r != 0;
            let qq = (q << 64) | ((round_bit as u128) << 63);
            Res::rounded(round(ctl, ctl.fmt(), true, false, 63 + ((e - 63 - s) >> 1), qq, sticky))
        }
    };
    with(ctl, f, r)
}

/// Rounds a finite nonzero value to an integer by `rc`: (magnitude, inexact, rounded up).
/// Needs an exponent below 64.
pub fn round_int(rc: u8, s: bool, e: i32, m: u64) -> (u128, bool, bool) {
    let x = (m as u128) << 64;
    if e < 0 {
        let (x, st) = shr_jam(x, (-e) as u32, false);
        let (k, up, inexact) = round_bits(rc, s, x, st, 127);
        (k, inexact, up)
    } else {
        let (k, up, inexact) = round_bits(rc, s, x, false, (127 - e) as u32);
        (k, inexact, up)
    }
}

/// An exact integer magnitude as an 80-bit value.
pub fn from_int(s: bool, mag: u128) -> u128 {
    if mag == 0 {
        return zero(s);
    }
    let lz = mag.leading_zeros();
    let top = 127 - lz as i32;
    // Integers handled here have at most 64 significant bits.
    let m = (mag << lz >> 64) as u64;
    pack(s, (top + 16383) as u16, m)
}

pub fn rndint(ctl: Ctl, a: u128) -> Res {
    let f = match precheck(ctl, a, None, false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let r = match class(a) {
        Class::Zero | Class::Inf => Res::exact(a),
        _ => {
            let (s, e, m) = unpack(a);
            if e >= 63 {
                Res::exact(a)
            } else {
                let (mag, inexact, up) = round_int(ctl.rc, s, e, m);
                Res { v: from_int(s, mag), flags: if inexact { PE } else { 0 }, up }
            }
        }
    };
    with(ctl, f, r)
}

/// ST0 * 2^trunc(ST1).
pub fn scale(ctl: Ctl, a: u128, b: u128) -> Res {
    let f = match precheck(ctl, a, Some(b), false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let ctl64 = Ctl { prec: 64, ..ctl };
    let r = match (class(a), class(b)) {
        (Class::Zero, Class::Inf) if !sign(b) => Res::invalid(),
        (Class::Inf, Class::Inf) if sign(b) => Res::invalid(),
        (_, Class::Inf) if sign(b) => Res::exact(zero(sign(a))),
        (_, Class::Inf) => Res::exact(inf(sign(a))),
        (Class::Zero | Class::Inf, _) => Res::exact(a),
        (_, Class::Zero) => round_ext(ctl64, F80, a),
        _ => {
            let (sb, eb, mb) = unpack(b);
            let n: i32 = if eb < 0 {
                0
            } else if eb > 20 {
                1 << 21
            } else {
                (mb >> (63 - eb)) as i32
            };
            let n = if sb { -n } else { n };
            let (sa, ea, ma) = unpack(a);
            Res::rounded(round(ctl64, F80, true, sa, ea + n, (ma as u128) << 64, false))
        }
    };
    with(ctl, f, r)
}

/// FXTRACT: (exponent, significand).
pub fn xtract(ctl: Ctl, a: u128) -> (Res, Res) {
    let f = match precheck(ctl, a, None, false) {
        Ok(f) => f,
        Err(r) => return (r, r),
    };
    match class(a) {
        Class::Zero => (Res::flagged(inf(true), ZE | f), Res::exact(a)),
        Class::Inf => (Res::exact(inf(false)), Res::exact(a)),
        _ => {
            let (s, e, m) = unpack(a);
            let ev = from_int(e < 0, e.unsigned_abs() as u128);
            (Res::flagged(ev, f), Res::flagged(pack(s, 16383, m), f))
        }
    }
}

/// Compares two values: None when unordered. `quiet`: only SNaNs raise IE (FUCOM).
pub fn compare(ctl: Ctl, a: u128, b: u128, quiet: bool, de: bool) -> (Option<Ordering>, u16) {
    let (ca, cb) = (class(a), class(b));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return (None, IE);
    }
    if is_nan(ca) || is_nan(cb) {
        let snan = ca == Class::SNan || cb == Class::SNan;
        return (None, if snan || !quiet { IE } else { 0 });
    }
    let d = de || ca == Class::Denormal || cb == Class::Denormal;
    let f = if d { DE } else { 0 };
    let _ = ctl;
    let key = |v: u128, c: Class| -> (i32, i32, u64) {
        match c {
            Class::Zero => (0, 0, 0),
            Class::Inf => (if sign(v) { -1 } else { 1 }, i32::MAX, 0),
            _ => {
                let (s, e, m) = unpack(v);
                (if s { -1 } else { 1 }, e, m)
            }
        }
    };
    let (ka, kb) = (key(a, ca), key(b, cb));
    let o = if ka.0 != kb.0 {
        ka.0.cmp(&kb.0)
    } else if ka.0 < 0 {
        (kb.1, kb.2).cmp(&(ka.1, ka.2))
    } else {
        (ka.1, ka.2).cmp(&(kb.1, kb.2))
    };
    (Some(o), f)
}

/// FPREM (`ieee` false) and FPREM1: (result, C2 = incomplete, low quotient bits).
pub fn prem(ctl: Ctl, a: u128, b: u128, ieee: bool) -> (Res, bool, Option<u64>) {
    let f = match precheck(ctl, a, Some(b), false) {
        Ok(f) => f,
        Err(r) => return (r, false, None),
    };
    let ctl64 = Ctl { prec: 64, ..ctl };
    match (class(a), class(b)) {
        (Class::Inf, _) | (_, Class::Zero) => return (with(ctl, f, Res::invalid()), false, None),
        (Class::Zero, _) | (_, Class::Inf) => {
            return (with(ctl, f, round_ext_or_zero(ctl64, a)), false, Some(0))
        }
        _ => {}
    }
    let (sa, ea, ma) = unpack(a);
    let (_, eb, mb) = unpack(b);
    let d = ea - eb;
    let (mb, eb, partial) = if d >= 64 {
        let n = 32 + (d & 31);
        (mb, ea - n, true)
    } else {
        (mb, eb, false)
    };
    let d = ea - eb;
    let (mut q, mut rm, re) = if d < 0 {
        (0u128, ma as u128, ea)
    } else {
        let n = (ma as u128) << d;
        (n / mb as u128, n % mb as u128, eb)
    };
    let mut rs = sa;
    if ieee && !partial && d >= -1 {
        // Round the quotient to nearest even: twice the remainder against the divisor, both
        // on the remainder's scale.
        let dv = if d < 0 { (mb as u128) << 1 } else { mb as u128 };
        let o = (rm << 1).cmp(&dv);
        if o == Ordering::Greater || (o == Ordering::Equal && q & 1 == 1) {
            q += 1;
            rm = dv - rm;
            rs = !sa;
        }
    }
    let v = if rm == 0 {
        Res::exact(zero(sa))
    } else {
        Res::rounded(round(ctl64, F80, true, rs, re + 1, rm << 63, false))
    };
    (with(ctl, f, v), partial, Some(q as u64))
}

fn round_ext_or_zero(ctl: Ctl, a: u128) -> Res {
    if class(a) == Class::Zero {
        Res::exact(a)
    } else {
        round_ext(ctl, F80, a)
    }
}
