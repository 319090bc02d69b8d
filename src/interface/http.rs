//! The HTTP interface: a worker judging for a remote `executioner serve`, through the service's
//! worker registry (`/v1.0/workers`, see `crate::api::workers`).
//!
//! How a submission moves through it:
//! - [`HttpInterface::connect`] registers the worker (`POST /v1.0/workers`) and starts a
//!   heartbeat at the interval the service announces, reporting `idle` or `judging N`, the last
//!   failure not reported yet, and what it holds: the submissions it runs (`running`) and the
//!   number of the last take it heard of (`lastTake`), read together. The service queues again
//!   what it gave under that take or earlier and is not running here: a take answer lost on the
//!   way.
//! - `next()` takes a submission (`POST /v1.0/workers/{id}/take?wait=SECONDS`), one take at a
//!   time. The service claims it for this worker under a take number (the `Take` header; a 204
//!   carries the last one's) before answering, so `executing` is only noted here. The take
//!   runs in a task of its own whose answer is kept in the interface when `next()` is dropped
//!   meanwhile: the following `next()` returns it, so a submission the service handed out is
//!   never lost. A submission given again while an old attempt of it still runs here is not
//!   handed out: the old attempt's messages are refused, and once it stopped the heartbeat,
//!   no longer listing it, gives the submission back.
//! - Every later message is one `POST /v1.0/workers/{id}/messages?take=N`, naming the take that
//!   brought the submission. One that did not get through (connection refused or lost, the
//!   service overloaded) is sent again with backoff, for a bounded time; the service records a
//!   message sent twice in a row once, and answers a terminal one sent again as recorded. A 409
//!   means the service took the submission back (this worker missed its heartbeats): as with a
//!   fenced write of the shared stores, `send` fails and the worker drops the submission.
//! - A 404 means the service does not know this worker any more (it restarted): the worker
//!   registers again and goes on. What it held under the old registration is the service's
//!   again, and its messages are dropped the same way.
//! - [`HttpInterface::close`] stops the heartbeat and deregisters (`DELETE /v1.0/workers/{id}`),
//!   so that the service queues again anything still held, e.g. what a take brought after the
//!   worker stopped asking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, instrument, warn};

use super::{ErrorKind, Interface, InterfaceError, Sent};
use crate::backoff::Backoff;
use crate::protocol::{Body, Message, Submission};
use crate::sync::lock;
use crate::token::Token;

/// Pauses between tries of a message that did not get through: 100 ms, doubling, at most 5 s.
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// The heartbeat interval when the service does not announce one (the service's default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// The shortest heartbeat interval followed, whatever the service announces.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// The header of a take's answer numbering it (on 204: the last take that gave a submission).
const TAKE_HEADER: &str = "take";
/// Why a submission taken under a registration the service has forgotten is dropped.
const FORGOTTEN: &str = "the service no longer knows this worker (it restarted?)";
/// A registration the service forgets within this long was not lost to a restart: taking is
/// not tried again at once.
const FRESH_REGISTRATION: Duration = Duration::from_secs(1);

/// Settings of the HTTP interface. Defaults are in [`HttpConfig::new`].
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The service, `http://host:port` (a path prefix before `/v1.0` is kept).
    pub url: String,
    /// How the service lists this worker (`GET /v1.0/workers`).
    pub worker_name: String,
    /// Submissions this worker judges at once, told to the service.
    pub concurrency: u32,
    /// How long one take waits for a submission (the service caps it, at 30 s by default).
    pub take_wait: Duration,
    /// How long any other request may take.
    pub request_timeout: Duration,
    /// How long a message that does not get through is tried again before `send` gives up.
    pub write_deadline: Duration,
    /// Sent as `Authorization: Bearer` with every request (`serve --worker-token`).
    pub token: Option<Token>,
}

impl HttpConfig {
    /// Takes that wait 30 s, 10 s for any other request, 60 s to get a message through,
    /// concurrency 1; named `host:pid`.
    pub fn new(url: impl Into<String>) -> Self {
        HttpConfig {
            url: url.into(),
            worker_name: super::worker_name(),
            concurrency: 1,
            take_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            write_deadline: Duration::from_secs(60),
            token: None,
        }
    }
}

