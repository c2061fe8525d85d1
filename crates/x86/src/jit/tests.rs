//! The compiled tier against the interpreter on the same code.

use crate::tests::{real_mode_vcpu, Recorder};
use crate::InterpVcpu;

/// Runs `code` (real mode at 0:0x1000) to its HLT, with the compiled tier at `threshold`.
fn run(code: &[u8], threshold: Option<u32>) -> (InterpVcpu, Vec<(u16, u32)>) {
    let mut v = real_mode_vcpu(code);
    assert!(v.set_jit_threshold(threshold), "Cranelift supports this host");
    let io = Recorder::default();
    let mut left = 200_000u64;
    while left > 0 && !v.cpu().halted {
        v.run_for(&io, 1000).unwrap();
        left -= 1000;
    }
    assert!(v.cpu().halted, "the code reaches its HLT");
    let out = io.out.lock().unwrap().clone();
    (v, out)
}

#[test]
fn compiled_blocks_compute_what_the_interpreter_computes() {
    // A loop over memory with every compiled form: mov/add/sub/and/or/xor/cmp/test on
    // registers, immediates and memory, inc/dec, neg/not, movzx/movsx, lea, jcc; then the
    // flags leave through pushf-free means (setcc and adc run interpreted after it).
    let code: Vec<u8> = vec![
        0xbe, 0x00, 0x20, // mov si, 0x2000
        0xb9, 0x40, 0x00, // mov cx, 64
        0x31, 0xc0, // xor ax, ax
        0x31, 0xdb, // xor bx, bx
        // loop:
        0x89, 0x0c, // mov [si], cx
        0x03, 0x04, // add ax, [si]
        0x01, 0x44, 0x02, // add [si+2], ax
        0x0f, 0xb6, 0x14, // movzx dx, byte [si]
        0x0f, 0xbe, 0x7c, 0x02, // movsx di, byte [si+2]
        0x29, 0xd3, // sub bx, dx
        0x31, 0xfb, // xor bx, di
        0x8d, 0x58, 0x03, // lea bx, [bx+si+3]
        0x83, 0xe3, 0x7f, // and bx, 0x7f
        0x09, 0xd8, // or ax, bx
        0xf7, 0xd8, // neg ax
        0xf7, 0xd0, // not ax
        0xff, 0x44, 0x04, // inc word [si+4]
        0x85, 0xc3, // test bx, ax
        0x83, 0xc6, 0x06, // add si, 6
        0x49, // dec cx
        0x83, 0xf9, 0x00, // cmp cx, 0
        0x75, 0xd4, // jnz loop
        0x0f, 0x92, 0xc1, // setb cl
        0x11, 0xd8, // adc ax, bx
        0xe7, 0x10, // out 0x10, ax
        0x89, 0xd8, // mov ax, bx
        0xe7, 0x11, // out 0x11, ax
        0x89, 0xf0, // mov ax, si
        0xe7, 0x12, // out 0x12, ax
        0x89, 0xc8, // mov ax, cx
        0xe7, 0x13, // out 0x13, ax
        0xf4, // hlt
    ];
    let before = crate::jit::jit_stats().blocks;
    let (mut a, out_a) = run(&code, None);
    let (mut b, out_b) = run(&code, Some(0));
    assert!(crate::jit::jit_stats().blocks > before, "blocks were compiled");
    assert_eq!(out_a, out_b);
    assert_eq!(out_a.len(), 4);
    assert_eq!(a.cpu().regs, b.cpu().regs);
    assert_eq!(a.cpu().flags(), b.cpu().flags());
    let mem = |v: &mut InterpVcpu| {
        (0x2000..0x2000 + 6 * 64 + 8).map(|x| v.cpu().phys_read(x, 1)).collect::<Vec<_>>()
    };
    assert_eq!(mem(&mut a), mem(&mut b));
}
