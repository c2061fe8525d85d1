//! Images made by qemu-img, read and written through the block trait, checked by qemu-img.

use std::path::{Path, PathBuf};
use std::process::Command;

use disk::{BlockDevice, OpenOptions};

const SIZE: u64 = 8 << 20;

fn have_qemu_img() -> bool {
    let ok = Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        test_support::skip("have_qemu_img", "qemu-img not found");
    }
    ok
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("chr-vmm-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 8 MiB: a pattern in the first 3 MiB and at 5-6 MiB, zeros elsewhere.
fn pattern() -> Vec<u8> {
    let mut v = vec![0u8; SIZE as usize];
    let mut x = 0x1234_5678u32;
    for (i, b) in v.iter_mut().enumerate() {
        if i < 3 << 20 || (5 << 20..6 << 20).contains(&i) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
    }
    v
}

fn qemu_img(args: &[&str]) -> (bool, String) {
    let o = Command::new("qemu-img").args(args).output().expect("qemu-img runs");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn read_all(d: &dyn BlockDevice) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    // Odd-sized requests that cross grain and cluster boundaries.
    let step = 3 * 65536 + 512;
    let mut at = 0;
    while at < v.len() {
        let n = step.min(v.len() - at);
        d.read_at(&mut v[at..at + n], at as u64).expect("read");
        at += n;
    }
    v
}

/// Writes that cover allocated and unallocated units, partial and whole, to `d` and `reference`.
fn write_some(d: &dyn BlockDevice, reference: &mut [u8]) {
    let writes: [(u64, usize, u8); 6] = [
        (0, 512, 0xa1),
        (65536 - 512, 4096, 0xb2),
        (4 << 20, 512, 0xc3),
        ((4 << 20) + 1024 * 1024 - 1024, 2048, 0xd4),
        ((7 << 20) + 4096, 200 * 1024, 0xe5),
        (SIZE - 512, 512, 0xf6),
    ];
    for (off, len, val) in writes {
        let buf: Vec<u8> = (0..len).map(|i| val ^ (i as u8)).collect();
        d.write_at(&buf, off).expect("write");
        reference[off as usize..off as usize + len].copy_from_slice(&buf);
    }
    d.flush().expect("flush");
}

fn check_clean(img: &Path, format: &str) {
    let (ok, out) = qemu_img(&["check", "-f", format, s(img)]);
    assert!(ok, "qemu-img check {} failed:\n{out}", img.display());
}

fn compare(reference: &Path, img: &Path) {
    let (ok, out) = qemu_img(&["compare", "-f", "raw", s(reference), s(img)]);
    assert!(ok && out.contains("identical"), "qemu-img compare {}: {out}", img.display());
}

/// Converts the pattern to `format` with `opts`, reads it back, and (if `writable`) writes
/// through the trait and checks the result with qemu-img.
fn round_trip(name: &str, format: &str, opts: &[&str], writable: bool) {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new(name);
    let raw = dir.path("pattern.raw");
    let mut reference = pattern();
    std::fs::write(&raw, &reference).expect("write pattern");
    let img = dir.path(&format!("disk.{format}"));
    let mut args = vec!["convert", "-f", "raw", "-O", format];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[s(&raw), s(&img)]);
    let (ok, out) = qemu_img(&args);
    assert!(ok, "qemu-img convert: {out}");
    {
        let d = disk::open(&img, OpenOptions { read_only: !writable, ..Default::default() })
            .unwrap_or_else(|e| panic!("{name}: open: {e}"));
        assert_eq!(d.format(), format);
        assert_eq!(d.size(), SIZE);
        assert!(read_all(&*d) == reference, "{name}: content differs from the pattern");
        if !writable {
            return;
        }
        write_some(&*d, &mut reference);
        assert!(read_all(&*d) == reference, "{name}: content differs after writes");
    }
    std::fs::write(&raw, &reference).expect("write reference");
    let (ok, out) = qemu_img(&["check", "-f", format, s(&img)]);
    // qemu-img check does not support every format (flat VMDK); "not supported" is fine.
    assert!(ok || out.contains("does not support checks"), "{name}: qemu-img check:\n{out}");
    compare(&raw, &img);
    // And once more after reopening.
    let d = disk::open(&img, OpenOptions { read_only: true, ..Default::default() }).expect("reopen");
    assert!(read_all(&*d) == reference, "{name}: content differs after reopening");
}

