//! A writer killed with SIGKILL at random points: the image must pass `qemu-img check` (leaked
//! clusters allowed) and hold every write completed before the last flush that returned.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use disk::OpenOptions;

const SIZE: u64 = 8 << 20;
const STRIDE: u64 = 64 * 1024;
/// Each write crosses a 64 KiB boundary: it touches two clusters or grains.
const WRITE_AT: u64 = 60 * 1024;
const WRITE_LEN: usize = 8 * 1024;
const SECTOR: usize = 512;
const BLOCKS: u64 = SIZE / STRIDE - 1;

fn content(k: u64) -> Vec<u8> {
    let mut v: Vec<u8> = (0..WRITE_LEN).map(|i| (k as u8).wrapping_mul(31) ^ (i as u8)).collect();
    // The write's number at the start of each sector: a sector is the unit that lands whole.
    for sector in v.chunks_mut(SECTOR) {
        sector[..8].copy_from_slice(&(k + 1).to_le_bytes());
    }
    v
}

/// The child: writes forever, printing `F k` after each flush that covered writes 0..=k.
#[test]
#[ignore = "run by crash_consistency as a child process"]
fn crash_child() {
    let Ok(path) = std::env::var("CHR_VMM_CRASH_IMAGE") else {
        return;
    };
    let d = disk::open(Path::new(&path), OpenOptions::default()).expect("open");
    let mut out = std::io::stdout().lock();
    for k in 0u64.. {
        let b = k % BLOCKS;
        d.write_at(&content(k), b * STRIDE + WRITE_AT).expect("write");
        if k % 3 == 2 {
            d.flush().expect("flush");
            writeln!(out, "F {k}").expect("stdout");
            out.flush().expect("stdout");
        }
    }
}

fn run_once(format: &str, opts: &str, path: &Path, delay_ms: u64) {
    let _ = std::fs::remove_file(path);
    let p = path.to_str().expect("utf8");
    let ok = if opts.is_empty() {
        Command::new("qemu-img").args(["create", "-q", "-f", format, p, "8M"]).status()
    } else {
        // Data everywhere but the windows the child writes: its allocations then push the file
        // past what the image's first refcount table covers.
        let raw = path.with_extension("raw");
        let mut data = vec![0x11u8; SIZE as usize];
        for b in 0..BLOCKS {
            let at = (b * STRIDE + WRITE_AT) as usize;
            data[at..at + WRITE_LEN].fill(0);
        }
        std::fs::write(&raw, &data).expect("raw");
        let r = raw.to_str().expect("utf8");
        Command::new("qemu-img").args(["convert", "-f", "raw", "-O", format, "-o", opts, r, p]).status()
    };
    assert!(ok.is_ok_and(|s| s.success()));
    let rt_field = |p: &Path| std::fs::read(p).ok().and_then(|b| b.get(48..56).map(<[u8]>::to_vec));
    let rt_before = rt_field(path);
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("CHR_VMM_CRASH_IMAGE", p)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let last = Arc::new(AtomicI64::new(-1));
    let stdout = child.stdout.take().expect("stdout");
    let seen = Arc::clone(&last);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(k) = line.strip_prefix("F ").and_then(|k| k.parse::<i64>().ok()) {
                seen.store(k, Ordering::SeqCst);
            }
        }
    });
    std::thread::sleep(Duration::from_millis(delay_ms));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let _ = reader.join();
    let flushed = last.load(Ordering::SeqCst);
    let moved = format == "qcow2" && rt_field(path) != rt_before;
    println!("{format} {opts}: killed after {delay_ms} ms, last flushed write {flushed}, refcount table moved: {moved}");

    let out = Command::new("qemu-img").args(["check", "-f", format, p]).output().expect("check");
    let code = out.status.code().unwrap_or(-1);
    // 0: clean; 3: leaked clusters only.
    assert!(
        code == 0 || code == 3,
        "{format} after kill at {delay_ms} ms: qemu-img check exit {code}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let d = disk::open(path, OpenOptions { read_only: true, ..Default::default() }).expect("reopen");
    let mut buf = vec![0u8; WRITE_LEN];
    for b in 0..BLOCKS {
        d.read_at(&mut buf, b * STRIDE + WRITE_AT).expect("read");
        // The newest flushed write to this block, if any.
        let must = (flushed >= 0 && b as i64 <= flushed).then(|| {
            let f = flushed as u64;
            f - (f - b) % BLOCKS
        });
        // Each sector must hold its part of some write to this block no older than `must`;
        // sectors may differ when the child died inside an unflushed write.
        for h in (0..WRITE_LEN).step_by(SECTOR) {
            let sector = &buf[h..h + SECTOR];
            let mut k8 = [0u8; 8];
            k8.copy_from_slice(&sector[..8]);
            let stored = u64::from_le_bytes(k8);
            if stored == 0 {
                assert!(
                    must.is_none() && sector.iter().all(|&x| x == 0),
                    "{format}: block {b} lost flushed write {must:?}"
                );
                continue;
            }
            let k = stored - 1;
            assert_eq!(k % BLOCKS, b, "{format}: block {b} holds another block's data");
            assert!(sector == &content(k)[h..h + SECTOR], "{format}: block {b} holds garbage");
            if let Some(m) = must {
                assert!(k >= m, "{format}: block {b} holds write {k}, older than flushed write {m}");
            }
        }
    }
}

#[test]
fn crash_consistency() {
    if !Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success()) {
        test_support::skip("crash_consistency", "qemu-img not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("chr-vmm-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    // 512-byte qcow2 clusters make the refcount table move while the writer runs.
    for (format, opts) in [("qcow2", ""), ("qcow2", "cluster_size=512"), ("vmdk", ""), ("vdi", "")] {
        for _ in 0..6 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let delay = if opts.is_empty() { 30 + seed % 250 } else { 150 + seed % 450 };
            run_once(format, opts, &dir.join(format!("crash.{format}")), delay);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
