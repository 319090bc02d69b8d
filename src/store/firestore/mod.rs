//! The Firestore interface (SPEC §6), compatible with the STAOJ web front end: submissions in
//! `submissions/{id}`, test results in `submissions/{id}/judge-results`, the number of running
//! workers in `info/info.judgeCount`. Any number of workers may share one database.
//!
//! It speaks the Firestore gRPC API directly (through the `firestore` crate's authenticated
//! client) and uses only what real Firestore and the emulator the tests run against
//! (ENVIRONMENT.md) both do alike: commits with `exists` preconditions and explicit field masks,
//! queries with one filter, reads by id, and a listener with one query target.
//!
//! It is the lease engine ([`crate::interface::lease`]: offer cache, wake-up plus sweep, heartbeat, held
//! claims, retries) over this file's primitives ([`FirestoreLeases`]).
//!
//! How a submission moves through it:
//! - A front end writes it with `state: "queued"`. A listener on `state == "queued"` (`listen`,
//!   started by the engine with the first `next()`) wakes every worker's
//!   [`crate::interface::Interface::next`], which queries (`look`) for queued submissions (oldest first;
//!   with n workers counted in `judgeCount`, each offers one of the n oldest at random, so they
//!   do not all race for the same one); the engine's periodic sweep finds what a lost event
//!   would hide, and a listener that fails is opened again. Every event is only a wake-up: what
//!   to do next always comes from a fresh query.
//! - The claim (`executing`) is a commit whose **first** write creates the lock document
//!   `executioner-claims/{id}:{attempt}` with precondition `exists: false`, attempt being one
//!   more than the submission's latest. Exactly one worker can create it, on real Firestore and
//!   on the emulator alike (which neither isolates transactions nor makes a commit atomic, but
//!   does check each write's precondition in order). A worker that read an out-of-date state
//!   picks an attempt number that is already taken, and loses.
//! - The same commit creates `executioner-holds/{id}:{attempt}`, which exists while the attempt
//!   holds the submission and carries its lease. Every later write of the attempt is a commit
//!   whose first write updates (or, at the end, deletes) that hold with `exists: true`: once
//!   the claim is lost, nothing the old worker sends changes anything. Writes are sets of fixed
//!   values on fixed document ids, so a commit whose answer was lost is simply sent again.
//! - The engine's heartbeat renews the leases this instance holds (`renew`). A worker that
//!   dies stops renewing; once its lease has passed, the submission (still `judging`,
//!   `compiling` or `compiled`) is offered again and claimed as the next attempt, which deletes
//!   the old hold and the old
//!   attempt's results. After `retries` such takeovers in a row it ends as `error` instead.
//! - Why an attempt ended in `error` or `invalidData` goes into its claim document (`reason`),
//!   so the `submissions` documents keep exactly the fields of SPEC §6.

mod value;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use firestore::gcloud_sdk::google::firestore::v1::{
    batch_get_documents_response, document_transform, document_transform::field_transform,
    firestore_client::FirestoreClient, listen_request, precondition, run_query_request,
    structured_query, target, write, BatchGetDocumentsRequest, CommitRequest, Document,
    DocumentMask, ListenRequest, Precondition, RunQueryRequest, StructuredQuery, Target, Value,
    Write,
};
use firestore::gcloud_sdk::tonic::{Code, Status};
use firestore::gcloud_sdk::GoogleAuthMiddleware;
use firestore::{FirestoreDb, FirestoreDbOptions};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

use crate::interface::lease::{
    self, LeaseStore, Leased, Look, Recorded, Skip, Timing, Wake, RETRY,
};
use crate::interface::{InterfaceError, SubmissionState};
use crate::protocol::{Body, CompileResult, Message, Submission};
use crate::sync::lock;
use value::Fields;

pub use value::Fields as DocumentFields;

/// Collections (SPEC §6) and the interface's own bookkeeping.
pub const SUBMISSIONS: &str = "submissions";
pub const JUDGE_RESULTS: &str = "judge-results";
const INFO: &str = "info";
const CLAIMS: &str = "executioner-claims";
const HOLDS: &str = "executioner-holds";

/// Most of the oldest queued submissions the workers of one queue spread over.
const MAX_SPREAD: usize = 16;

/// Settings of the Firestore interface. Defaults are in [`FirestoreConfig::new`].
#[derive(Debug, Clone)]
pub struct FirestoreConfig {
    /// The Google Cloud project. Credentials come from `GOOGLE_APPLICATION_CREDENTIALS` (or the
    /// other usual places); with `FIRESTORE_EMULATOR_HOST` set, the emulator is used instead.
    pub project_id: String,
    /// The database, `(default)` unless named.
    pub database_id: String,
    /// How long a claim lasts without a heartbeat. The heartbeat renews it every third of this.
    pub lease: Duration,
    /// How many times a submission whose worker vanished is taken over before it ends as
    /// `error`.
    pub retries: u32,
    /// How often `next()` looks for submissions without being woken.
    pub sweep_interval: Duration,
    /// How long a failed write is tried again before `send` gives up with an error.
    pub write_deadline: Duration,
    /// Most queued submissions one look considers (they are then taken oldest first).
    pub scan_limit: i32,
    /// Stored in claims and holds, for people reading them.
    pub worker_name: String,
}

