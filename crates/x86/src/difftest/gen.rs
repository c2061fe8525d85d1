//! The generator: every legacy-encoded `iced_x86::Code` valid in 64-bit user mode whose CPUID
//! features belong to a group, and random instances of it: random prefixes, ModRM/SIB forms,
//! displacements and immediates, random registers, flags and memory, with every memory operand
//! aimed at a page boundary of the data pages (or a non-canonical address) and checked to stay
//! inside the window before it may run natively.

use super::{Rng, State, DATA, DATA_LEN, DATA_PAGES, HOLE, INSN, LANDING, LOW_WINDOW, WINDOW, WINDOW_SIZE};
use iced_x86::{
    Code, CpuidFeature as F, Decoder, DecoderOptions, EncodingKind, FlowControl, Instruction,
    InstructionInfoFactory, MandatoryPrefix, Mnemonic as M, OpCodeOperandKind as K, OpCodeTableKind,
    Register,
};

/// A group of instructions tested together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    Integer,
    X87,
    Mmx,
    Sse,
}

impl Group {
    pub(crate) fn features(self) -> &'static [F] {
        match self {
            Group::Integer => &[
                F::INTEL8086,
                F::INTEL186,
                F::INTEL286,
                F::INTEL386,
                F::INTEL486,
                F::X64,
                F::CMOV,
                F::CX8,
                F::CMPXCHG16B,
                F::POPCNT,
                F::MULTIBYTENOP,
                F::PAUSE,
                F::CLFSH,
            ],
            Group::X87 => &[F::FPU, F::FPU287, F::FPU387, F::FXSR],
            Group::Mmx => &[F::MMX],
            Group::Sse => &[F::SSE, F::SSE2, F::SSE3, F::SSSE3, F::SSE4_1, F::SSE4_2],
        }
    }
}

/// Instructions left out: they read host state the interpreter cannot share (descriptor
/// tables, time, CPUID, random numbers, segment selectors) or would trap the test process
/// itself.
fn excluded(m: M) -> bool {
    matches!(
        m,
        M::Cpuid
            | M::Rdtsc
            | M::Rdtscp
            | M::Rdpid
            | M::Rdrand
            | M::Rdseed
            | M::Rdpmc
            | M::Sgdt
            | M::Sidt
            | M::Sldt
            | M::Str
            | M::Smsw
            | M::Lar
            | M::Lsl
            | M::Verr
            | M::Verw
            | M::Xgetbv
            | M::Lfs
            | M::Lgs
            | M::Lss
            | M::Syscall
            | M::Sysenter
            | M::Int
            | M::Int1
            | M::Int3
            | M::Into
    )
}

/// Instructions that only read a selector: the interpreter's are set to Linux's user ones
/// (CS 0x33, SS 0x2b, the others null). Loads are left out (the host's descriptor tables and
/// its FS/GS bases are its own).
fn reads_selector(code: Code) -> bool {
    matches!(
        code,
        Code::Mov_rm16_Sreg
            | Code::Mov_r32m16_Sreg
            | Code::Mov_r64m16_Sreg
            | Code::Pushw_FS
            | Code::Pushq_FS
            | Code::Pushw_GS
            | Code::Pushq_GS
    )
}

/// Whether an operand is a segment register (their selectors differ from the host's).
fn segment_operand(k: K) -> bool {
    matches!(k, K::es | K::cs | K::ss | K::ds | K::fs | K::gs | K::seg_reg)
}

/// Near branches, calls and returns with a 64-bit operand size: their targets can be aimed
/// at `LANDING` (far ones load CS, 16-bit ones truncate RIP differently by vendor).
fn near_branch(code: Code) -> bool {
    let op = code.op_code();
    matches!(
        code.flow_control(),
        FlowControl::UnconditionalBranch
            | FlowControl::ConditionalBranch
            | FlowControl::IndirectBranch
            | FlowControl::Call
            | FlowControl::IndirectCall
            | FlowControl::Return
    ) && op.operand_size() != 16
        && !op.op_kinds().iter().any(|k| format!("{k:?}").contains("far") || format!("{k:?}").contains("r16"))
        && !matches!(
            code.mnemonic(),
            M::Retf | M::Iret | M::Iretd | M::Iretq | M::Jmpe | M::Xbegin | M::Sysret
        )
        && !["rel16", "rm16", "Retnw", "m1616", "m1632", "m1664", "ptr16"]
            .iter()
            .any(|n| format!("{code:?}").contains(n))
}