#[test]
fn vmdk_monolithic_sparse() {
    round_trip("vmdk-ms", "vmdk", &[], true);
}

#[test]
fn vmdk_two_gb_sparse() {
    round_trip("vmdk-2gs", "vmdk", &["-o", "subformat=twoGbMaxExtentSparse"], true);
}

#[test]
fn vmdk_stream_optimized_reads() {
    round_trip("vmdk-so", "vmdk", &["-o", "subformat=streamOptimized"], false);
}

#[test]
fn vmdk_monolithic_flat() {
    round_trip("vmdk-mf", "vmdk", &["-o", "subformat=monolithicFlat"], true);
}

#[test]
fn vmdk_two_gb_flat() {
    round_trip("vmdk-2gf", "vmdk", &["-o", "subformat=twoGbMaxExtentFlat"], true);
}

#[test]
fn qcow2_plain() {
    round_trip("qcow2", "qcow2", &[], true);
}

#[test]
fn qcow2_v2_small_clusters() {
    round_trip("qcow2-v2", "qcow2", &["-o", "compat=0.10,cluster_size=4096"], true);
}

#[test]
fn qcow2_compressed() {
    round_trip("qcow2-c", "qcow2", &["-c"], true);
}

#[test]
fn vdi_dynamic() {
    round_trip("vdi-d", "vdi", &[], true);
}

#[test]
fn vdi_fixed() {
    round_trip("vdi-f", "vdi", &["-o", "static=on"], true);
}

#[test]
fn vhdx_dynamic_reads() {
    round_trip("vhdx-d", "vhdx", &[], false);
}

#[test]
fn vhdx_fixed_reads() {
    round_trip("vhdx-f", "vhdx", &["-o", "subformat=fixed"], false);
}

#[test]
fn raw_round_trip() {
    round_trip("raw", "raw", &[], true);
}

/// The containerlab layout: a qcow2 overlay made by qemu-img over a sparse VMDK.
#[test]
fn qcow2_over_vmdk() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new("ovl");
    let raw = dir.path("pattern.raw");
    let mut reference = pattern();
    std::fs::write(&raw, &reference).expect("pattern");
    let base = dir.path("chr.vmdk");
    let (ok, out) = qemu_img(&["convert", "-f", "raw", "-O", "vmdk", s(&raw), s(&base)]);
    assert!(ok, "{out}");
    let before = std::fs::read(&base).expect("base");
    let ov = dir.path("overlay.qcow2");
    let (ok, out) = qemu_img(&["create", "-f", "qcow2", "-F", "vmdk", "-b", "chr.vmdk", s(&ov)]);
    assert!(ok, "{out}");
    {
        let d = disk::open(&ov, OpenOptions::default()).expect("open overlay");
        assert!(read_all(&*d) == reference);
        write_some(&*d, &mut reference);
    }
    std::fs::write(&raw, &reference).expect("reference");
    check_clean(&ov, "qcow2");
    compare(&raw, &ov);
    assert!(std::fs::read(&base).expect("base") == before, "the base image changed");
    let info = disk::info(&ov).expect("info");
    assert_eq!(info.backing.as_ref().map(|b| b.format), Some(disk::Format::Vmdk));
    assert_eq!(info.backing.as_ref().and_then(|b| b.subformat.clone()).as_deref(), Some("monolithicSparse"));
}

/// --overlay: created on first use over the base, reused afterwards; --snapshot: base untouched.
#[test]
fn overlay_and_snapshot_modes() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new("modes");
    let raw = dir.path("pattern.raw");
    let mut reference = pattern();
    std::fs::write(&raw, &reference).expect("pattern");
    let base = dir.path("chr.vdi");
    let (ok, out) = qemu_img(&["convert", "-f", "raw", "-O", "vdi", s(&raw), s(&base)]);
    assert!(ok, "{out}");
    let before = std::fs::read(&base).expect("base");
    {
        let d = disk::open(&base, OpenOptions { snapshot: true, ..Default::default() }).expect("snapshot");
        let mut scratch = reference.clone();
        write_some(&*d, &mut scratch);
        assert!(read_all(&*d) == scratch);
    }
    assert!(std::fs::read(&base).expect("base") == before, "snapshot mode changed the base");
    let ov = dir.path("state/overlay.qcow2");
    std::fs::create_dir_all(dir.path("state")).expect("dir");
    {
        let d = disk::open_with_overlay(&base, &ov, OpenOptions::default()).expect("overlay");
        write_some(&*d, &mut reference);
    }
    {
        let d = disk::open_with_overlay(&base, &ov, OpenOptions::default()).expect("overlay again");
        assert!(read_all(&*d) == reference, "overlay lost its writes");
    }
    std::fs::write(&raw, &reference).expect("reference");
    check_clean(&ov, "qcow2");
    compare(&raw, &ov);
    assert!(std::fs::read(&base).expect("base") == before, "overlay mode changed the base");
}

