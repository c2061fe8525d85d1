//! Unit tests: machine-code snippets run against a recording I/O handler, and SeaBIOS.

use super::*;
use machine::memory::MemoryLayout;
use std::sync::Mutex;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Records port writes; port 0x402 is SeaBIOS's debug console (reads return 0xE9).
#[derive(Default)]
pub(crate) struct Recorder {
    pub out: Mutex<Vec<(u16, u32)>>,
    pub debug: Mutex<Vec<u8>>,
}

impl IoHandler for Recorder {
    fn pio_read(&self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        if port == 0x402 {
            data[0] = 0xe9;
        }
    }
    fn pio_write(&self, port: u16, data: &[u8]) {
        let mut b = [0u8; 4];
        b[..data.len()].copy_from_slice(data);
        if port == 0x402 {
            self.debug.lock().unwrap().push(data[0]);
        } else if port != 0x80 {
            self.out.lock().unwrap().push((port, u32::from_le_bytes(b)));
        }
    }
    fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _addr: u64, _data: &[u8]) {}
}

/// Assembles `src` with nasm; None (and a message) when nasm is missing.
pub(crate) fn nasm(src: &str) -> Option<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!(
        "x86-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).ok()?;
    let asm = dir.join("t.asm");
    let bin = dir.join("t.bin");
    std::fs::write(&asm, src).ok()?;
    let st = std::process::Command::new("nasm").arg("-f").arg("bin").arg("-o").arg(&bin).arg(&asm).status();
    match st {
        Ok(s) if s.success() => std::fs::read(&bin).ok(),
        Ok(_) => panic!("nasm failed on:\n{src}"),
        Err(_) => {
            test_support::skip(std::thread::current().name().unwrap_or("nasm"), "nasm is not installed");
            None
        }
    }
}

/// A CPU with 2 MiB of RAM, `code` at 0x1000 and CS:IP = 0:0x1000 in real mode.
pub(crate) fn real_mode_vcpu(code: &[u8]) -> InterpVcpu {
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    mem.write_slice(code, GuestAddress(0x1000)).unwrap();
    let mut v = InterpVcpu::new(&mem, u64::MAX, 0, None);
    let c = v.cpu();
    c.segs[cpu::CS] = Segment::real(0, 0x9b);
    c.rip = 0x1000;
    c.regs[4] = 0x8000;
    v
}

#[test]
fn real_mode_arithmetic_and_port_output() {
    // mov ax, 0x1234; mov bx, 0x1111; add ax, bx; out 0x10, ax; mov cx, 5; l: dec cx; jnz l;
    // mov al, cl; out 0x11, al; hlt
    let code = [
        0xb8, 0x34, 0x12, 0xbb, 0x11, 0x11, 0x01, 0xd8, 0xe7, 0x10, 0xb9, 0x05, 0x00, 0x49, 0x75, 0xfd, 0x88,
        0xc8, 0xe6, 0x11, 0xf4,
    ];
    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    v.run_for(&io, 1000).unwrap();
    assert_eq!(*io.out.lock().unwrap(), vec![(0x10, 0x2345), (0x11, 0)]);
    assert!(v.cpu().halted);
}

#[test]
fn seabios_prints_its_banner() {
    let path = "/usr/share/seabios/bios-256k.bin";
    let Ok(bios) = std::fs::read(path) else {
        test_support::skip(
            "seabios_prints_its_banner",
            &format!("{path} is missing (install Debian's seabios package)"),
        );
        return;
    };
    let layout = MemoryLayout::new(64 << 20, bios.len() as u64).unwrap();
    let mem = layout.build(&bios).unwrap();
    let mut v = InterpVcpu::new(&mem, layout.bios_base(), 0, None);
    let io = Recorder::default();
    let mut found = false;
    for _ in 0..200 {
        v.run_for(&io, 100_000).unwrap();
        let log = String::from_utf8_lossy(&io.debug.lock().unwrap()).to_string();
        if log.contains("SeaBIOS (version") {
            found = true;
            break;
        }
        if v.cpu().halted && !v.cpu().flag(flags::IF) {
            break;
        }
    }
    let log = String::from_utf8_lossy(&io.debug.lock().unwrap()).to_string();
    let n = v.instructions;
    let c = v.cpu();
    assert!(
        found,
        "no banner after {n} instructions at {:04x}:{:x}; log:\n{log}",
        c.segs[cpu::CS].selector,
        c.rip
    );
    eprintln!("{log}");
}

