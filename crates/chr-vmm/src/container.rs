//! `chr-vmm container`: the container image's entrypoint. It turns the container it runs in into
//! `chr-vmm run` options, so that `docker run` needs nothing beyond ports and volumes, and no
//! privileges:
//! - the disk: `$CHR_DISK`, or the one disk image in `/image`;
//! - guest writes: a qcow2 overlay in the `/data` volume, named after the image and its content
//!   (`$CHR_OVERLAY` names another file, `none` writes to the disk itself), so the router keeps
//!   its configuration across container restarts while the CHR image stays read-only, and a new
//!   image never reads an overlay made over another;
//! - ether1: user-mode networking with RouterOS's TCP ports forwarded on every address of the
//!   container (`$CHR_NET` replaces it), so `docker run -p 8728:8728` reaches the API;
//! - ether2 and on: one `packet` card per further container interface `eth1`, `eth2`, ... in
//!   order (what containerlab wires), each with its interface's MTU; with `$CLAB_INTFS` set it
//!   first waits for that many to appear;
//! - readiness: `/tmp/chr-vmm.ready` exists while the guest is at its login prompt, which the
//!   image's health check (`chr-vmm ready`) looks at;
//! - `$CHR_MEMORY`, `$CHR_CPUS`, `$CHR_ACCEL`, `$CHR_SERIAL` and `$CHR_VNC` set those options;
//!   arguments after `container` are passed on to `run` as they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `chr-vmm container` options.
#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    /// More `chr-vmm run` options, after those made from the environment (e.g. `--vnc 0.0.0.0:5900`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "RUN OPTIONS")]
    pub extra: Vec<String>,
}

/// Where the container's disk image is looked for.
pub const IMAGE_DIR: &str = "/image";
/// The volume that keeps the overlay.
pub const DATA_DIR: &str = "/data";
/// The ready file the entrypoint asks for and `chr-vmm ready` (the image's health check) looks at.
pub const READY_FILE: &str = "/tmp/chr-vmm.ready";
/// How long to wait for `$CLAB_INTFS` interfaces by default.
const DEFAULT_WAIT_SECS: u64 = 120;
/// The file names taken for disk images.
const DISK_EXTENSIONS: [&str; 6] = ["vmdk", "img", "raw", "vdi", "vhdx", "qcow2"];

/// Why the container could not be turned into a VM.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No disk image was found.
    #[error("no disk image in {dir}: mount your CHR image there (docker run -v $PWD/chr-7.16.vmdk:{dir}/chr.vmdk:ro ...) or set CHR_DISK to its path")]
    NoDisk {
        /// Where it was looked for.
        dir: String,
    },
    /// More than one disk image was found.
    #[error("{dir} holds several disk images ({names}); set CHR_DISK to the one to boot")]
    SeveralDisks {
        /// Where.
        dir: String,
        /// Their names.
        names: String,
    },
    /// The image directory could not be read.
    #[error("cannot read {dir}: {source}; mount the CHR image at {dir} or set CHR_DISK to its path")]
    ImageDir {
        /// The directory.
        dir: String,
        /// The system's answer.
        source: std::io::Error,
    },
    /// A variable holds something that is not a number.
    #[error("{name}={value:?} is not a whole number")]
    NotANumber {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// Interfaces containerlab announced did not appear.
    #[error("CLAB_INTFS={want}, but only {found} of eth1..eth{want} appeared within {secs} s; check the topology's links (or raise CHR_WAIT_SECS)")]
    MissingInterfaces {
        /// How many were announced.
        want: usize,
        /// How many appeared.
        found: usize,
        /// How long was waited.
        secs: u64,
    },
    /// The overlay's directory could not be made.
    #[error("cannot create {dir} for the overlay: {source}; mount a writable volume at {DATA_DIR}, set CHR_OVERLAY to a writable path, or CHR_OVERLAY=none")]
    DataDir {
        /// The directory.
        dir: String,
        /// The system's answer.
        source: std::io::Error,
    },
    /// CHR_OVERLAY=none on a disk that cannot be written.
    #[error("CHR_OVERLAY=none writes to the disk itself, but {disk} cannot be written ({source}); mount it read-write or leave CHR_OVERLAY unset to keep writes on /data")]
    DiskNotWritable {
        /// The disk.
        disk: String,
        /// The system's answer.
        source: std::io::Error,
    },
    /// The options made from the environment do not parse.
    #[error("the options made from the environment are not valid: {0}")]
    Options(String),
}

