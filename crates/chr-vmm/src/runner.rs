//! `chr-vmm run`: choose the accelerator, open the disk and console, then build and run the
//! machine, rebuilding it whenever the guest resets.

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

use machine::linux_boot::KernelBoot;
use machine::power::PowerEvent;
use machine::vcpu::VcpuExit;

use crate::cli::{Accel, RunArgs};
use crate::console::Console;
use crate::events::Event;
use crate::machine_builder::{self, AccelKind, MachineConfig};
use crate::{firmware, signals, VmError};

/// Whether this build can run guests on the interpreter.
pub const INTERPRETER_AVAILABLE: bool = true;

/// `chr-vmm accel`: prints what `--accel auto` picks; fails when that cannot run here.
pub fn report_accel() -> Result<u8, VmError> {
    let kind = choose_accel(Accel::Auto)?;
    match kind {
        AccelKind::Kvm => println!("kvm"),
        AccelKind::Interp if INTERPRETER_AVAILABLE => {
            println!("interp");
            println!("tiers: {}", tiers());
        }
        AccelKind::Interp => {
            println!("none");
            return Err(VmError::NoInterpreter);
        }
    }
    Ok(0)
}

/// Which interpreter tiers run: the compiled one as `CHR_JIT` (or `--jit`) sets it.
fn tiers() -> String {
    #[cfg(feature = "jit")]
    if let Some(t) = x86::jit_threshold() {
        return format!("interpreter, compiled (Cranelift, blocks run {t} times)");
    }
    "interpreter".into()
}

/// Sets the compiled tier for the vCPUs built from now on.
fn apply_jit(setting: crate::cli::JitSetting) -> Result<(), VmError> {
    #[cfg(feature = "jit")]
    {
        x86::set_jit(setting.0);
        Ok(())
    }
    #[cfg(not(feature = "jit"))]
    match setting.0 {
        None => Ok(()),
        Some(_) => Err(VmError::Build(
            "this build has no compiled tier: use --jit off, or build chr-vmm with `--features jit`".into(),
        )),
    }
}

/// Prints what the compiled tier did (to stderr, for benchmarks).
fn report_jit() {
    #[cfg(feature = "jit")]
    if x86::jit_threshold().is_some() {
        let s = x86::jit_stats();
        eprintln!(
            "jit: {} blocks ({} instructions) compiled in {:.3} s, {} KiB of code, {} arena flushes",
            s.blocks,
            s.instructions,
            s.compile_ns as f64 / 1e9,
            s.code_bytes >> 10,
            s.flushes
        );
    }
}

/// Picks the accelerator for `requested`, logging the choice and why.
fn choose_accel(requested: Accel) -> Result<AccelKind, VmError> {
    #[cfg(target_arch = "x86_64")]
    let probe = kvm::probe();
    match requested {
        Accel::Interp => Ok(AccelKind::Interp),
        #[cfg(target_arch = "x86_64")]
        Accel::Kvm => {
            match &probe {
                kvm::Usability::Usable(why) => log::info!("accelerator: KVM ({why})"),
                kvm::Usability::Unusable(why) => {
                    log::warn!("accelerator: KVM as requested, although {why}; the guest may stop early")
                }
            }
            Ok(AccelKind::Kvm)
        }
        #[cfg(target_arch = "x86_64")]
        Accel::Auto => match probe {
            kvm::Usability::Usable(why) => {
                log::info!("accelerator: KVM ({why})");
                Ok(AccelKind::Kvm)
            }
            kvm::Usability::Unusable(why) => {
                log::info!("accelerator: interpreter, because {why}");
                Ok(AccelKind::Interp)
            }
        },
        #[cfg(not(target_arch = "x86_64"))]
        Accel::Kvm => Err(VmError::NoAccelerator("KVM can run x86 guests only on x86_64 hosts".into())),
        #[cfg(not(target_arch = "x86_64"))]
        Accel::Auto => {
            log::info!("accelerator: interpreter, because this host is not x86_64");
            Ok(AccelKind::Interp)
        }
    }
}

/// Runs the VM described by `args`; returns the process exit status.
pub fn run(args: RunArgs) -> Result<u8, VmError> {
    apply_jit(args.jit)?;
    let r = run_vm(args);
    report_jit();
    r
}

