//! Two processes of the `multi_server` example: the listener hears the writer.

use super::*;
use std::path::Path;

/// `target/<profile>/examples/multi_server`, next to the `deps` dir of this test
/// binary. `cargo test --test mqtt` does not build examples, so ask Cargo for it
/// (a no-op when it is up to date).
fn multi_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    let profile_dir = deps.parent().expect("profile dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "diesel-emitter",
        "--example",
        "multi_server",
        "--manifest-path",
    ])
    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let mut child = ChildGuard::new(cmd.spawn().expect("run cargo build --example multi_server"));
    let status =
        wait_exit(&mut child.child, Duration::from_secs(600)).expect("cargo build finishes");
    assert!(
        status.success(),
        "cargo build --example multi_server failed"
    );
    let binary = profile_dir.join("examples").join("multi_server");
    assert!(is_file(&binary), "{} exists", binary.display());
    binary
}

/// Starts the example with `args` on the shared broker under `prefix`, its
/// standard output piped.
fn run_example(binary: &Path, prefix: &str, args: &[&str]) -> ChildGuard {
    ChildGuard::new(
        Command::new(binary)
            .args(args)
            .env("MQTT_PREFIX", prefix)
            .env("MQTT_URL", SHARED_URL)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("start multi_server {args:?}: {error}")),
    )
}

#[test]
fn two_processes_multi_server_example_listener_hears_the_writer() {
    let binary = multi_server_binary();
    let prefix = unique_prefix("multi_server");
    let observer = Sub::start(SHARED_PORT, &prefix, &["-v"]);

    let mut listener = run_example(
        &binary,
        &prefix,
        &["listen", "--count", "9", "--node", "l1"],
    );
    let stdout = listener.child.stdout.take().expect("piped stdout");
    let (tx, lines) = diesel_emitter::crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the listener prints READY");
    assert_eq!(ready, "READY");

    let mut writer = run_example(&binary, &prefix, &["write", "--count", "3", "--node", "w1"]);
    let status = wait_exit(&mut writer.child, Duration::from_secs(30))
        .expect("the writer finishes within 30 s");
    let mut out = String::new();
    std::io::Read::read_to_string(writer.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "writer failed: {status}\n{out}");
    assert!(
        out.contains("published 9 events (0 failed)"),
        "writer output:\n{out}"
    );
    // The writer's SQLite file (the example names it after the node).
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("multi-server-w1.db{suffix}");
        let _ = std::fs::remove_file(std::env::temp_dir().join(name));
    }

    let events: Vec<String> = (0..9)
        .map(|i| {
            lines
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("EVENT line {} within {TIMEOUT:?}", i + 1))
        })
        .collect();
    let status =
        wait_exit(&mut listener.child, TIMEOUT).expect("the listener exits after 9 events");
    assert!(status.success(), "listener failed: {status}");
    assert!(
        lines.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing after 9 events"
    );

    let mut seqs = Vec::new();
    let mut ids = HashSet::new();
    for (i, line) in events.iter().enumerate() {
        // EVENT <id> <origin> <seq> <action> <row as JSON>
        let parts: Vec<&str> = line.splitn(6, ' ').collect();
        assert_eq!(parts.len(), 6, "{line}");
        assert_eq!(parts[0], "EVENT", "{line}");
        assert!(is_uuid(parts[1]), "{line}");
        assert!(ids.insert(parts[1].to_owned()), "id twice: {line}");
        assert_eq!(parts[2], "w1", "{line}");
        seqs.push(parts[3].parse::<u64>().expect("seq is a number"));
        assert_eq!(parts[4], ["insert", "update", "delete"][i % 3], "{line}");
        let row: serde_json::Value = serde_json::from_str(parts[5]).expect("row is JSON");
        assert_eq!(row["name"], format!("user-{}", i / 3), "{line}");
        assert_eq!(
            row["active"],
            i % 3 == 0,
            "inserted active, then updated to inactive: {line}"
        );
    }
    assert_eq!(seqs, (1..=9).collect::<Vec<u64>>());

    // The observer saw the same nine publishes and nothing else: no ghost.
    let seen = observer.lines_until_sentinel(SHARED_PORT, &prefix);
    assert_eq!(seen.len(), 9, "{seen:#?}");
    assert!(seen.iter().all(|l| !l.contains("ghost")), "{seen:#?}");
}