/// The Codes of `group` this harness can run.
pub(crate) fn forms(group: Group, amd: bool) -> Vec<Code> {
    let feats = group.features();
    let mut v = Vec::new();
    for code in Code::values() {
        let op = code.op_code();
        if !op.is_instruction()
            || op.encoding() != EncodingKind::Legacy
            || !op.mode64()
            || !op.cpl3()
            || op.is_input_output()
            || op.decoder_option() != 0
            // The waiting x87 forms decode as WAIT and the no-wait form.
            || op.fwait()
            || !(if amd { op.amd_decoder64() } else { op.intel_decoder64() })
            || code.flow_control() != FlowControl::Next
                && !matches!(code.mnemonic(), M::Ud0 | M::Ud1 | M::Ud2)
                && !near_branch(code)
            || excluded(code.mnemonic())
            || op.op_kinds().iter().any(|&k| segment_operand(k)) && !reads_selector(code)
            // AMD raises #UD for 0F 0D with a register operand (a reserved NOP on Intel).
            || amd && format!("{code:?}").starts_with("Reservednop") && format!("{code:?}").ends_with("0F0D")
            // AMD reads four bytes for MOVSXD r16, m16 (Intel two).
            || amd && code == Code::Movsxd_r16_rm16
        {
            continue;
        }
        let Some(ins) = (0..64).find_map(|i| template(code, &mut Rng(0x9e37_79b9 + i))) else { continue };
        if ins.1.cpuid_features().iter().all(|f| feats.contains(f)) {
            v.push(code);
        }
    }
    v
}

/// Random bytes that decode as `code` at `INSN`, with their instruction.
pub(crate) fn template(code: Code, rng: &mut Rng) -> Option<(Vec<u8>, Instruction)> {
    let op = code.op_code();
    for _ in 0..64 {
        let mut b = Vec::with_capacity(24);
        let has_mem = op.op_kinds().iter().any(|k| format!("{k:?}").contains("mem"));
        if op.can_use_lock_prefix() && has_mem && rng.chance(30) {
            b.push(0xf0);
        }
        if op.can_use_rep_prefix() && rng.chance(60) {
            b.push(0xf3);
        } else if op.can_use_repne_prefix() && rng.chance(50) {
            b.push(0xf2);
        }
        // LOOP/JECXZ on ECX, and 32-bit addressing (the low window) for memory operands.
        let addresses = has_mem
            || op
                .op_kinds()
                .iter()
                .any(|k| ["rSI", "rDI", "rBX"].iter().any(|r| format!("{k:?}").contains(r)));
        if op.address_size() == 32 || addresses && rng.chance(15) {
            b.push(0x67);
        }
        // Segment overrides other than FS and GS are ignored in 64-bit mode, but SS decides
        // between #SS and #GP for a non-canonical address.
        if rng.chance(15) {
            b.push([0x26, 0x2e, 0x36, 0x3e][rng.below(4) as usize]);
        }
        if op.operand_size() == 16 {
            b.push(0x66);
        }
        match op.mandatory_prefix() {
            MandatoryPrefix::P66 => b.push(0x66),
            MandatoryPrefix::PF3 => b.push(0xf3),
            MandatoryPrefix::PF2 => b.push(0xf2),
            _ => {}
        }
        let w = op.w() == 1 || (op.operand_size() == 64 && !op.default_op_size64() && !op.force_op_size64());
        // REX.W overrides a 66 prefix.
        if w && op.mandatory_prefix() != MandatoryPrefix::P66 && rng.chance(10) {
            b.push(0x66);
        }
        let rex = if w { 0x48 } else { 0x40 } | (rng.next() & 7) as u8;
        // F3 REX.B 90 exchanges R8 with RAX on the host; iced decodes it as PAUSE.
        if (w || rng.chance(50)) && code != Code::Pause {
            b.push(rex);
        }
        match op.table() {
            OpCodeTableKind::Normal => {}
            OpCodeTableKind::T0F => b.push(0x0f),
            OpCodeTableKind::T0F38 => b.extend_from_slice(&[0x0f, 0x38]),
            OpCodeTableKind::T0F3A => b.extend_from_slice(&[0x0f, 0x3a]),
            _ => return None,
        }
        let mut opc = op.op_code();
        if op.op_kinds().iter().any(|k| format!("{k:?}").ends_with("_opcode")) {
            opc += (rng.next() & 7) as u32;
        }
        if op.op_code_len() == 2 {
            b.push((opc >> 8) as u8);
        }
        b.push(opc as u8);
        let mut modrm = rng.next() as u8;
        if op.is_group() {
            modrm = (modrm & 0xc7) | (op.group_index() as u8) << 3;
        }
        if op.is_rm_group() {
            modrm = 0xc0 | (op.group_index() as u8) << 3 | op.rm_group_index() as u8;
        }
        b.push(modrm);
        for _ in 0..12 {
            b.push(rng.next() as u8);
        }
        let mut d = Decoder::with_ip(64, &b, INSN, DecoderOptions::NONE);
        let ins = d.decode();
        if ins.is_invalid()
            || ins.code() != code
            || matches!(ins.segment_prefix(), Register::FS | Register::GS)
        {
            continue;
        }
        b.truncate(ins.len());
        return Some((b, ins));
    }
    None
}

