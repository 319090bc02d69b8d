//! Per-submission callbacks (`callbackUrl` of `POST /v1.0/submissions`): once a submission's
//! operation has ended (succeeded, failed or cancelled), the service POSTs the finished
//! submission (the JSON of `GET /v1.0/submissions/{id}`) to the URL the client gave, signed
//! with the operator's secret (`serve --callback-secret`):
//!
//! - `Executioner-Timestamp: <unix seconds>` of this attempt;
//! - `Executioner-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
//!
//! A receiver recomputes the signature over the raw body and refuses an old timestamp (a
//! replay). Without a secret the service sends no callbacks (submissions asking for one are
//! refused), so no receiver ever has to accept an unsigned one.
//!
//! [`follow`] sends them: it reads what changed from the backend's change feed (reading again
//! everything due when it lagged, after the store reconnected, and now and then), and sends each
//! callback once per outcome from a task of its own, retried with backoff, so judging never
//! waits for a receiver. What went out is recorded in the store (`Callbacks::callback_settled`);
//! a callback interrupted by a shutdown stays due, and a service started on the same store sends
//! it (the Postgres store keeps it; the memory store ends with the process).
//!
//! A run queued through the Judge0-compatible API (`super::judge0`) is called back as Judge0
//! does it: a PUT of the finished submission in Judge0's JSON (with the same signature headers).
//! The store keeps that [`Style`] with the URL ([`stored_url`]), so a service restarted on the
//! same store sends it the same way.
//!
//! [`check_url`] and [`deliver`] know nothing of submissions: what else finishes (ad-hoc runs)
//! can offer callbacks through them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use super::auth::Token;
pub use super::callback_url::{check_url, parse_stored, stored_url, Style};
use super::types::{RunBody, SubmissionBody};
use super::ApiConfig;
use crate::backoff::Backoff;
use crate::store::{Backend, SubmissionView};
use crate::workflow::webhook::{Webhook, WebhookError};

/// The header with the attempt's time, unix seconds.
pub const TIMESTAMP_HEADER: &str = "Executioner-Timestamp";
/// The header with `sha256=` and the hex HMAC-SHA256 of `timestamp.body`.
pub const SIGNATURE_HEADER: &str = "Executioner-Signature";

/// How callbacks are signed and sent; defaults in [`CallbackConfig::default`].
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// The HMAC key; `None`: no callbacks (a submission asking for one is refused).
    pub secret: Option<Token>,
    /// Attempts per callback, the first included.
    pub attempts: u32,
    /// Pause after the first failed attempt, doubled after each further one up to the second.
    pub backoff: (Duration, Duration),
    /// Longest one attempt may take.
    pub timeout: Duration,
    /// How often everything due is read again (a change the feed did not announce).
    pub sweep: Duration,
}

impl Default for CallbackConfig {
    /// No secret (no callbacks), 5 attempts, backoff 1 s doubling up to 60 s, 10 s per attempt,
    /// a sweep every 30 s.
    fn default() -> Self {
        CallbackConfig {
            secret: None,
            attempts: 5,
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            timeout: Duration::from_secs(10),
            sweep: Duration::from_secs(30),
        }
    }
}

/// The hex HMAC-SHA256 of `timestamp.body` under `secret` (without the `sha256=`).
pub fn signature(secret: &Token, timestamp: u64, body: &str) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How sending a callback ended.
#[derive(Debug)]
pub enum Delivery {
    /// A 2xx answer to attempt `attempts`.
    Delivered { attempts: u32, status: u16 },
    /// A refusal (a 4xx but 429): not tried again.
    Refused { attempts: u32, error: WebhookError },
    /// Every attempt failed.
    GaveUp { attempts: u32, error: WebhookError },
    /// Shutdown came first; the callback is still due.
    Interrupted,
}

/// What a callback sends: the submission as `GET /v1.0/submissions/{id}` shows it, or, for an
/// ad-hoc run, the run as `GET /v1.0/runs/{id}` does (its output and exit), falling back to the
/// submission's view should its messages not be readable.
async fn body_of(backend: &dyn Backend, view: &SubmissionView, style: Style) -> String {
    if style == Style::Judge0 {
        match super::judge0::callback_body(backend, view).await {
            Ok(body) => return json_text(&body),
            Err(e) => {
                warn!(submission_id = %view.id, error = %e, "cannot read the run's result for its Judge0 callback")
            }
        }
    }
    if view.problem == crate::protocol::RUN_PROBLEM {
        match backend.messages(&view.id).await {
            Ok(messages) => {
                return json_text(&RunBody::of(view, &messages.unwrap_or_default()));
            }
            Err(e) => {
                warn!(submission_id = %view.id, error = %e, "cannot read the run's result for its callback")
            }
        }
    }
    json_text(&SubmissionBody::of(view))
}

