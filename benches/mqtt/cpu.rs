//! CPU time from `/proc`: this process's threads, each by name, and the broker's
//! (on-CPU nanoseconds from `schedstat`), for both parts; part 1 sums the threads
//! by role and compares them with the whole machine's busy share.

pub use super::proc_cpu::schedstat_ns;

/// One of this process's threads and its on-CPU time so far.
pub struct Thread {
    /// The thread id; the process id for the main thread.
    pub tid: u64,
    /// Its name (`comm`).
    pub name: String,
    /// On-CPU nanoseconds since it started.
    pub ns: u64,
}

/// This process's living threads. A thread that has exited is not in the list, so
/// the benches keep every thread they measure alive across a measurement.
pub fn threads() -> Vec<Thread> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let path = task.path();
            Some(Thread {
                tid: task.file_name().to_string_lossy().parse().ok()?,
                name: std::fs::read_to_string(path.join("comm"))
                    .ok()?
                    .trim()
                    .to_owned(),
                ns: schedstat_ns(&format!("{}/schedstat", path.display()))?,
            })
        })
        .collect()
}

/// On-CPU nanoseconds of this process's threads by role, and of the broker.
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
            broker: schedstat_ns(&format!("/proc/{broker_pid}/schedstat")).unwrap_or(0),
            ..Cpu::default()
        };
        let pid = u64::from(std::process::id());
        for thread in threads() {
            let slot = if thread.tid == pid {
                &mut cpu.main
            } else if thread.name.starts_with("emitter-mqtt-pu") {
                &mut cpu.publisher
            } else if thread.name.starts_with("bench-counter") {
                &mut cpu.counter
            } else if thread.name.starts_with("emitter-mqtt-re") {
                &mut cpu.relay
            } else {
                &mut cpu.paho
            };
            *slot += thread.ns;
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

/// Shares of the machine's CPU capacity (all cores) used during part 1's rounds.
#[derive(Copy, Clone, Debug)]
pub struct Load {
    /// This process and its broker.
    pub ours: f64,
    /// Every other process: noise.
    pub others: f64,
}

/// `(busy, total)` nanoseconds of all cores since boot, from `/proc/stat` (which
/// counts in clock ticks of 10 ms).
pub fn machine_ns() -> (u64, u64) {
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
    const NS_PER_TICK: u64 = 10_000_000;
    (busy * NS_PER_TICK, (busy + idle) * NS_PER_TICK)
}