impl FirestoreConfig {
    /// The `(default)` database, a 30 s lease, 3 takeovers, a sweep every 5 s, 60 s to get a
    /// write through, 200 submissions a look; named `host:pid`.
    pub fn new(project_id: impl Into<String>) -> Self {
        FirestoreConfig {
            project_id: project_id.into(),
            database_id: "(default)".into(),
            lease: Duration::from_secs(30),
            retries: 3,
            sweep_interval: Duration::from_secs(5),
            write_deadline: Duration::from_secs(60),
            scan_limit: 200,
            worker_name: crate::interface::worker_name(),
        }
    }
}

/// A submission as the store holds it (what the STAOJ front end reads).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubmission {
    pub state: SubmissionState,
    pub score: Option<f64>,
    pub failed_subtasks: Option<Vec<u32>>,
    /// Claims so far.
    pub attempts: u32,
    /// Why the last attempt ended as `error` or `invalidData`.
    pub reason: Option<String>,
    /// The `testing` and `tested` messages of its last attempt, in order.
    pub results: Vec<Message>,
}

/// A claim this instance holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    attempt: i64,
    /// Number of the next judge result of the attempt.
    seq: u32,
    /// `judgeTime` of the last result: the next one is later, so times order the results.
    last_time: SystemTime,
}

type Client = FirestoreClient<GoogleAuthMiddleware>;

/// The lease primitives of a Firestore database: what the lease engine ([`Leased`]) needs to
/// be the Firestore interface.
pub struct FirestoreLeases {
    db: FirestoreDb,
    config: FirestoreConfig,
    /// `projects/P/databases/D/documents`.
    documents: String,
    /// Workers sharing the queue (`judgeCount`, at least 1), and when it was read.
    workers: Mutex<Option<(usize, Instant)>>,
    /// Whether this instance counts in `info/info.judgeCount`.
    registered: AtomicBool,
}

/// Submissions from, and messages to, a Firestore database: the lease engine over
/// [`FirestoreLeases`].
pub type FirestoreInterface = Leased<FirestoreLeases>;

/// A failure that trying again would not mend (an unreadable document, an unknown state).
fn failure(reason: impl Into<String>) -> InterfaceError {
    InterfaceError::permanent("firestore", reason)
}

/// A failed request, transient or not as [`is_transient`] says.
fn failed(reason: impl Into<String>, status: Status) -> InterfaceError {
    lease::failed::<FirestoreLeases>(reason, status)
}

/// Failures worth another try: the service is unreachable, overloaded or asks to try again.
/// (An emulator that was restarted answers `Unavailable` until it is back.)
fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled
    )
}

/// A failed `exists` precondition: the document was (not) there.
fn is_precondition(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::AlreadyExists | Code::NotFound | Code::FailedPrecondition
    )
}

fn exists(yes: bool) -> Option<Precondition> {
    Some(Precondition {
        condition_type: Some(precondition::ConditionType::Exists(yes)),
    })
}

fn mask(fields: &[&str]) -> Option<DocumentMask> {
    Some(DocumentMask {
        field_paths: fields.iter().map(|f| f.to_string()).collect(),
    })
}

/// A document's fields from `(name, value)` pairs.
fn fields<const N: usize>(pairs: [(&str, Value); N]) -> HashMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `submissions` where `state == "queued"`.
fn queued_query(limit: Option<i32>) -> StructuredQuery {
    equal_query(SUBMISSIONS, "state", value::string("queued"), limit)
}

fn equal_query(collection: &str, field: &str, value: Value, limit: Option<i32>) -> StructuredQuery {
    filtered_query(
        collection,
        field,
        structured_query::field_filter::Operator::Equal,
        value,
        limit,
    )
}

fn filtered_query(
    collection: &str,
    field: &str,
    op: structured_query::field_filter::Operator,
    value: Value,
    limit: Option<i32>,
) -> StructuredQuery {
    StructuredQuery {
        from: vec![structured_query::CollectionSelector {
            collection_id: collection.into(),
            all_descendants: false,
        }],
        r#where: Some(structured_query::Filter {
            filter_type: Some(structured_query::filter::FilterType::FieldFilter(
                structured_query::FieldFilter {
                    field: Some(structured_query::FieldReference {
                        field_path: field.into(),
                    }),
                    op: op as i32,
                    value: Some(value),
                },
            )),
        }),
        limit,
        ..Default::default()
    }
}

impl FirestoreLeases {
    fn client(&self) -> Client {
        self.db.client().get()
    }

    fn database(&self) -> &str {
        self.db.get_database_path()
    }

