//! The instruction forms of the SSE differential test and the operand values they get.

// Only the x86-64 differential test uses these.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

/// What the operand lanes hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Data {
    F32,
    F64,
    Int,
    /// Short strings with zeros, for PCMPxSTRx.
    Str,
}

/// Which encodings of the r/m operand exist.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Rm {
    Both,
    Reg,
    Mem,
    /// No ModRM byte at all (EMMS).
    Fixed,
}

/// The immediate operand's values to try.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Imm {
    None,
    /// Random values below this.
    Below(u16),
}

pub(super) struct Form {
    pub name: &'static str,
    /// Mandatory prefix (0x66, 0xF2, 0xF3) or 0.
    pub pre: u8,
    /// REX byte or 0.
    pub rex: u8,
    pub op: &'static [u8],
    /// ModRM reg field (a register number or an opcode extension).
    pub reg: u8,
    pub rm: Rm,
    pub imm: Imm,
    pub data: Data,
    /// A host CPU feature this needs ("sse4.1", ...), checked before running.
    pub feature: &'static str,
    /// RCPPS and friends: lanes compared within 1.5*2^-12 relative error.
    pub approx: bool,
}

impl Form {
    /// The instruction bytes: r/m is xmm2/mm2/edx (register) or [rbx] (memory).
    pub fn bytes(&self, mem: bool, imm: Option<u8>) -> Vec<u8> {
        let mut v = Vec::new();
        if self.pre != 0 {
            v.push(self.pre);
        }
        if self.rex != 0 {
            v.push(self.rex);
        }
        v.extend_from_slice(self.op);
        if self.rm == Rm::Fixed {
            return v;
        }
        let modrm = if mem { (self.reg & 7) << 3 | 3 } else { 0xc0 | (self.reg & 7) << 3 | 2 };
        v.push(modrm);
        if let Some(i) = imm {
            v.push(i);
        }
        v
    }
}

const fn f(name: &'static str, pre: u8, op: &'static [u8], data: Data) -> Form {
    Form { name, pre, rex: 0, op, reg: 1, rm: Rm::Both, imm: Imm::None, data, feature: "sse2", approx: false }
}

impl Form {
    const fn imm(mut self, below: u16) -> Self {
        self.imm = Imm::Below(below);
        self
    }
    const fn rm(mut self, rm: Rm) -> Self {
        self.rm = rm;
        self
    }
    const fn feat(mut self, feature: &'static str) -> Self {
        self.feature = feature;
        self
    }
    const fn rex(mut self, rex: u8) -> Self {
        self.rex = rex;
        self
    }
    const fn ext(mut self, reg: u8) -> Self {
        self.reg = reg;
        self
    }
    const fn approx(mut self) -> Self {
        self.approx = true;
        self
    }
}

use Data::*;