/// The registration the service knows this worker by.
#[derive(Debug, Clone)]
struct Registration {
    id: String,
    heartbeat: Duration,
    /// When it was made.
    at: Instant,
}

/// The fields of the service's worker JSON this client reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkerReply {
    id: String,
    #[serde(default)]
    heartbeat_interval_seconds: Option<f64>,
}

/// What a take brought: a submission the service claimed for this worker, or nothing in time.
type Take = JoinHandle<Result<Option<Submission>, InterfaceError>>;

/// A submission taken and not finished: the registration that took it, and the take's number.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    registration: String,
    take: u64,
}

/// What this worker holds, read in one piece by the heartbeat (a submission taken after its
/// `lastTake` may be missing from its `running`, never the other way round).
#[derive(Default)]
struct Holdings {
    /// Submissions taken and not finished, by id.
    held: HashMap<String, Held>,
    /// The last take number the service told a registration of (the last one only matters).
    last_take: Option<(String, u64)>,
}

impl Holdings {
    /// The service told `registration` of take `number`.
    fn heard(&mut self, registration: &str, number: u64) {
        match &mut self.last_take {
            Some((r, last)) if r == registration => *last = (*last).max(number),
            last => *last = Some((registration.to_owned(), number)),
        }
    }

    /// The last take number `registration` heard of (0: none).
    fn last_take(&self, registration: &str) -> u64 {
        match &self.last_take {
            Some((r, last)) if r == registration => *last,
            _ => 0,
        }
    }
}

/// What the interface and its tasks share.
struct Shared {
    client: reqwest::Client,
    /// The service's URL, without a trailing slash.
    base: String,
    config: HttpConfig,
    /// The current registration; `None` once the service forgot it, until registered again.
    registration: Mutex<Option<Registration>>,
    /// Held while registering, so that one registration replaces a forgotten one.
    registering: tokio::sync::Mutex<()>,
    held: Mutex<Holdings>,
    /// The last failure the service has not been told of.
    unreported: Mutex<Option<String>>,
}

/// Submissions from, and messages to, a remote `executioner serve`.
pub struct HttpInterface {
    shared: Arc<Shared>,
    /// A take whose `next()` was dropped before it ended: the next `next()` waits for it.
    pending: tokio::sync::Mutex<Option<Take>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// A failure that asking again would not mend (a refusal, a bad answer, a bad setting).
fn failure(reason: impl Into<String>) -> InterfaceError {
    InterfaceError::permanent("http", reason)
}

/// A failure of `kind`: [`ErrorKind::Transient`] when the service could not be reached or
/// answered with a status worth another try ([`is_transient`]).
fn failure_of(kind: ErrorKind, reason: impl Into<String>) -> InterfaceError {
    InterfaceError {
        kind,
        ..failure(reason)
    }
}

/// The kind of failure an answer with `status` is.
fn kind_of(status: StatusCode) -> ErrorKind {
    if is_transient(status) {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    }
}

/// `url` checked (`http://` or `https://`, nothing after the path), without a trailing slash.
fn base_url(url: &str) -> Result<String, InterfaceError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| failure(format!("invalid service URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(failure(format!(
            "invalid service URL {url:?}: expected http://HOST:PORT"
        )));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// An error with its causes (a client error alone says little: "error sending request").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What the service answered when it refused: the status and its error message.
async fn refusal(response: reqwest::Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(200).collect());
    format!("{status}: {message}")
}

/// Answers worth another try: the service is overloaded, restarting, or behind a proxy that
/// cannot reach it yet.
fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// What the heartbeat reports of this worker.
fn status_text(judging: usize) -> String {
    if judging == 0 {
        "idle".into()
    } else {
        format!("judging {judging}")
    }
}

impl Shared {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn current(&self) -> Option<Registration> {
        lock(&self.registration).clone()
    }

    /// A failure, kept for the next heartbeat to report.
    fn failed(&self, kind: ErrorKind, reason: String) -> InterfaceError {
        *lock(&self.unreported) = Some(reason.clone());
        failure_of(kind, reason)
    }

