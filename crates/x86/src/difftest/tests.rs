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

/// Runs `group`; returns the differences found (the first ones in full) and prints a summary
/// per mnemonic.
#[cfg(target_arch = "x86_64")]
fn run_group(group: Group, per_form: usize, seed: u64) -> Result<Vec<String>, String> {
    let amd = std::fs::read_to_string("/proc/cpuinfo").map(|s| s.contains("AuthenticAMD")).unwrap_or(false);
    let mut native = super::native::Native::new()?;
    let mut interp = Interp::new();
    let forms = gen::forms(group, amd);
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0;
    let mut rng = Rng(seed);
    for code in &forms {
        let t = tally.entry(format!("{:?}", code.mnemonic())).or_default();
        t.forms += 1;
        let mut done = 0;
        let mut shown = 0;
        for _ in 0..per_form * 4 {
            if done == per_form {
                break;
            }
            let Some((bytes, ins, state)) = gen::case(*code, &mut rng, group) else { continue };
            done += 1;
            total += 1;
            t.cases += 1;
            let pre = if rng.chance(30) { gen::flag_setter(&mut rng, &ins) } else { Vec::new() };
            let want = native.run(&pre, &bytes, &state);
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
    // The whole list (two examples per form) for whoever works on the group.
    if let Ok(dir) = std::env::var("CHR_VMM_DIFF_REPORT") {
        let path = std::path::Path::new(&dir).join(format!("{group:?}.txt").to_lowercase());
        if let Err(e) = std::fs::write(&path, format!("{summary}\n{}\n", out.join("\n"))) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    Ok(out)
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

fn check(name: &str, group: Group, default_cases: usize, seed: u64) {
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (group, default_cases, seed);
        test_support::skip(name, "the differential test needs an x86-64 host to compare with");
    }
    #[cfg(target_arch = "x86_64")]
    match run_group(group, cases_per_form(default_cases), seed) {
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
