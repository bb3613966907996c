//! A real `osslocal` for integration tests: found next to the test binary (or at
//! `$OSSLOCAL_BIN`), started on a free loopback port with a private data directory, and killed
//! on drop, also when the test panics. Test files add their own `start()` with the flags they
//! need and their own admin helpers.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `$OSSLOCAL_BIN`, else `target/<profile>/osslocal` next to `target/<profile>/deps/<test>`.
pub fn osslocal_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OSSLOCAL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps");
    profile_dir.join("osslocal")
}

/// A running osslocal.
pub struct Osslocal {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Holds the data directory (and any policy files the caller wrote there).
    pub dir: tempfile::TempDir,
}

impl Drop for Osslocal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Osslocal {
    /// Start osslocal with `--listen 127.0.0.1:0 --data-dir <dir>/data` plus `args`; `dir` is a
    /// temp dir the caller may already have written files into (policies).
    pub fn spawn(dir: tempfile::TempDir, args: &[OsString]) -> Osslocal {
        let bin = osslocal_bin();
        assert!(
            bin.exists(),
            "osslocal binary not found at {}: build it first with `cargo build -p osslocal` (same profile as \
             the tests) or set OSSLOCAL_BIN",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().unwrap();
        // Read the address on a thread so a hung server cannot hang the test; then keep draining
        // stdout so the server never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) if line.trim().starts_with("127.0.0.1:") => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("osslocal did not print its address: {other:?}");
            }
        };
        Osslocal {
            child,
            addr: line.trim().to_owned(),
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
