//! `coffer-node devnet` driven as a user would: the real command (four replica processes, the
//! in-memory store, free ports), then the exact `coffer` commands its banner prints (import the
//! issuer key, create keys, mint, send, balance), then Ctrl-C (SIGINT) and a clean exit.
//!
//! Needs the node's binary next to ours (`cargo build -p coffer-node`, or the workspace tests).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The devnet process; on drop (a failed assertion) it is asked to stop its replicas, then
/// killed.
struct Devnet(Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let pid = rustix::process::Pid::from_child(&self.0);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(50);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_base() -> u16 {
    coffer_node::testnet::free_base_port(4).expect("no free port range")
}

/// Runs one `coffer ...` command line from the banner (`< FILE` feeds stdin).
fn run_banner_command(line: &str, home: &Path) -> (i32, String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"coffer"), "{line}");
    let (args, stdin) = match words.iter().position(|w| *w == "<") {
        Some(i) => (&words[1..i], Some(PathBuf::from(words[i + 1]))),
        None => (&words[1..], None),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env("COFFER_KEYSTORE", home.join("keystore.json"))
        .env("COFFER_PASSWORD", "devnet test password")
        // Light key derivation keeps the test fast; real keystores use 64 MiB.
        .env("COFFER_KDF_M_KIB", "256")
        .env("COFFER_KDF_T", "1")
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(match &stdin {
            Some(path) => Stdio::from(std::fs::File::open(path).expect("stdin file")),
            None => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coffer");
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{line}` did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("coffer output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn devnet_answers_the_cli_and_stops_cleanly_on_ctrl_c() {
    // `COFFER_NODE_BIN` overrides (a target directory shared between work trees may hold
    // another tree's build at the uplifted path).
    let node = std::env::var_os("COFFER_NODE_BIN").map_or_else(
        || Path::new(env!("CARGO_BIN_EXE_coffer")).with_file_name("coffer-node"),
        PathBuf::from,
    );
    assert!(
        node.exists(),
        "{} is missing: build it first (cargo build -p coffer-node)",
        node.display()
    );
    let home = tempfile::tempdir().expect("temp dir");
    let dir = home.path().join("devnet");
    let base = free_base();
    let stderr_path = home.path().join("devnet.stderr");
    let child = Command::new(&node)
        .arg("devnet")
        .arg("--dir")
        .arg(&dir)
        .args(["--base-port", &base.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn coffer-node devnet");
    let mut devnet = Devnet(child);
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = devnet.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    // The banner: where the API and the wallet config are, the store, the commands to run.
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no banner within 120 s; got {banner:?}; logs in {}",
                dir.display()
            )
        });
        let done = line.starts_with("Ctrl-C stops the devnet");
        banner.push(line);
        if done {
            break;
        }
    }
    let text = banner.join("\n");
    assert!(text.contains("4 replicas finalizing blocks"), "{text}");
    // A memory store, but with `--dir` the chain survives restarts (the block archive).
    assert!(
        text.contains("Storage: in memory: each start rebuilds the state"),
        "{text}"
    );
    let cluster = dir.join("cluster.json");
    assert!(
        text.contains(&format!("Wallet cluster config: {}", cluster.display())),
        "{text}"
    );
    for i in 0..4u16 {
        let api = format!("replica{i}: REST API https://127.0.0.1:{}/v1", base + i);
        assert!(text.contains(&api), "{api} in {text}");
    }
    let commands: Vec<&str> = banner
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("coffer "))
        .collect();
    let wanted = [
        "keys import issuer",
        "keys new alice",
        "keys new bob",
        "mint --issuer issuer --to alice 1000",
        "send --from alice --to bob 250",
        "balance bob",
    ];
    assert_eq!(commands.len(), wanted.len(), "{commands:?}");
    for (command, want) in commands.iter().zip(wanted) {
        assert!(command.contains(want), "{command} should {want}");
        assert!(
            command.contains(&cluster.display().to_string()),
            "{command}"
        );
        let (code, stdout, stderr) = run_banner_command(command, home.path());
        assert_eq!(code, 0, "`{command}`\nstdout: {stdout}\nstderr: {stderr}");
    }
    // The last command printed bob's verified balance; ask for it as JSON too.
    let balance_line = commands[commands.len() - 1];
    let (code, stdout, stderr) = run_banner_command(&format!("{balance_line} --json"), home.path());
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["balance"]["value"]["amount"], 250, "{stdout}");

    // Ctrl-C: every replica drains and stops, the devnet exits 0.
    let pid = rustix::process::Pid::from_child(&devnet.0);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = devnet.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "devnet still running 60 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The reader thread ends at the end of the output.
    let mut rest = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        rest.push(line);
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{rest:?}\n{stderr}");
    assert!(
        rest.iter()
            .any(|l| l.contains("every replica exited cleanly")),
        "{rest:?}"
    );
    for i in 0..4 {
        let log = std::fs::read_to_string(dir.join(format!("replica{i}/replica.log")))
            .unwrap_or_default();
        assert!(
            log.contains("stopped cleanly between blocks"),
            "replica{i} stopped gracefully:\n{log}"
        );
    }
    // Restarting the directory with storage or ports other than it was created with is
    // refused, not silently ignored.
    for (flag, value) in [
        ("--redis", "redis://127.0.0.1:1".to_string()),
        ("--base-port", (base + 1).to_string()),
    ] {
        let mut child = Devnet(
            Command::new(&node)
                .arg("devnet")
                .arg("--dir")
                .arg(&dir)
                .args([flag, &value])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
                .spawn()
                .expect("spawn coffer-node devnet"),
        );
        // Refused at once; a devnet that starts instead is stopped (by `Devnet`'s drop).
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(status) = child.0.try_wait().expect("wait") {
                break status.code();
            }
            assert!(Instant::now() < deadline, "{flag}: the devnet started");
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert_eq!(code, Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(&format!("{flag} differs")), "{stderr}");
    }
}