/// Every form tested.
pub(super) fn forms() -> Vec<Form> {
    let mut v = Vec::new();
    // Floating-point arithmetic, packed and scalar, single and double.
    for (op, name) in [
        (0x58u8, "add"),
        (0x59, "mul"),
        (0x5c, "sub"),
        (0x5d, "min"),
        (0x5e, "div"),
        (0x5f, "max"),
        (0x51, "sqrt"),
    ] {
        let ops: &'static [u8] = Box::leak(Box::new([0x0f, op]));
        v.push(f(name, 0, ops, F32));
        v.push(f(name, 0xf3, ops, F32));
        v.push(f(name, 0x66, ops, F64));
        v.push(f(name, 0xf2, ops, F64));
    }
    v.push(f("rsqrtps", 0, &[0x0f, 0x52], F32).approx());
    v.push(f("rcpps", 0, &[0x0f, 0x53], F32).approx());
    v.push(f("rsqrtss", 0xf3, &[0x0f, 0x52], F32).approx());
    v.push(f("rcpss", 0xf3, &[0x0f, 0x53], F32).approx());
    for (op, name) in
        [(0x54u8, "and"), (0x55, "andn"), (0x56, "or"), (0x57, "xor"), (0x14, "unpckl"), (0x15, "unpckh")]
    {
        let ops: &'static [u8] = Box::leak(Box::new([0x0f, op]));
        v.push(f(name, 0, ops, F32));
        v.push(f(name, 0x66, ops, F64));
    }
    v.push(f("cmpps", 0, &[0x0f, 0xc2], F32).imm(8));
    v.push(f("cmpss", 0xf3, &[0x0f, 0xc2], F32).imm(8));
    v.push(f("cmppd", 0x66, &[0x0f, 0xc2], F64).imm(8));
    v.push(f("cmpsd", 0xf2, &[0x0f, 0xc2], F64).imm(8));
    v.push(f("shufps", 0, &[0x0f, 0xc6], F32).imm(256));
    v.push(f("shufpd", 0x66, &[0x0f, 0xc6], F64).imm(256));
    v.push(f("comiss", 0, &[0x0f, 0x2f], F32));
    v.push(f("ucomiss", 0, &[0x0f, 0x2e], F32));
    v.push(f("comisd", 0x66, &[0x0f, 0x2f], F64));
    v.push(f("ucomisd", 0x66, &[0x0f, 0x2e], F64));
    v.push(f("movmskps", 0, &[0x0f, 0x50], F32).rm(Rm::Reg));
    v.push(f("movmskpd", 0x66, &[0x0f, 0x50], F64).rm(Rm::Reg));
    // Moves.
    v.push(f("movaps", 0, &[0x0f, 0x28], Int));
    v.push(f("movups", 0, &[0x0f, 0x10], Int));
    v.push(f("movups-st", 0, &[0x0f, 0x11], Int));
    v.push(f("movss", 0xf3, &[0x0f, 0x10], Int));
    v.push(f("movss-st", 0xf3, &[0x0f, 0x11], Int));
    v.push(f("movsd", 0xf2, &[0x0f, 0x10], Int));
    v.push(f("movsd-st", 0xf2, &[0x0f, 0x11], Int));
    v.push(f("movhlps/movlps", 0, &[0x0f, 0x12], Int));
    v.push(f("movlps-st", 0, &[0x0f, 0x13], Int).rm(Rm::Mem));
    v.push(f("movlhps/movhps", 0, &[0x0f, 0x16], Int));
    v.push(f("movhps-st", 0, &[0x0f, 0x17], Int).rm(Rm::Mem));
    v.push(f("movlpd", 0x66, &[0x0f, 0x12], Int).rm(Rm::Mem));
    v.push(f("movhpd", 0x66, &[0x0f, 0x16], Int).rm(Rm::Mem));
    v.push(f("movntps", 0, &[0x0f, 0x2b], Int).rm(Rm::Mem));
    v.push(f("movd", 0x66, &[0x0f, 0x6e], Int));
    v.push(f("movq-gpr", 0x66, &[0x0f, 0x6e], Int).rex(0x48));
    v.push(f("movd-st", 0x66, &[0x0f, 0x7e], Int));
    v.push(f("movq-st-gpr", 0x66, &[0x0f, 0x7e], Int).rex(0x48));
    v.push(f("movq", 0xf3, &[0x0f, 0x7e], Int));
    v.push(f("movq-st", 0x66, &[0x0f, 0xd6], Int));
    v.push(f("movdqa", 0x66, &[0x0f, 0x6f], Int));
    v.push(f("movdqu", 0xf3, &[0x0f, 0x6f], Int));
    v.push(f("movdqu-st", 0xf3, &[0x0f, 0x7f], Int));
    v.push(f("movntdq", 0x66, &[0x0f, 0xe7], Int).rm(Rm::Mem));
    v.push(f("maskmovdqu", 0x66, &[0x0f, 0xf7], Int).rm(Rm::Reg));
    v.push(f("movshdup", 0xf3, &[0x0f, 0x16], F32).feat("sse3"));
    v.push(f("movsldup", 0xf3, &[0x0f, 0x12], F32).feat("sse3"));
    v.push(f("movddup", 0xf2, &[0x0f, 0x12], F64).feat("sse3"));
    v.push(f("lddqu", 0xf2, &[0x0f, 0xf0], Int).rm(Rm::Mem).feat("sse3"));
    // Conversions.
    v.push(f("cvtps2pd", 0, &[0x0f, 0x5a], F32));
    v.push(f("cvtpd2ps", 0x66, &[0x0f, 0x5a], F64));
    v.push(f("cvtss2sd", 0xf3, &[0x0f, 0x5a], F32));
    v.push(f("cvtsd2ss", 0xf2, &[0x0f, 0x5a], F64));
    v.push(f("cvtdq2ps", 0, &[0x0f, 0x5b], Int));
    v.push(f("cvtps2dq", 0x66, &[0x0f, 0x5b], F32));
    v.push(f("cvttps2dq", 0xf3, &[0x0f, 0x5b], F32));
    v.push(f("cvtdq2pd", 0xf3, &[0x0f, 0xe6], Int));
    v.push(f("cvtpd2dq", 0xf2, &[0x0f, 0xe6], F64));
    v.push(f("cvttpd2dq", 0x66, &[0x0f, 0xe6], F64));
    v.push(f("cvtsi2ss", 0xf3, &[0x0f, 0x2a], Int));
    v.push(f("cvtsi2ss64", 0xf3, &[0x0f, 0x2a], Int).rex(0x48));
    v.push(f("cvtsi2sd", 0xf2, &[0x0f, 0x2a], Int));
    v.push(f("cvtsi2sd64", 0xf2, &[0x0f, 0x2a], Int).rex(0x48));
    v.push(f("cvtss2si", 0xf3, &[0x0f, 0x2d], F32));
    v.push(f("cvtss2si64", 0xf3, &[0x0f, 0x2d], F32).rex(0x48));
    v.push(f("cvttss2si", 0xf3, &[0x0f, 0x2c], F32));
    v.push(f("cvttss2si64", 0xf3, &[0x0f, 0x2c], F32).rex(0x48));
    v.push(f("cvtsd2si", 0xf2, &[0x0f, 0x2d], F64));
    v.push(f("cvtsd2si64", 0xf2, &[0x0f, 0x2d], F64).rex(0x48));
    v.push(f("cvttsd2si", 0xf2, &[0x0f, 0x2c], F64));
    v.push(f("cvttsd2si64", 0xf2, &[0x0f, 0x2c], F64).rex(0x48));
    v.push(f("cvtpi2ps", 0, &[0x0f, 0x2a], Int));
    v.push(f("cvtps2pi", 0, &[0x0f, 0x2d], F32));
    v.push(f("cvttps2pi", 0, &[0x0f, 0x2c], F32));
    v.push(f("cvtpi2pd", 0x66, &[0x0f, 0x2a], Int));
    v.push(f("cvtpd2pi", 0x66, &[0x0f, 0x2d], F64));
    v.push(f("cvttpd2pi", 0x66, &[0x0f, 0x2c], F64));
    // SSE3 arithmetic.
    v.push(f("haddps", 0xf2, &[0x0f, 0x7c], F32).feat("sse3"));
    v.push(f("haddpd", 0x66, &[0x0f, 0x7c], F64).feat("sse3"));
    v.push(f("hsubps", 0xf2, &[0x0f, 0x7d], F32).feat("sse3"));
    v.push(f("hsubpd", 0x66, &[0x0f, 0x7d], F64).feat("sse3"));
    v.push(f("addsubps", 0xf2, &[0x0f, 0xd0], F32).feat("sse3"));
    v.push(f("addsubpd", 0x66, &[0x0f, 0xd0], F64).feat("sse3"));
    // Integer operations, on XMM (66) and MMX (no prefix) registers.
    let both: &[u8] = &[
        0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x74, 0x75, 0x76, 0xd1, 0xd2,
        0xd3, 0xd4, 0xd5, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5,
        0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf8, 0xf9, 0xfa,
        0xfb, 0xfc, 0xfd, 0xfe,
    ];
    for &op in both {
        let ops: &'static [u8] = Box::leak(Box::new([0x0f, op]));
        v.push(f("int-xmm", 0x66, ops, Int));
        v.push(f("int-mm", 0, ops, Int));
    }
    v.push(f("punpcklqdq", 0x66, &[0x0f, 0x6c], Int));
    v.push(f("punpckhqdq", 0x66, &[0x0f, 0x6d], Int));
    v.push(f("pshufd", 0x66, &[0x0f, 0x70], Int).imm(256));
    v.push(f("pshuflw", 0xf2, &[0x0f, 0x70], Int).imm(256));
    v.push(f("pshufhw", 0xf3, &[0x0f, 0x70], Int).imm(256));
    v.push(f("pshufw", 0, &[0x0f, 0x70], Int).imm(256));
    v.push(f("pinsrw", 0x66, &[0x0f, 0xc4], Int).imm(256));
    v.push(f("pinsrw-mm", 0, &[0x0f, 0xc4], Int).imm(256));
    v.push(f("pextrw", 0x66, &[0x0f, 0xc5], Int).imm(256).rm(Rm::Reg));
    v.push(f("pextrw-mm", 0, &[0x0f, 0xc5], Int).imm(256).rm(Rm::Reg));
    v.push(f("pmovmskb", 0x66, &[0x0f, 0xd7], Int).rm(Rm::Reg));
    v.push(f("pmovmskb-mm", 0, &[0x0f, 0xd7], Int).rm(Rm::Reg));
    v.push(f("movd-mm", 0, &[0x0f, 0x6e], Int));
    v.push(f("movq-mm-gpr", 0, &[0x0f, 0x6e], Int).rex(0x48));
    v.push(f("movd-st-mm", 0, &[0x0f, 0x7e], Int));
    v.push(f("movq-mm", 0, &[0x0f, 0x6f], Int));
    v.push(f("movq-st-mm", 0, &[0x0f, 0x7f], Int));
    v.push(f("movntq", 0, &[0x0f, 0xe7], Int).rm(Rm::Mem));
    v.push(f("maskmovq", 0, &[0x0f, 0xf7], Int).rm(Rm::Reg));
    v.push(f("movq2dq", 0xf3, &[0x0f, 0xd6], Int).rm(Rm::Reg));
    v.push(f("movdq2q", 0xf2, &[0x0f, 0xd6], Int).rm(Rm::Reg));
    v.push(f("emms", 0, &[0x0f, 0x77], Int).rm(Rm::Fixed));
    for (op, ext) in
        [(0x71u8, 2u8), (0x71, 4), (0x71, 6), (0x72, 2), (0x72, 4), (0x72, 6), (0x73, 2), (0x73, 6)]
    {
        let ops: &'static [u8] = Box::leak(Box::new([0x0f, op]));
        v.push(f("shift-imm", 0x66, ops, Int).ext(ext).rm(Rm::Reg).imm(80));
        v.push(f("shift-imm-mm", 0, ops, Int).ext(ext).rm(Rm::Reg).imm(80));
    }
    v.push(f("psrldq", 0x66, &[0x0f, 0x73], Int).ext(3).rm(Rm::Reg).imm(20));
    v.push(f("pslldq", 0x66, &[0x0f, 0x73], Int).ext(7).rm(Rm::Reg).imm(20));
    // SSSE3, on XMM and MMX.
    for op in [0x00u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0a, 0x0b, 0x1c, 0x1d, 0x1e] {
        let ops: &'static [u8] = Box::leak(Box::new([0x0f, 0x38, op]));
        v.push(f("ssse3", 0x66, ops, Int).feat("ssse3"));
        v.push(f("ssse3-mm", 0, ops, Int).feat("ssse3"));
    }
    v.push(f("palignr", 0x66, &[0x0f, 0x3a, 0x0f], Int).imm(40).feat("ssse3"));
    v.push(f("palignr-mm", 0, &[0x0f, 0x3a, 0x0f], Int).imm(24).feat("ssse3"));
    // SSE4.1.
    for op in [
        0x10u8, 0x14, 0x15, 0x17, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x28, 0x29, 0x2b, 0x30, 0x31, 0x32,
        0x33, 0x34, 0x35, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x41,
    ] {
        let ops: &'static [u8] = Box::leak(Box::new([0x0f, 0x38, op]));
        v.push(f("sse41", 0x66, ops, Int).feat("sse4.1"));
    }
    v.push(f("blendvps-f", 0x66, &[0x0f, 0x38, 0x14], F32).feat("sse4.1"));
    v.push(f("movntdqa", 0x66, &[0x0f, 0x38, 0x2a], Int).rm(Rm::Mem).feat("sse4.1"));
    v.push(f("roundps", 0x66, &[0x0f, 0x3a, 0x08], F32).imm(16).feat("sse4.1"));
    v.push(f("roundpd", 0x66, &[0x0f, 0x3a, 0x09], F64).imm(16).feat("sse4.1"));
    v.push(f("roundss", 0x66, &[0x0f, 0x3a, 0x0a], F32).imm(16).feat("sse4.1"));
    v.push(f("roundsd", 0x66, &[0x0f, 0x3a, 0x0b], F64).imm(16).feat("sse4.1"));
    v.push(f("blendps", 0x66, &[0x0f, 0x3a, 0x0c], Int).imm(16).feat("sse4.1"));
    v.push(f("blendpd", 0x66, &[0x0f, 0x3a, 0x0d], Int).imm(4).feat("sse4.1"));
    v.push(f("pblendw", 0x66, &[0x0f, 0x3a, 0x0e], Int).imm(256).feat("sse4.1"));
    v.push(f("pextrb", 0x66, &[0x0f, 0x3a, 0x14], Int).imm(256).feat("sse4.1"));
    v.push(f("pextrw-41", 0x66, &[0x0f, 0x3a, 0x15], Int).imm(256).feat("sse4.1"));
    v.push(f("pextrd", 0x66, &[0x0f, 0x3a, 0x16], Int).imm(256).feat("sse4.1"));
    v.push(f("pextrq", 0x66, &[0x0f, 0x3a, 0x16], Int).imm(256).rex(0x48).feat("sse4.1"));
    v.push(f("extractps", 0x66, &[0x0f, 0x3a, 0x17], Int).imm(256).feat("sse4.1"));
    v.push(f("pinsrb", 0x66, &[0x0f, 0x3a, 0x20], Int).imm(256).feat("sse4.1"));
    v.push(f("insertps", 0x66, &[0x0f, 0x3a, 0x21], Int).imm(256).feat("sse4.1"));
    v.push(f("pinsrd", 0x66, &[0x0f, 0x3a, 0x22], Int).imm(256).feat("sse4.1"));
    v.push(f("pinsrq", 0x66, &[0x0f, 0x3a, 0x22], Int).imm(256).rex(0x48).feat("sse4.1"));
    v.push(f("dpps", 0x66, &[0x0f, 0x3a, 0x40], F32).imm(256).feat("sse4.1"));
    v.push(f("dppd", 0x66, &[0x0f, 0x3a, 0x41], F64).imm(256).feat("sse4.1"));
    v.push(f("mpsadbw", 0x66, &[0x0f, 0x3a, 0x42], Int).imm(8).feat("sse4.1"));
    // SSE4.2.
    v.push(f("pcmpgtq", 0x66, &[0x0f, 0x38, 0x37], Int).feat("sse4.2"));
    for op in [0x60u8, 0x61, 0x62, 0x63] {
        let ops: &'static [u8] = Box::leak(Box::new([0x0f, 0x3a, op]));
        v.push(f("pcmpstr", 0x66, ops, Str).imm(128).feat("sse4.2"));
    }
    v.push(f("pcmpestri64", 0x66, &[0x0f, 0x3a, 0x61], Str).imm(128).rex(0x48).feat("sse4.2"));
    v.push(f("crc32b", 0xf2, &[0x0f, 0x38, 0xf0], Int).feat("sse4.2"));
    v.push(f("crc32d", 0xf2, &[0x0f, 0x38, 0xf1], Int).feat("sse4.2"));
    v.push(f("crc32q", 0xf2, &[0x0f, 0x38, 0xf1], Int).rex(0x48).feat("sse4.2"));
    v.push(f("crc32w", 0x66, &[0xf2, 0x0f, 0x38, 0xf1], Int).feat("sse4.2"));
    // REX.R/B: xmm9 and xmm10 (MMX registers ignore them).
    v.push(f("addps-x9", 0, &[0x0f, 0x58], F32).rex(0x45).rm(Rm::Reg));
    v.push(f("paddb-x9", 0x66, &[0x0f, 0xfc], Int).rex(0x45).rm(Rm::Reg));
    v.push(f("paddb-mm-rex", 0, &[0x0f, 0xfc], Int).rex(0x45).rm(Rm::Reg));
    v.push(f("pshufb-x9", 0x66, &[0x0f, 0x38, 0x00], Int).rex(0x45).rm(Rm::Reg).feat("ssse3"));
    v
}
