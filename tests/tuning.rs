//! `tuning/`: the kernel profiles are well-formed, commented and consistent with ringmq's own
//! limits; `tuning/apply` reports every value in a dry run and changes nothing (checked against
//! the real /proc and /sys, and against a fake root); with `--apply` against a fake root it
//! writes the recommended values, reads them back, and fails when one does not take.
//!
//! Nothing here writes to the real system: every `--apply` runs with `--root <temp dir>`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

const TUNING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning");
const KERNEL_PROFILES: [&str; 2] = ["idle-million", "throughput"];
const CPU_PROFILES: [&str; 3] = ["dedicated", "shared-2core", "all-cores"];
/// Lockable memory one shard needs (`MEMLOCK_PER_SHARD_BYTES` in src/runtime/mod.rs).
const MEMLOCK_PER_SHARD: u64 = 256 << 10;

// ---------------------------------------------------------------------------------------------
// The profile files, parsed independently of tuning/apply.

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    optional: bool,
    at_least: bool,
    comment: Vec<String>,
    line: usize,
}

fn sysctl_file(profile: &str) -> PathBuf {
    Path::new(TUNING)
        .join("sysctl")
        .join(format!("{profile}.conf"))
}

/// Parses a sysctl.d file, asserting the format: `[-]key = value`, each right below a comment.
fn entries(profile: &str) -> Vec<Entry> {
    let path = sysctl_file(profile);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = format!("{}:{}", path.display(), i + 1);
        if line.is_empty() {
            comment.clear();
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim().to_owned());
            continue;
        }
        let (optional, body) = match line.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (key, value) = body
            .split_once(" = ")
            .unwrap_or_else(|| panic!("{at}: not `key = value`: {line:?}"));
        assert!(
            !key.is_empty()
                && key.split('.').count() >= 2
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)),
            "{at}: bad key {key:?}"
        );
        assert!(
            !value.trim().is_empty() && !value.contains('#'),
            "{at}: bad value {value:?}"
        );
        let words: usize = comment.iter().map(|c| c.split_whitespace().count()).sum();
        assert!(
            words >= 8,
            "{at}: {key} needs a comment right above it saying why (found {comment:?})"
        );
        let at_least = comment.iter().any(|c| c.starts_with("@at-least"));
        if at_least {
            value.parse::<u64>().unwrap_or_else(|_| {
                panic!("{at}: @at-least needs a single integer, got {value:?}")
            });
        }
        out.push(Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            optional,
            at_least,
            comment: std::mem::take(&mut comment),
            line: i + 1,
        });
    }
    assert!(!out.is_empty(), "{}: no settings", path.display());
    out
}

fn value_of<'a>(entries: &'a [Entry], key: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

fn numbers(v: &str) -> Vec<u64> {
    v.split_whitespace()
        .map(|x| {
            x.parse()
                .unwrap_or_else(|_| panic!("not a number in {v:?}"))
        })
        .collect()
}

fn proc_sys(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// LimitNOFILE= and LimitMEMLOCK= (bytes) of the systemd unit.
fn unit_limits() -> (u64, u64) {
    let unit = fs::read_to_string(Path::new(TUNING).join("systemd/ringmq.service")).unwrap();
    let get = |name: &str| {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{name}=")))
            .next_back()
            .unwrap_or_else(|| panic!("ringmq.service has no {name}="))
            .to_owned()
    };
    let nofile = get("LimitNOFILE").parse().expect("LimitNOFILE is a number");
    let memlock = get("LimitMEMLOCK");
    let (digits, unit) = memlock.split_at(
        memlock
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(memlock.len()),
    );
    let mult = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        other => panic!("LimitMEMLOCK unit {other:?}"),
    };
    (nofile, digits.parse::<u64>().unwrap() * mult)
}

// ---------------------------------------------------------------------------------------------
// Running tuning/apply

fn apply(args: &[&str], root: Option<&Path>) -> Output {
    let mut cmd = Command::new(Path::new(TUNING).join("apply"));
    cmd.args(args).env_remove("RINGMQ_TUNING_ROOT");
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    cmd.output()
        .expect("tuning/apply runs (it needs python3 on PATH)")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The table row naming `key` (its first column), from the first table it appears in.
fn row<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(key))
}