/// `body` as JSON text; these bodies are plain fields, which always serialise.
fn json_text(body: &impl serde::Serialize) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

/// POSTs `body` to `webhook`, signed afresh for each attempt, retrying network failures, 5xx
/// and 429 with backoff, until it is delivered, refused, the attempts are used up or
/// `shutdown` fires.
pub async fn deliver(
    webhook: &Webhook,
    method: &str,
    body: &str,
    secret: &Token,
    config: &CallbackConfig,
    shutdown: &CancellationToken,
) -> Delivery {
    let mut retries = Backoff::new(config.backoff.0, config.backoff.1)
        .attempts(config.attempts)
        .start();
    let mut attempt = 1;
    loop {
        let timestamp = unix_seconds();
        let headers = [
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (
                SIGNATURE_HEADER,
                format!("sha256={}", signature(secret, timestamp, body)),
            ),
        ];
        let sent = tokio::select! {
            sent = webhook.send_text(method, body, &headers) => sent,
            _ = shutdown.cancelled() => return Delivery::Interrupted,
        };
        let error = match sent {
            Ok(status) => {
                return Delivery::Delivered {
                    attempts: attempt,
                    status,
                }
            }
            Err(error) if !error.is_retryable() => {
                return Delivery::Refused {
                    attempts: attempt,
                    error,
                }
            }
            Err(error) => error,
        };
        let Some(pause) = retries.next() else {
            return Delivery::GaveUp {
                attempts: attempt,
                error,
            };
        };
        warn!(attempt, retry_in = ?pause, %error, "callback failed; trying again");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return Delivery::Interrupted,
        }
        attempt += 1;
    }
}

/// Sends the callbacks of submissions whose operations end, until `shutdown` (then waits for
/// the attempts in flight to stop). Without a secret it sends nothing (and says so if some are
/// due).
pub fn follow(
    backend: Arc<dyn Backend>,
    config: Arc<ApiConfig>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(secret) = config.callbacks.secret.clone() else {
            if let Ok(due) = backend.callbacks_due().await {
                if !due.is_empty() {
                    warn!(
                        due = due.len(),
                        "callbacks are due but there is no --callback-secret to sign them: not sent"
                    );
                }
            }
            return;
        };
        let (settled, settle) = mpsc::unbounded_channel();
        let mut dispatcher = Dispatcher {
            backend,
            config,
            secret,
            shutdown,
            tasks: TaskTracker::new(),
            in_flight: HashSet::new(),
            settled,
        };
        dispatcher.run(settle).await;
    })
}

/// One callback: a submission and the outcome it is about (its `last_action_ms`).
type Key = (String, i64);

struct Dispatcher {
    backend: Arc<dyn Backend>,
    config: Arc<ApiConfig>,
    secret: Token,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Being sent, or sent but not recorded as such in the store: never sent again by this
    /// process.
    in_flight: HashSet<Key>,
    /// Where a delivery task says it is over (sent or given up).
    settled: mpsc::UnboundedSender<Key>,
}

impl Dispatcher {
    async fn run(&mut self, mut settle: mpsc::UnboundedReceiver<Key>) {
        // Subscribed before the first read: nothing that ends after it goes unannounced.
        let mut changes = self.backend.subscribe();
        self.sweep().await;
        let every = self.config.callbacks.sweep.max(Duration::from_millis(10));
        let mut sweeps = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                changed = changes.recv() => match changed {
                    Ok(id) if !id.is_empty() => self.check(&id).await,
                    // Anything may have changed (the store reconnected), or changes were missed.
                    Ok(_) | Err(RecvError::Lagged(_)) => self.sweep().await,
                    Err(RecvError::Closed) => break,
                },
                Some(key) = settle.recv() => self.settle(key).await,
                _ = sweeps.tick() => self.sweep().await,
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
        // What went out before the shutdown is recorded, so a restart does not send it again.
        while let Ok(key) = settle.try_recv() {
            self.settle(key).await;
        }
    }

    /// Sends the callback of `id` if it is due.
    async fn check(&mut self, id: &str) {
        match self.backend.get(id).await {
            Ok(Some(view)) if view.callback_due() => self.dispatch(view),
            Ok(_) => {}
            Err(e) => {
                warn!(submission_id = %id, error = %e, "cannot read a submission for its callback")
            }
        }
    }