    fn path(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.documents)
    }

    fn submission_path(&self, id: &str) -> String {
        self.path(SUBMISSIONS, id)
    }

    fn hold_path(&self, id: &str, attempt: i64) -> String {
        self.path(HOLDS, &format!("{id}:{attempt}"))
    }

    fn claim_path(&self, id: &str, attempt: i64) -> String {
        self.path(CLAIMS, &format!("{id}:{attempt}"))
    }

    fn result_path(&self, id: &str, attempt: i64, seq: u32) -> String {
        format!(
            "{}/{JUDGE_RESULTS}/{attempt:04}-{seq:05}",
            self.submission_path(id)
        )
    }

    /// Runs `op` until it succeeds, fails for good, or `write_deadline` has passed.
    async fn retrying<T, F, Fut>(&self, what: &str, id: &str, op: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        lease::retrying(self, what, id, op).await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), Status> {
        let request = CommitRequest {
            database: self.database().to_owned(),
            writes,
            ..Default::default()
        };
        self.client().commit(request).await.map(|_| ())
    }

    /// The documents of `query` under `parent` (the database's root when `None`).
    async fn query(
        &self,
        parent: Option<String>,
        query: StructuredQuery,
    ) -> Result<Vec<Document>, Status> {
        let request = RunQueryRequest {
            parent: parent.unwrap_or_else(|| self.documents.clone()),
            query_type: Some(run_query_request::QueryType::StructuredQuery(query)),
            ..Default::default()
        };
        let mut stream = self.client().run_query(request).await?.into_inner();
        let mut documents = Vec::new();
        while let Some(response) = stream.next().await {
            if let Some(document) = response?.document {
                documents.push(document);
            }
        }
        Ok(documents)
    }

    /// The documents at `paths` that exist, by path.
    async fn get(&self, paths: Vec<String>) -> Result<HashMap<String, Document>, Status> {
        if paths.is_empty() {
            return Ok(HashMap::new());
        }
        let request = BatchGetDocumentsRequest {
            database: self.database().to_owned(),
            documents: paths,
            ..Default::default()
        };
        let mut stream = self
            .client()
            .batch_get_documents(request)
            .await?
            .into_inner();
        let mut found = HashMap::new();
        while let Some(response) = stream.next().await {
            if let Some(batch_get_documents_response::Result::Found(document)) = response?.result {
                found.insert(document.name.clone(), document);
            }
        }
        Ok(found)
    }

    async fn get_one(&self, path: String) -> Result<Option<Document>, Status> {
        Ok(self.get(vec![path]).await?.into_values().next())
    }

    fn set(&self, path: String, fields: HashMap<String, Value>) -> Write {
        let names: Vec<String> = fields.keys().cloned().collect();
        Write {
            update_mask: Some(DocumentMask { field_paths: names }),
            update_transforms: Vec::new(),
            current_document: None,
            operation: Some(write::Operation::Update(Document {
                name: path,
                fields,
                ..Default::default()
            })),
        }
    }

    /// A write of `fields` (only those) into the document at `path`, which must exist.
    fn update(&self, path: String, fields: HashMap<String, Value>) -> Write {
        Write {
            current_document: exists(true),
            ..self.set(path, fields)
        }
    }

    /// A create of the document at `path`, which must not exist yet.
    fn create(&self, path: String, fields: HashMap<String, Value>) -> Write {
        Write {
            update_mask: None,
            current_document: exists(false),
            ..self.set(path, fields)
        }
    }

    fn delete(&self, path: String, precondition: Option<Precondition>) -> Write {
        Write {
            update_mask: None,
            update_transforms: Vec::new(),
            current_document: precondition,
            operation: Some(write::Operation::Delete(path)),
        }
    }

    fn lease_end(&self) -> Value {
        value::timestamp(SystemTime::now() + self.config.lease)
    }

    /// The results of submission `id` not written by `attempt`.
    async fn stale_results(&self, id: &str, attempt: i64) -> Result<Vec<String>, Status> {
        let query = StructuredQuery {
            from: vec![structured_query::CollectionSelector {
                collection_id: JUDGE_RESULTS.into(),
                all_descendants: false,
            }],
            ..Default::default()
        };
        let prefix = format!("{attempt:04}-");
        Ok(self
            .query(Some(self.submission_path(id)), query)
            .await?
            .into_iter()
            .filter(|d| !value::document_id(d).starts_with(&prefix))
            .map(|d| d.name)
            .collect())
    }

    /// The latest claim of submission `id`, if any.
    async fn latest_claim(&self, id: &str) -> Result<Option<Document>, Status> {
        let claims = self
            .query(
                None,
                equal_query(CLAIMS, "submission", value::string(id), None),
            )
            .await?;
        Ok(claims
            .into_iter()
            .max_by_key(|c| Fields::of(c).integer("attempt").unwrap_or(0)))
    }

    /// Workers sharing the queue, as `info/info.judgeCount` says (read again after a sweep
    /// interval; 1 when it cannot be read), at most [`MAX_SPREAD`].
    async fn workers(&self) -> usize {
        if let Some((count, at)) = *lock(&self.workers) {
            if at.elapsed() < self.config.sweep_interval {
                return count;
            }
        }
        let count = match self.get_one(self.path(INFO, "info")).await {
            Ok(info) => info
                .and_then(|d| Fields::of(&d).integer("judgeCount"))
                .map_or(1, |n| n.clamp(1, MAX_SPREAD as i64) as usize),
            Err(e) => {
                debug!(error = e.message(), "cannot read the worker count");
                1
            }
        };
        *lock(&self.workers) = Some((count, Instant::now()));
        count
    }

    /// Up to `scan_limit` submissions worth offering, oldest first: queued ones, and those
    /// whose holder's lease has passed.
    async fn candidate(&self, skip: &Skip) -> Result<Option<Submission>, Status> {
        let skip: Vec<&String> = skip.offered.iter().chain(&skip.held).collect();
        let limit = Some(self.config.scan_limit.max(1));
        let mut candidates = self.query(None, queued_query(limit)).await?;
        let expired = self
            .query(
                None,
                filtered_query(
                    HOLDS,
                    "expires",
                    structured_query::field_filter::Operator::LessThan,
                    value::timestamp(SystemTime::now()),
                    limit,
                ),
            )
            .await?;
        let taken_over: Vec<String> = expired
            .iter()
            .filter_map(|hold| Fields::of(hold).string("submission"))
            .filter(|id| !skip.iter().any(|s| s.as_str() == *id))
            .map(|id| self.submission_path(id))
            .collect();
        candidates.extend(self.get(taken_over).await?.into_values().filter(|d| {
            Fields::of(d)
                .string("state")
                .and_then(|s| s.parse::<SubmissionState>().ok())
                .is_some_and(|s| {
                    matches!(
                        s,
                        SubmissionState::Judging
                            | SubmissionState::Compiling
                            | SubmissionState::Compiled
                    )
                })
        }));
        candidates.retain(|d| !skip.iter().any(|s| s.as_str() == value::document_id(d)));
        // Oldest first; `submissionTime` as the front end writes it, else when it was created.
        candidates.sort_by_key(|d| {
            let time = Fields::of(d)
                .timestamp("submissionTime")
                .or_else(|| d.create_time.as_ref().map(value::from_timestamp));
            (time, value::document_id(d).to_owned())
        });
        if candidates.is_empty() {
            return Ok(None);
        }
        // With n workers, each takes one of the n oldest at random instead of all racing for
        // the oldest (a lost race costs a commit, and the emulator runs one at a time).
        let spread = self.workers().await.min(candidates.len());
        let pick = (uuid::Uuid::new_v4().as_u128() % spread as u128) as usize;
        let document = candidates.swap_remove(pick);
        let f = Fields::of(&document);
        // A field that is missing or of the wrong type reads as empty, which the judge reports
        // as `invalid`: the submission still ends.
        let submission = Submission {
            id: value::document_id(&document).to_owned(),
            problem: f.string("problem").unwrap_or_default().to_owned(),
            language: f.string("language").unwrap_or_default().to_owned(),
            source_code: f.string("sourceCode").unwrap_or_default().to_owned(),
            // STAOJ's layout keeps one `sourceCode`: Firestore does not carry `files` (SPEC §1),
            // so a submission read from it is always a one-file submission.
            files: Vec::new(),
            run: None,
        };
        Ok(Some(submission))
    }

    /// Whether the lease of attempt `attempt` of submission `id` has passed (or it never got a
    /// hold and its claim is older than a lease).
    async fn expired(
        &self,
        id: &str,
        attempt: i64,
        claim: Option<&Document>,
    ) -> Result<bool, Status> {
        let hold = self
            .retrying("claiming", id, || self.get_one(self.hold_path(id, attempt)))
            .await?;
        let until = match &hold {
            Some(hold) => Fields::of(hold).timestamp("expires"),
            None => claim
                .and_then(|c| Fields::of(c).timestamp("claimedAt"))
                .map(|at| at + self.config.lease),
        };
        Ok(until.is_none_or(|until| until < SystemTime::now()))
    }

    /// Commits `writes` for the claim `held` of submission `id`, fenced on its hold: `last`
    /// ends the claim (the hold is deleted), else its lease is renewed. `Ok(false)` when the
    /// claim was lost.
    async fn fenced(
        &self,
        id: &str,
        held: Held,
        what: &str,
        writes: Vec<Write>,
        last: bool,
    ) -> Result<bool, InterfaceError> {
        let hold = self.hold_path(id, held.attempt);
        let fence = if last {
            self.delete(hold, exists(true))
        } else {
            self.update(hold, fields([("expires", self.lease_end())]))
        };
        let mut all = vec![fence];
        all.extend(writes);
        match self.retrying(what, id, || self.commit(all.clone())).await {
            Ok(()) => Ok(true),
            Err(e) if is_precondition(&e) => Ok(false),
            Err(e) => Err(failed(
                format!("recording {what} of submission {id}: {e}"),
                e,
            )),
        }
    }

    fn state(&self, id: &str, state: SubmissionState) -> Write {
        self.update(
            self.submission_path(id),
            fields([("state", value::string(state.as_str()))]),
        )
    }

    /// The judge-results document of a `testing` or `tested` message, and its `judgeTime`.
    fn result(
        &self,
        id: &str,
        held: Held,
        body: &Body,
    ) -> Result<(Write, SystemTime), InterfaceError> {
        let time = SystemTime::now().max(held.last_time + Duration::from_micros(1));
        let mut document = fields([
            ("state", value::string(body.state())),
            ("judgeTime", value::timestamp(time)),
        ]);
        let (test_case, subtask) = match *body {
            Body::Testing { test_case, subtask } => (test_case, subtask),
            Body::Tested {
                test_case,
                subtask,
                result,
                time,
                memory,
                score,
                output: _,
            } => {
                document.insert("result".into(), value::string(result.as_str()));
                if let Some(score) = score {
                    document.insert("score".into(), value::double(score));
                }
                if let Some(time) = time {
                    document.insert("time".into(), value::count(time));
                }
                if let Some(memory) = memory {
                    document.insert("memory".into(), value::count(memory));
                }
                (test_case, subtask)
            }
            _ => {
                return Err(failure(format!(
                    "submission {id}: {} is not a test result",
                    body.state()
                )))
            }
        };
        document.insert("testCase".into(), value::integer(test_case));
        if let Some(subtask) = subtask {
            document.insert("subtask".into(), value::integer(subtask));
        }
        let path = self.result_path(id, held.attempt, held.seq);
        // A whole new document: no mask, so nothing of an earlier write survives.
        let write = Write {
            update_mask: None,
            ..self.set(path, document)
        };
        Ok((write, time))
    }

    /// Renews the leases of the claims `held`; those found lost.
    async fn heartbeat(&self, held: Vec<(String, Held)>) -> Vec<String> {
        let mut lost = Vec::new();
        for (id, held) in held {
            let renew = self.update(
                self.hold_path(&id, held.attempt),
                fields([("expires", self.lease_end())]),
            );
            match self.commit(vec![renew]).await {
                Ok(()) => debug!(submission_id = %id, "lease renewed"),
                Err(e) if is_precondition(&e) => {
                    warn!(submission_id = %id, "claim lost: its lease expired and another worker took it");
                    lost.push(id);
                }
                Err(e) => warn!(submission_id = %id, error = %e, "could not renew the lease"),
            }
        }
        lost
    }

    /// Adds `delta` to `info/info.judgeCount`: an increment creates the document if need be; a
    /// decrement never does (a count that was lost stays lost rather than going negative).
    async fn count_worker(&self, delta: i64) -> Result<(), Status> {
        let write = Write {
            update_mask: mask(&[]),
            update_transforms: vec![document_transform::FieldTransform {
                field_path: "judgeCount".into(),
                transform_type: Some(field_transform::TransformType::Increment(value::integer(
                    delta,
                ))),
            }],
            current_document: if delta < 0 { exists(true) } else { None },
            operation: Some(write::Operation::Update(Document {
                name: self.path(INFO, "info"),
                ..Default::default()
            })),
        };
        self.retrying("counting workers", "info", || {
            self.commit(vec![write.clone()])
        })
        .await
    }
}