/// A file's value as tuning/apply shows it: whitespace collapsed, "(empty)" for nothing.
fn shown(v: &str) -> String {
    let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
    if v.is_empty() { "(empty)".into() } else { v }
}

fn read_opt(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Network interfaces with a device behind them (real NICs, virtio), for IRQ checks.
fn devices_with_irqs() -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("device").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Every value a dry run for `iface` reads and would set: the profile's sysctls, the
/// interface's IRQ affinities and RPS/XPS masks.
fn snapshot(keys: &[String], iface: &str) -> BTreeMap<String, Option<String>> {
    let mut snap = BTreeMap::new();
    for k in keys {
        snap.insert(k.clone(), read_opt(&proc_sys(k)));
    }
    if let Ok(dir) = fs::read_dir(format!("/sys/class/net/{iface}/queues")) {
        for q in dir.filter_map(|e| e.ok()) {
            for f in ["rps_cpus", "xps_cpus"] {
                let p = q.path().join(f);
                snap.insert(p.display().to_string(), read_opt(&p));
            }
        }
    }
    // irqbalance moves interrupts on its own: their affinities prove nothing while it runs.
    if irqbalance_runs() {
        return snap;
    }
    if let Ok(dir) = fs::read_dir("/proc/irq") {
        for irq in dir.filter_map(|e| e.ok()) {
            let p = irq.path().join("smp_affinity_list");
            if p.exists() {
                snap.insert(p.display().to_string(), read_opt(&p));
            }
        }
    }
    snap
}

fn irqbalance_runs() -> bool {
    static RUNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RUNS.get_or_init(|| {
        fs::read_dir("/proc").is_ok_and(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| read_opt(&e.path().join("comm")).is_some_and(|c| c.trim() == "irqbalance"))
        })
    })
}

// ---------------------------------------------------------------------------------------------
// A fake root: /proc and /sys files in a temp directory

static NEXT_ROOT: AtomicUsize = AtomicUsize::new(0);

