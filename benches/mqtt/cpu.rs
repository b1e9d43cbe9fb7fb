//! CPU time from `/proc`, for part 1: this process's threads by role and the
//! broker (clock ticks), and the whole machine's busy share.

/// CPU time in clock ticks (USER_HZ, 100 per second), user + system, of this
/// process's threads by role and of the broker.
#[derive(Copy, Clone, Debug, Default)]
pub struct Cpu {
    /// The bench's main thread: the commit loop, or the bare publish loop.
    pub main: u64,
    /// The emitter's publisher thread.
    pub publisher: u64,
    /// The counting subscriber's consumer thread.
    pub counter: u64,
    /// The publisher's loopback relay threads (see emitter-core's `mqtt::relay`).
    pub relay: u64,
    /// Everything else in this process: Paho C's threads of every client, mostly.
    pub paho: u64,
    pub broker: u64,
}

impl Cpu {
    pub fn now(broker_pid: u32) -> Cpu {
        let mut cpu = Cpu {
            broker: proc_ticks(&format!("/proc/{broker_pid}/stat")).map_or(0, |(_, t)| t),
            ..Cpu::default()
        };
        let pid = std::process::id().to_string();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return cpu;
        };
        for task in tasks.flatten() {
            let tid = task.file_name().to_string_lossy().into_owned();
            let Some((comm, ticks)) = proc_ticks(&format!("/proc/self/task/{tid}/stat")) else {
                continue;
            };
            let slot = if tid == pid {
                &mut cpu.main
            } else if comm.starts_with("emitter-mqtt-pu") {
                &mut cpu.publisher
            } else if comm.starts_with("bench-counter") {
                &mut cpu.counter
            } else if comm.starts_with("emitter-mqtt-re") {
                &mut cpu.relay
            } else {
                &mut cpu.paho
            };
            *slot += ticks;
        }
        cpu
    }

    pub fn since(self, before: Cpu) -> Cpu {
        Cpu {
            main: self.main.saturating_sub(before.main),
            publisher: self.publisher.saturating_sub(before.publisher),
            counter: self.counter.saturating_sub(before.counter),
            relay: self.relay.saturating_sub(before.relay),
            paho: self.paho.saturating_sub(before.paho),
            broker: self.broker.saturating_sub(before.broker),
        }
    }

    pub fn add(&mut self, other: Cpu) {
        self.main += other.main;
        self.publisher += other.publisher;
        self.counter += other.counter;
        self.relay += other.relay;
        self.paho += other.paho;
        self.broker += other.broker;
    }

    pub fn process(&self) -> u64 {
        self.main + self.publisher + self.counter + self.relay + self.paho
    }
}

/// `(comm, utime + stime)` from a `/proc/.../stat` file.
pub fn proc_ticks(path: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    // Fields after the comm start at field 3 (state); utime and stime are 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Shares of the machine's CPU capacity (all cores) used during part 1's rounds.
#[derive(Copy, Clone, Debug)]
pub struct Load {
    /// This process and its broker.
    pub ours: f64,
    /// Every other process: noise.
    pub others: f64,
}

/// `(busy, total)` clock ticks of all cores since boot, from `/proc/stat`.
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let get = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    (busy, busy + idle)
}
