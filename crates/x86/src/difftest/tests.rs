//! The group tests: every form of a group, random cases each, host against interpreter.

use super::gen::{self, Group};
use super::interp::{Interp, Path};
use super::{cases_per_form, Rng};
use std::collections::BTreeMap;

/// Per mnemonic: cases run, cases that faulted on the host, cases that differed.
#[derive(Default)]
struct Tally {
    forms: usize,
    cases: usize,
    faults: usize,
    diffs: usize,
}

/// Up to `per_form` cases of form `code` (bytes, instruction, state, flag-setting prefix), a
/// third of them with a prefix: every run of a group (on the host, recording, replaying)
/// draws them from the seed in this one order.
fn form_cases(
    code: iced_x86::Code,
    group: Group,
    per_form: usize,
    rng: &mut Rng,
) -> Vec<(Vec<u8>, iced_x86::Instruction, super::State, Vec<u8>)> {
    let mut v = Vec::new();
    for _ in 0..per_form * 4 {
        if v.len() == per_form {
            break;
        }
        let Some((bytes, ins, state)) = gen::case(code, rng, group) else { continue };
        let pre = if rng.chance(30) { gen::flag_setter(rng, &ins) } else { Vec::new() };
        v.push((bytes, ins, state, pre));
    }
    v
}

/// Runs `group`; returns the differences found (the first ones in full) and prints a summary
/// per mnemonic.
#[cfg(target_arch = "x86_64")]
fn run_group(group: Group, per_form: usize, seed: u64) -> Result<Vec<String>, String> {
    use super::record::Mode;
    let amd = std::fs::read_to_string("/proc/cpuinfo").map(|s| s.contains("AuthenticAMD")).unwrap_or(false);
    let mut mode = super::record::mode(&format!("{group:?}").to_lowercase(), amd)?;
    let amd = if let Mode::Replay(r) = &mode { r.amd } else { amd };
    let mut native = super::native::Native::new()?;
    let mut interp = Interp::new();
    let forms = gen::forms(group, amd);
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0;
    let mut rng = Rng(seed);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    // Replaying: the cases the host ran without a fault, and how many of them matched.
    let mut clean = (0usize, 0usize);
    for code in &forms {
        let t = tally.entry(format!("{:?}", code.mnemonic())).or_default();
        t.forms += 1;
        let mut shown = 0;
        for (bytes, ins, state, pre) in form_cases(*code, group, per_form, &mut rng) {
            total += 1;
            t.cases += 1;
            let want = native.run(&pre, &bytes, &state);
            match &mut mode {
                Mode::Normal => {}
                Mode::Record(r) => r.write(total as u32, &pre, &bytes, &state, &want),
                // The other CPU's outcome against the host's; the interpreter is not run.
                Mode::Replay(r) => {
                    let host = r.next(total as u32, &pre, &bytes, &state)?;
                    let d = super::compare::diff(&ins, &state, &host, &want);
                    if host.trap.is_none() {
                        clean.0 += 1;
                        clean.1 += d.is_empty() as usize;
                    }
                    if !d.is_empty() {
                        t.diffs += 1;
                        *reasons.entry(reason(&host, &want)).or_default() += 1;
                        shown += 1;
                        if shown <= 2 {
                            // "host" is the recorded host, "interpreter" the CPU replaying.
                            out.push(format!(
                                "{code:?} `{ins}` ({bytes:02x?}) after {pre:02x?}\n  {}",
                                d.join("\n  ")
                            ));
                        }
                    }
                    continue;
                }
            }
            if want.trap.is_some() {
                t.faults += 1;
            }
            let mut differed = false;
            for path in [Path::Block, Path::BlockWarm, Path::Single] {
                let got = interp.run(&pre, &bytes, &state, path);
                let d = super::compare::diff(&ins, &state, &want, &got);
                if !d.is_empty() {
                    differed = true;
                    shown += 1;
                    if shown <= 2 {
                        out.push(format!(
                            "{code:?} `{ins}` ({bytes:02x?}) after {pre:02x?} via {path:?}\n  before: gpr {:x?} flags {:#x}{}\n  {}",
                            state.gpr,
                            state.rflags,
                            fp_inputs(&ins, &state),
                            d.join("\n  ")
                        ));
                    }
                }
            }
            if differed {
                t.diffs += 1;
            }
        }
    }
    let mut summary = format!("{group:?}: {} forms, {total} cases\n", forms.len());
    for (m, t) in &tally {
        summary += &format!(
            "  {m:<14} forms {:>3} cases {:>5} host faults {:>4} differ {:>4}\n",
            t.forms, t.cases, t.faults, t.diffs
        );
    }
    eprintln!("{summary}");
    // One line for benches/conformance.sh: the cases that matched the host.
    let differ: usize = tally.values().map(|t| t.diffs).sum();
    let side = if let Mode::Replay(_) = mode { "other" } else { "interpreter" };
    let why: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}:{n}")).collect();
    eprintln!(
        "conformance: group={group:?} side={side} cases={total} pass={} clean={} clean_pass={} reasons={}",
        total - differ,
        clean.0,
        clean.1,
        why.join(",")
    );
    // The whole list (two examples per form) for whoever works on the group.
    if let Ok(dir) = std::env::var("CHR_VMM_DIFF_REPORT") {
        let path = std::path::Path::new(&dir).join(format!("{group:?}.txt").to_lowercase());
        if let Err(e) = std::fs::write(&path, format!("{summary}\n{}\n", out.join("\n"))) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    // Another CPU's differences are a measurement, not a failure of the interpreter.
    if let Mode::Replay(_) = mode {
        return Ok(Vec::new());
    }
    Ok(out)
}

