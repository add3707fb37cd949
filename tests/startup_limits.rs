//! Start-up refuses, with a message saying which limit and how to raise it, a locked-memory
//! limit too low for io_uring (checked without CAP_IPC_LOCK, which lifts the limit).

mod support;

use std::process::Command;

#[test]
fn too_little_locked_memory_is_refused_with_the_limit_named() {
    let port = support::free_port();
    let script = format!(
        "ulimit -l 256 && exec {} --bind 127.0.0.1:{port} --shards 2 --no-pin",
        env!("CARGO_BIN_EXE_ringmq")
    );
    let out = Command::new("capsh")
        .args(["--drop=cap_ipc_lock", "--", "-c", &script])
        .output()
        .expect("capsh (Debian package libcap2-bin) is needed for this test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("RLIMIT_MEMLOCK"), "stderr: {stderr}");
    assert!(stderr.contains("256 KiB"), "stderr: {stderr}");
    assert!(stderr.contains("tuning/README.md"), "stderr: {stderr}");
}

#[test]
fn enough_locked_memory_starts() {
    let port = support::free_port();
    // 2 shards need about 512 KiB; give them 8 MiB, as this machine does.
    let script = format!(
        "ulimit -l 8192 && exec timeout --preserve-status -s INT 2 {} --bind 127.0.0.1:{port} --shards 2 --no-pin",
        env!("CARGO_BIN_EXE_ringmq")
    );
    let out = Command::new("capsh")
        .args(["--drop=cap_ipc_lock", "--", "-c", &script])
        .output()
        .expect("capsh (Debian package libcap2-bin) is needed for this test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `timeout` stops the broker with SIGINT after 2 s; a clean stop exits 0.
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}