struct FakeRoot(PathBuf);

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl FakeRoot {
    /// 8 online CPUs, a 4-queue NIC `fake0` with MSI interrupts 100..=104, this host's current
    /// values for every key of both kernel profiles, and process limits that satisfy the unit.
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ringmq-tuning-test-{}-{}",
            std::process::id(),
            NEXT_ROOT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        let root = FakeRoot(dir);
        for profile in KERNEL_PROFILES {
            for e in entries(profile) {
                if let Some(v) = read_opt(&proc_sys(&e.key)) {
                    root.put(&format!("proc/sys/{}", e.key.replace('.', "/")), &v);
                }
            }
        }
        root.put("sys/devices/system/cpu/online", "0-7\n");
        let (nofile, memlock) = unit_limits();
        root.set_limits(nofile, memlock);
        root.put(
            "proc/self/status",
            "Name:\tapply\nCapEff:\t0000000000000000\n",
        );
        root.put("proc/cmdline", "console=ttyS0 quiet\n");
        let mut interrupts = String::from("            CPU0       CPU1\n");
        for (i, irq) in (100..=104).enumerate() {
            root.put(
                &format!("sys/class/net/fake0/device/msi_irqs/{irq}"),
                "msix\n",
            );
            root.put(&format!("proc/irq/{irq}/smp_affinity_list"), "0-7\n");
            let name = if i == 0 {
                "fake0-config".to_owned()
            } else {
                format!("fake0-TxRx-{}", i - 1)
            };
            interrupts += &format!(" {irq}:   0   0  PCI-MSIX-0000:00:05.0  {i}-edge  {name}\n");
        }
        interrupts += " 105:   0   0  PCI-MSIX-0000:00:06.0  0-edge  other-nic\n";
        root.put("proc/irq/105/smp_affinity_list", "0-7\n");
        root.put("proc/interrupts", &interrupts);
        for q in 0..4 {
            root.put(
                &format!("sys/class/net/fake0/queues/rx-{q}/rps_cpus"),
                "ff\n",
            );
            root.put(
                &format!("sys/class/net/fake0/queues/tx-{q}/xps_cpus"),
                "00\n",
            );
        }
        root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn put(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn get(&self, rel: &str) -> String {
        shown(&fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
    }

    fn sysctl(&self, key: &str) -> String {
        self.get(&format!("proc/sys/{}", key.replace('.', "/")))
    }

    fn set_limits(&self, nofile: u64, memlock: u64) {
        self.put(
            "proc/self/limits",
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max cpu time              unlimited            unlimited            seconds   \n\
                 Max open files            {nofile:<20} {nofile:<20} files     \n\
                 Max locked memory         {memlock:<20} {memlock:<20} bytes     \n"
            ),
        );
    }

    /// Every path under the root with its content and modification time.
    fn tree(&self) -> BTreeMap<PathBuf, (Vec<u8>, Option<SystemTime>)> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, Option<SystemTime>)>) {
            for e in fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
                let p = e.path();
                let meta = fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    out.insert(p.clone(), (Vec::new(), meta.modified().ok()));
                    walk(&p, out);
                } else {
                    out.insert(
                        p.clone(),
                        (fs::read(&p).unwrap_or_default(), meta.modified().ok()),
                    );
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.0, &mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The files

#[test]
fn every_sysctl_setting_is_a_commented_key_value_line() {
    for profile in KERNEL_PROFILES {
        let es = entries(profile);
        let mut seen = BTreeSet::new();
        for e in &es {
            assert!(seen.insert(&e.key), "{profile}: {} twice", e.key);
            if e.optional {
                assert!(
                    e.comment.iter().any(|c| c.starts_with("Optional (")),
                    "{profile}:{}: optional key {} must say why in an `Optional (...)` comment",
                    e.line,
                    e.key
                );
            }
        }
    }
}

#[test]
fn every_sysctl_key_exists_here_or_is_marked_optional() {
    for profile in KERNEL_PROFILES {
        for e in entries(profile) {
            assert!(
                e.optional || proc_sys(&e.key).exists(),
                "{profile}:{}: {} is not in /proc/sys on this kernel; mark it optional \
                 (leading `-` and an `Optional (...)` comment) or drop it",
                e.line,
                e.key
            );
        }
    }
}

#[test]
fn idle_million_values_add_up_for_a_million_connections() {
    let es = entries("idle-million");
    let get = |k: &str| value_of(&es, k).unwrap_or_else(|| panic!("idle-million lacks {k}"));
    let conns: u64 = 1_000_000;
    // Both ends on one host: 2M sockets, each a file.
    assert!(numbers(get("fs.file-max"))[0] >= 2 * conns + 100_000);
    let (nofile, _) = unit_limits();
    assert!(
        numbers(get("fs.nr_open"))[0] >= nofile,
        "fs.nr_open below LimitNOFILE"
    );
    // tcp_mem is in pages: low covers one page for each broker socket, high one page for each
    // socket of both ends.
    let mem = numbers(get("net.ipv4.tcp_mem"));
    assert_eq!(mem.len(), 3);
    assert!(
        mem[0] < mem[1] && mem[1] < mem[2],
        "tcp_mem must ascend: {mem:?}"
    );
    assert!(
        mem[0] >= conns,
        "tcp_mem low {} pages < 1 page x {conns} sockets",
        mem[0]
    );
    assert!(
        mem[2] >= 2 * conns,
        "tcp_mem high {} pages < 1 page x {} sockets",
        mem[2],
        2 * conns
    );
    for k in ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"] {
        let v = numbers(get(k));
        assert_eq!(v.len(), 3, "{k}");
        assert!(
            v[0] <= v[1] && v[1] <= v[2],
            "{k} min <= default <= max: {v:?}"
        );
        assert!(
            v[1] <= 4096,
            "{k}: idle sockets need a small default, got {}",
            v[1]
        );
    }
    let ports = numbers(get("net.ipv4.ip_local_port_range"));
    assert!(
        ports[0] >= 1024 && ports[0] < ports[1] && ports[1] <= 65535,
        "{ports:?}"
    );
    assert_ne!(
        ports[0] % 2,
        ports[1] % 2,
        "the kernel prefers start and end of different parity"
    );
    // 64k ports per source address: the recipe's 39 source addresses must hold 1M.
    assert!((ports[1] - ports[0] + 1) * 39 >= conns);
    // The broker's default port must not be handed out as an ephemeral port.
    let reserved: Vec<u16> = get("net.ipv4.ip_local_reserved_ports")
        .split(',')
        .map(|p| p.trim().parse().unwrap())
        .collect();
    for l in ringmq::config::Config::default().listeners.tcp.values() {
        assert!(
            reserved.contains(&l.bind.port()),
            "port {} not reserved",
            l.bind.port()
        );
    }
    // somaxconn caps every listener's backlog; ringmq accepts backlog up to 65535.
    assert!(numbers(get("net.core.somaxconn"))[0] >= 65535);
    assert!(numbers(get("net.netfilter.nf_conntrack_max"))[0] >= conns);
    assert_eq!(
        get("net.ipv4.tcp_moderate_rcvbuf"),
        "1",
        "small buffers need autotuning"
    );
}

