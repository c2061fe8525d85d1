//! The differences the host comparison found, pinned down as interpreter-only tests (they run
//! on every host, arm64 included): each failed before its fix.

use super::interp::{Interp, Path};
use super::{Outcome, State, Trap, DATA, DATA_LEN, HOLE, INSN};

const D0: u64 = DATA;
const D1: u64 = DATA + 0x1000;
const HOLE_AT: u64 = DATA + HOLE as u64 * 0x1000;

fn state() -> State {
    let mut gpr = [0u64; 16];
    gpr[4] = D1 + 0x800;
    State {
        gpr,
        rip: INSN,
        rflags: 0x202,
        fx: super::gen::fp_state(&mut super::Rng(1), super::gen::Group::Integer),
        data: vec![0; DATA_LEN],
    }
}

/// Runs `code` from `s` through both interpreter paths, which must agree.
fn run(code: &[u8], s: &State) -> Outcome {
    let mut i = Interp::new();
    let a = i.run(&[], code, s, Path::Block);
    let b = i.run(&[], code, s, Path::Single);
    let c = i.run(&[], code, s, Path::BlockWarm);
    for o in [&b, &c] {
        assert_eq!((a.trap, &a.state.gpr, a.state.rip), (o.trap, &o.state.gpr, o.state.rip), "paths differ");
        assert!(a.state.data == o.state.data, "paths differ in memory");
    }
    a
}

fn word(s: &State, at: u64) -> u64 {
    let o = (at - DATA) as usize;
    u64::from_le_bytes(s.data[o..o + 8].try_into().unwrap())
}

