//! Comparing two outcomes of one instruction, with what the architecture leaves undefined
//! masked out.

use super::{Outcome, State, Trap, DATA, HOLE};
use iced_x86::{Instruction, Mnemonic as M, RflagsBits};

/// RFLAGS bits compared: the status flags, IF, DF, IOPL, NT, AC and ID.
const FLAGS: u64 = 0x24_7ed5;

/// The RFLAGS bits the architecture leaves undefined after `ins` from `before` (iced's
/// table, plus the SDM's rules for counts other than one).
pub(crate) fn undefined_flags(ins: &Instruction, before: &State) -> u64 {
    let mut u = rflags(ins.rflags_undefined());
    let m = ins.mnemonic();
    let size = ins.op0_register().size().max(ins.memory_size().size()) as u64;
    let count = || -> u64 {
        let c = if ins.op_count() > 1 && ins.op_kind(ins.op_count() - 1) == iced_x86::OpKind::Register {
            before.gpr[1] & 0xff
        } else if ins.op_count() > 1 {
            ins.immediate(ins.op_count() - 1)
        } else {
            1
        };
        c & if size == 8 { 63 } else { 31 }
    };
    match m {
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr if count() > 1 => u |= 0x800,
        M::Shld | M::Shrd => {
            let c = if ins.op_count() > 2 && ins.op2_kind() == iced_x86::OpKind::Register {
                before.gpr[1] & 0xff
            } else {
                ins.immediate8() as u64
            } & if size == 8 { 63 } else { 31 };
            if c > 1 {
                u |= 0x800;
            }
            if c > size * 8 {
                u |= 0x8d5;
            }
        }
        _ => {}
    }
    u
}

fn rflags(r: u32) -> u64 {
    let mut f = 0;
    for (bit, flag) in [
        (RflagsBits::CF, 1),
        (RflagsBits::PF, 4),
        (RflagsBits::AF, 0x10),
        (RflagsBits::ZF, 0x40),
        (RflagsBits::SF, 0x80),
        (RflagsBits::OF, 0x800),
        (RflagsBits::DF, 0x400),
    ] {
        if r & bit != 0 {
            f |= flag;
        }
    }
    f
}

/// Whether the destination is architecturally undefined (BSF/BSR of zero, double shifts by
/// more than the operand size).
fn undefined_dest(ins: &Instruction, before: &State) -> bool {
    let size = ins.op0_register().size().max(ins.memory_size().size()) as u64;
    match ins.mnemonic() {
        M::Shld | M::Shrd if size == 2 => {
            let c = if ins.op2_kind() == iced_x86::OpKind::Register {
                before.gpr[1] & 0xff
            } else {
                ins.immediate8() as u64
            } & 31;
            c > 16
        }
        _ => false,
    }
}

/// The differences between `want` (the host) and `got` (the interpreter), one line each.
pub(crate) fn diff(ins: &Instruction, before: &State, want: &Outcome, got: &Outcome) -> Vec<String> {
    let close = approximation_close(ins, want, got);
    let got = close.as_ref().unwrap_or(got);
    // AMD's MXCSR has a misaligned-exception mask in bit 17 that LDMXCSR/FXRSTOR accept;
    // Intel, which the interpreter is, reserves it (#GP): nothing to compare.
    let mxcsr =
        u32::from_le_bytes([want.state.fx[24], want.state.fx[25], want.state.fx[26], want.state.fx[27]]);
    if want.trap.is_none() && mxcsr & (1 << 17) != 0 {
        return Vec::new();
    }
    let mut d = Vec::new();
    match (want.trap, got.trap) {
        (None, None) => {}
        (Some(w), Some(g)) => {
            if !same_trap(w, g) {
                d.push(format!("fault: host {w:?}, interpreter {g:?}"));
            }
        }
        (w, g) => d.push(format!("fault: host {w:?}, interpreter {g:?}")),
    }
    let (w, g) = (&want.state, &got.state);
    if w.rip != g.rip {
        d.push(format!("rip: host {:#x}, interpreter {:#x}", w.rip, g.rip));
    }
    let skip_dest = want.trap.is_none() && undefined_dest(ins, before);
    let dest = if ins.op0_kind() == iced_x86::OpKind::Register {
        Some(crate::operand::gpr(ins.op0_register()).0)
    } else {
        None
    };
    for (i, name) in NAMES.iter().enumerate() {
        if w.gpr[i] != g.gpr[i] && !(skip_dest && dest == Some(i)) {
            d.push(format!("{name}: host {:#x}, interpreter {:#x}", w.gpr[i], g.gpr[i]));
        }
    }
    let mask = if want.trap.is_some() { FLAGS } else { FLAGS & !undefined_flags(ins, before) };
    if (w.rflags ^ g.rflags) & mask != 0 {
        d.push(format!(
            "rflags: host {:#x}, interpreter {:#x} (compared {mask:#x})",
            w.rflags & FLAGS,
            g.rflags & FLAGS
        ));
    }
    let ulp = want.trap.is_none() && transcendental(ins.mnemonic());
    for (what, range) in fx_fields() {
        let (a, b) = (&w.fx[range.clone()], &g.fx[range.clone()]);
        let near =
            ulp && (within_one_ulp(a, b) || (what == "fsw" && a[0] == b[0] && (a[1] ^ b[1]) & !2 == 0));
        if a != b && !near {
            d.push(format!("{what}: host {:02x?}, interpreter {:02x?}", &w.fx[range.clone()], &g.fx[range]));
        }
    }
    let skip_mem = skip_dest && ins.op0_kind() == iced_x86::OpKind::Memory;
    let unchecked = x87_unchecked(ins, before);
    let differs = |i: usize| i / 4096 != HOLE && w.data[i] != g.data[i] && !unchecked.contains(&i);
    if let Some(i) = (0..w.data.len()).find(|&i| differs(i) && !skip_mem) {
        let n = (0..w.data.len()).filter(|&i| differs(i)).count();
        let at: Vec<String> = (i..w.data.len())
            .filter(|&i| differs(i))
            .take(12)
            .map(|i| format!("{:#x}: {:02x}/{:02x}", DATA + i as u64, w.data[i], g.data[i]))
            .collect();
        d.push(format!("memory: {n} bytes differ (host/interpreter) {}", at.join(" ")));
    }
    d
}

