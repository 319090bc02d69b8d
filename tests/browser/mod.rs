//! Headless Chromium driven over the Chrome DevTools Protocol, for tests of the pages the service
//! serves: open a URL, evaluate JavaScript in it, wait (with a deadline) for what it shows. The
//! browser runs in a process group of its own with a new, empty profile; dropping the handle
//! kills that group and removes the profile, even when the test fails.
//!
//! The browser is Debian's `chromium` (`/usr/bin/chromium`, or `EXECUTIONER_CHROMIUM`), as
//! `scripts/test` installs it.

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for the browser to start, and for one protocol call.
const DEADLINE: Duration = Duration::from_secs(30);

/// How often [`Browser::wait_for`] looks at the page again.
const POLL: Duration = Duration::from_millis(100);

fn chromium() -> PathBuf {
    std::env::var_os("EXECUTIONER_CHROMIUM")
        .map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// A headless browser showing one page.
pub struct Browser {
    child: Child,
    profile: Option<tempfile::TempDir>,
    log: tempfile::NamedTempFile,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The page's session (flat sessions over the browser's connection).
    session: String,
    next_id: u64,
}

impl Browser {
    /// Starts a browser and opens `url` in it.
    pub async fn open(url: &str) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("chromium-profile-executioner-")
            .tempdir()
            .expect("a profile directory");
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-crash-reporter",
                "--disable-breakpad",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // Its singleton socket's directory goes in the profile, removed with it, rather
            // than in /tmp, where it would outlive the test.
            .env("TMPDIR", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("the log file"))
            // Its own group: the renderers and helpers it starts are killed with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (scripts/test installs Debian's chromium): {e}",
                    chromium().display()
                )
            });
        // From here on, a failure kills it and removes the profile (the handle's Drop).
        let mut starting = Starting {
            child: Some(child),
            profile: Some(profile),
        };
        let endpoint = starting.endpoint(&log);
        let (socket, _) =
            tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(&endpoint))
                .await
                .expect("the DevTools connection in time")
                .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
        let (child, profile) = starting.take();
        let mut browser = Browser {
            child,
            profile: Some(profile),
            log,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = browser
            .call(None, "Target.createTarget", json!({ "url": url }))
            .await;
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// One protocol call (to the page's session, or the browser's without one); its result.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            request["sessionId"] = json!(session);
        }
        self.socket
            .send(Frame::text(request.to_string()))
            .await
            .unwrap_or_else(|e| panic!("send {method}: {e}"));
        let reply = tokio::time::timeout(DEADLINE, async {
            loop {
                let frame = self
                    .socket
                    .next()
                    .await
                    .unwrap_or_else(|| panic!("the browser closed the connection during {method}"))
                    .unwrap_or_else(|e| panic!("read the answer to {method}: {e}"));
                let Frame::Text(text) = frame else { continue };
                let message: Value = serde_json::from_str(&text).expect("protocol JSON");
                // Events (no id) are not followed.
                if message["id"] == id {
                    return message;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} in time"));
        if let Some(error) = reply.get("error") {
            panic!("{method} failed: {error}");
        }
        reply["result"].clone()
    }

    /// The value of the JavaScript expression `expression` in the page (awaited when it is a
    /// promise); a thrown exception fails the test.
    pub async fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|exception| panic!("{expression} threw: {exception}"))
    }

    /// The value of `expression`, or what it threw (e.g. while the page loads).
    async fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let session = self.session.clone();
        let result = self
            .call(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        match result.get("exceptionDetails") {
            Some(exception) => Err(exception.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Loads the page again.
    pub async fn reload(&mut self) {
        let session = self.session.clone();
        self.call(Some(&session), "Page.reload", json!({})).await;
    }

    /// Waits until `expression` is truthy in the page, looking every [`POLL`]; its value then.
    /// An exception counts as not yet (the page may be loading). Past `deadline`, fails with
    /// `what` and the text the page shows.
    pub async fn wait_for(&mut self, what: &str, expression: &str, deadline: Duration) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let value = self.try_eval(expression).await;
            let truthy = match &value {
                Err(_) | Ok(Value::Null) => false,
                Ok(Value::Bool(b)) => *b,
                Ok(Value::Number(n)) => n.as_f64() != Some(0.0),
                Ok(Value::String(s)) => !s.is_empty(),
                Ok(_) => true,
            };
            if truthy {
                return value.unwrap_or_default();
            }
            if Instant::now() > until {
                let text = self.try_eval("document.body.innerText").await;
                panic!(
                    "the page did not show {what} in {deadline:?} (last: {value:?}); it shows:\n{}",
                    text.ok()
                        .as_ref()
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What the browser logged (for a failure message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

/// A browser being started: killed, and its profile removed, if the start fails.
struct Starting {
    child: Option<Child>,
    profile: Option<tempfile::TempDir>,
}

impl Starting {
    /// The browser's DevTools websocket, from the `DevToolsActivePort` file it writes in its
    /// profile once it listens (its port, then its path).
    fn endpoint(&mut self, log: &tempfile::NamedTempFile) -> String {
        let file = self
            .profile
            .as_ref()
            .expect("a profile")
            .path()
            .join("DevToolsActivePort");
        let until = Instant::now() + DEADLINE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    return format!("ws://127.0.0.1:{port}{path}");
                }
            }
            let child = self.child.as_mut().expect("a browser");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "chromium exited ({status}) before listening:\n{}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < until,
                "chromium did not write {} in {DEADLINE:?}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn take(&mut self) -> (Child, tempfile::TempDir) {
        (
            self.child.take().expect("a browser"),
            self.profile.take().expect("a profile"),
        )
    }
}

/// Kills the browser's process group (by its id, the browser's pid) and waits for the browser.
fn kill(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.wait();
}

/// Removes a profile; its helpers may still be ending, so a failure is tried again briefly.
fn remove(profile: tempfile::TempDir) {
    let path = profile.path().to_owned();
    let until = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir_all(&path).is_err() && path.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(profile);
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            kill(child);
        }
        if let Some(profile) = self.profile.take() {
            remove(profile);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill(&mut self.child);
        if let Some(profile) = self.profile.take() {
            remove(profile);
        }
    }
}