fn put(s: &mut State, at: u64, v: u64) {
    let o = (at - DATA) as usize;
    s.data[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

fn pf(cr2: u64, error: u32) -> Option<Trap> {
    Some(Trap { vector: 14, error, cr2 })
}

#[test]
fn enter_copies_its_nesting_level_with_64_bit_pushes() {
    // enter 64, 3
    let mut s = state();
    let (sp, bp) = (D1 + 0x800, D0 + 0x800);
    s.gpr[5] = bp;
    put(&mut s, bp - 8, 0x1111);
    put(&mut s, bp - 16, 0x2222);
    let o = run(&[0xc8, 0x40, 0x00, 0x03], &s);
    assert_eq!(o.trap, None);
    let r = &o.state;
    assert_eq!(r.gpr[5], sp - 8, "RBP is the frame");
    assert_eq!(r.gpr[4], sp - 32 - 64, "four 8-byte pushes and the allocation");
    let pushed: Vec<u64> = (1..=4).map(|i| word(r, sp - 8 * i)).collect();
    assert_eq!(pushed, vec![bp, 0x1111, 0x2222, sp - 8]);
}

#[test]
fn enter_and_leave_fault_without_moving_rsp_or_rbp() {
    let mut s = state();
    // enter 0x10, 1 with its final stack pointer in the hole.
    s.gpr[4] = HOLE_AT + 0x1000 + 0x18;
    s.gpr[5] = D0;
    let o = run(&[0xc8, 0x10, 0x00, 0x01], &s);
    assert_eq!(o.trap, pf(HOLE_AT + 0xff8, 6));
    assert_eq!((o.state.gpr[4], o.state.gpr[5], o.state.rip), (s.gpr[4], s.gpr[5], INSN));
    // leave with RBP in the hole.
    let mut s = state();
    s.gpr[5] = HOLE_AT + 8;
    let o = run(&[0xc9], &s);
    assert_eq!(o.trap, pf(HOLE_AT + 8, 4));
    assert_eq!((o.state.gpr[4], o.state.gpr[5]), (s.gpr[4], s.gpr[5]));
}

#[test]
fn a_failing_32_bit_cmpxchg_loads_eax_and_leaves_the_register_destination() {
    // cmpxchg ecx, edx
    let mut s = state();
    s.gpr[0] = 0xffff_ffff_0000_0001;
    s.gpr[1] = 0xaaaa_aaaa_0000_0002;
    let o = run(&[0x0f, 0xb1, 0xd1], &s);
    assert_eq!((o.state.gpr[0], o.state.gpr[1]), (2, 0xaaaa_aaaa_0000_0002));
    assert_eq!(o.state.rflags & 0x40, 0, "ZF clear");
}

#[test]
fn xlat_indexes_with_al() {
    let mut s = state();
    s.gpr[3] = D0;
    s.gpr[0] = 0x1234_5678_9abc_ff05;
    s.data[5] = 0x77;
    let o = run(&[0xd7], &s);
    assert_eq!(o.trap, None);
    assert_eq!(o.state.gpr[0], 0x1234_5678_9abc_ff77);
}

#[test]
fn a_misaligned_cmpxchg16b_raises_gp() {
    // lock cmpxchg16b [rsi]
    let mut s = state();
    s.gpr[6] = D0 + 8;
    let o = run(&[0xf0, 0x48, 0x0f, 0xc7, 0x0e], &s);
    assert_eq!(o.trap, Some(Trap { vector: 13, error: 0, cr2: 0 }));
}

#[test]
fn non_canonical_addresses_raise_gp_or_ss() {
    let gp = Some(Trap { vector: 13, error: 0, cr2: 0 });
    let ss = Some(Trap { vector: 12, error: 0, cr2: 0 });
    let mut s = state();
    s.gpr[0] = 0x8000_0000_0000_0000;
    s.gpr[5] = 0x0000_8000_0000_0010;
    // mov rax, [rax]; mov rax, [rbp]; add [rax], rax; mov [rbp], eax
    assert_eq!(run(&[0x48, 0x8b, 0x00], &s).trap, gp);
    assert_eq!(run(&[0x48, 0x8b, 0x45, 0x00], &s).trap, ss);
    assert_eq!(run(&[0x48, 0x01, 0x00], &s).trap, gp);
    assert_eq!(run(&[0x89, 0x45, 0x00], &s).trap, ss);
    // Overrides other than FS/GS are ignored: ds:[rbp] still raises #SS, ss:[rax] #GP.
    assert_eq!(run(&[0x3e, 0x48, 0x8b, 0x45, 0x00], &s).trap, ss);
    assert_eq!(run(&[0x36, 0x48, 0x8b, 0x00], &s).trap, gp);
    // push rax / pop rax with a non-canonical RSP, RSP unchanged.
    s.gpr[4] = 0xffff_0000_0000_0040;
    for code in [&[0x50u8][..], &[0x58]] {
        let o = run(code, &s);
        assert_eq!((o.trap, o.state.gpr[4]), (ss, s.gpr[4]));
    }
    // An 8-byte load whose last bytes are past the canonical lower half.
    s.gpr[6] = 0x7fff_ffff_fffc;
    assert_eq!(run(&[0x48, 0x8b, 0x06], &s).trap, gp);
}

#[test]
fn read_modify_write_faults_report_a_write() {
    // add [rsi], rax; inc dword [rsi]; bts [rsi], eax
    let mut s = state();
    s.gpr[6] = HOLE_AT + 0x10;
    for code in [&[0x48u8, 0x01, 0x06][..], &[0xff, 0x06], &[0x0f, 0xab, 0x06]] {
        assert_eq!(run(code, &s).trap, pf(HOLE_AT + 0x10, 6), "{code:02x?}");
    }
}

#[test]
fn a_store_into_the_hole_writes_nothing_and_names_the_hole_in_cr2() {
    // mov [rsi], rax across the boundary into the hole.
    let mut s = state();
    s.gpr[6] = HOLE_AT - 4;
    s.gpr[0] = u64::MAX;
    let o = run(&[0x48, 0x89, 0x06], &s);
    assert_eq!(o.trap, pf(HOLE_AT, 6));
    assert!(o.state.data == s.data, "nothing stored");
}

#[test]
fn rep_movs_stops_at_the_faulting_element() {
    // rep movsb from the end of D1 into D0, ten bytes: four copied, then the hole.
    let mut s = state();
    s.gpr[1] = 10;
    s.gpr[6] = HOLE_AT - 4;
    s.gpr[7] = D0;
    for i in 0..4 {
        s.data[(HOLE_AT - 4 - DATA) as usize + i] = 0xa0 + i as u8;
    }
    let o = run(&[0xf3, 0xa4], &s);
    assert_eq!(o.trap, pf(HOLE_AT, 4));
    assert_eq!((o.state.gpr[1], o.state.gpr[6], o.state.gpr[7]), (6, HOLE_AT, D0 + 4));
    assert_eq!(&o.state.data[..4], &[0xa0, 0xa1, 0xa2, 0xa3]);
}

#[test]
fn stack_faults_leave_rsp_alone() {
    // push rax, pop rax, call $+5, ret with RSP at the hole's edge.
    let mut s = state();
    s.gpr[4] = HOLE_AT + 0x1000;
    for code in [&[0x50u8][..], &[0xe8, 0, 0, 0, 0]] {
        let o = run(code, &s);
        assert_eq!(
            (o.trap, o.state.gpr[4], o.state.rip),
            (pf(HOLE_AT + 0xff8, 6), s.gpr[4], INSN),
            "{code:02x?}"
        );
    }
    s.gpr[4] = HOLE_AT + 0xff8;
    for code in [&[0x58u8][..], &[0xc3]] {
        let o = run(code, &s);
        assert_eq!(
            (o.trap, o.state.gpr[4], o.state.rip),
            (pf(HOLE_AT + 0xff8, 4), s.gpr[4], INSN),
            "{code:02x?}"
        );
    }
}

#[test]
fn xadd_of_a_register_with_itself_leaves_the_sum() {
    let mut s = state();
    s.gpr[7] = 0x1234_0001;
    let o = run(&[0x66, 0x0f, 0xc1, 0xff], &s);
    assert_eq!(o.state.gpr[7], 0x1234_0002);
}
