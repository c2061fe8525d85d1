//! chr-vmm: run MikroTik RouterOS CHR without QEMU.

mod bench;
mod bench_net;
mod cli;
mod console;
mod container;
mod events;
mod firmware;
mod logger;
mod machine_builder;
mod prompt;
mod runner;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BenchCommand, Cli, Command};

/// Everything that can stop a VM from being built or run.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Firmware problems.
    #[error(transparent)]
    Firmware(#[from] firmware::FirmwareError),
    /// Guest memory problems.
    #[error(transparent)]
    Memory(#[from] machine::memory::MemoryError),
    /// Disk problems.
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    /// Console problems.
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    /// fw_cfg problems (a programming error, reported rather than panicking).
    #[error("cannot set up the firmware configuration: {0}")]
    FwCfg(#[from] machine::fw_cfg::FwCfgError),
    /// Direct kernel boot problems.
    #[error(transparent)]
    Boot(#[from] machine::linux_boot::BootError),
    /// VNC problems.
    #[error(transparent)]
    Vnc(#[from] display::VncError),
    /// Network backend problems.
    #[error(transparent)]
    Net(#[from] net::OpenError),
    /// The container entrypoint's problems.
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    /// Network benchmark problems.
    #[error(transparent)]
    BenchNet(#[from] bench_net::BenchNetError),
    /// KVM problems.
    #[cfg(target_arch = "x86_64")]
    #[error(transparent)]
    Kvm(#[from] kvm::KvmError),
    /// A vCPU failed.
    #[error(transparent)]
    Vcpu(#[from] machine::vcpu::VcpuError),
    /// More guest RAM than the host has.
    #[error(
        "{asked} MiB of guest memory is more than this host's {host} MiB; lower --memory (CHR runs in 256M)"
    )]
    TooMuchMemory { asked: u64, host: u64 },
    /// No accelerator is available.
    #[error("no usable KVM on this host ({0}) and the x86 interpreter is not built into this chr-vmm yet; run on a host with KVM")]
    NoAccelerator(String),
    /// The interpreter was asked for but is not wired yet.
    #[error("the x86 interpreter (--accel interp) is not available in this build yet; use --accel kvm on a host with KVM")]
    NoInterpreter,
    /// Something else while building the machine.
    #[error("cannot build the machine: {0}")]
    Build(String),
    /// A thread could not be started.
    #[error("cannot start a VMM thread: {0}")]
    Thread(#[from] std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logger::init(cli.log_level);
    let result = match cli.command {
        Command::Run(args) => runner::run(args),
        Command::Bench(BenchCommand::Boot(args)) => bench::boot(args),
        Command::Bench(BenchCommand::Net(args)) => bench_net::run(args).map_err(VmError::from),
        Command::Accel => runner::report_accel(),
        Command::Ready { file } => Ok(if file.exists() {
            0
        } else {
            eprintln!(
                "chr-vmm: the guest has not shown its login prompt yet ({} is missing)",
                file.display()
            );
            1
        }),
        Command::Container(args) => container::run_args(&args).map_err(VmError::from).and_then(runner::run),
        Command::Info { disk, json } => disk::info(&disk).map_err(VmError::from).map(|info| {
            if json {
                println!("{}", info.to_json());
            } else {
                print!("{info}");
            }
            0
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("chr-vmm: {e}");
            ExitCode::from(1)
        }
    }
}