fn run_vm(args: RunArgs) -> Result<u8, VmError> {
    let (tx, rx) = channel();
    signals::start(tx.clone())?;
    check_host_memory(args.memory)?;
    if args.nets.len() > machine_builder::MAX_NICS {
        return Err(VmError::Build(format!(
            "at most {} --net cards fit on the PCI bus",
            machine_builder::MAX_NICS
        )));
    }
    let accel = choose_accel(args.accel)?;
    let bios_path = firmware::find(args.firmware.as_deref(), firmware::BIOS_NAME)?;
    let bios = firmware::load(&bios_path)?;
    log::info!("firmware: {}", bios_path.display());
    let options = disk::OpenOptions { snapshot: args.snapshot, ..Default::default() };
    let disk = match &args.overlay {
        Some(overlay) => disk::open_with_overlay(&args.disk, overlay, options)?,
        None => disk::open(&args.disk, options)?,
    };
    // With --snapshot or --overlay the opened device is the qcow2 layer; name the image's own
    // format, which is what the user gave.
    let format = match (args.snapshot || args.overlay.is_some(), disk::detect_format(&args.disk)) {
        (true, Ok(base)) => base.to_string(),
        _ => disk.format().to_string(),
    };
    let mode = if args.snapshot {
        ", writes discarded at exit".to_string()
    } else if let Some(overlay) = &args.overlay {
        format!(", writes kept in {}", overlay.display())
    } else if disk.read_only() {
        ", read-only".to_string()
    } else {
        String::new()
    };
    log::info!("disk: {} ({format}, {} MiB{mode})", args.disk.display(), disk.size() >> 20);
    let disk: Arc<dyn disk::BlockDevice> = Arc::from(disk);
    let disk_serial = virtio::block::Block::serial_for(&args.disk);
    let console = Console::open(&args.serial, tx.clone(), args.ready_file.clone())?;
    // The VGA adapter and its VNC server live as long as the VMM, across guest resets.
    let (vga, _vnc) = match &args.vnc {
        Some(addr) => {
            let rom_path = firmware::find_beside(args.firmware.as_deref(), firmware::VGA_BIOS_NAME)?;
            let rom = firmware::load(&rom_path)?;
            let vga = display::StdVga::new();
            let link = display::KeyboardLink::new();
            let server = display::start_vnc(addr, args.vnc_password.clone(), vga.display(), link.sink())?;
            log::info!("VNC: {} (VGA BIOS {})", addr, rom_path.display());
            (Some((vga, link, Arc::new(rom))), Some(server))
        }
        None => (None, None),
    };
    let cfg = MachineConfig {
        memory: args.memory,
        cpus: args.cpus,
        accel,
        bios: Arc::new(bios),
        firmware_log: args.firmware_log.clone(),
        console_out: console.out.clone(),
        kernel: args.kernel.clone().map(|kernel| KernelBoot {
            kernel,
            initrd: args.initrd.clone(),
            cmdline: args.cmdline.clone(),
        }),
        disk: (disk, disk_serial),
        nets: args.nets.clone(),
        vga,
    };
    // SIGTERMs seen so far: counted across guest resets, so that the second one always stops.
    let mut terms = 0u32;
    loop {
        match boot_once(&cfg, &console, &rx, &tx, &mut terms)? {
            Outcome::Reset => {
                log::info!("guest reset: rebuilding the machine");
                console.prompt().rearm();
            }
            Outcome::PowerOff => {
                log::info!("guest powered off");
                return Ok(0);
            }
            Outcome::Quit(code) => return Ok(code),
        }
    }
}

/// Refuses guest RAM larger than the host's, which would only fail later, inside the guest.
fn check_host_memory(memory: u64) -> Result<(), VmError> {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return Ok(());
    };
    let total_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    match total_kib {
        Some(kib) if memory > kib * 1024 => {
            Err(VmError::TooMuchMemory { asked: memory >> 20, host: kib >> 10 })
        }
        _ => Ok(()),
    }
}

enum Outcome {
    Reset,
    PowerOff,
    Quit(u8),
}

fn boot_once(
    cfg: &MachineConfig,
    console: &Console,
    rx: &Receiver<Event>,
    tx: &std::sync::mpsc::Sender<Event>,
    terms: &mut u32,
) -> Result<Outcome, VmError> {
    let mut machine = machine_builder::build(cfg)?;
    *console.input.lock().unwrap_or_else(|e| e.into_inner()) = Some(machine.serial.clone());
    let power = machine.power.clone();
    let mut running = 0usize;
    let mut handles = Vec::new();
    for (id, mut vcpu) in machine.vcpus.drain(..).enumerate() {
        let io = machine.buses.clone();
        let tx = tx.clone();
        handles.push(std::thread::Builder::new().name(format!("vcpu{id}")).spawn(move || {
            let result = vcpu.run(&io);
            let _ = tx.send(Event::VcpuDone(id as u8, result));
        })?);
        running += 1;
    }
    let mut quit: Option<u8> = None;
    let mut failure: Option<VmError> = None;
    while running > 0 {
        let Ok(event) = rx.recv() else { break };
        match event {
            Event::VcpuDone(id, result) => {
                running -= 1;
                match result {
                    Ok(VcpuExit::Reset) => power.request(PowerEvent::Reset),
                    Ok(VcpuExit::PowerOff) => power.request(PowerEvent::PowerOff),
                    Ok(VcpuExit::Stopped) => {
                        if power.pending().is_none() && quit.is_none() && failure.is_none() {
                            log::debug!("vCPU {id} stopped");
                        }
                    }
                    Err(e) => {
                        log::error!("vCPU {id}: {e}");
                        if failure.is_none() {
                            failure = Some(e.into());
                        }
                        power.kick_all();
                    }
                }
            }
            Event::Quit => {
                log::info!("quit requested on the console");
                quit = Some(0);
                power.kick_all();
            }
            Event::Signal(sig) if sig == libc::SIGTERM && *terms == 0 => {
                *terms += 1;
                let mut pm = machine.acpi_pm.lock().unwrap_or_else(|e| e.into_inner());
                if pm.power_button_enabled() {
                    log::info!("SIGTERM: pressing the ACPI power button; a second SIGTERM stops at once");
                    pm.press_power_button();
                } else {
                    log::info!("SIGTERM: the guest has not enabled its ACPI power button; stopping the VM");
                    quit = Some(0);
                    power.kick_all();
                }
            }
            Event::Signal(sig) => {
                log::info!("signal {sig}: stopping the VM now");
                quit = Some(128u8.saturating_add(sig as u8));
                power.kick_all();
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    *console.input.lock().unwrap_or_else(|e| e.into_inner()) = None;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(code) = quit {
        return Ok(Outcome::Quit(code));
    }
    Ok(match power.pending() {
        Some(PowerEvent::Reset) => Outcome::Reset,
        Some(PowerEvent::PowerOff) => Outcome::PowerOff,
        None => Outcome::Quit(0),
    })
}