#[test]
fn instruction_rate_on_a_loop() {
    // mov ecx, 3000000; l: add eax, ebx; xor edx, eax; dec ecx; jnz l; hlt
    let code = [
        0x66, 0xb9, 0xc0, 0xc6, 0x2d, 0x00, 0x66, 0x01, 0xd8, 0x66, 0x31, 0xc2, 0x66, 0x49, 0x75, 0xf6, 0xf4,
    ];
    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    let t = std::time::Instant::now();
    v.run_for(&io, 100_000_000).unwrap();
    let s = t.elapsed().as_secs_f64();
    assert!(v.cpu().halted);
    assert_eq!(v.cpu().regs[1] & 0xffff_ffff, 0);
    eprintln!(
        "{} instructions in {s:.3} s: {:.1} M instructions/s",
        v.instructions,
        v.instructions as f64 / s / 1e6
    );
}

#[test]
fn real_to_protected_to_long_mode_with_page_fault_and_idt() {
    let src = r#"
bits 16
org 0x1000
start:
    cli
    lgdt [gdtr]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp 0x08:pm32
bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x80000
    mov al, 0x32
    out 0x10, al
    mov edi, 0x10000
    xor eax, eax
    mov ecx, 0x3000/4
    rep stosd
    mov dword [0x10000], 0x11003
    mov dword [0x11000], 0x12003
    mov dword [0x12000], 0x83
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    jmp 0x18:lm64
bits 64
lm64:
    mov rdi, 0x13000 + 14*16
    mov rax, pf_handler
    call setgate
    mov rdi, 0x13000 + 0x80*16
    mov rax, int80
    call setgate
    lidt [idtr]
    mov al, 0x64
    out 0x10, al
    xor r13, r13
    mov rbx, 0x400000
    mov rcx, [rbx]
    int 0x80
    int 0x80
    mov rax, r12
    out 0x11, eax
    mov eax, r13d
    out 0x12, eax
    mov eax, r14d
    out 0x13, eax
    hlt

pf_handler:
    mov r12, cr2
    pop r14
    add qword [rsp], 3
    iretq
int80:
    inc r13
    iretq

setgate:
    mov rdx, rax
    and edx, 0xffff
    mov rcx, 0x18 << 16
    or rdx, rcx
    mov rcx, 0x8E00 << 32
    or rdx, rcx
    mov rcx, rax
    shr rcx, 16
    and rcx, 0xffff
    shl rcx, 48
    or rdx, rcx
    mov [rdi], rdx
    mov rcx, rax
    shr rcx, 32
    mov [rdi+8], rcx
    ret

align 8
gdt: dq 0, 0x00cf9a000000ffff, 0x00cf92000000ffff, 0x00af9a000000ffff
gdt_end:
gdtr: dw gdt_end - gdt - 1
      dd gdt
idtr: dw 0x81*16 - 1
      dq 0x13000
"#;
    let Some(code) = nasm(src) else { return };
    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    v.run_for(&io, 100_000).unwrap();
    let out = io.out.lock().unwrap().clone();
    // The #PF error code: not present (0), read, supervisor.
    assert_eq!(out, vec![(0x10, 0x32), (0x10, 0x64), (0x11, 0x40_0000), (0x12, 2), (0x13, 0)]);
    assert!(v.cpu().long_mode());
}

/// Routes ports to the irqchip's devices and records the rest.
struct WithPlatform {
    buses: machine::io::IoBuses,
    rec: Recorder,
}

impl IoHandler for WithPlatform {
    fn pio_read(&self, port: u16, data: &mut [u8]) {
        if !self.buses.pio.read(port as u64, data) {
            self.rec.pio_read(port, data);
        }
    }
    fn pio_write(&self, port: u16, data: &[u8]) {
        if !self.buses.pio.write(port as u64, data) {
            self.rec.pio_write(port, data);
        }
    }
    fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        self.buses.mmio.read(addr, data);
    }
    fn mmio_write(&self, addr: u64, data: &[u8]) {
        self.buses.mmio.write(addr, data);
    }
}

