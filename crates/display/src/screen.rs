//! The rendered screen that RFB clients read: a frame, a change stamp per 16x16 tile, and the
//! renderer thread that refreshes it at a bounded rate while anyone watches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::render::{Frame, Snapshot};
use crate::vga::VgaCore;

/// Tile edge in pixels for change tracking.
pub const TILE: usize = 16;
/// Time between frames: 30 Hz.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: usize,
    /// Top edge.
    pub y: usize,
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
}

/// The current picture and when each tile last changed.
#[derive(Default)]
pub struct ScreenState {
    /// The picture.
    pub frame: Frame,
    /// Frame number of the latest change (starts at 1).
    pub serial: u64,
    /// Frame number of the latest size change.
    pub size_serial: u64,
    tiles_x: usize,
    stamps: Vec<u64>,
}

impl ScreenState {
    /// Replaces the picture with `new`, stamping the tiles that differ. Returns whether any did.
    fn update(&mut self, new: &Frame) -> bool {
        let next = self.serial + 1;
        if new.width != self.frame.width || new.height != self.frame.height {
            self.frame.clone_from(new);
            self.tiles_x = new.width.div_ceil(TILE);
            self.stamps = vec![next; self.tiles_x * new.height.div_ceil(TILE)];
            self.serial = next;
            self.size_serial = next;
            return true;
        }
        let mut any = false;
        let w = new.width;
        for ty in 0..new.height.div_ceil(TILE) {
            for tx in 0..self.tiles_x {
                let x0 = tx * TILE;
                let x1 = (x0 + TILE).min(w);
                let differs = (ty * TILE..((ty + 1) * TILE).min(new.height))
                    .any(|y| new.pixels[y * w + x0..y * w + x1] != self.frame.pixels[y * w + x0..y * w + x1]);
                if differs {
                    self.stamps[ty * self.tiles_x + tx] = next;
                    for y in ty * TILE..((ty + 1) * TILE).min(new.height) {
                        self.frame.pixels[y * w + x0..y * w + x1]
                            .copy_from_slice(&new.pixels[y * w + x0..y * w + x1]);
                    }
                    any = true;
                }
            }
        }
        if any {
            self.serial = next;
        }
        any
    }

    /// Rectangles inside `area` whose tiles changed after frame `since` (all of `area` when
    /// `since` is 0), merged along rows and down columns.
    pub fn changed_since(&self, since: u64, area: Rect) -> Vec<Rect> {
        let (fw, fh) = (self.frame.width, self.frame.height);
        let x_end = area.x.saturating_add(area.w).min(fw);
        let y_end = area.y.saturating_add(area.h).min(fh);
        if area.x >= x_end || area.y >= y_end {
            return Vec::new();
        }
        if since == 0 {
            return vec![Rect { x: area.x, y: area.y, w: x_end - area.x, h: y_end - area.y }];
        }
        let mut out: Vec<Rect> = Vec::new();
        let mut prev_row: Vec<Rect> = Vec::new();
        for ty in area.y / TILE..y_end.div_ceil(TILE) {
            let mut row = Vec::new();
            let mut run: Option<usize> = None;
            let tx_end = x_end.div_ceil(TILE);
            for tx in area.x / TILE..=tx_end {
                let changed = tx < tx_end && self.stamps[ty * self.tiles_x + tx] > since;
                match (changed, run) {
                    (true, None) => run = Some(tx),
                    (false, Some(s)) => {
                        let x = (s * TILE).max(area.x);
                        let y = (ty * TILE).max(area.y);
                        let r =
                            Rect { x, y, w: (tx * TILE).min(x_end) - x, h: ((ty + 1) * TILE).min(y_end) - y };
                        row.push(r);
                        run = None;
                    }
                    _ => {}
                }
            }
            // Grow a rectangle of the previous tile row when this row has the same span.
            let mut carried = Vec::new();
            for r in row {
                if let Some(i) = prev_row.iter().position(|p| p.x == r.x && p.w == r.w && p.y + p.h == r.y) {
                    let mut p = prev_row.swap_remove(i);
                    p.h += r.h;
                    carried.push(p);
                } else {
                    carried.push(r);
                }
            }
            out.append(&mut prev_row);
            prev_row = carried;
        }
        out.append(&mut prev_row);
        out
    }

    /// Copies the pixels of `r` out of the frame (row-major).
    pub fn copy_rect(&self, r: Rect) -> Vec<u32> {
        let mut out = Vec::with_capacity(r.w * r.h);
        for y in r.y..r.y + r.h {
            let row = y * self.frame.width;
            out.extend_from_slice(&self.frame.pixels[row + r.x..row + r.x + r.w]);
        }
        out
    }
}

/// What the renderer and the RFB clients share.
pub(crate) struct Screen {
    pub(crate) state: Mutex<ScreenState>,
    /// Signalled when a new frame is in `state` (and when a client's request changes).
    pub(crate) changed: Condvar,
    pub(crate) viewers: AtomicUsize,
    wake: Condvar,
    wake_lock: Mutex<bool>,
}