    /// The current registration, registering first if the service forgot the last one.
    async fn registration(&self) -> Result<Registration, InterfaceError> {
        if let Some(registration) = self.current() {
            return Ok(registration);
        }
        let _one = self.registering.lock().await;
        if let Some(registration) = self.current() {
            return Ok(registration);
        }
        let registration = self.register().await?;
        *lock(&self.registration) = Some(registration.clone());
        Ok(registration)
    }

    async fn register(&self) -> Result<Registration, InterfaceError> {
        let body = json!({
            "name": self.config.worker_name,
            "concurrency": self.config.concurrency,
        });
        let what = format!("registering with {}", self.base);
        let response = self
            .client
            .post(self.url("/v1.0/workers"))
            .json(&body)
            .timeout(self.config.request_timeout)
            .send()
            .await
            .map_err(|e| {
                self.failed(ErrorKind::Transient, format!("{what}: {}", with_causes(&e)))
            })?;
        if response.status() != StatusCode::CREATED {
            let kind = kind_of(response.status());
            return Err(self.failed(kind, format!("{what}: {}", refusal(response).await)));
        }
        let reply: WorkerReply = response.json().await.map_err(|e| {
            self.failed(
                ErrorKind::Permanent,
                format!("{what}: unreadable answer: {e}"),
            )
        })?;
        let heartbeat = heartbeat_interval(reply.heartbeat_interval_seconds);
        info!(worker_id = %reply.id, name = %self.config.worker_name, ?heartbeat, "registered with the service");
        Ok(Registration {
            id: reply.id,
            heartbeat,
            at: Instant::now(),
        })
    }

    /// The service does not know registration `id` (it restarted): it is dropped, and the next
    /// request registers again. What was taken under it is no longer this worker's: `send`
    /// drops it.
    fn forget(&self, id: &str) {
        let mut registration = lock(&self.registration);
        if registration.as_ref().is_none_or(|r| r.id != id) {
            return; // Already forgotten (and perhaps replaced).
        }
        *registration = None;
        let lost: Vec<String> = lock(&self.held)
            .held
            .iter()
            .filter(|(_, by)| by.registration == id)
            .map(|(submission, _)| submission.clone())
            .collect();
        warn!(worker_id = %id, ?lost, "the service no longer knows this worker (it restarted?); registering again, dropping what it held");
    }

    /// Submissions taken under the current registration and not finished.
    fn judging(&self) -> usize {
        let current = self.current().map(|r| r.id);
        lock(&self.held)
            .held
            .values()
            .filter(|by| Some(&by.registration) == current.as_ref())
            .count()
    }

