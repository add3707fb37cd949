//! CI smoke test of `benches/peers.py` (the peer benchmark script): a `--quick` fan-in run
//! against ringmq (1 and 2 shards) and Mosquitto (`.ci/run` installs the `mosquitto` package)
//! must print a table with a row for each broker, each with a nonzero delivered msg/s.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Parses a delivered/s cell ("20.0k", "1.2M", "950") into msg/s.
fn rate(cell: &str) -> f64 {
    let (num, mult) = match cell.chars().last() {
        Some('k') => (&cell[..cell.len() - 1], 1e3),
        Some('M') => (&cell[..cell.len() - 1], 1e6),
        _ => (cell, 1.0),
    };
    num.parse::<f64>().map_or(0.0, |v| v * mult)
}

#[test]
fn quick_fanin_has_a_row_per_broker_with_deliveries() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ringmq"))
        .parent()
        .expect("bin dir");
    assert!(bin_dir.join("ringmq-bench").exists(), "ringmq-bench built");
    let out_base = std::env::temp_dir().join(format!("ringmq-peers-smoke-{}", std::process::id()));
    let started = Instant::now();
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers.py"))
        .args([
            "--quick",
            "--brokers",
            "ringmq,mosquitto",
            "--scenarios",
            "fanin",
        ])
        .args(["--no-build", "--quiet", "--bin-dir"])
        .arg(bin_dir)
        .arg("--out")
        .arg(&out_base)
        .stdin(Stdio::null())
        .output()
        .expect("run python3 benches/peers.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "peers.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!(
        "{stdout}\n(peers.py took {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    // The printed table: a header, then rows starting with the broker's name.
    assert!(stdout.contains("delivered/s"), "no table:\n{stdout}");
    // The same table as markdown, split into cells.
    let md_path = out_base.with_extension("md");
    let md = std::fs::read_to_string(&md_path).expect("markdown written by --out");
    let _ = std::fs::remove_file(&md_path);
    let _ = std::fs::remove_file(out_base.with_extension("json"));
    let rows: Vec<Vec<&str>> = md
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (broker, scenario, delivered) = (col("broker"), col("scenario"), col("delivered/s"));
    for want in ["ringmq-1", "ringmq-2", "mosquitto"] {
        let mine: Vec<_> = rows[1..].iter().filter(|r| r[broker] == want).collect();
        assert!(!mine.is_empty(), "no row for {want}:\n{md}");
        assert!(
            stdout.lines().any(|l| l.starts_with(want)),
            "printed table has no row for {want}:\n{stdout}"
        );
        for r in mine {
            assert!(
                rate(r[delivered]) > 0.0,
                "{want} {}: delivered/s {:?}:\n{md}",
                r[scenario],
                r[delivered]
            );
        }
    }
}

/// CI smoke test of `benches/batch_window.py`: a `--quick` run (ringmq with and without the
/// window, open and closed loop) prints a table whose every row delivered messages, none lost.
#[test]
fn quick_batch_window_run_has_rows_with_deliveries() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ringmq"))
        .parent()
        .expect("bin dir");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/batch_window.py"))
        .args(["--quick", "--no-mosquitto", "--bin-dir"])
        .arg(bin_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run python3 benches/batch_window.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "batch_window.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| open") || l.starts_with("| closed"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    // Open loop at 20 k msg/s and closed loop with 4 publishers, each with windows 0 and 500.
    assert_eq!(rows.len(), 4, "{stdout}");
    for r in &rows {
        let delivered: f64 = r[3].replace(',', "").parse().expect("delivered/s");
        assert!(delivered > 0.0, "{r:?}");
        assert_eq!(r[4], "0", "lost: {r:?}");
    }
}

/// The rate search of `benches/peers.py` against a simulated broker that keeps up to a given
/// capacity: it climbs the ladder to the first bad step, then bisects twice between the last
/// good and the first bad rate, and reports the highest good one. Checks the search's rules, not
/// a broker: `run_once` is replaced by the simulation.
#[test]
fn rate_search_bisects_between_the_last_good_and_first_bad_step() {
    let script = r#"
import sys
sys.path.insert(0, sys.argv[1])
import peers

def simulated(capacity):
    def run_once(ctx, broker, run, extra, timeout_s):
        rate = float(extra[extra.index("--rate") + 1])
        ok = rate <= capacity
        return dict(delivered_per_s=min(rate, capacity), published_per_s=rate,
                    lost=0 if ok else 1, errors=0, failed=0, p99_ms=1.0, qos=1)
    return run_once

ctx = dict(quiet=True)
run = dict(id="fanin q1 16B search", ladder=[50e3, 100e3, 200e3, 300e3])
for capacity, want_best, want_steps in [
    # 100 k good, 200 k bad -> 150 k bad -> 120 k good (two bisection steps).
    (140e3, 120e3, [50e3, 100e3, 200e3, 150e3, 120e3]),
    # 150 k good -> 180 k good.
    (190e3, 180e3, [50e3, 100e3, 200e3, 150e3, 180e3]),
    # Good up to the ladder's top: nothing to refine.
    (1e9, 300e3, [50e3, 100e3, 200e3, 300e3]),
    # Bad at the first step: no good rate.
    (10e3, None, [50e3]),
]:
    peers.run_once = simulated(capacity)
    row = peers.search(ctx, "sim", run, 10)
    steps = [s["offered_rate"] for s in row["steps"]]
    assert row["max_good_rate"] == want_best, (capacity, row["max_good_rate"], steps)
    assert steps == want_steps, (capacity, steps)
# Refinement stops within a 10 % gap.
assert peers.refine(100e3, 105e3) is None
print("ok")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches"))
        // Importing the script must not leave a __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "search simulation failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