/// `disk::info` agrees with `qemu-img info` on virtual and disk size.
#[test]
fn info_matches_qemu_img() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new("info");
    let raw = dir.path("pattern.raw");
    std::fs::write(&raw, pattern()).expect("pattern");
    for (fmt, opt) in [
        ("vmdk", ""),
        ("qcow2", ""),
        ("vdi", ""),
        ("vdi", "static=on"),
        ("vhdx", ""),
        ("vmdk", "subformat=streamOptimized"),
        ("vmdk", "subformat=twoGbMaxExtentSparse"),
    ] {
        let img = dir.path(&format!("i-{fmt}-{}.img", opt.len()));
        let mut args = vec!["convert", "-f", "raw", "-O", fmt];
        if !opt.is_empty() {
            args.extend_from_slice(&["-o", opt]);
        }
        args.extend_from_slice(&[s(&raw), s(&img)]);
        assert!(qemu_img(&args).0);
        let ours = disk::info(&img).expect("info");
        let (ok, json) = qemu_img(&["info", "--output=json", s(&img)]);
        assert!(ok);
        assert!(json.contains(&format!("\"virtual-size\": {}", ours.virtual_size)), "{json}\n{ours}");
        assert!(json.contains(&format!("\"actual-size\": {}", ours.disk_size)), "{json}\n{ours}");
        assert!(ours.to_json().contains("\"virtual-size\": 8388608"));
        assert!(ours.to_string().contains("virtual size: 8 MiB (8388608 bytes)"));
    }
}

/// 512-byte clusters: the refcount table qemu-img made covers 8 MiB of file, so 16 MiB of
/// writes make it move (several times) to the end of the file.
#[test]
fn qcow2_refcount_table_grows() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new("rtgrow");
    let img = dir.path("small.qcow2");
    let (ok, out) = qemu_img(&["create", "-q", "-f", "qcow2", "-o", "cluster_size=512", s(&img), "32M"]);
    assert!(ok, "{out}");
    let mut reference = vec![0u8; 32 << 20];
    {
        let d = disk::open(&img, OpenOptions::default()).expect("open");
        let chunk = 64 * 1024;
        for i in 0..256usize {
            let at = (i * 2 * chunk) as u64;
            let buf: Vec<u8> = (0..chunk).map(|j| (i * 7 + j) as u8 | 1).collect();
            d.write_at(&buf, at).expect("write");
            reference[at as usize..at as usize + chunk].copy_from_slice(&buf);
            if i % 16 == 15 {
                d.flush().expect("flush");
            }
        }
        assert!(read_all(&*d) == reference);
    }
    let raw = dir.path("ref.raw");
    std::fs::write(&raw, &reference).expect("reference");
    check_clean(&img, "qcow2");
    compare(&raw, &img);
}

#[test]
fn a_renamed_monolithic_sparse_vmdk_still_opens() {
    if !have_qemu_img() {
        return;
    }
    let dir = TempDir::new("vmdk-renamed");
    let raw = dir.path("pattern.raw");
    let reference = pattern();
    std::fs::write(&raw, &reference).expect("write pattern");
    let original = dir.path("chr-7.16.vmdk");
    let (ok, out) = qemu_img(&["convert", "-f", "raw", "-O", "vmdk", s(&raw), s(&original)]);
    assert!(ok, "qemu-img convert: {out}");
    // Users rename the image they download; its embedded descriptor keeps the old name.
    let renamed = dir.path("chr.vmdk");
    std::fs::rename(&original, &renamed).expect("rename");
    let d = disk::open(&renamed, OpenOptions::default()).expect("open the renamed image");
    assert!(read_all(&*d) == reference);
}