    /// One heartbeat with this worker's status, the last failure not reported yet, and what it
    /// holds: every submission it runs (whichever registration took it: one taken again by this
    /// one while an attempt of the old one still runs is not to be run twice) and the last take
    /// it heard of. A service that forgot this worker gets a new registration instead.
    async fn heartbeat(&self) {
        let registration = match self.registration().await {
            Ok(registration) => registration,
            Err(e) => {
                warn!(error = %e, "cannot register with the service");
                return;
            }
        };
        let error = lock(&self.unreported).take();
        let judging = self.judging();
        let (running, last_take) = {
            let holdings = lock(&self.held);
            let mut running: Vec<&String> = holdings.held.keys().collect();
            running.sort();
            (json!(running), holdings.last_take(&registration.id))
        };
        let mut body = json!({
            "status": status_text(judging),
            "running": running,
            "lastTake": last_take,
        });
        if let Some(error) = &error {
            body["error"] = json!(error);
        }
        let answer = self
            .client
            .post(self.url(&format!("/v1.0/workers/{}/heartbeat", registration.id)))
            .json(&body)
            .timeout(self.config.request_timeout)
            .send()
            .await;
        let reported = match answer {
            Ok(response) if response.status().is_success() => {
                debug!(worker_id = %registration.id, judging, "heartbeat");
                if let Ok(reply) = response.json::<WorkerReply>().await {
                    let heartbeat = heartbeat_interval(reply.heartbeat_interval_seconds);
                    if let Some(current) = lock(&self.registration)
                        .as_mut()
                        .filter(|r| r.id == registration.id)
                    {
                        current.heartbeat = heartbeat;
                    }
                }
                true
            }
            Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                self.forget(&registration.id);
                if let Err(e) = self.registration().await {
                    warn!(error = %e, "cannot register with the service");
                }
                false
            }
            Ok(response) => {
                let answer = refusal(response).await;
                warn!(worker_id = %registration.id, %answer, "heartbeat refused");
                false
            }
            Err(e) => {
                warn!(worker_id = %registration.id, error = %with_causes(&e), "heartbeat not delivered");
                false
            }
        };
        if !reported {
            // Said with the next heartbeat, unless a newer failure replaced it meanwhile.
            if let Some(error) = error {
                lock(&self.unreported).get_or_insert(error);
            }
        }
    }

    /// Takes the next submission, waiting up to `take_wait` for one. It is held from the moment
    /// the service answers, even if no `next()` is waiting for it any more. A submission this
    /// worker still runs (an attempt the service took back, and gave it again) is not handed
    /// out: the old attempt is refused from now on, and once it has stopped the heartbeat, no
    /// longer listing it, has the service queue it again.
    async fn take(self: Arc<Self>) -> Result<Option<Submission>, InterfaceError> {
        let registration = self.registration().await?;
        let url = self.url(&format!(
            "/v1.0/workers/{}/take?wait={}",
            registration.id,
            self.config.take_wait.as_secs_f64()
        ));
        let response = self
            .client
            .post(url)
            .timeout(self.config.take_wait + self.config.request_timeout)
            .send()
            .await
            .map_err(|e| {
                self.failed(
                    ErrorKind::Transient,
                    format!("taking a submission: {}", with_causes(&e)),
                )
            })?;
        let number = response
            .headers()
            .get(TAKE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match (response.status(), number) {
            (StatusCode::OK, Some(take)) => {
                let submission = match response.json::<Submission>().await {
                    Ok(submission) => submission,
                    Err(e) => {
                        // Heard of all the same: the heartbeat has the service take it back.
                        lock(&self.held).heard(&registration.id, take);
                        let why = format!("taking a submission: unreadable answer: {e}");
                        return Err(self.failed(ErrorKind::Permanent, why));
                    }
                };
                let mut holdings = lock(&self.held);
                holdings.heard(&registration.id, take);
                if let Some(running) = holdings.held.get(&submission.id) {
                    warn!(worker_id = %registration.id, submission_id = %submission.id, take, old_take = running.take, "given again a submission this worker still runs; leaving it to the service");
                    return Ok(None);
                }
                info!(worker_id = %registration.id, submission_id = %submission.id, take, "took a submission");
                let held = Held {
                    registration: registration.id,
                    take,
                };
                holdings.held.insert(submission.id.clone(), held);
                Ok(Some(submission))
            }
            (StatusCode::OK, None) => Err(self.failed(ErrorKind::Permanent,
                "taking a submission: the service did not number the take (Take header); is it an older executioner?"
                    .into(),
            )),
            (StatusCode::NO_CONTENT, number) => {
                if let Some(number) = number {
                    lock(&self.held).heard(&registration.id, number);
                }
                Ok(None)
            }
            (StatusCode::NOT_FOUND, _) => {
                self.forget(&registration.id);
                if registration.at.elapsed() < FRESH_REGISTRATION {
                    // Forgotten as soon as registered: not a restart but a broken service.
                    return Err(self.failed(ErrorKind::Permanent,
                        "taking a submission: the service does not know the worker it just registered"
                            .into(),
                    ));
                }
                Ok(None) // Registers again with the next take.
            }
            _ => {
                let kind = kind_of(response.status());
                let why = format!("taking a submission: {}", refusal(response).await);
                Err(self.failed(kind, why))
            }
        }
    }

    /// Posts one message of a submission `held`, again while it does not get through, until
    /// `write_deadline`.
    async fn deliver(&self, held: &Held, message: &Message) -> Result<(), InterfaceError> {
        let (id, what) = (message.id.as_str(), message.body.state());
        let worker = held.registration.as_str();
        let url = self.url(&format!(
            "/v1.0/workers/{worker}/messages?take={}",
            held.take
        ));
        let mut retries = RETRY.deadline(self.config.write_deadline).start();
        loop {
            let answer = self
                .client
                .post(&url)
                .json(message)
                .timeout(self.config.request_timeout)
                .send()
                .await;
            let why = match answer {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) if response.status() == StatusCode::CONFLICT => {
                    return Err(self.failed(ErrorKind::Permanent, format!(
                        "recording {what} of submission {id}: the service took it back and gave it to another worker or take (this one missed its heartbeats)"
                    )));
                }
                Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                    self.forget(worker);
                    return Err(self.failed(
                        ErrorKind::Permanent,
                        format!("recording {what} of submission {id}: {FORGOTTEN}"),
                    ));
                }
                Ok(response) if is_transient(response.status()) => refusal(response).await,
                Ok(response) => {
                    return Err(self.failed(
                        ErrorKind::Permanent,
                        format!(
                            "recording {what} of submission {id}: {}",
                            refusal(response).await
                        ),
                    ));
                }
                Err(e) => with_causes(&e),
            };
            if self.current().is_none_or(|r| r.id != worker) {
                return Err(self.failed(
                    ErrorKind::Permanent,
                    format!("recording {what} of submission {id}: {FORGOTTEN}; last try: {why}"),
                ));
            }
            let Some(pause) = retries.next() else {
                return Err(self.failed(
                    ErrorKind::Transient,
                    format!(
                        "recording {what} of submission {id}: not delivered in {:?}: {why}",
                        self.config.write_deadline
                    ),
                ));
            };
            warn!(submission_id = %id, state = what, error = %why, retry_in = ?pause, "message not delivered; sending it again");
            tokio::time::sleep(pause).await;
        }
    }
}