#[test]
fn pit_interrupts_wake_hlt_through_the_pic() {
    // Real mode: IVT[8] -> handler that counts in BX and sends EOI; PIT channel 0 at
    // 1 kHz; STI; HLT in a loop until 20 ticks, then report and halt with IF clear.
    let src = r#"
bits 16
org 0x1000
    cli
    xor ax, ax
    mov ds, ax
    mov word [8*4], handler
    mov word [8*4+2], 0
    mov al, 0x11
    out 0x20, al
    mov al, 0x08
    out 0x21, al
    mov al, 4
    out 0x21, al
    mov al, 1
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov ax, 1193
    out 0x40, al
    mov al, ah
    out 0x40, al
    xor bx, bx
    xor cx, cx
    sti
idle:
    inc cx
    hlt
    cmp bx, 20
    jb idle
    cli
    mov ax, bx
    out 0x10, ax
    mov ax, cx
    out 0x11, ax
    hlt
handler:
    inc bx
    push ax
    mov al, 0x20
    out 0x20, al
    pop ax
    iret
"#;
    let Some(code) = nasm(src) else { return };
    let platform = irqchip::Platform::new(1);
    let buses = machine::io::IoBuses::default();
    let devs = platform.bus_devices();
    for r in devs.pio {
        buses.pio.insert(r.base, r.len, r.device).unwrap();
    }
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    mem.write_slice(&code, GuestAddress(0x1000)).unwrap();
    let mut v = InterpVcpu::new(&mem, u64::MAX, 0, Some(platform));
    let c = v.cpu();
    c.segs[cpu::CS] = Segment::real(0, 0x9b);
    c.rip = 0x1000;
    c.regs[4] = 0x8000;
    let io = WithPlatform { buses, rec: Recorder::default() };
    let t = std::time::Instant::now();
    while (v.cpu().flag(flags::IF) || !v.cpu().halted) && t.elapsed().as_secs() < 5 {
        v.run_for(&io, 1_000_000).unwrap();
    }
    let ms = t.elapsed().as_millis();
    let out = io.rec.out.lock().unwrap().clone();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0], (0x10, 20));
    // HLT slept: about one wake-up per tick, not a spin.
    assert!(out[1].1 <= 30, "{} HLT wake-ups for 20 ticks", out[1].1);
    assert!((15..500).contains(&ms), "20 ticks of 1 ms took {ms} ms");
    assert!(v.instructions < 2000, "{} instructions", v.instructions);
}

#[test]
fn a_one_instruction_sti_window_lets_a_pending_interrupt_in() {
    // SeaBIOS polls with `sti; nop; cli` (check_irqs) and spends the rest of its loop with
    // interrupts off, so the one boundary after the NOP must take the pending PIT tick.
    let src = r#"
bits 16
org 0x1000
    cli
    xor ax, ax
    mov ds, ax
    mov word [8*4], handler
    mov word [8*4+2], 0
    mov al, 0x11
    out 0x20, al
    mov al, 0x08
    out 0x21, al
    mov al, 4
    out 0x21, al
    mov al, 1
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov ax, 1193
    out 0x40, al
    mov al, ah
    out 0x40, al
    xor bx, bx
poll:
    sti
    nop
    cli
    mov cx, 2000
busy:
    loop busy
    cmp bx, 5
    jb poll
    mov ax, bx
    out 0x10, ax
    hlt
handler:
    inc bx
    push ax
    mov al, 0x20
    out 0x20, al
    pop ax
    iret
"#;
    let Some(code) = nasm(src) else { return };
    let platform = irqchip::Platform::new(1);
    let buses = machine::io::IoBuses::default();
    for r in platform.bus_devices().pio {
        buses.pio.insert(r.base, r.len, r.device).unwrap();
    }
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    mem.write_slice(&code, GuestAddress(0x1000)).unwrap();
    let mut v = InterpVcpu::new(&mem, u64::MAX, 0, Some(platform));
    let c = v.cpu();
    c.segs[cpu::CS] = Segment::real(0, 0x9b);
    c.rip = 0x1000;
    c.regs[4] = 0x8000;
    let io = WithPlatform { buses, rec: Recorder::default() };
    let t = std::time::Instant::now();
    while !v.cpu().halted && t.elapsed().as_secs() < 5 {
        v.run_for(&io, 1_000_000).unwrap();
    }
    assert_eq!(io.rec.out.lock().unwrap().clone(), [(0x10, 5)], "the PIT ticks never got in");
}

