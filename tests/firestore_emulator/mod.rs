//! What the Firestore tests share: an emulator process of their own (installed by
//! `scripts/firestore-up`), a project of its own per test, and waiting for a stored state.
//!
//! The emulator listens on a free loopback port and stops when its handle is dropped, or, for
//! the one a test binary shares, when the binary exits (its stdin, a pipe from the test
//! process, closes).

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use executioner::store::firestore::{FirestoreConfig, FirestoreInterface};

/// `serve.js`: `EXECUTIONER_FIRESTORE_EMULATOR`, else the one in the repository.
fn serve_js() -> PathBuf {
    let path = std::env::var_os("EXECUTIONER_FIRESTORE_EMULATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/firestore-emulator/serve.js")
        });
    let modules = path.with_file_name("node_modules");
    assert!(
        modules.is_dir(),
        "the Firestore emulator is not installed ({} is missing): run scripts/firestore-up \
         (scripts/test does this)",
        modules.display()
    );
    path
}

/// A running emulator, stopped on drop.
pub struct Emulator {
    child: Child,
    /// Held open: the emulator stops when it closes.
    _stdin: ChildStdin,
    /// `127.0.0.1:PORT`, for `FIRESTORE_EMULATOR_HOST`.
    pub host: String,
}

impl Emulator {
    /// Starts an emulator on `port` (0: any free port) and waits until it accepts connections.
    pub fn start(port: u16) -> Emulator {
        let mut child = Command::new("node")
            .arg(serve_js())
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start node (scripts/firestore-up installs it): {e}")
            });
        let stdin = child.stdin.take().expect("the emulator's stdin");
        let stdout = child.stdout.take().expect("the emulator's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's first line");
        let Some(host) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the emulator did not start: {line:?}");
        };
        Emulator {
            host: host.to_owned(),
            child,
            _stdin: stdin,
        }
    }

    pub fn port(&self) -> u16 {
        self.host
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    /// Stops the emulator (everything it held is gone).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Our own child, by its handle.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The emulator this test binary shares, started on first use; `FIRESTORE_EMULATOR_HOST` points
/// at it from then on.
pub fn shared() -> &'static str {
    static SHARED: OnceLock<Emulator> = OnceLock::new();
    &SHARED
        .get_or_init(|| {
            let emulator = Emulator::start(0);
            // Set once, before any client of this binary is built.
            std::env::set_var("FIRESTORE_EMULATOR_HOST", &emulator.host);
            emulator
        })
        .host
}

/// A project nobody else uses: every test's data apart.
pub fn new_project() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// Settings for tests: short leases and sweeps, so recovery shows within seconds.
pub fn config(project: &str) -> FirestoreConfig {
    let mut config = FirestoreConfig::new(project);
    config.lease = Duration::from_secs(2);
    config.sweep_interval = Duration::from_millis(500);
    config.write_deadline = Duration::from_secs(20);
    config
}

/// A front end's view of `project` on the shared emulator.
pub async fn front(project: &str) -> FirestoreInterface {
    shared();
    FirestoreInterface::open(config(project))
        .await
        .expect("connect to the emulator")
}

/// Checks every `recheck` until `check` finds something, or fails after `deadline`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    deadline: Duration,
    recheck: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(found) = check().await {
            return Ok(found);
        }
        if tokio::time::Instant::now() + recheck > until {
            return Err(format!("timed out after {deadline:?} waiting for {what}"));
        }
        tokio::time::sleep(recheck).await;
    }
}