/// One random case of `code`: its bytes and the state it starts from.
pub(crate) fn case(code: Code, rng: &mut Rng, group: Group) -> Option<(Vec<u8>, Instruction, State)> {
    let (mut bytes, mut ins) = template(code, rng)?;
    let mut gpr = [0u64; 16];
    for r in gpr.iter_mut() {
        *r = rng.operand();
    }
    gpr[4] = target(rng, 8);
    if ins.has_rep_prefix() || ins.has_repne_prefix() {
        // A few elements, none, or up to three pages' worth (the page-at-a-time paths).
        let size = ins.memory_size().size().max(1) as u64;
        gpr[1] = match rng.below(10) {
            0 => 0,
            1 | 2 => rng.below(3 * 4096 / size),
            _ => rng.below(12),
        };
    }
    let m = ins.mnemonic();
    if matches!(m, M::Div | M::Idiv) && rng.chance(70) {
        gpr[2] = if rng.chance(50) { 0 } else { rng.below(16) };
    }
    // BT* with a register bit offset reach up to 2^60 bytes away: kept within 256 bytes.
    if matches!(m, M::Bt | M::Bts | M::Btr | M::Btc)
        && ins.op0_kind() == iced_x86::OpKind::Memory
        && ins.op1_kind() == iced_x86::OpKind::Register
    {
        gpr[crate::operand::gpr(ins.op1_register()).0] = rng.below(4096).wrapping_sub(2048);
    }
    if matches!(m, M::Enter | M::Leave) {
        gpr[5] = target(rng, 8);
    }
    let mut data = vec![0u8; DATA_LEN];
    for c in data.chunks_mut(8) {
        c.copy_from_slice(&rng.operand().to_le_bytes());
    }
    let fx = fp_state(rng, group);
    // Aim every memory operand.
    let mut factory = InstructionInfoFactory::new();
    let used: Vec<_> = factory.info(&ins).used_memory().to_vec();
    for u in &used {
        let size = u.memory_size().size().max(1) as u64;
        let mut t = target(rng, size);
        if u.address_size() == iced_x86::CodeSize::Code32 {
            // The same place in the low window (which has no non-canonical addresses).
            while !(WINDOW..WINDOW + WINDOW_SIZE).contains(&t) {
                t = target(rng, size);
            }
            t = t - WINDOW + LOW_WINDOW;
        }
        let disp = u.displacement();
        let scale = u.scale() as u64;
        let (base, index) = (u.base(), u.index());
        let reg = |r: Register| crate::operand::gpr(r).0;
        let absolute = matches!(base, Register::RIP | Register::EIP)
            || (base == Register::None && index == Register::None);
        match (base, index) {
            _ if absolute => {
                // RIP-relative and absolute (moffs) operands: the displacement is patched.
                let mut dec = Decoder::with_ip(64, &bytes, INSN, DecoderOptions::NONE);
                let first = dec.decode();
                let offs = dec.get_constant_offsets(&first);
                let o = offs.displacement_offset();
                match (offs.displacement_size(), ins.is_ip_rel_memory_operand()) {
                    (4, true) => {
                        let mut next = INSN + bytes.len() as u64;
                        if ins.memory_base() == Register::EIP {
                            next &= 0xffff_ffff;
                        }
                        let d = t.wrapping_sub(next) as i64;
                        if d != d as i32 as i64 {
                            return None;
                        }
                        bytes[o..o + 4].copy_from_slice(&(d as i32).to_le_bytes());
                    }
                    (8, false) => bytes[o..o + 8].copy_from_slice(&t.to_le_bytes()),
                    (4, false) => bytes[o..o + 4].copy_from_slice(&(t as u32).to_le_bytes()),
                    _ => return None,
                }
                ins = Decoder::with_ip(64, &bytes, INSN, DecoderOptions::NONE).decode();
            }
            // A 32-bit register keeps its random upper half: 32-bit addressing ignores it.
            (Register::None, x) if x.is_gpr64() || x.is_gpr32() => {
                let v = t.wrapping_sub(disp) / scale.max(1);
                gpr[reg(x)] = (gpr[reg(x)] & !mask(x)) | (v & mask(x));
            }
            (b, x) if b.is_gpr64() || b.is_gpr32() => {
                let xv = if x.is_gpr() { gpr[reg(x)] & mask(x) } else { 0 };
                let v = t.wrapping_sub(disp).wrapping_sub(xv.wrapping_mul(scale));
                gpr[reg(b)] = (gpr[reg(b)] & !mask(b)) | (v & mask(b));
            }
            _ => return None,
        }
    }
    if near_branch(ins.code()) && !aim_branch(&mut bytes, &mut ins, &mut gpr, &mut data) {
        return None;
    }
    // POPF may set anything but TF, which would trap the host's save stub.
    if matches!(m, M::Popf | M::Popfq) {
        let off = gpr[4].wrapping_sub(DATA).wrapping_add(1);
        if off < DATA_LEN as u64 {
            data[off as usize] &= !1;
        }
    }
    // Successful compare-exchanges half of the time.
    if matches!(m, M::Cmpxchg | M::Cmpxchg8b | M::Cmpxchg16b) && rng.chance(50) {
        equalise(&ins, &mut gpr, &data);
    }
    // Everything the instruction may touch must be inside the window or non-canonical.
    let info = factory.info(&ins);
    let rcx = if ins.has_rep_prefix() || ins.has_repne_prefix() { gpr[1] } else { 1 };
    for u in info.used_memory() {
        let get = |r: Register, _: usize, _: usize| -> Option<u64> {
            if r.is_segment_register() {
                return Some(0);
            }
            if r == Register::RIP {
                return Some(ins.next_ip());
            }
            Some(gpr[crate::operand::gpr(r).0] & mask(r))
        };
        let ea = u.virtual_address(0, get)?;
        let span = u.memory_size().size().max(16) as u64 * (rcx + 1) + 512;
        if !safe(ea.wrapping_sub(span), 2 * span) {
            return None;
        }
    }
    // BT* reach their bit offset's byte: checked too (the offset register may be the base).
    if matches!(m, M::Bt | M::Bts | M::Btr | M::Btc)
        && ins.op0_kind() == iced_x86::OpKind::Memory
        && ins.op1_kind() == iced_x86::OpKind::Register
    {
        if ins.memory_base().size() == 4 || ins.memory_index().size() == 4 {
            return None;
        }
        let r = ins.op1_register();
        let bits = r.size() as u32 * 8;
        let off = ((gpr[crate::operand::gpr(r).0] << (64 - bits)) as i64 >> (64 - bits)) >> 3;
        let mut ea = ins.memory_displacement64();
        for x in [ins.memory_base(), ins.memory_index()] {
            if x != Register::None {
                let scale = if x == ins.memory_index() { ins.memory_index_scale() as u64 } else { 1 };
                ea = ea.wrapping_add(gpr[crate::operand::gpr(x).0].wrapping_mul(scale));
            }
        }
        if !safe(ea.wrapping_add(off as u64).wrapping_sub(64), 128) {
            return None;
        }
    }
    // ENTER checks its final stack pointer, up to 64 KiB lower: never in the code pages.
    if m == M::Enter {
        let fin = gpr[4].wrapping_sub(ins.immediate16() as u64 + 33 * 8);
        if (WINDOW..WINDOW + 0x8000).contains(&fin) {
            return None;
        }
    }
    let flags = (rng.next() & 0xcd5) | 0x202;
    Some((bytes, ins, State { gpr, rip: INSN, rflags: flags, fx, data }))
}