impl FirestoreInterface {
    /// Connects to the database of `config` and counts this worker in `info/info.judgeCount`.
    pub async fn connect(config: FirestoreConfig) -> Result<Self, InterfaceError> {
        let interface = Self::open(config).await?;
        interface
            .shared
            .count_worker(1)
            .await
            .map_err(|e| failed(format!("counting this worker in info/info: {e}"), e))?;
        interface.shared.registered.store(true, Ordering::SeqCst);
        Ok(interface)
    }

    /// Connects without counting as a worker: a front end's (or a test's) view of the store.
    pub async fn open(config: FirestoreConfig) -> Result<Self, InterfaceError> {
        let options = FirestoreDbOptions::new(config.project_id.clone())
            .with_database_id(config.database_id.clone());
        let db = FirestoreDb::with_options(options).await.map_err(|e| {
            InterfaceError::transient("firestore", format!("connecting to Firestore: {e}"))
                .caused_by(e)
        })?;
        let documents = db.get_documents_path().clone();
        Ok(Leased::start(FirestoreLeases {
            db,
            config,
            documents,
            workers: Mutex::new(None),
            registered: AtomicBool::new(false),
        }))
    }

    /// Writes submissions as a front end does: `state: "queued"`, `submissionTime` now.
    pub async fn enqueue(&self, submissions: &[Submission]) -> Result<(), InterfaceError> {
        let shared = &self.shared;
        for chunk in submissions.chunks(100) {
            let now = SystemTime::now();
            let writes: Vec<Write> = chunk
                .iter()
                .map(|s| {
                    shared.set(
                        shared.submission_path(&s.id),
                        fields([
                            ("problem", value::string(&s.problem)),
                            ("language", value::string(&s.language)),
                            // STAOJ's layout: one `sourceCode`; `files` are not stored.
                            ("sourceCode", value::string(&s.source_code)),
                            ("state", value::string("queued")),
                            ("submissionTime", value::timestamp(now)),
                        ]),
                    )
                })
                .collect();
            let first = chunk.first().map_or("", |s| s.id.as_str());
            shared
                .retrying("queueing", first, || shared.commit(writes.clone()))
                .await
                .map_err(|e| failed(format!("queueing submission {first}: {e}"), e))?;
        }
        Ok(())
    }

