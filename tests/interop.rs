//! Interoperability with independent clients: mosquitto_pub / mosquitto_sub (MQTT 3.1.1 and 5.0:
//! QoS 0/1/2, retained messages, a will on SIGKILL, a shared subscription group) and Python paho-mqtt (`interop/paho_check.py`).
//! A missing tool fails the test with the package to install.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use support::*;

const VERSIONS: [&str; 2] = ["mqttv311", "mqttv5"];

fn require(tool: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{tool}` not found on PATH: install the `{package}` package (apt-get install {package})")
    })
}

fn mosquitto_pub(broker: &Broker, version: &str, args: &[&str]) {
    let pub_bin = require("mosquitto_pub", "mosquitto-clients");
    let port = broker.port.to_string();
    let out = Command::new(pub_bin)
        .args(["-h", "127.0.0.1", "-p", &port, "-V", version])
        .args(args)
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running mosquitto_sub printing `topic|qos|retain|payload` per message.
struct Sub {
    child: Child,
    lines: Receiver<String>,
}

impl Sub {
    fn start(broker: &Broker, version: &str, args: &[&str]) -> Sub {
        let sub_bin = require("mosquitto_sub", "mosquitto-clients");
        let port = broker.port.to_string();
        let mut child = Command::new(sub_bin)
            .args(["-h", "127.0.0.1", "-p", &port, "-V", version])
            .args(["-F", "%t|%q|%r|%p"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run mosquitto_sub");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sub { child, lines }
    }

    /// The next line for which `want` holds, other lines skipped.
    fn wait_for(&self, timeout: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Publishes probes to `topic` until this subscriber prints one: it is then connected and
    /// its subscription has reached every shard.
    fn await_ready(&self, broker: &Broker, topic: &str) {
        let prefix = format!("{topic}|");
        // One probe publisher per shard: the subscription must be known on each.
        for shard in 0..broker.shards {
            let id = id_on(shard, broker.shards, "probe");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "mosquitto_sub never received a probe on {topic} from shard {shard}"
                );
                mosquitto_pub(broker, "mqttv311", &["-i", &id, "-t", topic, "-m", "probe"]);
                if self
                    .wait_for(Duration::from_millis(200), |l| l.starts_with(&prefix))
                    .is_some()
                {
                    break;
                }
            }
        }
        // Let the other probes in flight arrive and be skipped.
        while self.lines.recv_timeout(Duration::from_millis(200)).is_ok() {}
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mosquitto_clients_qos_0_1_2_across_versions() {
    let broker = Broker::start(2);
    for sub_v in VERSIONS {
        for pub_v in VERSIONS {
            let topic = format!("mq/{sub_v}/{pub_v}");
            let filter = format!("{topic}/#");
            let sub = Sub::start(&broker, sub_v, &["-q", "2", "-t", &filter]);
            sub.await_ready(&broker, &format!("{topic}/probe"));
            for qos in 0..=2 {
                let t = format!("{topic}/q{qos}");
                let payload = format!("hello {qos} from {pub_v}");
                mosquitto_pub(
                    &broker,
                    pub_v,
                    &["-q", &qos.to_string(), "-t", &t, "-m", &payload],
                );
                let expected = format!("{t}|{qos}|0|{payload}");
                let got = sub.wait_for(WAIT, |l| l.starts_with(&format!("{t}|")));
                assert_eq!(
                    got.as_deref(),
                    Some(expected.as_str()),
                    "sub {sub_v}, pub {pub_v}"
                );
            }
        }
    }
    // Delivery at min(publish QoS, granted QoS).
    let sub = Sub::start(&broker, "mqttv5", &["-q", "1", "-t", "mq/min/#"]);
    sub.await_ready(&broker, "mq/min/probe");
    mosquitto_pub(
        &broker,
        "mqttv311",
        &["-q", "2", "-t", "mq/min/x", "-m", "two"],
    );
    let got = sub.wait_for(WAIT, |l| l.starts_with("mq/min/x|"));
    assert_eq!(got.as_deref(), Some("mq/min/x|1|0|two"));
}

#[test]
fn mosquitto_subs_share_a_group_round_robin() {
    let broker = Broker::start(2);
    let a = Sub::start(&broker, "mqttv5", &["-q", "1", "-t", "$share/ig/ishare/#"]);
    a.await_ready(&broker, "ishare/probe");
    let b = Sub::start(
        &broker,
        "mqttv311",
        &["-q", "1", "-t", "$share/ig/ishare/#"],
    );
    b.await_ready(&broker, "ishare/probe");
    // One publishing connection (`-l`: a message per stdin line): round robin alternates.
    let pub_bin = require("mosquitto_pub", "mosquitto-clients");
    let mut child = Command::new(pub_bin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-V",
            "mqttv5",
        ])
        .args(["-q", "1", "-t", "ishare/x", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run mosquitto_pub");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..20 {
            writeln!(stdin, "m{i}").unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
    let take = |s: &Sub| {
        let mut got = Vec::new();
        while let Some(l) = s.wait_for(Duration::from_millis(700), |l| l.starts_with("ishare/x|")) {
            got.push(l.rsplit('|').next().unwrap().to_string());
        }
        got
    };
    let (at_a, at_b) = (take(&a), take(&b));
    assert_eq!((at_a.len(), at_b.len()), (10, 10), "{at_a:?} {at_b:?}");
    let mut all: Vec<String> = at_a.into_iter().chain(at_b).collect();
    all.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
    assert_eq!(all, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
}

#[test]
fn mosquitto_clients_retained_messages() {
    let broker = Broker::start(2);
    for v in VERSIONS {
        let topic = format!("ret/{v}/state");
        let payload = format!("retained by {v}");
        mosquitto_pub(&broker, v, &["-r", "-q", "1", "-t", &topic, "-m", &payload]);
        // A later subscriber gets it with the retain flag (the retained store may sit on another
        // shard, so a subscriber that came too early is retried).
        let expected = format!("{topic}|1|1|{payload}");
        let mut got = None;
        for _ in 0..5 {
            let sub = Sub::start(&broker, v, &["-q", "1", "-t", &topic, "-C", "1", "-W", "3"]);
            got = sub.wait_for(Duration::from_secs(4), |_| true);
            if got.is_some() {
                break;
            }
        }
        assert_eq!(got.as_deref(), Some(expected.as_str()), "{v}");
        // Clearing it: a new subscriber gets nothing.
        mosquitto_pub(&broker, v, &["-r", "-n", "-t", &topic]);
        std::thread::sleep(Duration::from_millis(300));
        let sub = Sub::start(&broker, v, &["-t", &topic, "-W", "2"]);
        assert_eq!(sub.wait_for(Duration::from_secs(3), |_| true), None, "{v}");
    }
}

#[test]
fn mosquitto_sub_will_on_sigkill() {
    let broker = Broker::start(2);
    let watcher = Sub::start(&broker, "mqttv5", &["-q", "1", "-t", "wills/#"]);
    watcher.await_ready(&broker, "wills/probe");
    for v in VERSIONS {
        let will_topic = format!("wills/{v}");
        let own = format!("willer/{v}");
        let mut willer = Sub::start(
            &broker,
            v,
            &[
                "-t",
                &own,
                "--will-topic",
                &will_topic,
                "--will-payload",
                &format!("{v} died"),
                "--will-qos",
                "1",
            ],
        );
        // Connected (and its probe reached it) before it is killed.
        willer.await_ready(&broker, &own);
        // Its will reaches the watcher: publish from the willer's shard is routed like any other.
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(willer.child.id() as i32, libc::SIGKILL) };
        let _ = willer.child.wait();
        let got = watcher.wait_for(WAIT, |l| l.starts_with(&format!("{will_topic}|")));
        assert_eq!(
            got.as_deref(),
            Some(format!("{will_topic}|1|0|{v} died").as_str())
        );
    }
}

fn python_with_paho() -> PathBuf {
    let mut candidates = vec![PathBuf::from("python3")];
    // Debian's python3-paho-mqtt is installed for the system interpreter, which a pyenv or venv
    // `python3` earlier on PATH does not see.
    candidates.push(PathBuf::from("/usr/bin/python3"));
    let mut tried = Vec::new();
    for py in candidates {
        match Command::new(&py)
            .args(["-c", "import paho.mqtt.client"])
            .output()
        {
            Ok(out) if out.status.success() => return py,
            Ok(out) => tried.push(format!(
                "{}: {}",
                py.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => tried.push(format!("{}: {e}", py.display())),
        }
    }
    panic!(
        "no python3 with paho-mqtt: install the `python3-paho-mqtt` package (apt-get install \
         python3 python3-paho-mqtt) or `pip install paho-mqtt`; tried {tried:?}"
    );
}

#[test]
fn paho_mqtt_v311_and_v5_clients() {
    let python = python_with_paho();
    let broker = Broker::start(2);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/paho_check.py");
    let out = Command::new(&python)
        .arg(script)
        .arg("127.0.0.1")
        .arg(broker.port.to_string())
        .output()
        .expect("run paho_check.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "paho_check.py failed:\n{text}");
    assert!(text.contains("all paho checks passed"), "{text}");
}