#[test]
fn bsp_starts_an_application_processor_with_init_sipi() {
    let bsp = r#"
bits 16
org 0x1000
    xor ax, ax
    mov ds, ax
    mov esi, 0xFEE00300
    mov dword [esi+0x10], 0x01000000
    mov dword [esi], 0x00004500
    mov dword [esi], 0x00004602
spin:
    cmp word [0x3000], 0x1234
    jne spin
    mov ax, [0x3000]
    out 0x10, ax
    cli
    hlt
"#;
    let ap = r#"
bits 16
org 0x2000
    xor ax, ax
    mov ds, ax
    mov word [0x3000], 0x1234
    cli
    hlt
"#;
    let (Some(bsp), Some(ap)) = (nasm(bsp), nasm(ap)) else { return };
    let platform = irqchip::Platform::new(2);
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    mem.write_slice(&bsp, GuestAddress(0x1000)).unwrap();
    mem.write_slice(&ap, GuestAddress(0x2000)).unwrap();
    let io = Arc::new(Recorder::default());
    let mut ap_vcpu = InterpVcpu::new(&mem, u64::MAX, 1, Some(platform.clone()));
    let kick = ap_vcpu.kicker();
    let ap_io = io.clone();
    let ap_thread = std::thread::spawn(move || {
        let exit = ap_vcpu.run(&*ap_io).unwrap();
        (exit, ap_vcpu.cpu().segs[cpu::CS].selector, ap_vcpu.cpu().halted)
    });
    let mut v = InterpVcpu::new(&mem, u64::MAX, 0, Some(platform));
    let c = v.cpu();
    c.segs[cpu::CS] = Segment::real(0, 0x9b);
    c.rip = 0x1000;
    c.regs[4] = 0x8000;
    let t = std::time::Instant::now();
    while !v.cpu().halted && t.elapsed().as_secs() < 10 {
        v.run_for(&*io, 100_000).unwrap();
    }
    kick.kick();
    let (exit, ap_cs, ap_halted) = ap_thread.join().unwrap();
    assert_eq!(*io.out.lock().unwrap(), vec![(0x10, 0x1234)]);
    assert_eq!(exit, VcpuExit::Stopped);
    assert_eq!(ap_cs, 0x200);
    assert!(ap_halted);
}

#[test]
fn blocks_go_on_through_jumps_and_calls_in_the_page_stepwise_too() {
    // 1000: mov ax, 1; jmp 1008; (1005: mov ax, 0x99); 1008: call 100e; 100b: out 0x10, ax;
    // 100d: hlt; 100e: add ax, 2; 1011: ret
    let code = [
        0xb8, 0x01, 0x00, 0xeb, 0x03, 0xb8, 0x99, 0x00, 0xe8, 0x03, 0x00, 0xe7, 0x10, 0xf4, 0x83, 0xc0, 0x02,
        0xc3,
    ];
    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    v.run_for(&io, 100).unwrap();
    assert_eq!(*io.out.lock().unwrap(), vec![(0x10, 3)]);
    assert!(v.cpu().halted);

    // One instruction at a time: RIP is exact after every stop, followed JMP and CALL too.
    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    let mut rips = vec![];
    for _ in 0..7 {
        v.run_for(&io, 1).unwrap();
        rips.push(v.cpu().rip);
    }
    assert_eq!(rips, vec![0x1003, 0x1008, 0x100e, 0x1011, 0x100b, 0x100d, 0x100e]);
    assert_eq!(v.cpu().regs[4], 0x8000);
    assert_eq!(*io.out.lock().unwrap(), vec![(0x10, 3)]);
}

