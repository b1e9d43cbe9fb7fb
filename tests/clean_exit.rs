//! What a shut-down emitter leaves behind: no thread of its own, no file. Alone in
//! its test binary, so that the threads counted are this test's only.

mod broker;

use broker::*;
use std::path::PathBuf;

/// The names of this process's threads, as `/proc/self/task/*/comm` gives them
/// (cut to 15 bytes by the kernel).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// The emitter's threads: `emitter-mqtt-pub`, `emitter-mqtt-relay`,
/// `emitter-mqtt-sub`, `emitter-{listener name}`.
fn emitter_threads() -> Vec<String> {
    thread_names()
        .into_iter()
        .filter(|name| name.starts_with("emitter-"))
        .collect()
}

/// The relay directories of process `pid` in the temp directory.
fn relay_dirs(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("diesel-emitter-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .expect("the temp directory")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .collect()
}

/// The relay directory a process killed with SIGKILL would have left.
fn leftover_of_a_killed_process() -> PathBuf {
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let dir = std::env::temp_dir().join(format!("diesel-emitter-{dead}-0-5eed"));
    std::fs::create_dir_all(&dir).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.join("relay.sock")).unwrap());
    dir
}

#[test]
fn a_shut_down_emitter_leaves_no_thread_and_no_file_and_sweeps_what_killed_ones_left() {
    let leftover = leftover_of_a_killed_process();
    let prefix = unique_prefix("clean_exit");
    let writer = shared_node("writer", &prefix);
    let reader = shared_node("reader", &prefix);
    let remote = reader.on::<User>().remote_only(true).subscribe();
    let (tx, heard) = std::sync::mpsc::channel();
    let _local = writer
        .on::<User>()
        .name("count")
        .listen(move |ev| tx.send(ev.meta.id).unwrap());
    connected(&[&writer, &reader]);
    assert!(!emitter_threads().is_empty(), "the emitters run threads");
    let db = Db::new("clean_exit");
    let mut conn = db.conn(&writer);
    for i in 0..10 {
        insert(&mut conn, &format!("user-{i}"), true);
    }
    for _ in 0..10 {
        recv(&remote);
        heard.recv_timeout(TIMEOUT).unwrap();
    }
    drop(conn);
    let publishers = || {
        emitter_threads()
            .into_iter()
            .filter(|name| name.starts_with("emitter-mqtt-pu"))
            .count()
    };
    assert_eq!((publishers(), relay_dirs(std::process::id()).len()), (2, 2));

    // The moment shutdown returns, as a process that exits right after it sees it.
    shutdown_all(&[&writer]);
    assert!(
        !thread_names().contains(&"emitter-count".to_owned()),
        "the listener's thread ended: {:?}",
        thread_names()
    );
    assert_eq!(
        (publishers(), relay_dirs(std::process::id()).len()),
        (1, 1),
        "only the reader's publisher and relay directory are left: {:?}",
        thread_names()
    );
    shutdown_all(&[&reader]);

    assert_eq!(
        emitter_threads(),
        Vec::<String>::new(),
        "all threads: {:?}",
        thread_names()
    );
    assert_eq!(relay_dirs(std::process::id()), Vec::<PathBuf>::new());
    assert!(
        !leftover.exists(),
        "the directory a killed process left is removed"
    );
}
