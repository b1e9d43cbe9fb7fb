//! Shared by the database benches: an interleaved emitting/plain measurement, the
//! `users` table they write (`users`) and CPU time read from `/proc` (`cpu`).
//!
//! Criterion runs the functions of a group one after the other, so a few percent of
//! drift in the machine's speed (fsync latency, other processes on a small machine)
//! can swamp a few percent of difference. Here the two sides alternate round by
//! round in ABBA order and the ratio is taken per round, which cancels slow drift.
//!
//! Each bench uses a different subset of these helpers.
#![allow(dead_code)]

pub mod cpu;
pub mod users;

use std::time::Instant;

/// The label of the interleaved lines that show the floor: RETURNING alone.
pub const FLOOR: &str = "  RETURNING alone";

/// Runs `op(state, emitting)` `per_round` times a side for `rounds` rounds (after
/// `rounds / 10` warm-up rounds), alternating which side goes first. `prepare` runs
/// before each side's block, unmeasured. Prints and returns the median time per
/// call of each side in microseconds and the median of the per-round ratios.
pub fn interleaved<S>(
    state: &mut S,
    name: &str,
    rounds: u32,
    per_round: u32,
    prepare: impl FnMut(&mut S),
    op: impl FnMut(&mut S, bool),
) -> (f64, f64, f64) {
    interleaved_as(
        state,
        name,
        ["emitting", "plain"],
        rounds,
        per_round,
        prepare,
        op,
    )
}

/// [`interleaved`] with other names for the two sides (`op` gets `true` for the
/// first).
pub fn interleaved_as<S>(
    state: &mut S,
    name: &str,
    sides: [&str; 2],
    rounds: u32,
    per_round: u32,
    mut prepare: impl FnMut(&mut S),
    mut op: impl FnMut(&mut S, bool),
) -> (f64, f64, f64) {
    let warm_up = rounds / 10;
    let (mut emitting, mut plain, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..warm_up + rounds {
        let mut micros = [0.0; 2];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            prepare(state);
            let start = Instant::now();
            for _ in 0..per_round {
                op(state, side == 0);
            }
            micros[side] = start.elapsed().as_secs_f64() * 1e6 / f64::from(per_round);
        }
        if round >= warm_up {
            emitting.push(micros[0]);
            plain.push(micros[1]);
            ratios.push(micros[0] / micros[1]);
        }
    }
    let (e, p, r) = (
        median(&mut emitting),
        median(&mut plain),
        median(&mut ratios),
    );
    let [a, b] = sides;
    println!("  {name:<26} {a} {e:>9.1} us   {b} {p:>9.1} us   ratio {r:.3}");
    (e, p, r)
}

/// Prints the header of a table of [`interleaved`] lines.
pub fn header(rounds: &str) {
    println!(
        "\ninterleaved emitting/plain (ABBA, {rounds}); medians per statement, median of per-round ratios:"
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