    /// The document `submissions/{id}`, as stored.
    pub async fn document(&self, id: &str) -> Result<Option<Document>, InterfaceError> {
        self.shared
            .get_one(self.shared.submission_path(id))
            .await
            .map_err(|e| failed(format!("reading submission {id}: {e}"), e))
    }

    /// The documents of `submissions/{id}/judge-results` in the order a front end shows them
    /// (by `judgeTime`).
    pub async fn judge_results(&self, id: &str) -> Result<Vec<Document>, InterfaceError> {
        let query = StructuredQuery {
            from: vec![structured_query::CollectionSelector {
                collection_id: JUDGE_RESULTS.into(),
                all_descendants: false,
            }],
            ..Default::default()
        };
        let mut results = self
            .shared
            .query(Some(self.shared.submission_path(id)), query)
            .await
            .map_err(|e| failed(format!("reading the results of submission {id}: {e}"), e))?;
        results.sort_by_key(|d| {
            (
                Fields::of(d).timestamp("judgeTime"),
                value::document_id(d).to_owned(),
            )
        });
        Ok(results)
    }

    /// `info/info.judgeCount`.
    pub async fn judge_count(&self) -> Result<Option<i64>, InterfaceError> {
        let info = self
            .shared
            .get_one(self.shared.path(INFO, "info"))
            .await
            .map_err(|e| failed(format!("reading info/info: {e}"), e))?;
        Ok(info.and_then(|d| Fields::of(&d).integer("judgeCount")))
    }

