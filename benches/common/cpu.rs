//! CPU time read from `/proc` (Linux; `None` elsewhere): this process's, and the
//! database server's, so that a bench can say whose CPU a wall-time ratio spent.

/// CPU time this process has used, every thread's (living and exited: writers
/// that a bench joined still count), in microseconds, from `/proc/self/stat`.
///
/// The kernel counts it in clock ticks of 10 ms, so one reading is coarse; summed
/// over many measured blocks the rounding errors cancel.
pub fn this_process_us() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name, which is in parentheses: utime and stime are the
    // 12th and 13th fields.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 1e4)
}

/// On-CPU nanoseconds of one task, from a `schedstat` file (its first field).
pub fn schedstat_ns(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// On-CPU time, in microseconds, of every process on this machine named
/// `postgres` (the backends serving the bench's connections and the server's own
/// writers of WAL and checkpoints), from their `schedstat`: nanosecond counts, so
/// one reading is exact. A process that exits between two readings (an autovacuum
/// worker) is not counted.
pub fn postgres_us() -> Option<f64> {
    let mut ns = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != "postgres" {
            continue;
        }
        if let Some(task_ns) = schedstat_ns(&format!("{}/schedstat", dir.display())) {
            ns += task_ns;
            found = true;
        }
    }
    found.then_some(ns as f64 / 1e3)
}