    /// Sends every callback due.
    async fn sweep(&mut self) {
        match self.backend.callbacks_due().await {
            Ok(due) => {
                for view in due {
                    self.dispatch(view);
                }
            }
            Err(e) => warn!(error = %e, "cannot read the callbacks due"),
        }
    }

    /// Starts sending the callback of `view` (due), unless it is already being sent.
    fn dispatch(&mut self, view: SubmissionView) {
        let Some(stored) = view.callback_url.clone() else {
            return;
        };
        let (style, url) = parse_stored(&stored);
        let (url, method) = match style {
            Style::Native => (url.to_owned(), "POST"),
            Style::Judge0 => (url.to_owned(), "PUT"),
        };
        let key = (view.id.clone(), view.last_action_ms);
        if !self.in_flight.insert(key.clone()) {
            return;
        }
        let span = tracing::info_span!("callback", submission_id = %view.id);
        // Checked again: the operator may have withdrawn the host or the secret since.
        let webhook = match check_url(&url, &self.config) {
            Ok(webhook) => webhook,
            Err(e) => {
                span.in_scope(
                    || warn!(url, reason = %e.message, "callback not sent: no longer allowed"),
                );
                let _ = self.settled.send(key);
                return;
            }
        };
        let (secret, config) = (self.secret.clone(), self.config.clone());
        let (shutdown, settled) = (self.shutdown.clone(), self.settled.clone());
        let backend = self.backend.clone();
        self.tasks.spawn(
            async move {
                let body = body_of(&*backend, &view, style).await;
                let delivery =
                    deliver(&webhook, method, &body, &secret, &config.callbacks, &shutdown).await;
                match &delivery {
                    Delivery::Delivered { attempts, status } => {
                        info!(url, attempts, status, "callback delivered")
                    }
                    Delivery::Refused { attempts, error } => {
                        warn!(url, attempts, %error, "callback refused by its receiver; not sent again")
                    }
                    Delivery::GaveUp { attempts, error } => {
                        warn!(url, attempts, %error, "callback failed every attempt; given up")
                    }
                    Delivery::Interrupted => {
                        debug!(url, "callback interrupted by shutdown; still due");
                        return;
                    }
                }
                let _ = settled.send(key);
            }
            .instrument(span),
        );
    }

    /// Records in the store that the callback `key` is over. Should that fail, the key stays in
    /// flight: this process does not send it again (a restarted one would).
    async fn settle(&mut self, key: Key) {
        let (id, outcome_ms) = &key;
        match self.backend.callback_settled(id, *outcome_ms).await {
            Ok(()) => {
                self.in_flight.remove(&key);
            }
            Err(e) => {
                warn!(submission_id = %id, error = %e, "cannot record that a callback went out")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::webhook::test_server;

    #[test]
    fn the_signature_is_the_hmac_of_the_timestamp_a_dot_and_the_body() {
        // Computed apart: python3 -c "import hmac, hashlib; print(hmac.new(b'Jefe',
        // b'1700000000.{\"a\":1}', hashlib.sha256).hexdigest())"
        let secret = Token::new("Jefe");
        assert_eq!(
            signature(&secret, 1_700_000_000, r#"{"a":1}"#),
            "fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
        // Moving the dot changes the signature.
        assert_ne!(signature(&secret, 12, "3.x"), signature(&secret, 123, "x"));
    }

    #[tokio::test]
    async fn delivery_retries_server_errors_and_stops_at_a_refusal() {
        let config = CallbackConfig {
            attempts: 3,
            backoff: (Duration::from_millis(1), Duration::from_millis(4)),
            ..CallbackConfig::default()
        };
        let secret = Token::new("s");
        let never = CancellationToken::new();
        let (webhook, mut bodies) = test_server::serve(vec![503, 429, 200, 404]).await;
        let delivery = deliver(&webhook, "POST", "{\"a\":1}", &secret, &config, &never).await;
        assert!(
            matches!(
                delivery,
                Delivery::Delivered {
                    attempts: 3,
                    status: 200
                }
            ),
            "{delivery:?}"
        );
        for _ in 0..3 {
            assert_eq!(bodies.recv().await, Some(serde_json::json!({"a": 1})));
        }
        let refused = deliver(&webhook, "POST", "{}", &secret, &config, &never).await;
        assert!(
            matches!(refused, Delivery::Refused { attempts: 1, .. }),
            "{refused:?}"
        );
    }
}