    /// What a reader of the store finds about submission `id`.
    pub async fn status(&self, id: &str) -> Result<Option<StoredSubmission>, InterfaceError> {
        let Some(document) = self.document(id).await? else {
            return Ok(None);
        };
        let f = Fields::of(&document);
        let state = f.string("state").unwrap_or_default();
        let state = state
            .parse()
            .map_err(|e| failure(format!("submission {id}: {e}")))?;
        let claims = self
            .shared
            .query(
                None,
                equal_query(CLAIMS, "submission", value::string(id), None),
            )
            .await
            .map_err(|e| failed(format!("reading the claims of submission {id}: {e}"), e))?;
        let last = claims
            .iter()
            .max_by_key(|c| Fields::of(c).integer("attempt").unwrap_or(0));
        let results = self
            .judge_results(id)
            .await?
            .iter()
            .map(|d| result_message(id, d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failure(format!("reading the results of submission {id}: {e}")))?;
        Ok(Some(StoredSubmission {
            state,
            score: f.number("score"),
            failed_subtasks: f.integers("failedSubtasks").map(|ns| {
                ns.into_iter()
                    .map(|n| u32::try_from(n).unwrap_or(0))
                    .collect()
            }),
            attempts: u32::try_from(claims.len()).unwrap_or(u32::MAX),
            reason: last.and_then(|c| Fields::of(c).string("reason").map(str::to_owned)),
            results,
        }))
    }
}

/// A judge-results document as the message it records.
fn result_message(id: &str, document: &Document) -> Result<Message, String> {
    let f = Fields::of(document);
    let u32_of = |name: &str| f.integer(name).map(|n| u32::try_from(n).unwrap_or(0));
    let u64_of = |name: &str| f.integer(name).map(|n| u64::try_from(n).unwrap_or(0));
    let test_case = u32_of("testCase").ok_or("a result without testCase")?;
    let subtask = u32_of("subtask");
    let body = match f.string("state") {
        Some("testing") => Body::Testing { test_case, subtask },
        Some("tested") => {
            let result = f.string("result").ok_or("a tested result without result")?;
            Body::Tested {
                test_case,
                subtask,
                result: serde_json::from_value(serde_json::Value::String(result.into()))
                    .map_err(|e| e.to_string())?,
                time: u64_of("time"),
                memory: u64_of("memory"),
                score: f.number("score"),
                output: None,
            }
        }
        other => return Err(format!("unknown result state {other:?}")),
    };
    Ok(Message::new(id, body))
}

#[async_trait]
impl LeaseStore for FirestoreLeases {
    type Claim = Held;
    type Error = Status;

    const NAME: &'static str = "firestore";

    fn is_transient(status: &Status) -> bool {
        is_transient(status)
    }

    fn timing(&self) -> Timing {
        Timing {
            lease: self.config.lease,
            sweep_interval: self.config.sweep_interval,
            write_deadline: self.config.write_deadline,
        }
    }

    async fn look(&self, skip: &Skip) -> Result<Look, Status> {
        Ok(match self.candidate(skip).await? {
            Some(submission) => Look::Found(submission),
            None => Look::Wait(None),
        })
    }

