//! Where the CPU went during a transfer, from /proc: each thread of the VMM (by name), this
//! process (the host end of the transfer) and the host's idle time, as shares of all the
//! host's CPU time in the interval. It tells a transfer limited by CPU (no idle time left) from
//! one limited by waiting, and which thread spent the time.
//!
//! Figures are in the kernel's clock ticks (USER_HZ, 10 ms), so they mean something only over
//! transfers of a second or more. A VMM on KVM runs the guest inside its vCPU threads, so their
//! time includes the guest's.

use std::collections::BTreeMap;

/// The CPU time counters at one moment.
#[derive(Debug, Default, Clone)]
pub struct CpuSample {
    /// Ticks per VMM thread, by thread name (threads of one name added up).
    threads: BTreeMap<String, u64>,
    /// Ticks of this process.
    own: u64,
    /// Idle ticks of all CPUs (idle and iowait).
    idle: u64,
    /// All ticks of all CPUs.
    total: u64,
}

/// utime + stime of a `/proc/.../stat` line, whose second field (the name) may hold spaces and
/// parentheses: the fields after the last ')' are fixed.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3, utime field 14 and stime field 15 (1-based, man 5 proc).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// Idle and total ticks from the `cpu` line of /proc/stat.
fn system_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((idle, total))
}

/// Samples the threads of process `pid`, this process and the whole host. Whatever cannot be
/// read (a thread that just ended, a /proc without a field) is left out.
pub fn sample(pid: u32) -> CpuSample {
    let mut s = CpuSample::default();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            if let Some((name, ticks)) = stat_ticks(&stat) {
                *s.threads.entry(name).or_default() += ticks;
            }
        }
    }
    if let Some((_, ticks)) = std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(stat_ticks)
    {
        s.own = ticks;
    }
    if let Some((idle, total)) = std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(system_ticks)
    {
        s.idle = idle;
        s.total = total;
    }
    s
}

/// Runs `f` and describes where the CPU went meanwhile (see [`describe`]).
pub fn during<T>(pid: u32, f: impl FnOnce() -> T) -> (T, String) {
    let before = sample(pid);
    let out = f();
    (out, describe(&before, &sample(pid)))
}

/// One line: the host's idle share, then each VMM thread that used at least 1% and this
/// process, as shares of all CPU time between `before` and `after`.
pub fn describe(before: &CpuSample, after: &CpuSample) -> String {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return "cpu: no ticks counted".into();
    }
    let pct = |ticks: u64| 100.0 * ticks as f64 / total as f64;
    let mut parts = vec![format!("idle {:.0}%", pct(after.idle.saturating_sub(before.idle)))];
    let mut threads: Vec<(u64, &String)> = after
        .threads
        .iter()
        .map(|(name, t)| (t.saturating_sub(before.threads.get(name).copied().unwrap_or(0)), name))
        .filter(|(t, _)| pct(*t) >= 1.0)
        .collect();
    threads.sort_by_key(|t| std::cmp::Reverse(t.0));
    parts.extend(threads.iter().map(|(t, name)| format!("{name} {:.0}%", pct(*t))));
    parts.push(format!("bench {:.0}%", pct(after.own.saturating_sub(before.own))));
    format!("cpu: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (CPU 0/KVM) (x)) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 1 0 100";
        assert_eq!(stat_ticks(line), Some(("CPU 0/KVM) (x)".to_string(), 281)));
        assert_eq!(stat_ticks("12 (short) S 1"), None);
        let proc_stat = "cpu  100 5 50 800 20 1 2 0 40 0\ncpu0 1 2 3 4\n";
        assert_eq!(system_ticks(proc_stat), Some((820, 978)));
    }

    #[test]
    fn shares_of_the_interval() {
        let mut before = CpuSample { total: 1000, idle: 100, own: 10, ..Default::default() };
        before.threads.insert("vcpu0".into(), 50);
        let mut after = CpuSample { total: 1200, idle: 120, own: 30, ..Default::default() };
        after.threads.insert("vcpu0".into(), 150);
        after.threads.insert("virtio-net".into(), 40);
        after.threads.insert("signals".into(), 0);
        assert_eq!(describe(&before, &after), "cpu: idle 10%, vcpu0 50%, virtio-net 20%, bench 10%");
        assert_eq!(describe(&before, &before), "cpu: no ticks counted");
    }
}