#[test]
fn a_conditional_jump_taken_inside_a_block_leaves_it() {
    // 1000: mov cx, 3; l: dec cx; jz done; add ax, 1; jmp l; done: out 0x10, ax; hlt
    let code = [0xb9, 0x03, 0x00, 0x49, 0x74, 0x05, 0x83, 0xc0, 0x01, 0xeb, 0xf8, 0xe7, 0x10, 0xf4];
    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    v.run_for(&io, 100).unwrap();
    assert_eq!(*io.out.lock().unwrap(), vec![(0x10, 2)]);
    assert!(v.cpu().halted);
}

#[test]
fn code_written_behind_the_cpu_is_seen_in_the_next_slice() {
    // l: mov ax, 1; out 0x10, ax; jmp l -- then a "device" rewrites the immediate.
    let code = [0xb8, 0x01, 0x00, 0xe7, 0x10, 0xeb, 0xf9];
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    mem.write_slice(&code, GuestAddress(0x1000)).unwrap();
    let mut v = InterpVcpu::new(&mem, u64::MAX, 0, None);
    let c = v.cpu();
    c.segs[cpu::CS] = Segment::real(0, 0x9b);
    c.rip = 0x1000;
    let io = Recorder::default();
    v.run_for(&io, 30).unwrap();
    mem.write_slice(&[0x02], GuestAddress(0x1001)).unwrap();
    io.out.lock().unwrap().clear();
    v.run_for(&io, 30).unwrap();
    let out = io.out.lock().unwrap();
    assert!(!out.is_empty() && out.iter().all(|&(p, v)| p == 0x10 && v == 2), "{out:?}");
}

#[test]
fn a_followed_call_that_writes_its_own_code_page_goes_on_at_the_target() {
    // The stack is in the code's page: the CALL's push drops the page's decoded code.
    // 1000: mov sp, 0x1100; call 1009; (1006: out 0x11, al; hlt) 1009: mov ax, 7; out 0x10, ax; hlt
    let code = [0xbc, 0x00, 0x11, 0xe8, 0x03, 0x00, 0xe6, 0x11, 0xf4, 0xb8, 0x07, 0x00, 0xe7, 0x10, 0xf4];
    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    v.run_for(&io, 100).unwrap();
    assert_eq!(*io.out.lock().unwrap(), vec![(0x10, 7)]);
}

#[test]
fn fused_compare_and_jump_run_whole_or_one_instruction_at_a_time() {
    // 1000: xor ax, ax; l: inc ax; cmp ax, 3; jne l; test ax, ax; jz bad; out 0x10, ax; hlt;
    // bad: hlt
    let code =
        [0x31, 0xc0, 0x40, 0x83, 0xf8, 0x03, 0x75, 0xfa, 0x85, 0xc0, 0x74, 0x03, 0xe7, 0x10, 0xf4, 0xf4];
    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    v.run_for(&io, 100).unwrap();
    assert_eq!(*io.out.lock().unwrap(), vec![(0x10, 3)]);
    assert_eq!(v.instructions, 1 + 3 * 3 + 4);

    let mut v = real_mode_vcpu(&code);
    let io = Recorder::default();
    let mut rips = vec![];
    for _ in 0..8 {
        v.run_for(&io, 1).unwrap();
        rips.push(v.cpu().rip);
    }
    assert_eq!(rips, vec![0x1002, 0x1003, 0x1006, 0x1002, 0x1003, 0x1006, 0x1002, 0x1003]);
    assert_eq!(v.instructions, 8);
}

