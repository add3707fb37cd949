//! The `ringmq` binary: command line, configuration, logging, then the runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ringmq::broker::Settings;
use ringmq::config::{Config, DEFAULT_CONFIG, Shards};
use ringmq::runtime::{self, Options};

/// An MQTT 3.1 / 3.1.1 / 5.0 broker on a thread-per-core io_uring runtime.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (without one, the embedded defaults apply).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT; repeat for several. Replaces the config's listeners.
    #[arg(long, value_name = "HOST:PORT")]
    bind: Vec<SocketAddr>,
    /// Number of shards (default: the config's `runtime.shards`, "auto" = one per core).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Do not pin shards to cores.
    #[arg(long)]
    no_pin: bool,
    /// Cores for the shards, in order (e.g. 2,3,4,5).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    cores: Vec<usize>,
    /// Print the embedded, commented default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Log level: error, warn, info, debug or trace (overrides `log.level` and RUST_LOG).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    // Returns only if it did not re-execute (already set, or the exec failed).
    let reexec_error = malloc_thread_cache::turn_off();
    let config = match &cli.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = not_yet_supported(&config) {
        eprintln!("ringmq: config: {e}");
        return ExitCode::from(2);
    }
    init_logging(&cli, &config);
    if let Some(e) = reexec_error {
        tracing::warn!("glibc's per-thread malloc cache stays on: cannot re-execute: {e}");
    }
    let opts = match options(&cli, &config) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmq: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Settings this build parses but does not act on yet: refused, rather than silently ignored.
fn not_yet_supported(c: &Config) -> Result<(), String> {
    if let Some(d) = c.mqtt.retry_interval {
        return Err(format!(
            "mqtt.retry_interval = \"{}s\": only \"infinity\" is supported (unacknowledged \
             messages are resent when the session resumes, as MQTT 5.0 requires)",
            d.as_secs()
        ));
    }
    Ok(())
}

/// The runtime options from the command line over the config; a core list that does not fit the
/// shard count is refused.
fn options(cli: &Cli, config: &Config) -> Result<Options, String> {
    let binds = if cli.bind.is_empty() {
        config
            .listeners
            .tcp
            .values()
            .filter(|l| l.enable)
            .map(|l| (l.bind, l.backlog))
            .collect()
    } else {
        let backlog = config
            .listeners
            .tcp
            .values()
            .map(|l| l.backlog)
            .max()
            .unwrap_or(1024);
        cli.bind.iter().map(|&a| (a, backlog)).collect()
    };
    let cores = if cli.cores.is_empty() {
        config.runtime.cores.clone()
    } else {
        cli.cores.clone()
    };
    let shards = cli.shards.unwrap_or(match config.runtime.shards {
        Shards::Count(n) => n.get(),
        Shards::Auto if !cores.is_empty() => cores.len(),
        Shards::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    if shards == 0 {
        return Err("--shards 0: at least one shard is needed".into());
    }
    if !cores.is_empty() && cores.len() != shards {
        let from = if cli.cores.is_empty() {
            "runtime.cores"
        } else {
            "--cores"
        };
        return Err(format!(
            "{from} lists {} core(s) ({cores:?}) but {shards} shard(s) are to run: give one core per shard",
            cores.len()
        ));
    }
    let mut seen = cores.clone();
    seen.sort_unstable();
    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("--cores {cores:?}: core {} is listed twice", w[0]));
    }
    Ok(Options {
        settings: Settings::from_config(config),
        binds,
        shards,
        pin_cores: config.runtime.pin_cores && !cli.no_pin,
        cores,
        batch_window: std::time::Duration::from_micros(config.runtime.batch_window_us.into()),
    })
}

