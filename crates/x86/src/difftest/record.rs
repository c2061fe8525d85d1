//! Record and replay of the host's outcomes, so that another CPU can be measured against the
//! host: `CHR_VMM_DIFF_RECORD=dir` makes the host run write every case's key and outcome to
//! `dir/<group>.rec`; `CHR_VMM_DIFF_REPLAY=dir` makes a run on another CPU (the test binary
//! under `qemu-x86_64`, whose "native" side is then QEMU TCG) read them back and compare its
//! own native outcomes with the host's, case by case, with the tolerances of `compare`.
//!
//! A record holds, per case, the case's index, its instruction bytes and flag-setting prefix
//! (the key: the replaying run regenerates the cases from the same seed and checks they are
//! the same), the trap, the registers, and the FXSAVE image and data bytes that differ from
//! the state the case started from.

use super::{Outcome, State, Trap, DATA_LEN, HOLE};
use std::io::{BufWriter, Write};

/// What a group run does besides the comparison with the interpreter.
pub(crate) enum Mode {
    Normal,
    Record(Recorder),
    Replay(Replayer),
}

/// The mode the environment asks for `group` (a lowercase name for the file).
pub(crate) fn mode(group: &str, amd: bool) -> Result<Mode, String> {
    let file = |dir: String| std::path::Path::new(&dir).join(format!("{group}.rec"));
    if let Ok(dir) = std::env::var("CHR_VMM_DIFF_REPLAY") {
        let path = file(dir);
        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // The host's vendor comes first: the replaying run generates the forms the host ran,
        // whatever the other CPU says it is.
        let amd = bytes.first().map(|&a| a != 0).ok_or_else(|| format!("{} is empty", path.display()))?;
        return Ok(Mode::Replay(Replayer { bytes, at: 1, amd }));
    }
    if let Ok(dir) = std::env::var("CHR_VMM_DIFF_RECORD") {
        let path = file(dir);
        let f = std::fs::File::create(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut out = BufWriter::new(f);
        out.write_all(&[amd as u8]).map_err(|e| e.to_string())?;
        return Ok(Mode::Record(Recorder { out }));
    }
    Ok(Mode::Normal)
}

pub(crate) struct Recorder {
    out: BufWriter<std::fs::File>,
}

impl Recorder {
    /// Appends case `index`: its key and the host's outcome `o` from `before`.
    pub fn write(&mut self, index: u32, pre: &[u8], insn: &[u8], before: &State, o: &Outcome) {
        let mut b = Vec::with_capacity(512);
        b.extend_from_slice(&index.to_le_bytes());
        for part in [pre, insn] {
            b.push(part.len() as u8);
            b.extend_from_slice(part);
        }
        let t = o.trap.unwrap_or(Trap { vector: 0xff, error: 0, cr2: 0 });
        b.push(o.trap.is_some() as u8);
        b.push(t.vector);
        b.extend_from_slice(&t.error.to_le_bytes());
        b.extend_from_slice(&t.cr2.to_le_bytes());
        for v in o.state.gpr.iter().chain([&o.state.rip, &o.state.rflags]) {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let changed: Vec<(u16, u8)> = bytes_of(&o.state)
            .zip(bytes_of(before))
            .enumerate()
            // The hole's bytes mean nothing (the host's outcome has zeros there).
            .filter(|(i, (a, b))| a != b && !(512 + HOLE * 4096..512 + (HOLE + 1) * 4096).contains(i))
            .map(|(i, (a, _))| (i as u16, a))
            .collect();
        b.extend_from_slice(&(changed.len() as u32).to_le_bytes());
        for (i, v) in changed {
            b.extend_from_slice(&i.to_le_bytes());
            b.push(v);
        }
        if let Err(e) = self.out.write_all(&b) {
            eprintln!("record: {e}");
        }
    }
}

/// The FXSAVE image then the data pages, as one run of bytes (offsets fit 16 bits).
fn bytes_of(s: &State) -> impl Iterator<Item = u8> + '_ {
    s.fx.iter().chain(s.data.iter()).copied()
}

pub(crate) struct Replayer {
    bytes: Vec<u8>,
    at: usize,
    pub amd: bool,
}

impl Replayer {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// The host's outcome of the next case, which must be case `index` with these bytes;
    /// Err says how the record and this run went apart.
    pub fn next(&mut self, index: u32, pre: &[u8], insn: &[u8], before: &State) -> Result<Outcome, String> {
        let mut key = || -> Option<(u32, Vec<u8>, Vec<u8>)> {
            let i = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
            let n = *self.take(1)?.first()? as usize;
            let p = self.take(n)?.to_vec();
            let n = *self.take(1)?.first()? as usize;
            Some((i, p, self.take(n)?.to_vec()))
        };
        let (i, p, b) = key().ok_or("the record ends early")?;
        if (i, p.as_slice(), b.as_slice()) != (index, pre, insn) {
            return Err(format!("case {index}: the record has case {i} ({b:02x?}), this run {insn:02x?}"));
        }
        self.outcome(before).ok_or_else(|| "the record ends early".to_string())
    }

    fn outcome(&mut self, before: &State) -> Option<Outcome> {
        let h = self.take(14)?.to_vec();
        let trapped = h[0] != 0;
        let trap = Trap {
            vector: h[1],
            error: u32::from_le_bytes(h[2..6].try_into().ok()?),
            cr2: u64::from_le_bytes(h[6..14].try_into().ok()?),
        };
        let mut s = before.clone();
        for r in s.gpr.iter_mut() {
            *r = self.u64()?;
        }
        s.rip = self.u64()?;
        s.rflags = self.u64()?;
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        for _ in 0..n {
            let e = self.take(3)?;
            let (i, v) = (u16::from_le_bytes([e[0], e[1]]) as usize, e[2]);
            if i < 512 {
                s.fx[i] = v;
            } else if let Some(d) = s.data.get_mut(i - 512) {
                *d = v;
            }
        }
        debug_assert_eq!(s.data.len(), DATA_LEN);
        Some(Outcome { state: s, trap: trapped.then_some(trap) })
    }
}
