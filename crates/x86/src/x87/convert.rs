//! Conversions between 80-bit values and the memory formats: single, double, integers and
//! packed BCD.

use super::arith::{from_int, round_int};
use super::float::*;

/// A single or double value as an 80-bit one, exactly (an SNaN stays signalling):
/// (value, it was a denormal).
pub fn float_to_ext(bits: u64, f: Fmt) -> (u128, bool) {
    let frac_bits = f.prec - 1;
    let ebits = if f == F32 { 8 } else { 11 };
    let s = (bits >> (frac_bits + ebits)) & 1 != 0;
    let e = ((bits >> frac_bits) & ((1 << ebits) - 1)) as i32;
    let frac = bits & ((1u64 << frac_bits) - 1);
    let emax_field = (1 << ebits) - 1;
    if e == emax_field {
        return (pack(s, 0x7fff, (1 << 63) | (frac << (63 - frac_bits))), false);
    }
    if e == 0 {
        if frac == 0 {
            return (zero(s), false);
        }
        let lz = frac.leading_zeros() as i32;
        // frac's top bit would sit at bit 63 - lz; its weight is 2^(emin - (frac_bits - bitpos)).
        let top = 63 - lz;
        let exp = f.emin - (frac_bits as i32 - top);
        return (pack(s, (exp + 16383) as u16, frac << lz), true);
    }
    let exp = e - f.emax + 16383;
    (pack(s, exp as u16, (1 << 63) | (frac << (63 - frac_bits))), false)
}

/// FST to single or double: (bits, flags, rounded up).
pub fn ext_to_float(ctl: Ctl, v: u128, f: Fmt) -> (u64, u16, bool) {
    let s = sign(v);
    let frac_bits = f.prec - 1;
    let ebits = if f == F32 { 8 } else { 11 };
    let emax_field = (1u64 << ebits) - 1;
    let sbit = (s as u64) << (frac_bits + ebits);
    let nan =
        |m: u64| sbit | (emax_field << frac_bits) | ((m << 1) >> (64 - frac_bits)) | (1 << (frac_bits - 1));
    match class(v) {
        Class::Unsupported => (nan(1 << 62) | (1 << (frac_bits + ebits)), IE, false),
        Class::QNan => (nan(sig(v)), 0, false),
        Class::SNan => (nan(sig(v)), IE, false),
        Class::Inf => (sbit | (emax_field << frac_bits), 0, false),
        Class::Zero => (sbit, 0, false),
        _ => {
            let (s, e, m) = unpack(v);
            let r = round(ctl, f, false, s, e, (m as u128) << 64, false);
            let bits = if f == F32 { r.f32() as u64 } else { r.f64() };
            (bits, r.flags, r.up)
        }
    }
}

/// FIST/FISTP/FISTTP to a `bits`-wide integer: (value or None for invalid, flags, rounded up).
pub fn ext_to_int(rc: u8, v: u128, bits: u32) -> (Option<i64>, u16, bool) {
    match class(v) {
        Class::Zero => return (Some(0), 0, false),
        Class::Denormal | Class::Normal => {}
        _ => return (None, IE, false),
    }
    let (s, e, m) = unpack(v);
    if e >= 64 {
        return (None, IE, false);
    }
    let (mag, inexact, up) = round_int(rc, s, e, m);
    let limit = 1u128 << (bits - 1);
    if (!s && mag >= limit) || (s && mag > limit) {
        return (None, IE, false);
    }
    let i = if s { (mag as i128).wrapping_neg() } else { mag as i128 };
    (Some(i as i64), if inexact { PE } else { 0 }, up)
}

/// The integer indefinite of a `bits`-wide destination.
pub fn int_indefinite(bits: u32) -> u64 {
    1u64 << (bits - 1)
}

pub fn int_to_ext(i: i64) -> u128 {
    from_int(i < 0, i.unsigned_abs() as u128)
}

/// FBLD: 18 packed BCD digits and a sign byte.
pub fn bcd_to_ext(b: u128) -> u128 {
    let mut mag: u128 = 0;
    for i in (0..18).rev() {
        let d = (b >> (4 * i)) & 0xf;
        mag = mag.wrapping_mul(10).wrapping_add(d);
    }
    from_int((b >> 79) & 1 != 0, mag)
}

/// The packed BCD indefinite.
pub const BCD_INDEFINITE: u128 = 0xffff_c000_0000_0000_0000;

/// FBSTP: (BCD or None for invalid, flags, rounded up).
pub fn ext_to_bcd(rc: u8, v: u128) -> (Option<u128>, u16, bool) {
    let s = sign(v);
    let (mag, flags, up) = match class(v) {
        Class::Zero => (0, 0, false),
        Class::Denormal | Class::Normal => {
            let (s, e, m) = unpack(v);
            if e >= 60 {
                return (None, IE, false);
            }
            let (mag, inexact, up) = round_int(rc, s, e, m);
            (mag, if inexact { PE } else { 0 }, up)
        }
        _ => return (None, IE, false),
    };
    if mag >= 1_000_000_000_000_000_000 {
        return (None, IE, false);
    }
    let mut b: u128 = 0;
    let mut x = mag;
    for i in 0..18 {
        b |= (x % 10) << (4 * i);
        x /= 10;
    }
    (Some(b | ((s as u128) << 79)), flags, up)
}