/// The mask of a register's width (AH..BH count as 8 bits in place).
fn mask(r: Register) -> u64 {
    match r.size() {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Makes the accumulator of a compare-exchange equal to its destination.
fn equalise(ins: &Instruction, gpr: &mut [u64; 16], data: &[u8]) {
    let read = |gpr: &[u64; 16], n: usize| -> Option<u64> {
        let get = |r: Register, _: usize, _: usize| -> Option<u64> {
            if r.is_segment_register() {
                Some(0)
            } else if r == Register::RIP || r == Register::EIP {
                Some(ins.next_ip())
            } else {
                Some(gpr[crate::operand::gpr(r).0] & mask(r))
            }
        };
        let off = super::data_offset(ins.virtual_address(0, 0, get)?)?.checked_add(8 * n)?;
        let b = data.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    };
    match ins.mnemonic() {
        M::Cmpxchg8b => {
            if let Some(v) = read(gpr, 0) {
                gpr[0] = v & 0xffff_ffff;
                gpr[2] = v >> 32;
            }
        }
        M::Cmpxchg16b => {
            if let (Some(lo), Some(hi)) = (read(gpr, 0), read(gpr, 1)) {
                gpr[0] = lo;
                gpr[2] = hi;
            }
        }
        _ => {
            let v = if ins.op0_kind() == iced_x86::OpKind::Register {
                Some(gpr[crate::operand::gpr(ins.op0_register()).0])
            } else {
                read(gpr, 0)
            };
            if let Some(v) = v {
                gpr[0] = v;
            }
        }
    }
}

/// Whether `[addr, addr + len)` lies in the window (away from its code pages) or has only
/// non-canonical addresses or the top page of the lower half (never mapped by Linux).
fn safe(addr: u64, len: u64) -> bool {
    let end = addr.wrapping_add(len);
    let inside = |w: u64| addr >= w + 0x8000 && end <= w + WINDOW_SIZE && end > addr;
    let in_window = inside(WINDOW) || inside(LOW_WINDOW);
    let canonical = |a: u64| (a as i64) << 16 >> 16 == a as i64;
    let top = |a: u64| (0x7fff_ffff_0000..0x8000_0000_0000).contains(&a);
    let wild = (!canonical(addr) || top(addr)) && (!canonical(end) || top(end));
    // A range that wraps through a mapped area is refused.
    in_window || (wild && end.wrapping_sub(addr) < 1 << 40)
}

/// Where a memory operand of `size` bytes should go: across or next to a page boundary of
/// the data pages, anywhere in an accessible page, at a non-canonical address or at the top
/// of the canonical lower half.
pub(crate) fn target(rng: &mut Rng, size: u64) -> u64 {
    let r = rng.below(100);
    if r < 45 {
        let boundary = DATA + rng.below(DATA_PAGES as u64 + 1) * 4096;
        let delta = rng.below(size + 4) as i64 - size as i64 - 1;
        boundary.wrapping_add(delta as u64)
    } else if r < 85 {
        let page = [0u64, 1, 3, 4][rng.below(4) as usize];
        DATA + page * 4096 + rng.below(4096 - size.min(4096))
    } else if r < 95 {
        [0x8000_0000_0000_0000u64, 0x0000_8000_0000_0000, 0xffff_0000_0000_0000, 0x7fff_ffff_ffff_fff0]
            [rng.below(4) as usize]
            .wrapping_add(rng.below(64))
            .wrapping_sub(32)
    } else {
        0x8000_0000_0000u64.wrapping_sub(rng.below(2 * size + 2))
    }
}

/// The FXSAVE image a case starts from: the default control state for the integer group;
/// random rounding, precision, stack top, tags, registers (with the special values weighted
/// in) and MXCSR for the others, exceptions masked but for a few cases.
pub(crate) fn fp_state(rng: &mut Rng, group: Group) -> Box<[u8; 512]> {
    let mut fx = Box::new([0u8; 512]);
    let mut fcw = 0x037fu16;
    let mut fsw = 0u16;
    let mut ftw = 0u8;
    let mut mxcsr = 0x1f80u32;
    if group != Group::Integer {
        fcw = (fcw & !0xf00) | (rng.next() as u16 & 0xf00);
        fsw = rng.next() as u16 & 0x4700 | (rng.below(8) as u16) << 11;
        ftw = rng.next() as u8;
        mxcsr |= (rng.next() as u32) & 0xe07f;
        if rng.chance(10) {
            mxcsr &= !((rng.next() as u32 & 0x3f) << 7);
        }
        for i in 0..8 {
            let v = ext80(rng);
            fx[32 + 16 * i..42 + 16 * i].copy_from_slice(&v.to_le_bytes()[..10]);
        }
        for i in 0..16 {
            for lane in 0..2 {
                let v = lane64(rng);
                let o = 160 + 16 * i + 8 * lane;
                fx[o..o + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    fx[0..2].copy_from_slice(&fcw.to_le_bytes());
    fx[2..4].copy_from_slice(&fsw.to_le_bytes());
    fx[4] = ftw;
    fx[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    fx[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
    fx
}

/// An 80-bit extended value: normal numbers near 1, zeros, infinities, NaNs, denormals and
/// the unsupported encodings (unnormals, pseudo-NaNs).
fn ext80(rng: &mut Rng) -> u128 {
    let sign = (rng.next() & 1) << 15;
    let m = rng.next();
    let (exp, mant) = match rng.below(10) {
        0 => (0, 0),
        1 => (0x7fff, 1 << 63),
        2 => (0x7fff, 0xc000_0000_0000_0000 | m >> 2),
        3 => (0x7fff, (1 << 63) | (m >> 3).max(1)),
        4 => (0, m >> 1),
        5 => (rng.below(0x7ffe) + 1, m >> 1),
        6 => (rng.below(0x7fff), m),
        _ => (0x3fff + rng.below(128) - 64, m | 1 << 63),
    };
    mant as u128 | ((sign | exp) as u128) << 64
}

/// 64 bits of an XMM register: two singles or a double from the special values, or noise.
fn lane64(rng: &mut Rng) -> u64 {
    let f32s =
        [0f32, -0.0, 1.0, -1.5, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, 1e-40, 3.0e38];
    let f64s = [0f64, -0.0, 1.0, -2.5, f64::INFINITY, f64::NAN, f64::MIN_POSITIVE, 5e-320, 1e308, 0.1];
    match rng.below(4) {
        0 => {
            let a = f32s[rng.below(10) as usize].to_bits() as u64;
            let b = f32s[rng.below(10) as usize].to_bits() as u64;
            a | b << 32
        }
        1 => f64s[rng.below(10) as usize].to_bits(),
        2 => (rng.next() as f64 / 7.0 - 1e18).to_bits(),
        _ => rng.operand(),
    }
}

/// Points a branch at `LANDING`: a relative displacement is patched, an indirect target
/// register or memory word (or the return address) set; a target in memory that cannot be
/// written faults instead. False when the branch cannot be aimed.
fn aim_branch(bytes: &mut [u8], ins: &mut Instruction, gpr: &mut [u64; 16], data: &mut [u8]) -> bool {
    use iced_x86::OpKind;
    let reg = |r: Register| crate::operand::gpr(r).0;
    let store = |ea: u64, data: &mut [u8]| {
        for (i, b) in LANDING.to_le_bytes().iter().enumerate() {
            if let Some(off) = super::data_offset(ea.wrapping_add(i as u64)) {
                if off / 4096 != HOLE {
                    data[off] = *b;
                }
            }
        }
    };
    match ins.flow_control() {
        FlowControl::Return => store(gpr[4], data),
        FlowControl::IndirectBranch | FlowControl::IndirectCall => match ins.op0_kind() {
            OpKind::Register if ins.op0_register().size() == 8 => gpr[reg(ins.op0_register())] = LANDING,
            OpKind::Memory => {
                let get = |r: Register, _: usize, _: usize| -> Option<u64> {
                    if r.is_segment_register() {
                        Some(0)
                    } else if r == Register::RIP {
                        Some(ins.next_ip())
                    } else {
                        Some(gpr[reg(r)] & mask(r))
                    }
                };
                let Some(ea) = ins.virtual_address(0, 0, get) else { return false };
                store(ea, data);
            }
            _ => return false,
        },
        _ => {
            let mut dec = Decoder::with_ip(64, bytes, INSN, DecoderOptions::NONE);
            let first = dec.decode();
            let offs = dec.get_constant_offsets(&first);
            let (o, n) = (offs.immediate_offset(), offs.immediate_size());
            let rel = LANDING.wrapping_sub(INSN + bytes.len() as u64) as i64;
            match n {
                1 => bytes[o] = rel as i8 as u8,
                4 => bytes[o..o + 4].copy_from_slice(&(rel as i32).to_le_bytes()),
                _ => return false,
            }
            *ins = Decoder::with_ip(64, bytes, INSN, DecoderOptions::NONE).decode();
            if ins.near_branch_target() != LANDING {
                return false;
            }
        }
    }
    true
}

/// A register-only instruction that sets every status flag, to run just before `ins`: the
/// instruction then starts from lazily computed flags (add, adc, sbb, sub, cmp, logic, inc,
/// dec, neg at any size). It writes no register `ins` uses.
pub(crate) fn flag_setter(rng: &mut Rng, ins: &Instruction) -> Vec<u8> {
    let mut used = [false; 16];
    used[4] = true;
    let mut factory = InstructionInfoFactory::new();
    for r in factory.info(ins).used_registers() {
        let full = r.register().full_register();
        if full.is_gpr64() {
            used[crate::operand::gpr(full).0] = true;
        }
    }
    let free: Vec<u8> = (0..16u8).filter(|&r| !used[r as usize]).collect();
    let size = [1u8, 2, 4, 8][rng.below(4) as usize];
    let src = rng.below(16) as u8;
    // add, or, adc, sbb, and, sub, xor (write), cmp, test (read only), inc, dec, neg (write).
    let kind = rng.below(12) as u8;
    let writes = !matches!(kind, 7 | 8);
    let dst = if writes {
        match free.get(rng.below(free.len().max(1) as u64) as usize) {
            Some(&d) => d,
            None => return Vec::new(),
        }
    } else {
        rng.below(16) as u8
    };
    let mut b = Vec::new();
    if size == 2 {
        b.push(0x66);
    }
    let (opcode, reg) = match kind {
        0..=7 => ((kind << 3) + (size != 1) as u8, src),
        8 => (0x84 + (size != 1) as u8, src),
        9 | 10 => (0xfe + (size != 1) as u8, kind - 9),
        _ => (0xf6 + (size != 1) as u8, 3),
    };
    let r_bit = if kind <= 8 && reg >= 8 { 4 } else { 0 };
    b.push(0x40 | if size == 8 { 8 } else { 0 } | r_bit | (dst >= 8) as u8);
    b.push(opcode);
    b.push(0xc0 | (reg & 7) << 3 | (dst & 7));
    b
}