    #[instrument(skip_all, fields(submission_id = %id))]
    async fn claim(&self, id: &str) -> Result<Option<Held>, InterfaceError> {
        let fail = |e: Status| failed(format!("claiming submission {id}: {e}"), e);
        // The latest attempt first, then the state: a claim made in between takes the attempt
        // number this one is about to use, so this one loses.
        let latest = self
            .retrying("claiming", id, || self.latest_claim(id))
            .await
            .map_err(fail)?;
        let previous = latest
            .as_ref()
            .and_then(|c| Fields::of(c).integer("attempt"))
            .unwrap_or(0);
        let Some(submission) = self
            .retrying("claiming", id, || self.get_one(self.submission_path(id)))
            .await
            .map_err(fail)?
        else {
            return Ok(None);
        };
        let state = Fields::of(&submission)
            .string("state")
            .and_then(|s| s.parse::<SubmissionState>().ok());
        let attempt = previous + 1;
        // Takeovers in a row count from the attempt that took it from the queue.
        let first = match state {
            Some(SubmissionState::Queued) => attempt,
            Some(
                SubmissionState::Judging | SubmissionState::Compiling | SubmissionState::Compiled,
            ) if previous > 0 => {
                if !self
                    .expired(id, previous, latest.as_ref())
                    .await
                    .map_err(fail)?
                {
                    return Ok(None);
                }
                latest
                    .as_ref()
                    .and_then(|c| Fields::of(c).integer("first"))
                    .unwrap_or(previous)
            }
            _ => return Ok(None),
        };
        let token = Uuid::new_v4().to_string();
        let mut claim = fields([
            ("submission", value::string(id)),
            ("attempt", value::integer(attempt)),
            ("first", value::integer(first)),
            ("worker", value::string(&self.config.worker_name)),
            ("token", value::string(&token)),
            ("claimedAt", value::timestamp(SystemTime::now())),
        ]);
        if attempt - first > i64::from(self.config.retries) {
            // Taken over too often: whatever kills its workers would kill the next one too.
            let reason = "its workers vanished (lease expired) too many times";
            warn!(attempt, reason, "ending the submission as error");
            claim.insert("end".into(), value::string(SubmissionState::Error.as_str()));
            claim.insert("reason".into(), value::string(reason));
            let writes = vec![
                self.create(self.claim_path(id, attempt), claim),
                self.delete(self.hold_path(id, previous), None),
                self.state(id, SubmissionState::Error),
            ];
            return match self
                .retrying("abandoning", id, || self.commit(writes.clone()))
                .await
            {
                Ok(()) => Ok(None),
                Err(e) if is_precondition(&e) => Ok(None),
                Err(e) => Err(fail(e)),
            };
        }
        let stale = self
            .retrying("claiming", id, || self.stale_results(id, attempt))
            .await
            .map_err(fail)?;
        let mut rest = Vec::new();
        if previous > 0 {
            rest.push(self.delete(self.hold_path(id, previous), None));
        }
        rest.push(self.set(
            self.hold_path(id, attempt),
            fields([
                ("submission", value::string(id)),
                ("attempt", value::integer(attempt)),
                ("worker", value::string(&self.config.worker_name)),
                ("expires", self.lease_end()),
            ]),
        ));
        rest.push(self.state(id, SubmissionState::Judging));
        rest.extend(stale.into_iter().map(|path| self.delete(path, None)));
        let mut all = vec![self.create(self.claim_path(id, attempt), claim)];
        all.extend(rest.iter().cloned());
        match self
            .retrying("claiming", id, || self.commit(all.clone()))
            .await
        {
            Ok(()) => {}
            Err(e) if e.code() == Code::AlreadyExists => {
                // Taken: by another worker, or by this one if an earlier try's answer was lost.
                // Then the writes after the lock may be missing (the emulator does not commit
                // atomically): send them again.
                let mine = self
                    .retrying("claiming", id, || {
                        self.get_one(self.claim_path(id, attempt))
                    })
                    .await
                    .map_err(fail)?
                    .is_some_and(|c| Fields::of(&c).string("token") == Some(token.as_str()));
                if !mine {
                    debug!(attempt, "taken by another worker");
                    return Ok(None);
                }
                self.retrying("claiming", id, || self.commit(rest.clone()))
                    .await
                    .map_err(fail)?;
            }
            // The submission itself is gone.
            Err(e) if is_precondition(&e) => return Ok(None),
            Err(e) => return Err(fail(e)),
        }
        debug!(attempt, "claimed");
        Ok(Some(Held {
            attempt,
            seq: 1,
            last_time: SystemTime::UNIX_EPOCH,
        }))
    }

