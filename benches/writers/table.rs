//! The writers table: one line per writer count, its ratio with the spread of the
//! per-round ratios, the waits per commit and the CPU time per statement.

use super::waits::Waits;

/// One line of the table: its per-statement medians, ratio and spread.
pub struct Line {
    pub plain: f64,
    pub emitting: f64,
    pub ratio: f64,
    /// Interquartile range of the per-round ratios.
    pub iqr: (f64, f64),
    /// 95% confidence interval of the median ratio.
    pub ci: (f64, f64),
    pub waits: Waits,
    /// This process's CPU time per statement, emitting and plain side (us),
    /// over every measured round.
    pub cpu: Option<(f64, f64)>,
    /// The PostgreSQL server's, likewise.
    pub server: Option<(f64, f64)>,
}

/// The median of `values` and a 95% confidence interval for it (the order
/// statistics at n/2 -+ 0.98 sqrt(n)), and the quartiles.
pub fn summary(values: &mut [f64]) -> (f64, (f64, f64), (f64, f64)) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let half = 0.98 * (n as f64).sqrt();
    let at = |rank: f64| values[(rank.round().max(0.0) as usize).min(n - 1)];
    let mid = n as f64 / 2.0;
    (
        values[n / 2],
        (at(mid - half), at(mid + half)),
        (at(n as f64 * 0.25), at(n as f64 * 0.75)),
    )
}

pub fn print_header() {
    println!(
        "{:<8} {:>7} {:>8} {:>9} {:>6} {:>13} {:>13} {:>8} {:>8} {:>8} {:>7} {:>11} {:>11}",
        "op",
        "writers",
        "plain",
        "emitting",
        "ratio",
        "IQR",
        "95% CI",
        "lock",
        "turn",
        "deliver",
        "waited",
        "our CPU",
        "server CPU"
    );
    println!(
        "{:<8} {:>7} {:>8} {:>9} {:>6} {:>13} {:>13} {:>8} {:>8} {:>8} {:>7} {:>11} {:>11}",
        "",
        "",
        "us/stmt",
        "us/stmt",
        "",
        "of ratios",
        "of median",
        "us/cmt",
        "us/cmt",
        "us/cmt",
        "turn",
        "em/pl us",
        "em/pl us"
    );
}

pub fn print_line(op: &str, writers: &str, line: &Line) {
    let [commits, lock, turn, deliver, turn_waits] = line.waits.0;
    let per_commit = |ns: u64| {
        if commits == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", ns as f64 / commits as f64 / 1e3)
        }
    };
    let waited = if commits == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", turn_waits as f64 * 100.0 / commits as f64)
    };
    let cpu = |sides: Option<(f64, f64)>| {
        sides.map_or("-".to_string(), |(e, p)| format!("{e:.1}/{p:.1}"))
    };
    println!(
        "{:<8} {:>7} {:>8.1} {:>9.1} {:>6.3} {:>13} {:>13} {:>8} {:>8} {:>8} {:>7} {:>11} {:>11}",
        op,
        writers,
        line.plain,
        line.emitting,
        line.ratio,
        format!("{:.3}-{:.3}", line.iqr.0, line.iqr.1),
        format!("{:.3}-{:.3}", line.ci.0, line.ci.1),
        per_commit(lock),
        per_commit(turn),
        per_commit(deliver),
        waited,
        cpu(line.cpu),
        cpu(line.server)
    );
}
