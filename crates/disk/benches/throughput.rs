//! Sequential and random 4 KiB read/write throughput of each format through the block trait,
//! beside the raw file. Images are made by qemu-img in $TMPDIR (page cache, so this measures the
//! format's own cost, not the disk). Run: `cargo bench -p disk`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use disk::OpenOptions;

const SIZE: u64 = 64 << 20;
const IO: usize = 4096;

fn qemu_img(args: &[&str]) -> bool {
    Command::new("qemu-img").args(args).output().is_ok_and(|o| o.status.success())
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

/// Random offsets (4 KiB aligned) from a fixed seed.
fn offsets(n: usize) -> Vec<u64> {
    let mut x = 0x853c_49e6_748f_ea9bu64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (SIZE / IO as u64)) * IO as u64
        })
        .collect()
}

fn run(name: &str, path: &Path, writable: bool) {
    let d = match disk::open(path, OpenOptions { read_only: !writable, ..Default::default() }) {
        Ok(d) => d,
        Err(e) => {
            println!("{name:<28} open failed: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; IO];
    let n = (SIZE / IO as u64) as usize;
    let seq_read = time(|| {
        for i in 0..n {
            d.read_at(&mut buf, (i * IO) as u64).expect("read");
        }
    });
    let offs = offsets(n);
    let rand_read = time(|| {
        for &o in &offs {
            d.read_at(&mut buf, o).expect("read");
        }
    });
    let mut line = format!(
        "{name:<28} seq read {:>7.0} MiB/s  rand read {:>7.0} MiB/s",
        mib_s(SIZE, seq_read),
        mib_s(SIZE, rand_read)
    );
    if writable {
        buf.fill(0x5a);
        let seq_write = time(|| {
            for i in 0..n {
                d.write_at(&buf, (i * IO) as u64).expect("write");
            }
            d.flush().expect("flush");
        });
        let rand_write = time(|| {
            for &o in &offs {
                d.write_at(&buf, o).expect("write");
            }
            d.flush().expect("flush");
        });
        line += &format!(
            "  seq write {:>7.0} MiB/s  rand write {:>7.0} MiB/s",
            mib_s(SIZE, seq_write),
            mib_s(SIZE, rand_write)
        );
    }
    println!("{line}");
}

/// The best of three runs: the machine is shared, so the fastest run is the format's cost.
fn time(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    if !qemu_img(&["--version"]) {
        println!("skipped: qemu-img not found");
        return;
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("chr-vmm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let raw = dir.join("full.raw");
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8 | 1).collect();
    std::fs::write(&raw, &data).expect("raw");
    let r = raw.to_str().expect("utf8");
    let cases: [(&str, &str, &[&str], bool); 7] = [
        ("raw", "raw", &[], true),
        ("vmdk monolithicSparse", "vmdk", &[], true),
        ("vmdk streamOptimized", "vmdk", &["-o", "subformat=streamOptimized"], false),
        ("qcow2", "qcow2", &[], true),
        ("vdi dynamic", "vdi", &[], true),
        ("vhdx dynamic", "vhdx", &[], false),
        ("vmdk monolithicFlat", "vmdk", &["-o", "subformat=monolithicFlat"], true),
    ];
    println!("allocated data, {} MiB, {IO}-byte requests, through disk::BlockDevice", SIZE >> 20);
    for (i, (name, fmt, opts, writable)) in cases.iter().enumerate() {
        let img = dir.join(format!("b{i}.{fmt}"));
        let s = img.to_str().expect("utf8");
        let mut args = vec!["convert", "-f", "raw", "-O", fmt];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[r, s]);
        assert!(qemu_img(&args), "convert {name}");
        run(name, &img, *writable);
    }
    // Fresh sparse images: writes allocate.
    println!("empty images: reads of unallocated space; the first of the write runs allocates");
    for (name, fmt) in
        [("vmdk (allocating)", "vmdk"), ("qcow2 (allocating)", "qcow2"), ("vdi (allocating)", "vdi")]
    {
        let img = dir.join(format!("e.{fmt}"));
        assert!(qemu_img(&["create", "-q", "-f", fmt, img.to_str().expect("utf8"), "64M"]));
        run(name, &img, true);
    }
    // qcow2 overlay over a sparse VMDK (containerlab): reads go to the backing file.
    let base = dir.join("b1.vmdk");
    let ov = dir.join("ov.qcow2");
    let (b, o) = (base.to_str().expect("utf8"), ov.to_str().expect("utf8"));
    assert!(qemu_img(&["create", "-q", "-f", "qcow2", "-F", "vmdk", "-b", b, o]));
    run("qcow2 over vmdk (reads)", &ov, false);
    let _ = std::fs::remove_dir_all(&dir);
}