    /// Records a message after `executing` for the claim `held`.
    async fn record(
        &self,
        id: &str,
        held: &Held,
        body: &Body,
    ) -> Result<Recorded<Held>, InterfaceError> {
        let held = *held;
        let what = body.state();
        let submission = self.submission_path(id);
        let (writes, last): (Vec<Write>, bool) = match body {
            Body::Executing => return Err(failure(format!("submission {id}: claimed twice"))),
            Body::Compiling => (vec![self.state(id, SubmissionState::Compiling)], false),
            Body::Compiled {
                result: CompileResult::Success,
                ..
            } => (vec![self.state(id, SubmissionState::Compiled)], false),
            Body::Compiled {
                result: CompileResult::Error,
                ..
            } => {
                let update = self.update(
                    submission,
                    fields([
                        (
                            "state",
                            value::string(SubmissionState::CompileError.as_str()),
                        ),
                        ("score", value::double(0.0)),
                    ]),
                );
                (vec![update], false)
            }
            Body::Testing { .. } | Body::Tested { .. } => {
                let (write, time) = self.result(id, held, body)?;
                let recorded = self.fenced(id, held, what, vec![write], false).await?;
                return Ok(if recorded {
                    Recorded::Holds(Held {
                        seq: held.seq + 1,
                        last_time: time,
                        ..held
                    })
                } else {
                    Recorded::Lost
                });
            }
            Body::Done {
                score,
                failed_subtasks,
            } => {
                let mut end = match score {
                    Some(score) => fields([
                        ("state", value::string(SubmissionState::Judged.as_str())),
                        ("score", value::double(*score)),
                    ]),
                    // After a compile error: only the score (already 0); the state stays.
                    None => fields([("score", value::double(0.0))]),
                };
                if let Some(failed) = failed_subtasks {
                    end.insert(
                        "failedSubtasks".into(),
                        value::integers(failed.iter().copied()),
                    );
                }
                (vec![self.update(submission, end)], true)
            }
            Body::Error { reason } | Body::Invalid { reason } => {
                let state = if matches!(body, Body::Error { .. }) {
                    SubmissionState::Error
                } else {
                    SubmissionState::InvalidData
                };
                let mut note = fields([("end", value::string(state.as_str()))]);
                if let Some(reason) = reason {
                    note.insert("reason".into(), value::string(reason));
                }
                let writes = vec![
                    self.state(id, state),
                    self.update(self.claim_path(id, held.attempt), note),
                ];
                (writes, true)
            }
        };
        let mut writes = writes;
        if last {
            // Results an earlier attempt wrote after it lost its claim.
            let stale = self
                .retrying(what, id, || self.stale_results(id, held.attempt))
                .await
                .map_err(|e| failed(format!("recording {what} of submission {id}: {e}"), e))?;
            writes.extend(stale.into_iter().map(|path| self.delete(path, None)));
        }
        Ok(match self.fenced(id, held, what, writes, last).await? {
            false => Recorded::Lost,
            true if last => Recorded::Ended,
            true => Recorded::Holds(held),
        })
    }

    async fn renew(&self, held: Vec<(String, Held)>) -> Vec<String> {
        self.heartbeat(held).await
    }

    /// Keeps a listener on the queued submissions open, reopening it whenever it fails, and
    /// wakes `next()` on every event.
    async fn listen(&self, wake: &Wake, stop: &CancellationToken) {
        let mut failures = 0;
        loop {
            let request = ListenRequest {
                database: self.database().to_owned(),
                labels: HashMap::new(),
                target_change: Some(listen_request::TargetChange::AddTarget(Target {
                    target_id: 1,
                    once: false,
                    target_type: Some(target::TargetType::Query(target::QueryTarget {
                        parent: self.documents.clone(),
                        query_type: Some(target::query_target::QueryType::StructuredQuery(
                            // One document is enough to wake on: the emulator resends the whole
                            // result on every write anywhere, and real Firestore sends a change
                            // whenever the queue goes from empty to not (a busy queue is looked at
                            // by every worker that finishes, and swept).
                            queued_query(Some(1)),
                        )),
                    })),
                    ..Default::default()
                })),
                ..Default::default()
            };
            // The request stream stays open for as long as the listener should.
            let requests = futures_util::stream::once(async move { request })
                .chain(futures_util::stream::pending());
            let mut client = self.client();
            let opened = tokio::select! {
                opened = client.listen(requests) => opened,
                _ = stop.cancelled() => return,
            };
            let failed = match opened {
                Ok(response) => {
                    let mut events = response.into_inner();
                    debug!("listening for queued submissions");
                    let mut first = true;
                    loop {
                        let event = tokio::select! {
                            event = events.next() => event,
                            _ = stop.cancelled() => return,
                        };
                        match event {
                            Some(Ok(_)) => {
                                if first {
                                    // The stream works: the next failure starts from a short pause.
                                    failures = 0;
                                    first = false;
                                }
                                wake.wake();
                            }
                            Some(Err(e)) => {
                                warn!(code = ?e.code(), error = e.message(), "the listener failed; opening it again");
                                break;
                            }
                            None => {
                                info!("the listener was closed; opening it again");
                                break;
                            }
                        }
                    }
                    None
                }
                Err(e) => Some(e),
            };
            failures += 1;
            let pause = RETRY.delay(failures);
            if let Some(e) = failed {
                warn!(code = ?e.code(), error = e.message(), retry_in = ?pause, "cannot listen for queued submissions");
            }
            // After a failure the store may have changed unseen: look again.
            wake.wake();
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// If this instance counts as a worker, takes it out of `info/info.judgeCount` (call
    /// [`Leased::close`] on a clean stop, after the worker has drained).
    async fn close(&self) {
        if self.registered.swap(false, Ordering::SeqCst) {
            match self.count_worker(-1).await {
                Ok(()) => {}
                Err(e) if e.code() == Code::NotFound => {
                    warn!("info/info is gone (the database was reset?): nothing to count down")
                }
                Err(e) => {
                    warn!(error = %e, "could not take this worker out of info/info.judgeCount")
                }
            }
        }
    }
}