/// Why another CPU's outcome differs from the host's, in a word: the fault it raised where
/// the host raised none or another, or the first kind of state that differs.
#[cfg(target_arch = "x86_64")]
fn reason(host: &super::Outcome, other: &super::Outcome) -> String {
    match (host.trap, other.trap) {
        // qemu-x86_64 reports its page faults with trap number -1 in the signal frame.
        (Some(_), Some(o)) if o.vector == 0xff => "trapno-unknown".into(),
        (None, Some(o)) if o.vector == 0xff => "faults-trapno-unknown".into(),
        (h, Some(o)) if h.map(|h| h.vector) != Some(o.vector) => format!("raises-{}", o.vector),
        (Some(h), None) => format!("misses-{}", h.vector),
        (Some(h), Some(o)) if h != o => "fault-details".into(),
        _ if host.state.gpr != other.state.gpr || host.state.rip != other.state.rip => "registers".into(),
        _ if host.state.rflags != other.state.rflags => "rflags".into(),
        _ if host.state.fx != other.state.fx => "fp-state".into(),
        _ => "memory".into(),
    }
}

/// The FP state an instruction reads, for the report: control words and the x87, MMX and
/// XMM registers among its operands (empty for instructions without any).
fn fp_inputs(ins: &iced_x86::Instruction, s: &super::State) -> String {
    use iced_x86::Register;
    let le = |r: std::ops::Range<usize>| s.fx[r].iter().rev().map(|b| format!("{b:02x}")).collect::<String>();
    let mut regs = String::new();
    for i in 0..ins.op_count() {
        let r = ins.op_register(i);
        let (name, range) = if r.is_xmm() {
            let n = r as usize - Register::XMM0 as usize;
            (format!("xmm{n}"), 160 + 16 * n..176 + 16 * n)
        } else if r.is_mm() {
            // MMn is physical register n; FXSAVE keeps the registers in stack order (ST0 first).
            let n = r as usize - Register::MM0 as usize;
            let slot = (n + 8 - (s.fx[3] as usize >> 3 & 7)) & 7;
            (format!("mm{n}"), 32 + 16 * slot..40 + 16 * slot)
        } else if r.is_st() {
            let n = r as usize - Register::ST0 as usize;
            (format!("st{n}"), 32 + 16 * n..42 + 16 * n)
        } else {
            continue;
        };
        regs += &format!(" {name}={}", le(range));
    }
    if ins.op_kinds().any(|k| k == iced_x86::OpKind::Memory) {
        let mut ea = ins.memory_displacement64();
        for (r, scale) in [(ins.memory_base(), 1), (ins.memory_index(), ins.memory_index_scale() as u64)] {
            if r.is_gpr64() {
                ea = ea.wrapping_add(s.gpr[crate::operand::gpr(r).0].wrapping_mul(scale));
            }
        }
        let n = ins.memory_size().size().min(16);
        let off = super::data_offset(ea & if ins.memory_base().size() == 4 { 0xffff_ffff } else { u64::MAX });
        if let Some(b) = off.and_then(|off| s.data.get(off..off.saturating_add(n))) {
            regs += &format!(" mem={}", b.iter().rev().map(|b| format!("{b:02x}")).collect::<String>());
        }
    }
    if regs.is_empty() && ins.cpuid_features().iter().all(|f| !format!("{f:?}").contains("FPU")) {
        return String::new();
    }
    format!("\n  fp: fcw {} fsw {} ftw {} mxcsr {}{regs}", le(0..2), le(2..4), le(4..5), le(24..28))
}