/// What the entrypoint reads from its container.
#[derive(Debug, Default)]
pub struct Environment {
    /// The `CHR_*` and `CLAB_*` variables.
    pub vars: BTreeMap<String, String>,
    /// The container's data interfaces (`eth1`, `eth2`, ...) in order, with their MTUs.
    pub interfaces: Vec<(String, u16)>,
}

impl Environment {
    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn number(&self, name: &'static str) -> Result<Option<u64>, ContainerError> {
        self.var(name)
            .map(|v| v.parse::<u64>().map_err(|_| ContainerError::NotANumber { name, value: v.to_string() }))
            .transpose()
    }
}

/// The overlay for `disk`: `$CHR_OVERLAY`, none for `none`, else on the data volume, named after
/// the disk and `id` (see [`image_id`]), so that a different image never reads an overlay made
/// over another one (which would corrupt what the guest sees).
fn overlay_path(env: &Environment, disk: &Path, id: &str) -> Option<PathBuf> {
    match env.var("CHR_OVERLAY") {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => {
            let name = disk.file_name().map_or_else(|| "disk".into(), |n| n.to_string_lossy().into_owned());
            Some(Path::new(DATA_DIR).join(format!("{name}.{id}.overlay.qcow2")))
        }
    }
}

/// Bytes read from the start of an image for [`image_id`], and from each of its samples.
const ID_HEAD: usize = 1 << 20;
const ID_SAMPLE: usize = 64 << 10;
const ID_SAMPLES: u64 = 16;

/// A short name for an image's content: FNV-1a over its length, its first MiB (where VMDK, VDI
/// and VHDX keep their unique IDs) and 16 samples spread over the rest. A new CHR version put
/// under the same file name gets a new overlay; the same image, copied again, keeps its own.
pub fn image_id(disk: &Path) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(disk)?;
    let len = f.metadata()?.len();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    mix(&len.to_le_bytes());
    let mut buf = Vec::with_capacity(ID_HEAD);
    f.by_ref().take(ID_HEAD as u64).read_to_end(&mut buf)?;
    mix(&buf);
    for i in 1..=ID_SAMPLES {
        f.seek(SeekFrom::Start(len / (ID_SAMPLES + 1) * i))?;
        buf.clear();
        f.by_ref().take(ID_SAMPLE as u64).read_to_end(&mut buf)?;
        mix(&buf);
    }
    Ok(format!("{:012x}", hash >> 16))
}

/// The `chr-vmm run` command line for `disk` (whose content is `id`) in `env`, `extra` appended.
pub fn run_argv(env: &Environment, disk: &Path, id: &str, extra: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = vec!["chr-vmm".into(), "run".into()];
    let mut opt = |name: &str, value: &str| {
        argv.push(name.into());
        argv.push(value.into());
    };
    opt("--memory", env.var("CHR_MEMORY").unwrap_or("256M"));
    opt("--cpus", env.var("CHR_CPUS").unwrap_or("1"));
    opt("--accel", env.var("CHR_ACCEL").unwrap_or("auto"));
    opt("--jit", env.var("CHR_JIT").unwrap_or("off"));
    opt("--serial", env.var("CHR_SERIAL").unwrap_or("stdio"));
    if let Some(vnc) = env.var("CHR_VNC") {
        opt("--vnc", vnc);
    }
    opt("--net", env.var("CHR_NET").unwrap_or("user,routeros"));
    for (ifname, mtu) in &env.interfaces {
        opt("--net", &format!("packet={ifname},mtu={mtu}"));
    }
    if let Some(overlay) = overlay_path(env, disk, id) {
        opt("--overlay", &overlay.to_string_lossy());
    }
    opt("--ready-file", READY_FILE);
    argv.extend(extra.iter().cloned());
    argv.push(disk.to_string_lossy().into_owned());
    argv
}