/// The interval a service announced (`heartbeatIntervalSeconds`), within reason.
fn heartbeat_interval(seconds: Option<f64>) -> Duration {
    seconds
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_HEARTBEAT)
        .max(MIN_HEARTBEAT)
}

/// Heartbeats at the interval of the current registration until `stop` fires; a new interval
/// (a restarted service may announce another) is followed from its first heartbeat on.
async fn heartbeats(shared: Arc<Shared>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let period = shared.current().map_or(DEFAULT_HEARTBEAT, |r| r.heartbeat);
        let round = stop.child_token();
        super::every(period, round.clone(), || {
            let (shared, round) = (shared.clone(), round.clone());
            async move {
                shared.heartbeat().await;
                let now = shared.current().map(|r| r.heartbeat);
                if now.is_some_and(|now| now != period) {
                    info!(heartbeat = ?now, "the service announced another heartbeat interval");
                    round.cancel();
                }
            }
        })
        .await;
    }
}

impl HttpInterface {
    /// Registers with the service at `config.url` and starts the heartbeat. Fails when the
    /// service cannot be reached or refuses the registration.
    pub async fn connect(config: HttpConfig) -> Result<Self, InterfaceError> {
        let base = base_url(&config.url)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &config.token {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| failure("the worker token is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .default_headers(headers)
            .build()
            .map_err(|e| failure(format!("building the HTTP client: {}", with_causes(&e))))?;
        let shared = Arc::new(Shared {
            client,
            base,
            config,
            registration: Mutex::new(None),
            registering: tokio::sync::Mutex::new(()),
            held: Mutex::new(Holdings::default()),
            unreported: Mutex::new(None),
        });
        shared.registration().await?;
        // Registering is the first sign of life; what failed on the way is no news now.
        lock(&shared.unreported).take();
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        tasks.spawn(heartbeats(shared.clone(), stop.clone()));
        tasks.close();
        Ok(HttpInterface {
            shared,
            pending: tokio::sync::Mutex::new(None),
            stop,
            tasks,
        })
    }

    /// The id the service knows this worker by now; `None` while it registers again.
    pub fn worker_id(&self) -> Option<String> {
        self.shared.current().map(|r| r.id)
    }

    /// Stops taking submissions and the heartbeat, and deregisters: the service queues again
    /// what this worker still holds. `next()` answers `None` from now on.
    pub async fn close(&self) {
        self.stop.cancel();
        if let Some(take) = self.pending.lock().await.take() {
            take.abort();
        }
        self.tasks.wait().await;
        let Some(registration) = self.shared.current() else {
            return;
        };
        let answer = self
            .shared
            .client
            .delete(
                self.shared
                    .url(&format!("/v1.0/workers/{}", registration.id)),
            )
            .timeout(self.shared.config.request_timeout)
            .send()
            .await;
        match answer {
            Ok(response)
                if response.status().is_success() || response.status() == StatusCode::NOT_FOUND =>
            {
                info!(worker_id = %registration.id, "deregistered from the service")
            }
            Ok(response) => {
                let answer = refusal(response).await;
                warn!(worker_id = %registration.id, %answer, "could not deregister; the service will find this worker unresponsive")
            }
            Err(e) => {
                warn!(worker_id = %registration.id, error = %with_causes(&e), "could not deregister; the service will find this worker unresponsive")
            }
        }
    }
}

impl Drop for HttpInterface {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(mut pending) = self.pending.try_lock() {
            if let Some(take) = pending.take() {
                take.abort();
            }
        }
    }
}

#[async_trait]
impl Interface for HttpInterface {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        loop {
            // Cancel-safe: the take stays in `pending` when this future is dropped.
            let mut pending = tokio::select! {
                pending = self.pending.lock() => pending,
                _ = self.stop.cancelled() => return Ok(None),
            };
            if self.stop.is_cancelled() {
                return Ok(None);
            }
            let take = pending.get_or_insert_with(|| self.tasks.spawn(self.shared.clone().take()));
            let taken = tokio::select! {
                taken = take => taken,
                _ = self.stop.cancelled() => return Ok(None),
            };
            *pending = None;
            match taken {
                Ok(Ok(Some(submission))) => return Ok(Some(submission)),
                Ok(Ok(None)) => {} // None came in time: ask again.
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(failure(format!("the take failed: {e}"))),
            }
        }
    }