/// Elsewhere than on x86-64 (the arm64 leg): the interpreter against the outcomes an x86-64
/// host recorded (`CHR_VMM_DIFF_REPLAY=dir`, made with `CHR_VMM_DIFF_RECORD=dir` there from the
/// same seeds and case counts), through the same three paths and the same comparison.
#[cfg(not(target_arch = "x86_64"))]
fn replay_group(group: Group, per_form: usize, seed: u64) -> Result<Vec<String>, String> {
    use super::record::Mode;
    if std::env::var_os("CHR_VMM_DIFF_REPLAY").is_none() {
        return Err("no x86-64 host to compare with, and no recorded host outcomes \
                    (CHR_VMM_DIFF_REPLAY; scripts/arm64-leg.sh records them)"
            .into());
    }
    let Mode::Replay(mut record) = super::record::mode(&format!("{group:?}").to_lowercase(), false)? else {
        return Err("CHR_VMM_DIFF_REPLAY is set but no record was read".into());
    };
    let mut interp = Interp::new();
    let mut out = Vec::new();
    let mut rng = Rng(seed);
    let mut total = 0;
    for code in &gen::forms(group, record.amd) {
        for (bytes, ins, state, pre) in form_cases(*code, group, per_form, &mut rng) {
            total += 1;
            let host = record.next(total as u32, &pre, &bytes, &state)?;
            for path in [Path::Block, Path::BlockWarm, Path::Single] {
                let d = super::compare::diff(&ins, &state, &host, &interp.run(&pre, &bytes, &state, path));
                if !d.is_empty() {
                    out.push(format!(
                        "{code:?} `{ins}` ({bytes:02x?}) after {pre:02x?} via {path:?}\n  {}",
                        d.join("\n  ")
                    ));
                }
            }
        }
    }
    eprintln!("{group:?}: {total} cases replayed against the recorded host, {} differences", out.len());
    Ok(out)
}

fn check(name: &str, group: Group, default_cases: usize, seed: u64) {
    #[cfg(not(target_arch = "x86_64"))]
    let result = replay_group(group, cases_per_form(default_cases), seed);
    #[cfg(target_arch = "x86_64")]
    let result = run_group(group, cases_per_form(default_cases), seed);
    match result {
        Err(why) => test_support::skip(name, &why),
        Ok(d) => assert!(
            d.is_empty(),
            "{name}: {} differences, first ones:\n{}",
            d.len(),
            d[..d.len().min(30)].join("\n")
        ),
    }
}

#[test]
fn integer_instructions_match_the_host_cpu() {
    check("integer_instructions_match_the_host_cpu", Group::Integer, 100, 0x1234_5678_9abc_def1);
}

#[test]
fn x87_instructions_match_the_host_cpu() {
    check("x87_instructions_match_the_host_cpu", Group::X87, 24, 0x8765_4321_0fed_cba9);
}

#[test]
fn mmx_instructions_match_the_host_cpu() {
    check("mmx_instructions_match_the_host_cpu", Group::Mmx, 100, 0x0bad_cafe_dead_beef);
}

#[test]
fn sse_instructions_match_the_host_cpu() {
    check("sse_instructions_match_the_host_cpu", Group::Sse, 100, 0x5eed_5eed_1234_4321);
}