/// The x87 transcendentals: their results come from each vendor's microcode and may differ
/// from the host's in the last bit (and in C1 with it).
fn transcendental(m: M) -> bool {
    matches!(m, M::F2xm1 | M::Fyl2x | M::Fyl2xp1 | M::Fptan | M::Fpatan | M::Fsin | M::Fcos | M::Fsincos)
}

/// Two 80-bit registers (10 bytes) of one sign, finite, at most one unit in the last place
/// apart (across an exponent step too).
fn within_one_ulp(a: &[u8], b: &[u8]) -> bool {
    if a.len() != 10 || b.len() != 10 {
        return false;
    }
    let v = |x: &[u8]| {
        let mut w = [0u8; 16];
        w[..10].copy_from_slice(x);
        u128::from_le_bytes(w)
    };
    let (a, b) = (v(a), v(b));
    let exp = |x: u128| (x >> 64) & 0x7fff;
    let key = |x: u128| (exp(x) << 63) | (x & ((1 << 63) - 1));
    a >> 79 == b >> 79 && exp(a) != 0x7fff && exp(b) != 0x7fff && key(a).abs_diff(key(b)) <= 1
}

/// Data bytes not compared: the instruction and data pointers in x87 environment and state
/// images (the host's hold its own addresses, and AMD saves them only while an exception is
/// pending) and FXSAVE's MXCSR_MASK (AMD's has bit 17, the misaligned-exception mask, which
/// the interpreter does not offer).
fn x87_unchecked(ins: &Instruction, before: &State) -> Vec<usize> {
    use iced_x86::MemorySize as S;
    let spans: &[(usize, usize)] = match ins.memory_size() {
        S::FpuEnv14 | S::FpuState94 => &[(6, 14)],
        S::FpuEnv28 | S::FpuState108 => &[(12, 28)],
        S::Fxsave_512Byte | S::Fxsave64_512Byte => &[(6, 24), (28, 32)],
        _ => return Vec::new(),
    };
    // iced truncates a 32-bit address (67 prefix); the low window aliases the data pages.
    let get = |r: iced_x86::Register, _: usize, _: usize| -> Option<u64> {
        let m = if r.size() == 4 { 0xffff_ffff } else { u64::MAX };
        Some(if r.is_gpr() { before.gpr[crate::operand::gpr(r).0] & m } else { 0 })
    };
    let Some(base) = ins.virtual_address(0, 0, get).and_then(super::data_offset) else { return Vec::new() };
    spans.iter().flat_map(|&(a, b)| (a..b).map(move |i| base.wrapping_add(i))).collect()
}

/// Whether two faults are the same, allowing for what Linux hides: the top page of the lower
/// half and the upper half count as kernel space there, so their page faults say "protection".
fn same_trap(w: Trap, g: Trap) -> bool {
    if w.vector != g.vector {
        return false;
    }
    match w.vector {
        14 => {
            let top = w.cr2 >= 0x7fff_ffff_f000;
            let m = if top { !1 } else { !0 };
            w.cr2 == g.cr2 && (w.error & m) == (g.error & m)
        }
        8 | 10..=13 | 17 => w.error == g.error,
        _ => true,
    }
}

const NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];

/// The FXSAVE fields compared: control, status, tag, MXCSR, the 80 bits of each x87/MMX
/// register, the XMM registers. (FOP, FIP and FDP are not.)
fn fx_fields() -> Vec<(String, std::ops::Range<usize>)> {
    let mut v =
        vec![("fcw".to_string(), 0..2), ("fsw".into(), 2..4), ("ftw".into(), 4..5), ("mxcsr".into(), 24..28)];
    for i in 0..8 {
        v.push((format!("st{i}"), 32 + 16 * i..42 + 16 * i));
    }
    for i in 0..16 {
        v.push((format!("xmm{i}"), 160 + 16 * i..176 + 16 * i));
    }
    v
}

/// RCPPS, RCPSS, RSQRTPS and RSQRTSS approximate, each vendor its own way: when every XMM
/// lane is within the architecture's 1.5*2^-12 relative error of the host's (plus the
/// interpreter's own rounding), the interpreter's outcome with the host's XMM registers.
fn approximation_close(ins: &Instruction, want: &Outcome, got: &Outcome) -> Option<Outcome> {
    if !matches!(ins.mnemonic(), M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss) {
        return None;
    }
    let xmm = 160..416;
    let (w, g) = (&want.state.fx[xmm.clone()], &got.state.fx[xmm.clone()]);
    let close = w.chunks(4).zip(g.chunks(4)).all(|(a, b)| {
        let x = f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64;
        let y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64;
        a == b || (x.is_finite() && y.is_finite() && x != 0.0 && ((x - y) / x).abs() <= 1.5 / 4096.0 + 1e-7)
    });
    if !close {
        return None;
    }
    let mut o = got.clone();
    o.state.fx[xmm.clone()].copy_from_slice(&want.state.fx[xmm]);
    Some(o)
}
