//! A deadlock must fail its test rather than hang the run: [`within_deadline`].

use std::sync::mpsc;
use std::time::Duration;

/// How long a scenario may take before it counts as hung.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `scenario` on its own thread; a scenario still running after [`DEADLINE`]
/// fails the test as a deadlock (its thread is left behind).
pub fn within_deadline(name: &str, scenario: impl FnOnce() + Send + 'static) {
    let (done_tx, done) = mpsc::channel();
    let runner = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            scenario();
            let _ = done_tx.send(());
        })
        .expect("spawn the scenario");
    match done.recv_timeout(DEADLINE) {
        Ok(()) => runner.join().expect("the scenario ran"),
        // The sender went without a word: the scenario panicked; show its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = runner.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: not finished within {DEADLINE:?}: deadlocked")
        }
    }
}
