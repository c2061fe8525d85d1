//! Real VNC clients against a text-mode test pattern: `vncdotool` (PyPI) takes a PNG
//! screenshot and types a key, `vncsnapshot` (Debian) takes a JPEG. Pixels are read back with
//! Python's PIL. Each test says it is skipped, and why, when its client is missing.

#![allow(clippy::unwrap_used)]

mod common;

use test_support::have;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{Rig, GLYPH};
use display::{start_vnc, KeySink};

/// White-on-blue 'A' at row 1, col 2 (x 18..27, y 16..32); the rest black.
fn pattern() -> (Rig, std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let rig = Rig::new();
    rig.text_mode();
    rig.put_char(1, 2, b'A', 0x1f);
    let keys = Arc::new(Mutex::new(Vec::new()));
    let k = keys.clone();
    let sink: KeySink = Arc::new(move |c: &[u8]| k.lock().unwrap().extend_from_slice(c));
    let server = start_vnc("127.0.0.1:0", None, rig.vga.display(), sink).unwrap();
    (rig, server.local_addr(), keys)
}

/// (width, height, [(r, g, b)] at `points`) of an image, read by PIL.
fn read_pixels(path: &Path, points: &[(usize, usize)]) -> Option<(usize, usize, Vec<[i32; 3]>)> {
    let pts: Vec<String> = points.iter().map(|(x, y)| format!("({x},{y})")).collect();
    let script = format!(
        "from PIL import Image\nim=Image.open({:?}).convert('RGB')\nprint(*im.size)\nfor p in [{}]: print(*im.getpixel(p))",
        path.display().to_string(),
        pts.join(",")
    );
    // The first python3 on PATH may be another installation than the one Debian's
    // python3-pil (scripts/install-deps.sh) belongs to: try that one too.
    let out = ["python3", "/usr/bin/python3"]
        .iter()
        .filter_map(|py| Command::new(py).arg("-c").arg(&script).output().ok())
        .find(|o| o.status.success());
    let Some(out) = out else {
        eprintln!("PIL: neither python3 on PATH nor /usr/bin/python3 can read {}", path.display());
        return None;
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text
        .lines()
        .map(|l| l.split_whitespace().map(|v| v.parse::<i32>().unwrap_or(-1)).collect::<Vec<_>>());
    let size = lines.next()?;
    let px = lines.map(|v| [v[0], v[1], v[2]]).collect();
    Some((size[0] as usize, size[1] as usize, px))
}

/// Points in the glyph cell that are foreground ('W') or background ('B'), and a black cell
/// ('K'). `all` samples every pixel of the cell; otherwise only pixels inside runs (JPEG blurs
/// single-pixel edges).
fn probe_points(all: bool) -> (Vec<(usize, usize)>, Vec<char>) {
    let mut pts = Vec::new();
    let mut kinds = Vec::new();
    for (line, &bits) in GLYPH.iter().enumerate() {
        for x in 0..9 {
            if all || (x == 4 && (line == 2 || line == 8)) {
                pts.push((18 + x, 16 + line));
                kinds.push(if x < 8 && bits & (0x80 >> x) != 0 { 'W' } else { 'B' });
            }
        }
    }
    pts.push((400, 300));
    kinds.push('K');
    (pts, kinds)
}

fn check(px: &[[i32; 3]], kinds: &[char], tolerance: i32) {
    for (p, k) in px.iter().zip(kinds) {
        let want = match k {
            'W' => [255, 255, 255],
            'B' => [0, 0, 170],
            _ => [0, 0, 0],
        };
        for c in 0..3 {
            assert!((p[c] - want[c]).abs() <= tolerance, "pixel {p:?}, expected {want:?} ({k})");
        }
    }
}

#[test]
fn vncdotool_screenshot_and_key() {
    if !have("vncdo") || !have("python3") {
        test_support::skip(
            "vncdotool_screenshot_and_key",
            "vncdo (pip install vncdotool) or python3 is not installed",
        );
        return;
    }
    let (_rig, addr, keys) = pattern();
    let dir = std::env::temp_dir().join(format!("display-vncdo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("shot.png");
    let server = format!("{}::{}", addr.ip(), addr.port());
    let status = Command::new("timeout")
        .args(["60", "vncdo", "-s", &server, "capture"])
        .arg(&png)
        .args(["key", "a", "key", "ctrl-c", "type", "Hi!"])
        .status()
        .unwrap();
    assert!(status.success(), "vncdo failed");
    let (pts, kinds) = probe_points(true);
    let Some((w, h, px)) = read_pixels(&png, &pts) else {
        test_support::skip("vncdotool_screenshot_and_key", "PIL cannot read the screenshot");
        return;
    };
    assert_eq!((w, h), (720, 400));
    check(&px, &kinds, 0);
    // 'a' press and release, then Ctrl+C: Ctrl down, c down, c up, Ctrl up; then "Hi!" typed
    // without Shift presses, which the server adds around 'H' and '!'.
    assert_eq!(
        *keys.lock().unwrap(),
        [0x1e, 0x9e, 0x1d, 0x2e, 0xae, 0x9d, 0x2a, 0x23, 0xaa, 0xa3, 0x17, 0x97, 0x2a, 0x02, 0xaa, 0x82]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vncsnapshot_screenshot() {
    if !have("vncsnapshot") || !have("python3") {
        test_support::skip(
            "vncsnapshot_screenshot",
            "vncsnapshot (Debian package vncsnapshot) or python3 is not installed",
        );
        return;
    }
    let (_rig, addr, _) = pattern();
    let dir = std::env::temp_dir().join(format!("display-vncsnapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jpg = dir.join("shot.jpg");
    let server = format!("{}::{}", addr.ip(), addr.port());
    let out = Command::new("timeout")
        .args(["60", "vncsnapshot", "-quality", "100", &server])
        .arg(&jpg)
        .output()
        .unwrap();
    assert!(out.status.success(), "vncsnapshot failed: {}", String::from_utf8_lossy(&out.stderr));
    let (pts, kinds) = probe_points(false);
    let Some((w, h, px)) = read_pixels(&jpg, &pts) else {
        test_support::skip("vncsnapshot_screenshot", "PIL cannot read the screenshot");
        return;
    };
    assert_eq!((w, h), (720, 400));
    // JPEG is lossy: allow some error per channel.
    check(&px, &kinds, 40);
    let _ = std::fs::remove_dir_all(&dir);
}