    #[instrument(skip_all, fields(submission_id = %message.id, state = message.body.state()))]
    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        let shared = &self.shared;
        let id = message.id.as_str();
        let current = shared.current().map(|r| r.id);
        let holder = lock(&shared.held).held.get(id).cloned();
        let held = match holder {
            Some(held) if Some(&held.registration) == current.as_ref() => held,
            holder => {
                lock(&shared.held).held.remove(id);
                if message.body == Body::Executing {
                    // Taken under a registration the service has forgotten since.
                    info!("the service took the submission back before judging began");
                    return Ok(Sent::NotTaken);
                }
                let why = if holder.is_some() {
                    FORGOTTEN
                } else {
                    "this worker does not hold it"
                };
                // Not news for the heartbeat: the failure that dropped it was.
                return Err(failure(format!(
                    "recording {} of submission {id}: {why}",
                    message.body.state()
                )));
            }
        };
        if message.body == Body::Executing {
            // The service claimed it for this worker when it handed it out.
            return Ok(Sent::Recorded);
        }
        let delivered = shared.deliver(&held, message).await;
        if delivered.is_err() || message.body.is_terminal() {
            // Ended, or no longer this worker's to report on.
            let mut holdings = lock(&shared.held);
            if holdings.held.get(id) == Some(&held) {
                holdings.held.remove(id);
            }
        }
        delivered.map(|()| Sent::Recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_url_is_checked_and_normalised() {
        assert_eq!(
            base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("http://judge.lan:80/executioner").unwrap(),
            "http://judge.lan/executioner"
        );
        for bad in [
            "127.0.0.1:8080",
            "ftp://host",
            "http://host/?x=1",
            "http://",
        ] {
            assert!(base_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_announced_heartbeat_is_followed_within_reason() {
        assert_eq!(heartbeat_interval(Some(2.5)), Duration::from_millis(2500));
        assert_eq!(heartbeat_interval(None), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(Some(0.0)), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(Some(-1.0)), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(Some(0.001)), MIN_HEARTBEAT);
    }

    #[test]
    fn the_status_says_how_many_are_judged() {
        assert_eq!(status_text(0), "idle");
        assert_eq!(status_text(2), "judging 2");
        let config = HttpConfig::new("http://localhost:8080");
        assert!(config
            .worker_name
            .ends_with(&format!(":{}", std::process::id())));
    }
}