#[test]
fn throughput_values_are_consistent() {
    let es = entries("throughput");
    let get = |k: &str| value_of(&es, k).unwrap_or_else(|| panic!("throughput lacks {k}"));
    for (k, core_max) in [
        ("net.ipv4.tcp_rmem", "net.core.rmem_max"),
        ("net.ipv4.tcp_wmem", "net.core.wmem_max"),
    ] {
        let v = numbers(get(k));
        assert!(v[0] <= v[1] && v[1] <= v[2], "{k}: {v:?}");
        assert!(v[1] >= 65536, "{k}: busy connections want a larger default");
        assert!(
            numbers(get(core_max))[0] >= v[2],
            "{core_max} below {k} max"
        );
    }
    let (nofile, _) = unit_limits();
    assert!(
        numbers(get("fs.nr_open"))[0] >= nofile,
        "fs.nr_open below LimitNOFILE"
    );
    assert!(numbers(get("net.core.netdev_budget"))[0] > 300);
}

#[test]
fn systemd_unit_sets_the_limits_ringmq_needs() {
    let unit = fs::read_to_string(Path::new(TUNING).join("systemd/ringmq.service")).unwrap();
    let (nofile, memlock) = unit_limits();
    assert!(
        nofile >= 1_000_000 + 64,
        "LimitNOFILE {nofile} too low for 1M connections"
    );
    // The kernel default fs.nr_open; above it systemd cannot set the limit on a stock host.
    assert!(
        nofile <= 1_048_576,
        "LimitNOFILE above the default fs.nr_open"
    );
    let need = ringmq::limits::SHARDS_MAX as u64 * MEMLOCK_PER_SHARD;
    assert!(
        memlock >= need,
        "LimitMEMLOCK {memlock} < {need} for {} shards",
        ringmq::limits::SHARDS_MAX
    );
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart=");
    assert!(exec.contains("--config "), "{exec}");
    assert!(unit.lines().any(|l| l.starts_with("Restart=")));
    for line in unit.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        assert!(
            !line.starts_with("PrivateNetwork="),
            "a broker needs the network"
        );
        if let Some(f) = line.strip_prefix("SystemCallFilter=~") {
            assert!(
                !f.split_whitespace()
                    .any(|s| s == "@aio" || s.starts_with("io_uring")),
                "io_uring calls denied: {line}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dry runs on the real host

#[test]
fn dry_run_lists_every_key_and_changes_nothing_on_this_host() {
    for profile in KERNEL_PROFILES {
        let es = entries(profile);
        let keys: Vec<String> = es.iter().map(|e| e.key.clone()).collect();
        let before = snapshot(&keys, "lo");
        let out = apply(&[profile], None);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(text.contains("DRY RUN"), "{text}");
        for e in &es {
            let line = row(&text, &e.key)
                .unwrap_or_else(|| panic!("{profile}: no row for {}:\n{text}", e.key));
            match read_opt(&proc_sys(&e.key)) {
                Some(v) => assert!(
                    line.contains(&shown(&v)),
                    "{profile}: row for {} lacks its current value {:?}: {line}",
                    e.key,
                    shown(&v)
                ),
                None => assert!(line.contains("absent"), "{line}"),
            }
            assert!(
                line.contains(&e.value),
                "{profile}: row lacks recommended {}: {line}",
                e.value
            );
            if e.at_least {
                assert!(line.contains(&format!(">= {}", e.value)), "{line}");
            }
        }
        assert_eq!(
            snapshot(&keys, "lo"),
            before,
            "{profile}: the dry run changed the host"
        );
    }
}

#[test]
fn dry_run_with_cpu_profiles_changes_nothing_on_this_host() {
    let keys: Vec<String> = entries("idle-million").into_iter().map(|e| e.key).collect();
    let mut ifaces = vec!["lo".to_owned()];
    ifaces.extend(devices_with_irqs());
    for iface in &ifaces {
        for cpu in CPU_PROFILES {
            if cpu != "all-cores" && online_cpus() < 2 {
                continue; // these profiles need cores 0 and 1
            }
            let before = snapshot(&keys, iface);
            let out = apply(&["idle-million", "--cpu", cpu, "--iface", iface], None);
            let text = stdout(&out);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{cpu} {iface}: {}",
                describe(&out)
            );
            assert!(text.contains(&format!("[cpu {cpu}]")), "{text}");
            assert!(text.contains("ringmq: start it with"), "{text}");
            assert_eq!(
                snapshot(&keys, iface),
                before,
                "{cpu} {iface}: the dry run changed the host"
            );
        }
    }
}

#[test]
fn help_and_usage_errors() {
    let out = apply(&["--help"], None);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    for name in KERNEL_PROFILES.iter().chain(CPU_PROFILES.iter()) {
        assert!(text.contains(name), "--help does not list {name}:\n{text}");
    }
    assert!(
        text.contains("--apply") && text.contains("--root"),
        "{text}"
    );
    for args in [
        &["no-such-profile"][..],
        &["--cpu", "no-such-cpu-profile"],
        &[],
        &["idle-million", "--iface", "lo"],
        &["idle-million", "--apply", "--check"],
    ] {
        let out = apply(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// A fake root

#[test]
fn dry_runs_leave_a_fake_root_untouched() {
    let root = FakeRoot::new();
    let before = root.tree();
    // Plain dry runs exit 0; --check (the same dry run) exits 1 while something differs.
    for (profile, cpu, check) in [
        ("idle-million", "dedicated", false),
        ("throughput", "shared-2core", false),
        ("idle-million", "all-cores", true),
        ("throughput", "dedicated", true),
    ] {
        let mut args = vec![profile, "--cpu", cpu, "--iface", "fake0"];
        if check {
            args.push("--check");
        }
        let out = apply(&args, Some(&root.0));
        assert_eq!(
            out.status.code(),
            Some(check as i32),
            "{args:?}: {}",
            describe(&out)
        );
    }
    assert_eq!(root.tree(), before, "a dry run wrote under --root");
}

#[test]
fn apply_writes_every_value_into_a_fake_root_and_verifies_it() {
    for profile in KERNEL_PROFILES {
        let root = FakeRoot::new();
        // One value already above its minimum must be kept, not lowered.
        let es = entries(profile);
        let kept = es
            .iter()
            .find(|e| e.at_least && !e.optional)
            .expect("an @at-least key");
        let higher = (kept.value.parse::<u64>().unwrap() * 2).to_string();
        root.put(
            &format!("proc/sys/{}", kept.key.replace('.', "/")),
            &format!("{higher}\n"),
        );

        let before: BTreeMap<String, Option<String>> = es
            .iter()
            .map(|e| {
                let p = root.path(&format!("proc/sys/{}", e.key.replace('.', "/")));
                (e.key.clone(), read_opt(&p).map(|v| shown(&v)))
            })
            .collect();
        let out = apply(&[profile, "--apply"], Some(&root.0));
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{profile}: {}", describe(&out));
        assert!(text.contains("all values set and verified"), "{text}");
        for e in &es {
            let rel = format!("proc/sys/{}", e.key.replace('.', "/"));
            if !root.path(&rel).exists() {
                assert!(e.optional, "{} vanished", e.key);
                continue;
            }
            // A minimum keeps a higher current value (the kept key, or this host's own).
            let had = before[&e.key]
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok());
            let want = match had {
                Some(had) if e.at_least && had > e.value.parse::<u64>().unwrap() => had.to_string(),
                _ => shown(&e.value),
            };
            assert_eq!(root.sysctl(&e.key), want, "{profile}: {}", e.key);
        }
        // The previous values were saved for undoing.
        let backups: Vec<_> = fs::read_dir(root.path("var/tmp")).unwrap().collect();
        assert_eq!(backups.len(), 1, "one backup file");
        let backup = fs::read_to_string(backups[0].as_ref().unwrap().path()).unwrap();
        assert!(backup.contains("undo: sysctl -p"), "{backup}");
        // Now nothing differs.
        let out = apply(&[profile, "--check"], Some(&root.0));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    }
}

#[test]
fn apply_pins_interrupts_and_sets_rps_xps_in_a_fake_root() {
    let root = FakeRoot::new();
    let out = apply(
        &["--cpu", "dedicated", "--iface", "fake0", "--apply"],
        Some(&root.0),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for irq in 100..=104 {
        assert_eq!(
            root.get(&format!("proc/irq/{irq}/smp_affinity_list")),
            "0",
            "irq {irq}"
        );
    }
    assert_eq!(
        root.get("proc/irq/105/smp_affinity_list"),
        "0-7",
        "another device's IRQ moved"
    );
    for q in 0..4 {
        assert_eq!(
            root.get(&format!("sys/class/net/fake0/queues/rx-{q}/rps_cpus")),
            "0"
        );
        // 8 CPUs spread over 4 transmit queues: queue q gets CPUs q and q + 4.
        let mask = (1u32 << q) | (1u32 << (q + 4));
        assert_eq!(
            root.get(&format!("sys/class/net/fake0/queues/tx-{q}/xps_cpus")),
            format!("{mask:x}")
        );
    }
    assert!(text.contains("--cores 1,2,3,4,5,6,7"), "{text}");
    assert!(text.contains("isolcpus=managed_irq,domain,1-7"), "{text}");

    let out = apply(
        &["--cpu", "shared-2core", "--iface", "fake0"],
        Some(&root.0),
    );
    let text = stdout(&out);
    assert!(text.contains("--cores 1\n"), "{text}");
    assert!(text.contains("taskset -c 0"), "{text}");
    let out = apply(&["--cpu", "all-cores", "--iface", "fake0"], Some(&root.0));
    assert!(
        stdout(&out).contains("(none: runtime.shards"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_value_that_does_not_take_fails_the_apply() {
    let root = FakeRoot::new();
    // Writes to /dev/null succeed and read back empty: a value the kernel silently refused.
    let silent = root.path("proc/sys/net/core/somaxconn");
    fs::remove_file(&silent).unwrap();
    symlink("/dev/null", &silent).unwrap();
    // A directory cannot be written at all.
    let broken = root.path("proc/sys/net/ipv4/tcp_fin_timeout");
    fs::remove_file(&broken).unwrap();
    fs::create_dir(&broken).unwrap();

    let out = apply(&["idle-million", "--apply"], Some(&root.0));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text.contains("2 value(s) did not take"), "{text}");
    let failed = text.split("did not take:").nth(1).unwrap();
    assert!(
        row(failed, "net.core.somaxconn:")
            .is_some_and(|l| l.contains("FAILED: wrote 65535, reads")),
        "{text}"
    );
    assert!(
        row(failed, "net.ipv4.tcp_fin_timeout:").is_some_and(|l| l.contains("FAILED")),
        "{text}"
    );
    // The others were still set.
    assert_eq!(root.sysctl("net.ipv4.tcp_mem"), "1048576 1572864 2097152");
}

#[test]
fn absent_keys_are_reported_not_fatal() {
    let root = FakeRoot::new();
    fs::remove_dir_all(root.path("proc/sys/net/netfilter")).unwrap();
    let _ = fs::remove_file(root.path("proc/sys/kernel/io_uring_disabled"));
    let out = apply(&["idle-million"], Some(&root.0));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let line = row(&text, "net.netfilter.nf_conntrack_max").unwrap();
    assert!(
        line.contains("absent (optional: needs nf_conntrack)"),
        "{line}"
    );
    assert!(
        text.contains("absent on this kernel (needs nf_conntrack); skipped"),
        "{text}"
    );
    let out = apply(&["idle-million", "--apply"], Some(&root.0));
    assert_eq!(
        out.status.code(),
        Some(0),
        "optional keys may be absent: {}",
        describe(&out)
    );
    assert!(
        !root.path("proc/sys/net/netfilter").exists(),
        "apply created an absent key"
    );

    // A key that is not optional and absent is a failure of --apply, and shown as ABSENT.
    fs::remove_file(root.path("proc/sys/fs/file-max")).unwrap();
    let out = apply(&["idle-million"], Some(&root.0));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        row(&stdout(&out), "fs.file-max")
            .unwrap()
            .contains("ABSENT"),
        "{}",
        stdout(&out)
    );
    let out = apply(&["idle-million", "--apply"], Some(&root.0));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

#[test]
fn low_process_limits_are_left_to_the_user_with_exit_3() {
    let root = FakeRoot::new();
    root.set_limits(1024, 64 << 10);
    let out = apply(&["throughput", "--apply"], Some(&root.0));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(text.contains("ulimit -n 1048576"), "{text}");
    assert!(text.contains("ulimit -l 65536"), "{text}");
    assert!(
        row(&text, "RLIMIT_NOFILE")
            .unwrap()
            .contains("1024 soft, 1024 hard"),
        "{text}"
    );
}

#[test]
fn irqbalance_shard_threads_and_load_generator_are_checked_not_changed() {
    let root = FakeRoot::new();
    // irqbalance running without a ban on the shard cores.
    root.put("proc/4242/comm", "irqbalance\n");
    // A broker whose shard 0 runs on core 0, where `dedicated` wants core 1.
    root.put("proc/77/comm", "ringmq\n");
    root.put(
        "proc/77/limits",
        &fs::read_to_string(root.path("proc/self/limits")).unwrap(),
    );
    root.put(
        "proc/77/status",
        "Name:\tringmq\nCapEff:\t0000000000000000\n",
    );
    for (tid, name, cpu) in [
        (78, "shard0-1", 0),
        (79, "shard0-1", 0),
        (80, "shard1-2", 2),
    ] {
        root.put(&format!("proc/77/task/{tid}/comm"), &format!("{name}\n"));
        root.put(
            &format!("proc/77/task/{tid}/status"),
            &format!("Cpus_allowed_list:\t{cpu}\n"),
        );
    }
    // A load generator on a shard core.
    root.put("proc/90/comm", "ringmq-bench\n");
    root.put(
        "proc/90/status",
        "Name:\tringmq-bench\nCpus_allowed_list:\t0-7\n",
    );
    let before = root.tree();

    let out = apply(
        &["--cpu", "dedicated", "--iface", "fake0", "--pid", "77"],
        Some(&root.0),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let line = row(&text, "irqbalance").unwrap();
    assert!(
        line.contains("running (pid 4242)") && line.contains("TO DO"),
        "{line}"
    );
    assert!(text.contains("IRQBALANCE_BANNED_CPULIST=1-7"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("ringmq shard threads (pid 77)"))
        .unwrap();
    assert!(
        line.contains("shard0@0 shard1@2") && line.contains("shard0@1 shard1@2"),
        "{line}"
    );
    assert!(
        text.contains("restart ringmq with --cores 1,2,3,4,5,6,7"),
        "{text}"
    );
    let line = row(&text, "ringmq-bench").unwrap();
    assert!(line.contains("1 running, 1 on other CPUs"), "{line}");
    assert_eq!(root.tree(), before);

    // --apply pins the interrupts but leaves these to the user: exit 3.
    let out = apply(
        &[
            "--cpu",
            "dedicated",
            "--iface",
            "fake0",
            "--pid",
            "77",
            "--apply",
        ],
        Some(&root.0),
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(root.get("proc/irq/101/smp_affinity_list"), "0");
    assert_eq!(root.get("proc/77/task/78/status"), "Cpus_allowed_list: 0");

    // With the shard cores banned, a running irqbalance is fine.
    root.put("etc/default/irqbalance", "IRQBALANCE_BANNED_CPULIST=1-7\n");
    let out = apply(&["--cpu", "dedicated", "--iface", "fake0"], Some(&root.0));
    let line = row(&stdout(&out), "irqbalance").map(str::to_owned).unwrap();
    assert!(
        line.contains("banned 1-7") && line.ends_with("ok"),
        "{line}"
    );
}
