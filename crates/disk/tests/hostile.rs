//! Damaged images: every mutation of a header or table gives an error or some data, never a
//! panic, a huge allocation or a hang.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use disk::{DiskError, OpenOptions};

fn qemu_img(args: &[&str]) -> bool {
    Command::new("qemu-img").args(args).output().is_ok_and(|o| o.status.success())
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("chr-vmm-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("dir");
    p
}

/// xorshift: deterministic, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Opens `path` read-only and reads a few places; errors are fine.
fn poke(path: &Path) -> Result<(), DiskError> {
    let d = disk::open(path, OpenOptions { read_only: true, force_share: true, ..Default::default() })?;
    let mut buf = vec![0u8; 256 * 1024];
    let size = d.size();
    for at in [0, size / 2, size.saturating_sub(buf.len() as u64)] {
        let n = (buf.len() as u64).min(size - at.min(size)) as usize;
        d.read_at(&mut buf[..n], at)?;
    }
    let _ = disk::info(path).map(|i| i.to_json());
    Ok(())
}

#[test]
fn mutated_metadata_never_panics() {
    if !qemu_img(&["--version"]) {
        test_support::skip("mutated_metadata_never_panics", "qemu-img not found");
        return;
    }
    let dir = scratch("mut");
    let raw = dir.join("p.raw");
    let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&raw, &data).expect("raw");
    let cases: [(&str, &[&str]); 7] = [
        ("vmdk", &[]),
        ("vmdk", &["-o", "subformat=streamOptimized"]),
        ("qcow2", &[]),
        ("qcow2", &["-c"]),
        ("vdi", &[]),
        ("vhdx", &[]),
        ("vmdk", &["-o", "subformat=monolithicFlat"]),
    ];
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = [0usize; 2];
    for (n, (fmt, opts)) in cases.iter().enumerate() {
        let good = dir.join(format!("good{n}.{fmt}"));
        let mut args = vec!["convert", "-f", "raw", "-O", fmt];
        args.extend_from_slice(opts);
        let (r, g) = (raw.to_str().expect("utf8"), good.to_str().expect("utf8"));
        args.extend_from_slice(&[r, g]);
        assert!(qemu_img(&args), "convert to {fmt}");
        let original = std::fs::read(&good).expect("image");
        let bad = dir.join(format!("bad{n}.{fmt}"));
        for _ in 0..80 {
            if Instant::now() > deadline {
                break;
            }
            let mut img = original.clone();
            // Mutate metadata: mostly the first 320 KiB and the last 2 KiB (footers).
            for _ in 0..1 + rng.below(8) {
                let len = img.len() as u64;
                let at = match rng.below(3) {
                    0 => rng.below(len.min(4096)),
                    1 => rng.below(len.min(320 * 1024)),
                    _ => len - 1 - rng.below(len.min(2048)),
                } as usize;
                img[at] = match rng.below(4) {
                    0 => 0xff,
                    1 => 0,
                    _ => rng.next() as u8,
                };
            }
            std::fs::write(&bad, &img).expect("write");
            outcomes[usize::from(poke(&bad).is_ok())] += 1;
        }
    }
    println!("mutations: {} rejected, {} read", outcomes[0], outcomes[1]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn backing_loops_end_in_an_error() {
    if !qemu_img(&["--version"]) {
        test_support::skip("backing_loops_end_in_an_error", "qemu-img not found");
        return;
    }
    let dir = scratch("loop");
    let a = dir.join("a.qcow2");
    let b = dir.join("b.qcow2");
    let (sa, sb) = (a.to_str().expect("utf8"), b.to_str().expect("utf8"));
    assert!(qemu_img(&["create", "-f", "qcow2", sa, "1M"]));
    assert!(qemu_img(&["create", "-f", "qcow2", "-F", "qcow2", "-b", sa, sb]));
    assert!(qemu_img(&["rebase", "-u", "-F", "qcow2", "-b", sb, sa]));
    let e =
        disk::open(&a, OpenOptions { read_only: true, ..Default::default() }).err().expect("a loop fails");
    assert!(e.to_string().contains("loop"), "{e}");
    assert!(disk::info(&a).is_err());
    // A writable top image locks itself, so the loop is caught by the lock even sooner.
    assert!(disk::open(&a, OpenOptions::default()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A qcow2 L2 entry that points at the L1 table: a write there is refused, the table survives.
#[test]
fn qcow2_write_into_metadata_is_refused() {
    if !qemu_img(&["--version"]) {
        test_support::skip("qcow2_write_into_metadata_is_refused", "qemu-img not found");
        return;
    }
    let dir = scratch("overlap");
    let raw = dir.join("p.raw");
    std::fs::write(&raw, vec![0x55u8; 1 << 20]).expect("raw");
    let img = dir.join("x.qcow2");
    assert!(qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().expect("utf8"),
        img.to_str().expect("utf8")
    ]));
    let mut bytes = std::fs::read(&img).expect("read");
    let be64 = |b: &[u8], at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_be_bytes(a)
    };
    let l1_offset = be64(&bytes, 40) as usize;
    let l2_offset = (be64(&bytes, l1_offset) & 0x00ff_ffff_ffff_fe00) as usize;
    let evil = (l1_offset as u64 | 1 << 63).to_be_bytes();
    bytes[l2_offset..l2_offset + 8].copy_from_slice(&evil);
    std::fs::write(&img, &bytes).expect("write");
    let d = disk::open(&img, OpenOptions::default()).expect("open");
    let e = d.write_at(&[0xffu8; 512], 0).expect_err("refused");
    assert!(matches!(e, DiskError::Corrupt(_)), "{e}");
    drop(d);
    let after = std::fs::read(&img).expect("read");
    assert_eq!(&after[l1_offset..l1_offset + 8], &bytes[l1_offset..l1_offset + 8]);
    let _ = std::fs::remove_dir_all(&dir);
}