/// A handle on the adapter's picture: render it, or watch it change.
#[derive(Clone)]
pub struct Display {
    core: Arc<Mutex<VgaCore>>,
    pub(crate) screen: Arc<Screen>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Renders frames for a display; holds the last snapshot so idle frames cost a counter check.
struct Renderer {
    snapshot: Snapshot,
    frame: Frame,
    generation: Option<u64>,
    phases: (bool, bool),
}

/// One clock for every renderer, so that a refresh and the renderer thread agree on the blink
/// phase.
fn blink_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Renderer {
    fn new() -> Self {
        Self {
            snapshot: Snapshot::default(),
            frame: Frame::default(),
            generation: None,
            phases: (false, false),
        }
    }

    fn tick(&mut self, display: &Display) {
        let ms = blink_epoch().elapsed().as_millis();
        // Cursor blinks at about 1.9 Hz, blinking characters at half that, as on VGA.
        let phases = ((ms / 266).is_multiple_of(2), (ms / 533).is_multiple_of(2));
        {
            let core = lock(&display.core);
            let fresh = self.generation == Some(core.generation);
            if fresh && (phases == self.phases || !self.snapshot.blinks()) {
                return;
            }
            self.generation = Some(core.generation);
            self.snapshot.take(&core);
        }
        self.phases = phases;
        self.snapshot.render(&mut self.frame, phases.0, phases.1);
        let changed = lock(&display.screen.state).update(&self.frame);
        if changed {
            display.screen.changed.notify_all();
        }
    }
}

impl Display {
    pub(crate) fn new(core: Arc<Mutex<VgaCore>>) -> Self {
        let screen = Arc::new(Screen {
            state: Mutex::new(ScreenState::default()),
            changed: Condvar::new(),
            viewers: AtomicUsize::new(0),
            wake: Condvar::new(),
            wake_lock: Mutex::new(false),
        });
        Self { core, screen }
    }

    /// Renders the current picture now (tests, screenshots) and returns it.
    pub fn render_now(&self) -> Frame {
        self.refresh();
        lock(&self.screen.state).frame.clone()
    }

    /// Brings the shared picture up to date right away (the renderer thread may be asleep).
    pub(crate) fn refresh(&self) {
        Renderer::new().tick(self);
    }

    /// Starts the renderer thread (once): it sleeps while nobody watches and otherwise renders
    /// at most every [`FRAME_INTERVAL`], skipping frames in which the guest changed nothing.
    pub(crate) fn start_renderer(&self) -> std::io::Result<()> {
        {
            let mut started = lock(&self.screen.wake_lock);
            if *started {
                return Ok(());
            }
            *started = true;
        }
        let display = self.clone();
        std::thread::Builder::new().name("vga-render".into()).spawn(move || {
            let mut renderer = Renderer::new();
            loop {
                {
                    let mut guard = lock(&display.screen.wake_lock);
                    while display.screen.viewers.load(Ordering::Acquire) == 0 {
                        guard = display.screen.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                        // A new viewer needs a fresh picture.
                        renderer.generation = None;
                    }
                }
                let started = Instant::now();
                renderer.tick(&display);
                std::thread::sleep(FRAME_INTERVAL.saturating_sub(started.elapsed()));
            }
        })?;
        Ok(())
    }

    /// A viewer (RFB client) arrived.
    pub(crate) fn add_viewer(&self) {
        let _g = lock(&self.screen.wake_lock);
        self.screen.viewers.fetch_add(1, Ordering::AcqRel);
        self.screen.wake.notify_all();
    }

    /// A viewer left.
    pub(crate) fn remove_viewer(&self) {
        self.screen.viewers.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, ScreenState> {
        lock(&self.screen.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, fill: u32) -> Frame {
        Frame { width: w, height: h, pixels: vec![fill; w * h] }
    }

    #[test]
    fn only_changed_tiles_are_reported() {
        let mut s = ScreenState::default();
        assert!(s.update(&frame(100, 50, 0)));
        let first = s.serial;
        assert_eq!(s.size_serial, first);
        let mut f = frame(100, 50, 0);
        assert!(!s.update(&f));
        f.pixels[20 * 100 + 40] = 7; // tile (2, 1)
        f.pixels[40 * 100 + 40] = 7; // tile (2, 2)
        f.pixels[99] = 7; // tile (6, 0), partial edge tile
        assert!(s.update(&f));
        let all = Rect { x: 0, y: 0, w: 1000, h: 1000 };
        let mut rects = s.changed_since(first, all);
        rects.sort_by_key(|r| (r.y, r.x));
        assert_eq!(rects, vec![Rect { x: 96, y: 0, w: 4, h: 16 }, Rect { x: 32, y: 16, w: 16, h: 32 }]);
        assert_eq!(s.changed_since(s.serial, all), vec![]);
        assert_eq!(
            s.changed_since(0, Rect { x: 90, y: 40, w: 60000, h: 60000 }),
            vec![Rect { x: 90, y: 40, w: 10, h: 10 }]
        );
        assert_eq!(s.copy_rect(Rect { x: 99, y: 0, w: 1, h: 2 }), vec![7, 0]);
    }
}