fn init_logging(cli: &Cli, config: &Config) {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.verbose, &cli.log_level) {
        (_, Some(l)) => l.clone(),
        (0, None) => {
            std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.as_str().to_owned())
        }
        (1, None) => "debug".into(),
        _ => "trace".into(),
    };
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| {
        eprintln!("ringmq: unknown log level {level:?}; using info");
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// glibc keeps up to seven freed blocks of every small size class (up to 1 KB) per thread, its
/// tcache, and nothing can flush it: after a connect burst each shard thread held 165-185
/// such blocks, pinning 16-24 otherwise free pages of its heap (`malloc_trim` cannot return
/// them), about 130 B per connection at 1,000 connections on 2 shards (BENCHMARKS.md, "Memory
/// per idle connection"). The cache is a tunable read only at process start, so the broker
/// re-executes itself once with `glibc.malloc.tcache_count=0` added to `GLIBC_TUNABLES`, before
/// any thread exists (same pid, arguments and descriptors). Measured cost: none visible at
/// 1.5 M msg/s fan-in (0.66 CPU-s per million either way; each shard has its own arena, so the
/// arena lock taken instead is uncontended); in the most allocation-heavy profile (fan-out QoS 1)
/// malloc / free take 3.2 % of the shard instead of 2.6 %. An operator who sets
/// `glibc.malloc.tcache_count` in `GLIBC_TUNABLES` (to 7, glibc's default, to keep the cache) is
/// left alone.
mod malloc_thread_cache {
    /// The glibc tunable.
    pub const TUNABLE: &str = "glibc.malloc.tcache_count";
    /// Set on the re-executed process: it never re-executes again, whatever a C library does
    /// with `GLIBC_TUNABLES` once it has read it.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    const REEXECUTED: &str = "RINGMQ_REEXECUTED";

    /// `GLIBC_TUNABLES` with the cache turned off, or `None` when it already sets the count.
    pub fn tunables_without_cache(current: Option<&str>) -> Option<String> {
        match current {
            Some(v) if v.split(':').any(|t| t.split('=').next() == Some(TUNABLE)) => None,
            Some(v) if !v.is_empty() => Some(format!("{v}:{TUNABLE}=0")),
            _ => Some(format!("{TUNABLE}=0")),
        }
    }

    /// Re-executes the broker with the cache off unless `GLIBC_TUNABLES` already sets it;
    /// returns the error if the exec failed (the broker then runs with the cache).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn turn_off() -> Option<std::io::Error> {
        use std::os::unix::process::CommandExt;

        if std::env::var_os(REEXECUTED).is_some() {
            return None;
        }
        let current = match std::env::var("GLIBC_TUNABLES") {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            // Not ours to rewrite.
            Err(std::env::VarError::NotUnicode(_)) => return None,
        };
        let tunables = tunables_without_cache(current.as_deref())?;
        // The executable's own path, not `/proc/self/exe`: the process name (`comm`, what `ps`,
        // `pidof` and `pkill` see) becomes the basename of the path executed.
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => return Some(e),
        };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        cmd.args(args)
            .env("GLIBC_TUNABLES", tunables)
            .env(REEXECUTED, "1");
        Some(cmd.exec())
    }

    /// Other C libraries have no such cache to turn off.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub fn turn_off() -> Option<std::io::Error> {
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_tunable_is_added_once_and_an_operators_choice_is_kept() {
            let off = "glibc.malloc.tcache_count=0";
            assert_eq!(tunables_without_cache(None).as_deref(), Some(off));
            assert_eq!(tunables_without_cache(Some("")).as_deref(), Some(off));
            assert_eq!(
                tunables_without_cache(Some("glibc.malloc.arena_max=2")).as_deref(),
                Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0")
            );
            assert_eq!(tunables_without_cache(Some(off)), None);
            assert_eq!(
                tunables_without_cache(Some(
                    "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=7"
                )),
                None
            );
            // Another tunable whose name merely starts the same is not the count.
            assert_eq!(
                tunables_without_cache(Some("glibc.malloc.tcache_count_x=1")).as_deref(),
                Some("glibc.malloc.tcache_count_x=1:glibc.malloc.tcache_count=0")
            );
        }
    }
}