/// The one disk image in `dir`.
pub fn find_disk(dir: &Path) -> Result<PathBuf, ContainerError> {
    let shown = dir.display().to_string();
    let entries =
        std::fs::read_dir(dir).map_err(|source| ContainerError::ImageDir { dir: shown.clone(), source })?;
    let mut disks: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| DISK_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    disks.sort();
    match disks.len() {
        0 => Err(ContainerError::NoDisk { dir: shown }),
        1 => Ok(disks.remove(0)),
        _ => Err(ContainerError::SeveralDisks {
            dir: shown,
            names: disks
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The container's data interfaces under `sys_net` (normally /sys/class/net): `eth1`, `eth2`,
/// ... in numeric order, each with its MTU (clamped to what a card takes).
pub fn data_interfaces(sys_net: &Path) -> Vec<(String, u16)> {
    let Ok(entries) = std::fs::read_dir(sys_net) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String, u16)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: u32 = name.strip_prefix("eth")?.parse().ok().filter(|&n| n >= 1)?;
            let mtu = std::fs::read_to_string(e.path().join("mtu"))
                .ok()
                .and_then(|m| m.trim().parse::<u32>().ok())
                .map_or(net::DEFAULT_MTU, |m| {
                    u16::try_from(m.clamp(u32::from(net::MIN_MTU), u32::from(net::MAX_MTU)))
                        .unwrap_or(net::MAX_MTU)
                });
            Some((n, name, mtu))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, name, mtu)| (name, mtu)).collect()
}

/// Waits until `eth1..eth{want}` all exist under `sys_net`, up to `timeout`; returns how many
/// of them were there at the end.
fn wait_interfaces(sys_net: &Path, want: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let found = (1..=want).filter(|n| sys_net.join(format!("eth{n}")).exists()).count();
        if found == want || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// With `CHR_OVERLAY=none` the guest writes to the disk itself, which must allow it.
fn check_writable(disk: &Path) -> Result<(), ContainerError> {
    match std::fs::OpenOptions::new().write(true).open(disk) {
        Ok(_) => Ok(()),
        // A missing disk is reported by `run`, with its own advice.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ContainerError::DiskNotWritable { disk: disk.display().to_string(), source }),
    }
}

/// Reads the real container: environment, interfaces (after waiting for `$CLAB_INTFS`).
fn read_environment() -> Result<Environment, ContainerError> {
    let mut env = Environment {
        vars: std::env::vars().filter(|(k, _)| k.starts_with("CHR_") || k.starts_with("CLAB_")).collect(),
        interfaces: Vec::new(),
    };
    let sys_net = Path::new("/sys/class/net");
    if let Some(want) = env.number("CLAB_INTFS")? {
        let want = usize::try_from(want).unwrap_or(usize::MAX);
        let secs = env.number("CHR_WAIT_SECS")?.unwrap_or(DEFAULT_WAIT_SECS);
        log::info!("container: waiting up to {secs} s for eth1..eth{want} (CLAB_INTFS)");
        let found = wait_interfaces(sys_net, want, Duration::from_secs(secs));
        if found < want {
            return Err(ContainerError::MissingInterfaces { want, found, secs });
        }
    }
    env.interfaces = data_interfaces(sys_net);
    Ok(env)
}

/// The `run` options for this container, checked by the same parser as the command line.
pub fn run_args(args: &ContainerArgs) -> Result<crate::cli::RunArgs, ContainerError> {
    let env = read_environment()?;
    let disk = match env.var("CHR_DISK") {
        Some(d) => PathBuf::from(d),
        None => find_disk(Path::new(IMAGE_DIR))?,
    };
    // An unreadable disk gets a fixed name here and `run`'s own error right after.
    let id = image_id(&disk).unwrap_or_else(|_| "unread".into());
    match overlay_path(&env, &disk, &id) {
        Some(overlay) => {
            if let Some(dir) = overlay.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|source| ContainerError::DataDir { dir: dir.display().to_string(), source })?;
            }
        }
        None => check_writable(&disk)?,
    }
    let argv = run_argv(&env, &disk, &id, &args.extra);
    log::info!("container: {}", argv.join(" "));
    use clap::Parser;
    match crate::cli::Cli::try_parse_from(&argv) {
        Ok(crate::cli::Cli { command: crate::cli::Command::Run(run), .. }) => Ok(run),
        Ok(_) => Err(ContainerError::Options("not a run command".into())),
        Err(e) => Err(ContainerError::Options(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], interfaces: &[(&str, u16)]) -> Environment {
        Environment {
            vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            interfaces: interfaces.iter().map(|(n, m)| (n.to_string(), *m)).collect(),
        }
    }

    #[test]
    fn defaults_forward_routeros_and_keep_writes_on_the_volume() {
        let argv = run_argv(&env(&[], &[]), Path::new("/image/chr-7.16.vmdk"), "0123456789ab", &[]);
        assert_eq!(
            argv.join(" "),
            "chr-vmm run --memory 256M --cpus 1 --accel auto --jit off --serial stdio --net user,routeros \
             --overlay /data/chr-7.16.vmdk.0123456789ab.overlay.qcow2 --ready-file /tmp/chr-vmm.ready /image/chr-7.16.vmdk"
        );
    }

    #[test]
    fn variables_interfaces_and_extra_options() {
        let e = env(
            &[
                ("CHR_MEMORY", "1G"),
                ("CHR_CPUS", "2"),
                ("CHR_ACCEL", "interp"),
                ("CHR_SERIAL", "telnet:0.0.0.0:5000"),
                ("CHR_VNC", "0.0.0.0:5900"),
                ("CHR_NET", "user,routeros=10000"),
                ("CHR_OVERLAY", "none"),
            ],
            &[("eth1", 9000), ("eth2", 1500)],
        );
        let argv = run_argv(&e, Path::new("/d.img"), "x", &["--firmware".into(), "/fw.bin".into()]);
        assert_eq!(
            argv.join(" "),
            "chr-vmm run --memory 1G --cpus 2 --accel interp --jit off --serial telnet:0.0.0.0:5000 --vnc 0.0.0.0:5900 \
             --net user,routeros=10000 --net packet=eth1,mtu=9000 --net packet=eth2,mtu=1500 \
             --ready-file /tmp/chr-vmm.ready --firmware /fw.bin /d.img"
        );
        use clap::Parser;
        assert!(crate::cli::Cli::try_parse_from(&argv).is_ok(), "the run parser takes it");
        let custom = run_argv(&env(&[("CHR_OVERLAY", "/v/o.qcow2")], &[]), Path::new("/d.img"), "x", &[]);
        assert!(custom.join(" ").contains("--overlay /v/o.qcow2 --ready-file"));
    }

    #[test]
    fn the_one_disk_image_is_found() {
        let dir = tempdir("disks");
        assert!(matches!(find_disk(&dir), Err(ContainerError::NoDisk { .. })));
        std::fs::write(dir.join("README.txt"), "").unwrap();
        std::fs::write(dir.join("chr-7.16.VMDK"), "").unwrap();
        assert_eq!(find_disk(&dir).unwrap(), dir.join("chr-7.16.VMDK"));
        std::fs::write(dir.join("chr-6.49.vdi"), "").unwrap();
        let err = find_disk(&dir).unwrap_err().to_string();
        assert!(err.contains("chr-6.49.vdi, chr-7.16.VMDK") && err.contains("CHR_DISK"), "{err}");
        let missing = find_disk(&dir.join("nope")).unwrap_err().to_string();
        assert!(missing.contains("mount the CHR image"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn data_interfaces_in_numeric_order_with_their_mtus() {
        let dir = tempdir("sysnet");
        for (name, mtu) in
            [("lo", "65536"), ("eth0", "1500"), ("eth10", "1500"), ("eth2", "9500"), ("eth1", "x")]
        {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("mtu"), mtu).unwrap();
        }
        std::fs::create_dir_all(dir.join("ethx")).unwrap();
        assert_eq!(
            data_interfaces(&dir),
            vec![("eth1".into(), 1500), ("eth2".into(), 9000), ("eth10".into(), 1500)]
        );
        assert_eq!(wait_interfaces(&dir, 2, Duration::ZERO), 2);
        assert_eq!(wait_interfaces(&dir, 3, Duration::ZERO), 2, "eth3 is missing");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writing_to_the_disk_itself_needs_a_writable_disk() {
        let dir = tempdir("writable");
        let disk = dir.join("chr.img");
        std::fs::write(&disk, "").unwrap();
        assert!(check_writable(&disk).is_ok());
        assert!(check_writable(&dir.join("missing.img")).is_ok(), "left to run's own error");
        // A directory cannot be opened for writing, even by root (who ignores file modes).
        let err = check_writable(&dir).unwrap_err().to_string();
        assert!(err.contains("CHR_OVERLAY=none") && err.contains("read-write"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn image_ids_follow_content_not_names() {
        let dir = tempdir("ids");
        let (a, b, c) = (dir.join("a.img"), dir.join("b.img"), dir.join("c.img"));
        let mut data = vec![7u8; 8 << 20];
        std::fs::write(&a, &data).unwrap();
        std::fs::write(&b, &data).unwrap();
        // Another version: one byte changed deep inside (in a sample), then only the length.
        data[(8 << 20) / 17 * 5 + 3] = 8;
        std::fs::write(&c, &data).unwrap();
        let id = image_id(&a).unwrap();
        assert_eq!(id.len(), 12);
        assert_eq!(image_id(&b).unwrap(), id, "a copy keeps its overlay");
        assert_ne!(image_id(&c).unwrap(), id);
        std::fs::write(&c, &data[..data.len() - 1]).unwrap();
        assert_ne!(image_id(&c).unwrap(), id);
        std::fs::write(&c, b"tiny").unwrap();
        assert!(image_id(&c).is_ok(), "a file shorter than the samples");
        assert!(image_id(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chr-vmm-container-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
