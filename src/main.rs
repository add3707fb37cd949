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
