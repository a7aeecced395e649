//! What every benchmark shares: the results table, statistics, clocks and memory readings.
//!
//! A benchmark measures a figure and a baseline in the same run and prints both with their
//! ratio and the project's target. Nothing here asserts a timing: a missed target is a row
//! that says "no", and the exit code stays 0.

#![allow(dead_code)] // Each benchmark uses a different part of this module.

pub mod fake_rig;
pub mod heap;
pub mod swarm;

use std::time::Duration;

/// Returns false (after saying why) unless the binary runs as a benchmark.
///
/// `cargo bench` passes `--bench`; `cargo test --benches` and test runners that list
/// tests (`--list`) do not, and must not start a run that takes seconds to minutes.
pub fn bench_mode(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        // A test runner asking for tests: there are none.
        return false;
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("{name}: a benchmark, not a test; run it with `cargo bench --bench {name}`");
        return false;
    }
    true
}

/// Reads a positive whole number from the environment, or `default`.
pub fn env_count(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// What a row's figure is compared against.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The figure must be below this.
    Below(f64),
    /// The figure must be this or less.
    AtMost(f64),
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure divided by the baseline must be at most this.
    RatioAtMost(f64),
    /// No target: shown for context.
    None,
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// The figure.
    pub value: f64,
    /// The baseline measured in the same run, if any, in the same unit.
    pub baseline: Option<f64>,
    /// Unit of value and baseline ("ms", "MB", "req/s", "calls").
    pub unit: &'static str,
    /// The project's target.
    pub target: Target,
}

impl Row {
    /// A row with a baseline.
    pub fn new(
        metric: impl Into<String>,
        value: f64,
        baseline: Option<f64>,
        unit: &'static str,
        target: Target,
    ) -> Self {
        Self {
            metric: metric.into(),
            value,
            baseline,
            unit,
            target,
        }
    }

    fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|b| *b > 0.0).map(|b| self.value / b)
    }

    fn met(&self) -> &'static str {
        let yes = match self.target {
            Target::Below(t) => self.value < t,
            Target::AtMost(t) => self.value <= t,
            Target::AtLeast(t) => self.value >= t,
            Target::RatioAtMost(t) => match self.ratio() {
                Some(r) => r <= t,
                None => return "?",
            },
            Target::None => return "",
        };
        if yes { "yes" } else { "NO" }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::Below(t) => format!("< {}", number(t, self.unit)),
            Target::AtMost(t) => format!("<= {}", number(t, self.unit)),
            Target::AtLeast(t) => format!(">= {}", number(t, self.unit)),
            Target::RatioAtMost(t) => format!("ratio <= {t}"),
            Target::None => String::new(),
        }
    }
}

fn number(value: f64, unit: &str) -> String {
    let digits = if value.abs() >= 100.0 || value.fract() == 0.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {unit}")
}

/// Prints a titled table of rows, then the notes (what each baseline is, conditions).
pub fn print_table(title: &str, rows: &[Row], notes: &[String]) {
    let header = ["metric", "value", "baseline", "ratio", "target", "met?"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.metric.clone(),
                number(r.value, r.unit),
                r.baseline.map(|b| number(b, r.unit)).unwrap_or_default(),
                r.ratio().map(|x| format!("{x:.2}x")).unwrap_or_default(),
                r.target_text(),
                r.met().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    println!("\n== {title} ==");
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(&header.map(String::from));
    for row in &cells {
        line(row);
    }
    for note in notes {
        println!("  * {note}");
    }
}

/// Sorted samples, for percentiles.
#[derive(Debug, Clone)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Samples in milliseconds from durations.
    pub fn millis(durations: &[Duration]) -> Self {
        Self::new(durations.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    /// Any samples.
    pub fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self(values)
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-th percentile (0..=100), nearest rank; NaN without samples.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    /// The median.
    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    /// The smallest.
    pub fn min(&self) -> f64 {
        self.0.first().copied().unwrap_or(f64::NAN)
    }

    /// The largest.
    pub fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }
}

/// CPU time consumed so far by a clock: the whole process or the calling thread.
#[derive(Debug, Clone, Copy)]
pub enum CpuClock {
    /// Every thread of this process.
    Process,
    /// The calling thread only.
    Thread,
}

impl CpuClock {
    /// CPU time used so far.
    pub fn now(self) -> Duration {
        let id = match self {
            Self::Process => libc::CLOCK_PROCESS_CPUTIME_ID,
            Self::Thread => libc::CLOCK_THREAD_CPUTIME_ID,
        };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec and `id` a clock every Linux has.
        let rc = unsafe { libc::clock_gettime(id, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime failed");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

/// A field of /proc/self/status in kilobytes, e.g. "VmRSS" or "VmHWM".
pub fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Resident memory now, in MB (10^6 bytes).
pub fn rss_mb() -> f64 {
    proc_status_kb("VmRSS") as f64 * 1024.0 / 1e6
}
