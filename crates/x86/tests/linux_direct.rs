//! A Debian kernel booted directly (64-bit entry) on the interpreter with the userspace
//! irqchip, a serial console and the debug port: how far does it get in a time budget?
//! Boots the test guest's kernel (built by images/test-guest/build.sh); about 30 s here.
//! X86_LINUX_TEST=0 turns it off (a recorded skip). X86_LINUX_SECS sets the time budget (300 s),
//! X86_LINUX_INSNS an instruction budget.

#![allow(clippy::unwrap_used)]

use machine::bus::SharedDevice;
use machine::cmos::{Cmos, CMOS_PORT};
use machine::io::IoBuses;
use machine::irq::{InterruptController, IrqLine};
use machine::linux_boot::{self, KernelBoot};
use machine::memory::MemoryLayout;
use machine::serial::{SerialPort, COM1_IRQ, COM1_PORT};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use x86::InterpVcpu;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(b)?;
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct StderrLog;
impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("[{}] {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}
static LOGGER: StderrLog = StderrLog;

fn shared<T: machine::bus::BusDevice + 'static>(d: T) -> SharedDevice {
    Arc::new(Mutex::new(d))
}

#[test]
fn linux_direct_boot() {
    const NAME: &str = "linux_direct_boot";
    if std::env::var("X86_LINUX_TEST").is_ok_and(|v| v == "0") {
        return test_support::skip(NAME, "X86_LINUX_TEST=0 turns the direct Linux boot off");
    }
    let dir = match test_support::test_guest() {
        Ok(d) => d,
        Err(e) => return test_support::skip(NAME, &format!("the test guest could not be built: {e}")),
    };
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let budget: u64 = std::env::var("X86_LINUX_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let bios = vec![0u8; 256 << 10];
    let layout = MemoryLayout::new(256 << 20, bios.len() as u64).unwrap();
    let mem = layout.build(&bios).unwrap();
    let boot = KernelBoot {
        kernel: dir.join("vmlinuz"),
        initrd: Some(dir.join("initrd.gz")),
        cmdline:
            "console=ttyS0,115200 earlyprintk=serial,ttyS0,115200 noapic nolapic_timer acpi=off loglevel=7"
                .into(),
    };
    let cmdline = std::env::var("X86_LINUX_CMDLINE").unwrap_or(boot.cmdline.clone());
    let boot = KernelBoot { cmdline, ..boot };
    let entry = linux_boot::load(&mem, &layout, &boot).unwrap();
    let platform = irqchip::Platform::new(1);
    let irq: Arc<dyn InterruptController> = platform.clone();
    let buses = IoBuses::default();
    let devs = platform.bus_devices();
    for r in devs.pio {
        buses.pio.insert(r.base, r.len, r.device).unwrap();
    }
    for r in devs.mmio {
        buses.mmio.insert(r.base, r.len, r.device).unwrap();
    }
    let serial = Buf::default();
    buses.pio.insert(CMOS_PORT, 2, shared(Cmos::new(layout.low_end, layout.high_size(), 1))).unwrap();
    buses
        .pio
        .insert(
            COM1_PORT,
            8,
            shared(SerialPort::new(IrqLine::new(irq.clone(), COM1_IRQ), Box::new(serial.clone()))),
        )
        .unwrap();
    let mut vcpu = InterpVcpu::new(&mem, layout.bios_base(), 0, Some(platform.clone()));
    vcpu.set_long_mode_entry(&entry);
    let t = Instant::now();
    let chunk = if std::env::var("X86_TRACE").is_ok() { 1_000_000 } else { 10_000_000 };
    // X86_LINUX_INSNS stops after that many guest instructions (for host instruction counts
    // under cachegrind, which wall-clock budgets make meaningless).
    let max_insns: u64 =
        std::env::var("X86_LINUX_INSNS").ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    while t.elapsed().as_secs() < budget && vcpu.instructions < max_insns {
        let exit = vcpu.run_for(&buses, chunk).unwrap();
        if exit != machine::vcpu::VcpuExit::Stopped {
            eprintln!("exit: {exit:?}");
            break;
        }
        if std::env::var("X86_TRACE").is_ok() {
            let c = vcpu.cpu();
            let secs = t.elapsed().as_secs_f64();
            eprintln!("t={secs:.2} rip {:#x} cs {:#x} halted {}", c.rip, c.segs[1].selector, c.halted);
        }
        let out = String::from_utf8_lossy(&serial.0.lock().unwrap()).to_string();
        if out.contains("ogin:") || out.contains("Kernel panic") {
            break;
        }
        if let Ok(marker) = std::env::var("X86_STOP_AFTER") {
            if out.contains(&marker) {
                // Let it run a little further, then show the code it is executing.
                vcpu.run_for(&buses, 300_000_000).unwrap();
                let c = vcpu.cpu();
                let rip = c.rip;
                let mut bytes = Vec::new();
                for i in 0..192u64 {
                    bytes.push(c.lin_read(rip - 96 + i, 1).unwrap_or(0) as u8);
                }
                let mut d = iced_x86::Decoder::with_ip(64, &bytes, rip - 96, 0);
                for ins in &mut d {
                    eprintln!("{:#x}: {:?}", ins.ip(), ins.code());
                }
                eprintln!(
                    "rax {:#x} rcx {:#x} rdx {:#x} rdi {:#x} rsi {:#x}",
                    c.regs[0], c.regs[1], c.regs[2], c.regs[7], c.regs[6]
                );
                break;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let rip = vcpu.cpu().rip;
    eprintln!(
        "\n{} instructions in {secs:.1} s ({:.1} M/s); rip {:#x}",
        vcpu.instructions,
        vcpu.instructions as f64 / secs / 1e6,
        rip
    );
}