#[test]
fn a_supervisor_write_with_wp_clear_does_not_make_the_page_writable_for_user_mode() {
    let mut v = real_mode_vcpu(&[0xf4]);
    let c = v.cpu();
    // 32-bit paging: the directory at 0x10000, one table at 0x11000 mapping linear 0x400000 to
    // physical 0x20000 as present, user, read-only, accessed and dirty.
    c.phys_write(0x10000 + 4, 4, 0x11000 | 0x7);
    c.phys_write(0x11000, 4, 0x20000 | 0x1 | 0x4 | 0x20 | 0x40);
    c.cr3 = 0x10000;
    c.cr0 = 0x8000_0001; // PG | PE, WP clear
    c.flush_tlb(true);
    c.cpl = 0;
    assert_eq!(
        c.lin_write(0x40_0000, 4, 0x1234_5678),
        Ok(()),
        "supervisor writes a read-only page with WP clear"
    );
    assert_eq!(c.phys_read(0x20000, 4), 0x1234_5678);
    c.cpl = 3;
    assert_eq!(c.lin_read(0x40_0000, 4), Ok(0x1234_5678), "user mode may read the user page");
    // present | write | user
    assert_eq!(c.lin_write(0x40_0000, 4, 1), Err(Fault::Exc(14, Some(7))));
    assert!(c.write_ptr(0x40_0000, 4).is_none(), "no fast write path for user mode");
    assert_eq!(c.phys_read(0x20000, 4), 0x1234_5678);
}

#[test]
fn a_faulting_instruction_leaves_the_flags_as_they_were() {
    let Some(code) = nasm("bits 16\nstc\nadc dword [ebx], eax\nhlt\n") else { return };
    let mut v = real_mode_vcpu(&code);
    let c = v.cpu();
    // 32-bit paging with CR0.WP: linear 0-4 MiB is identity-mapped for user mode, and linear
    // 0x400000 is a present, user, read-only page.
    c.phys_write(0x10000, 4, 0x12000 | 0x7);
    c.phys_write(0x12000 + 4, 4, 0x1000 | 0x7);
    c.phys_write(0x10000 + 4, 4, 0x11000 | 0x7);
    c.phys_write(0x11000, 4, 0x20000 | 0x1 | 0x4 | 0x20 | 0x40);
    c.phys_write(0x20000, 4, 0x1234_5678);
    c.cr3 = 0x10000;
    c.cr0 = 0x8001_0001; // PG | WP | PE
    c.flush_tlb(true);
    c.cpl = 3;
    c.regs[3] = 0x40_0000;
    c.regs[0] = 0;
    assert!(c.step_uncached().is_ok(), "stc");
    assert!(c.flag(flags::CF));
    // 0x12345678 + 0 + 1 does not carry, so running the add before the faulting write would
    // clear CF.
    assert_eq!(c.step_uncached().err(), Some(Fault::Exc(14, Some(7))));
    assert!(c.flag(flags::CF), "the carry is kept for the instruction's second run");
    assert_eq!(c.phys_read(0x20000, 4), 0x1234_5678);
}

/// Two vCPUs on one memory, each adding to one counter with `lock inc` `n` times; returns the
/// count, or None without nasm.
fn racing_locked_increments(share: bool, n: u32) -> Option<u32> {
    let src = format!(
        r#"
bits 16
org 0x1000
    xor ax, ax
    mov ds, ax
    mov ecx, {n}
l:  lock inc dword [0x3000]
    dec ecx
    jnz l
    cli
    hlt
"#
    );
    let code = nasm(&src)?;
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    mem.write_slice(&code, GuestAddress(0x1000)).unwrap();
    let lock = ExecLock::new();
    let threads: Vec<_> = (0..2u32)
        .map(|id| {
            let mut v = InterpVcpu::new(&mem, u64::MAX, id, None);
            if share {
                v.share_execution(lock.clone());
            }
            let c = v.cpu();
            c.segs[cpu::CS] = Segment::real(0, 0x9b);
            c.rip = 0x1000;
            std::thread::spawn(move || {
                let io = Recorder::default();
                let t = std::time::Instant::now();
                while !v.cpu().halted && t.elapsed().as_secs() < 60 {
                    v.run_for(&io, 1_000_000).unwrap();
                }
                assert!(v.cpu().halted, "vCPU {id} finished its loop");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Some(mem.read_obj::<u32>(GuestAddress(0x3000)).unwrap())
}

#[test]
fn locked_increments_from_two_vcpus_are_atomic() {
    let n = 2_000_000;
    let Some(count) = racing_locked_increments(true, n) else { return };
    assert_eq!(count, 2 * n, "no increment lost");
}
