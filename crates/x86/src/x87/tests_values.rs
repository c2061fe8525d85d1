//! Known values of x87 operations that run on every host: transcendentals against
//! high-precision references, the NaN and exception rules, FXTRACT, FSCALE, FISTTP.

use super::float::*;
use super::tests::{run, st};
use crate::cpu;

/// An operation, ST0, ST1, the expected ST0 and exception flags.
type Case<'a> = (&'a str, &'a [u8], u128, u128, u128, u16);

/// Runs `op` on ST0 = a, ST1 = b under control word `cw`: (ST0 after, status word).
fn run_op(op: &[u8], a: u128, b: u128, cw: u16) -> (u128, u16) {
    // fninit; fldcw [0x1100]; fld tbyte [0x1110]; fld tbyte [0x1120]; op; hlt
    let mut code = vec![0xdb, 0xe3, 0xd9, 0x2e, 0x00, 0x11, 0xdb, 0x2e, 0x10, 0x11, 0xdb, 0x2e, 0x20, 0x11];
    code.extend_from_slice(op);
    code.push(0xf4);
    code.resize(0x100, 0x90);
    code.extend_from_slice(&cw.to_le_bytes());
    code.resize(0x110, 0);
    code.extend_from_slice(&b.to_le_bytes());
    code.extend_from_slice(&a.to_le_bytes());
    let (mut v, _) = run(&code, |_| {});
    let c = v.cpu();
    (st(c, 0), c.fpu.fsw)
}

#[test]
fn transcendentals_are_within_one_ulp_of_the_true_values() {
    let half = pack(false, 16382, 1 << 63);
    let two = pack(false, 16384, 1 << 63);
    let three = pack(false, 16384, 3 << 62);
    let ten = pack(false, 16386, 5 << 61);
    let quarter = pack(false, 16381, 1 << 63);
    // (op, ST0, ST1, the correctly rounded result from a 300-bit reference)
    let cases = [
        ("fsin", vec![0xd9, 0xfe], one(false), 0, (0x3ffe_d76a_a478_4867_7021)),
        ("fcos", vec![0xd9, 0xff], one(false), 0, (0x3ffe_8a51_407d_a834_5c92)),
        ("fptan", vec![0xd9, 0xf2, 0xdd, 0xd8], half, 0, (0x3ffe_8bda_7adf_9a3a_5219)),
        ("fpatan", vec![0xd9, 0xf3], two, one(false), (0x3ffd_ed63_382b_0dda_7b45)),
        ("fyl2x", vec![0xd9, 0xf1], ten, one(false), (0x4000_d49a_784b_cd1b_8afe)),
        ("f2xm1", vec![0xd9, 0xf0], half, 0, (0x3ffd_d413_cccf_e779_9211)),
        ("fyl2xp1", vec![0xd9, 0xf9], quarter, three, (0x3ffe_f73d_a38d_9d4a_83eb)),
    ];
    for (name, op, a, b, want) in cases {
        let (got, fsw) = run_op(&op, a, b, 0x37f);
        assert!(got.abs_diff(want) <= 1, "{name}: {got:#x}, want {want:#x}");
        assert_eq!(fsw & PE, PE, "{name} is inexact");
    }
}

#[test]
fn arithmetic_special_cases_follow_the_x87_rules() {
    let snan = pack(false, 0x7fff, (1 << 63) | 5);
    let qnan_small = pack(true, 0x7fff, (3 << 62) | 1);
    let qnan_big = pack(false, 0x7fff, (3 << 62) | 7);
    let unnormal = pack(false, 16383, 1 << 62);
    let denormal = pack(false, 0, 1);
    let cases: [Case; 10] = [
        // Two QNaNs: the larger significand wins.
        ("fadd qnans", &[0xd8, 0xc1], qnan_small, qnan_big, qnan_big, 0),
        // An SNaN with a QNaN: the QNaN, and IE.
        ("fmul snan", &[0xd8, 0xc9], snan, qnan_small, qnan_small, IE),
        // An SNaN alone comes back quiet.
        ("fsub snan", &[0xd8, 0xe1], snan, one(false), quiet(snan), IE),
        ("fadd unnormal", &[0xd8, 0xc1], unnormal, one(false), INDEFINITE, IE),
        ("inf - inf", &[0xd8, 0xe1], inf(false), inf(false), INDEFINITE, IE),
        ("0 / 0", &[0xd8, 0xf1], zero(false), zero(true), INDEFINITE, IE),
        ("1 / -0", &[0xd8, 0xf1], one(false), zero(true), inf(true), ZE),
        ("sqrt -1", &[0xd9, 0xfa], one(true), 0, INDEFINITE, IE),
        // x - x is +0 in round-to-nearest.
        ("1 - 1", &[0xd8, 0xe1], one(false), one(false), zero(false), 0),
        // The smallest denormal times one half underflows to zero (inexact, UE, PE).
        ("denormal / 2", &[0xd8, 0xf1], denormal, pack(false, 16384, 1 << 63), zero(false), DE | UE | PE),
    ];
    for (name, op, a, b, want, flags) in cases {
        let (got, fsw) = run_op(op, a, b, 0x37f);
        assert_eq!(got, want, "{name}: {got:#x}");
        assert_eq!(fsw & 0x3f, flags, "{name}: status {fsw:#x}");
    }
}

#[test]
fn fxtract_fscale_and_fisttp() {
    // FXTRACT of 10: exponent 3 in ST1, significand 1.25 in ST0.
    let ten = pack(false, 16386, 5 << 61);
    let mut code = vec![0xdb, 0xe3, 0xdb, 0x2e, 0x00, 0x11, 0xd9, 0xf4, 0xf4];
    code.resize(0x100, 0x90);
    code.extend_from_slice(&ten.to_le_bytes()[..10]);
    let (mut v, _) = run(&code, |_| {});
    let c = v.cpu();
    assert_eq!((st(c, 0), st(c, 1)), (pack(false, 16383, 5 << 61), pack(false, 16384, 3 << 62)));
    // FSCALE: 1.25 * 2^3 = 10, and 1 * 2^-16400 underflows to a denormal.
    let (r, _) = run_op(&[0xd9, 0xfd], pack(false, 16383, 5 << 61), pack(false, 16384, 3 << 62), 0x37f);
    assert_eq!(r, ten);
    let minus_16400 = pack(true, 16383 + 14, 16400u64 << 49);
    let (r, fsw) = run_op(&[0xd9, 0xfd], one(false), minus_16400, 0x37f);
    assert_eq!(r, pack(false, 0, 1 << 45), "{r:#x}");
    assert_eq!(fsw & 0x3f, 0, "an exact denormal result does not underflow when masked");
    // FISTTP truncates whatever the rounding control: -2.75 -> -2.
    let mut code = vec![0xdb, 0xe3, 0xdb, 0x2e, 0x00, 0x11, 0xdf, 0x0e, 0x10, 0x11, 0xf4];
    code.resize(0x100, 0x90);
    code.extend_from_slice(&pack(true, 16384, 11 << 60).to_le_bytes()[..10]);
    let (mut v, _) = run(&code, |_| {});
    assert_eq!(v.cpu().read(cpu::DS, 0x1110, 2).unwrap(), 0xfffe);
}
