//! A Judge0-compatible API (Judge0 CE 1.13.x): `/about`, `/config_info`, `/languages`,
//! `/statuses` and `/submissions` (one or a batch), served under `/judge0/` of the API and at
//! the root of `serve --judge0-listen`, so a Judge0 client works unchanged.
//!
//! A Judge0 submission is an ad-hoc run ([`super::runs::queue_with`]): its token is the run's id,
//! and its result is read back from the run's messages ([`RunReport`]). Judge0's request fields
//! that map exactly are taken (`source_code`, `language_id`, `stdin`, `expected_output`,
//! `cpu_time_limit`, `wall_time_limit`, `memory_limit`, `callback_url`, `number_of_runs`,
//! `redirect_stderr_to_stdout`, `command_line_arguments`, `compiler_options`); the others, when set
//! to anything but Judge0's neutral value, are refused with Judge0's own validation error
//! (422 `{"field": ["message"]}`) rather than run differently.
//!
//! Language ids: Judge0 CE 1.13.1's numbers for the languages the registry has ([`JUDGE0_IDS`]),
//! and `1000 +` the registry position for the others.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};

use super::callback_url::Style;
use super::route::{Route, Verb};
use super::runs::{queue_with, RunRequest};
use super::time::format_rfc3339;
use super::{ApiError, AppState, Status};
use crate::api::doc::{self, Doc};
use crate::language::Registry;
use crate::protocol::RUN_PROBLEM;
use crate::run::RunReport;
use crate::store::{Backend, BackendError, SubmissionView};
use crate::verdict::Verdict;
use utoipa::openapi::schema::{AdditionalProperties, AllOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};

/// The Judge0 version this API answers as (the official SDK picks its language ids by it).
pub const VERSION: &str = "1.13.1";

/// Most submissions in one batch (Judge0's default `max_submission_batch_size`).
const MAX_BATCH: usize = 20;

/// Extra time `wait=true` waits beyond the run's wall-clock limit: compiling (at most 60 s) and
/// waiting for a worker.
const WAIT_SLACK: Duration = Duration::from_secs(90);

/// Judge0 CE 1.13.1's language ids and the registry language each stands for; a Judge0 id whose
/// language the registry lacks is not listed. Where Judge0 has several versions of one compiler
/// (C 48-50, C++ 52-54), all go to ours; the first of a language is the one reported back.
pub const JUDGE0_IDS: &[(u32, &str)] = &[
    (46, "bash-5.2"),
    (50, "gcc-12"),
    (48, "gcc-12"),
    (49, "gcc-12"),
    (51, "mono-6.8"),
    (54, "g++-12"),
    (52, "g++-12"),
    (53, "g++-12"),
    (55, "sbcl-2.2"),
    (56, "gdc-12"),
    (57, "elixir-1.14"),
    (58, "erlang-25"),
    (59, "gfortran-12"),
    (60, "go-1.19"),
    (61, "ghc-9.0"),
    (62, "java-17"),
    (63, "node-18"),
    (64, "lua-5.4"),
    (65, "ocaml-4.13"),
    (66, "octave-7"),
    (67, "fpc-3.2"),
    (68, "php-8.2"),
    (71, "python-3.11"),
    (72, "ruby-3.1"),
    (73, "rust-1.63"),
    (74, "typescript-4.8"),
    (75, "clang-16"),
    (76, "clang++-16"),
    (77, "gnucobol-3.1"),
    (78, "kotlin-1.3"),
    (79, "gobjc-12"),
    (80, "r-4.2"),
    (81, "scala-2.11"),
    (85, "perl-5.36"),
    (86, "clojure-1.11"),
    (88, "groovy-2.4"),
];

/// Where ids of the registry's languages Judge0 has no id for start (`OWN_IDS + position`).
pub const OWN_IDS: u32 = 1000;

/// Judge0's statuses, by id.
const STATUSES: [&str; 14] = [
    "In Queue",
    "Processing",
    "Accepted",
    "Wrong Answer",
    "Time Limit Exceeded",
    "Compilation Error",
    "Runtime Error (SIGSEGV)",
    "Runtime Error (SIGXFSZ)",
    "Runtime Error (SIGFPE)",
    "Runtime Error (SIGABRT)",
    "Runtime Error (NZEC)",
    "Runtime Error (Other)",
    "Internal Error",
    "Exec Format Error",
];

/// The fields a submission shows when `fields` is not given (Judge0's default).
const DEFAULT_FIELDS: &[&str] = &[
    "stdout",
    "time",
    "memory",
    "stderr",
    "token",
    "compile_output",
    "message",
    "status",
];

/// Every field Judge0 knows of a submission (what `fields` may name).
const ALL_FIELDS: &[&str] = &[
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "stdout",
    "status_id",
    "created_at",
    "finished_at",
    "time",
    "memory",
    "stderr",
    "token",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "compile_output",
    "exit_code",
    "exit_signal",
    "message",
    "wall_time",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
    "status",
    "language",
];

/// Fields a submission's view does not hold (its sources, input and limits are kept with the
/// queued run, not read back): `fields=*` leaves them out, naming one shows it `null`.
const NOT_KEPT: &[&str] = &[
    "source_code",
    "stdin",
    "expected_output",
    "callback_url",
    "additional_files",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "max_file_size",
];

/// The routes, at the root (nested under `/judge0` by the main router).
/// Judge0's routes, at the root (the main router has them under `/judge0`). Errors but the
/// layers' (401, 429, 413) are Judge0's shapes.
pub(super) fn routes() -> Vec<Route> {
    use Verb::{Delete, Get, Post};
    vec![
        Route::new(Get, "/about", &[200, 401, 429], about)
            .doc(
                Doc::new("Judge0's /about: the Judge0 version answered as (1.13.1)")
                    .json_schema(200, "About", doc::of_type(Type::Object)),
            ),
        Route::new(Get, "/config_info", &[200, 401, 429], config_info)
            .doc(
                Doc::new("Judge0's /config_info with this service's real caps (serve --run-max-time, --run-max-memory) and what it does not support turned off")
                    .json_schema(200, "Configuration", doc::of_type(Type::Object)),
            ),
        Route::new(Get, "/languages", &[200, 401, 429], languages)
            .doc(
                Doc::new("Languages with Judge0 CE 1.13.1 ids (ours without one: 1000 + registry position)")
                    .json_schema(200, "Languages", doc::array_of(doc::of_type(Type::Object).property("id", doc::of_type(Type::Integer)).property("name", doc::of_type(Type::String)))),
            ),
        Route::new(Get, "/languages/{id}", &[200, 401, 404, 429], language)
            .doc(
                Doc::new("One language: id, name, is_archived, source_file, compile_cmd, run_cmd")
                    .param(doc::path("id", doc::of_type(Type::Integer)))
                    .json_schema(200, "Language", doc::of_type(Type::Object))
                    .json::<Judge0Error>(404, "No such language"),
            ),
        Route::new(Get, "/statuses", &[200, 401, 429], statuses)
            .doc(
                Doc::new("Judge0's 14 statuses")
                    .json_of::<StatusBody, _>(200, "Statuses", doc::array_of),
            ),
        Route::new(
            Post,
            "/submissions",
            &[201, 400, 401, 413, 422, 429, 503],
            create,
        )
        .doc(
            Doc::new("Queue a Judge0 submission as an ad-hoc run (token = the run's id)")
                .param(doc::query("base64_encoded", doc::of_type(Type::String), Some("true: source_code, stdin, expected_output are sent, and stdout, stderr, compile_output, message answered, base64 (Judge0's).")))
                .param(doc::query("wait", doc::of_type(Type::String), Some("true: answer when the run has finished (at most 3× the most CPU time a run may ask for, plus 90 s for compiling and queueing; then as it stands).")))
                .param(doc::query("fields", doc::of_type(Type::String), Some("Comma-separated fields to answer, or * for all this service keeps (default: stdout,time,memory,stderr,token,compile_output,message,status); an unknown one is a 400.")))
                .body::<Judge0SubmissionRequest>(true)
                .json::<Judge0SubmissionAnswer>(201, "{token}, or with wait=true the finished submission")
                .json::<Judge0Error>(400, "Not JSON, or an unknown field name")
                .json::<Judge0Error>(422, "Validation errors by field: {\"language_id\": [\"can't be blank\"]}; unsupported fields are refused so")
                .json::<Judge0Error>(503, "queue is full"),
        ),
        Route::new(
            Get,
            "/submissions/batch",
            &[200, 400, 401, 422, 429, 503],
            get_batch,
        )
        .doc(
            Doc::new("Up to 20 submissions by token (null for an unknown one)")
                .param(doc::query("tokens", doc::of_type(Type::String), Some("Comma-separated tokens")))
                .param(doc::query("base64_encoded", doc::of_type(Type::String), Some("true: source_code, stdin, expected_output are sent, and stdout, stderr, compile_output, message answered, base64 (Judge0's).")))
                .param(doc::query("fields", doc::of_type(Type::String), Some("Comma-separated fields to answer, or * for all this service keeps (default: stdout,time,memory,stderr,token,compile_output,message,status); an unknown one is a 400.")))
                .json_of::<Judge0SubmissionAnswer, _>(200, "{submissions: [...]}", |s| doc::of_type(Type::Object).property("submissions", doc::array_of(s))),
        ),
        Route::new(
            Post,
            "/submissions/batch",
            &[201, 400, 401, 413, 422, 429],
            create_batch,
        )
        .doc(
            Doc::new("Queue up to 20 submissions; each answer is {token} or that item's validation errors")
                .param(doc::query("base64_encoded", doc::of_type(Type::String), Some("true: source_code, stdin, expected_output are sent, and stdout, stderr, compile_output, message answered, base64 (Judge0's).")))
                .body_of::<Judge0SubmissionRequest, _>(true, |s| doc::of_type(Type::Object).property("submissions", doc::array_of(s)))
                .json_schema(201, "One answer per submission", doc::array_of(doc::of_type(Type::Object)))
                .json::<Judge0Error>(400, "More than 20"),
        ),
        Route::new(
            Get,
            "/submissions/{token}",
            &[200, 400, 401, 404, 429, 503],
            show,
        )
        .doc(
            Doc::new("A submission as Judge0 shows it")
                .param(doc::query("base64_encoded", doc::of_type(Type::String), Some("true: source_code, stdin, expected_output are sent, and stdout, stderr, compile_output, message answered, base64 (Judge0's).")))
                .param(doc::query("fields", doc::of_type(Type::String), Some("Comma-separated fields to answer, or * for all this service keeps (default: stdout,time,memory,stderr,token,compile_output,message,status); an unknown one is a 400.")))
                .json::<Judge0SubmissionAnswer>(200, "The submission")
                .json::<Judge0Error>(400, "An asked-for output is not UTF-8 and base64_encoded is not true ({token, error}), or an unknown field")
                .json::<Judge0Error>(404, "No such submission"),
        ),
        Route::new(
            Delete,
            "/submissions/{token}",
            &[400, 401, 404, 429, 503],
            delete,
        )
        .doc(
            Doc::new("As a Judge0 with enable_submission_delete off: 400 {\"error\": \"delete not allowed\"} (404 for an unknown token)")
                .json::<Judge0Error>(400, "delete not allowed")
                .json::<Judge0Error>(404, "No such submission"),
        ),
    ]
}

/// A Judge0 error answer: `{"error": message}`, or a validation failure
/// (`{"field": ["message", ...]}`, 422).
#[derive(Debug)]
pub enum Judge0Error {
    Error(StatusCode, String),
    Invalid(BTreeMap<String, Vec<String>>),
    /// An output of submission `token` is not UTF-8 and base64 was not asked for (400).
    NotUtf8(String),
}

impl utoipa::PartialSchema for Judge0Error {
    fn schema() -> RefOr<Schema> {
        doc::of_type(Type::Object)
            .description(Some("Judge0's error shapes: {\"error\": message} (with token when an output is not UTF-8), or 422 {field: [messages]}"))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for Judge0Error {}

/// The body of `POST /submissions`: a JSON object read field by field ([`create`]), so its
/// schema is written here.
pub struct Judge0SubmissionRequest;

impl utoipa::PartialSchema for Judge0SubmissionRequest {
    fn schema() -> RefOr<Schema> {
        let string = || doc::of_type(Type::String);
        let number = || doc::of_type(Type::Number);
        doc::of_type(Type::Object)
            .description(Some(SUBMISSION_REQUEST))
            .required("source_code")
            .required("language_id")
            .property("source_code", string())
            .property("language_id", doc::of_type(Type::Integer))
            .property("stdin", string())
            .property("expected_output", string())
            .property("cpu_time_limit", number())
            .property("memory_limit", number())
            .property("callback_url", string())
            .property(
                "number_of_runs",
                doc::of_type(Type::Integer).enum_values(Some([1])),
            )
            .property("wall_time_limit", number())
            .property("command_line_arguments", string().max_length(Some(512)))
            .property("compiler_options", string().max_length(Some(512)))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for Judge0SubmissionRequest {}

/// A submission as answered, in the OpenAPI document: the fields this service keeps
/// ([`Judge0Submission`]), and Judge0's fields it answers `null` when `fields` names them.
struct Judge0SubmissionAnswer;

impl utoipa::PartialSchema for Judge0SubmissionAnswer {
    fn schema() -> RefOr<Schema> {
        let not_kept = doc::of_type(Type::Object)
            .property("number_of_runs", doc::of_type(Type::Integer))
            .property("redirect_stderr_to_stdout", doc::of_type(Type::Boolean));
        AllOfBuilder::new()
            .item(Ref::from_schema_name(
                <Judge0Submission as utoipa::ToSchema>::name(),
            ))
            .item(not_kept)
            .description(Some(
                "A submission as Judge0 writes it; only the fields asked for (fields).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Judge0SubmissionAnswer {
    fn name() -> std::borrow::Cow<'static, str> {
        "Judge0Submission".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        use utoipa::PartialSchema;
        schemas.push((
            Judge0Submission::name().into_owned(),
            Judge0Submission::schema(),
        ));
        Judge0Submission::schemas(schemas);
    }
}

const SUBMISSION_REQUEST: &str = "Judge0's submission fields. Taken: source_code, language_id, stdin, expected_output, cpu_time_limit (s), wall_time_limit (s), memory_limit (KB), compiler_options (GCC and Clang languages; the options of compileArgs), command_line_arguments (split into words as a shell would; shell syntax such as $, |, ;, >, globs refused; argv only), callback_url (a PUT of the finished submission, --webhook-allow hosts only, needs --callback-secret), number_of_runs (1 only). Refused with 422 when set to anything but Judge0's neutral value: additional_files, cpu_extra_time, stack_limit, max_processes_and_or_threads, max_file_size, enable_per_process_and_thread_time_limit, enable_per_process_and_thread_memory_limit, redirect_stderr_to_stdout, enable_network.";

impl Judge0Error {
    fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Judge0Error::Error(status, message.into())
    }

    fn field(name: &str, message: impl Into<String>) -> Self {
        Judge0Error::Invalid(BTreeMap::from([(name.to_owned(), vec![message.into()])]))
    }

    fn body(&self) -> ErrorBody {
        match self {
            Judge0Error::Error(_, message) => ErrorBody::Error {
                error: message.clone(),
            },
            Judge0Error::Invalid(fields) => ErrorBody::Invalid(fields.clone()),
            Judge0Error::NotUtf8(token) => ErrorBody::NotUtf8 {
                token: token.clone(),
                error: NOT_UTF8,
            },
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Judge0Error::Error(status, _) => *status,
            Judge0Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Judge0Error::NotUtf8(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Judge0's error bodies.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ErrorBody {
    /// `{"error": "..."}`.
    Error { error: String },
    /// A validation error: `{"field": ["message", ...]}`.
    Invalid(BTreeMap<String, Vec<String>>),
    /// An output of submission `token` is not UTF-8 and base64 was not asked for.
    NotUtf8 { token: String, error: &'static str },
}

/// What Judge0 answers for one submission of a call: its token (created), its fields (read),
/// or why not.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Answer {
    Token {
        token: String,
    },
    /// The fields the client asked for (`fields`), so a map rather than a type.
    Fields(Map<String, Value>),
    Error(ErrorBody),
}

/// `GET /batch`: the submissions asked for, `null` for an unknown token.
#[derive(Debug, Serialize)]
struct Batch {
    submissions: Vec<Option<Answer>>,
}

/// `GET /about`.
#[derive(Debug, Serialize)]
struct About {
    version: &'static str,
    homepage: &'static str,
    source_code: &'static str,
    maintainer: &'static str,
}

/// A language of `GET /languages`.
#[derive(Debug, Serialize)]
struct LanguageBody {
    id: u32,
    name: String,
}

/// `GET /languages/{id}`.
#[derive(Debug, Serialize)]
struct LanguageDetail {
    id: u32,
    name: String,
    is_archived: bool,
    source_file: String,
    compile_cmd: Option<String>,
    run_cmd: String,
}

/// A status of `GET /statuses`, and a submission's `status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Judge0Status)]
struct StatusBody {
    id: u32,
    description: &'static str,
}

/// A submission's `language`, when the service knows its registry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LanguageRef {
    id: Option<u32>,
    name: Option<String>,
}

/// Every field of a run this service knows, as Judge0 writes them (the fields a client may
/// pick with `fields`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Judge0SubmissionKept)]
struct Judge0Submission {
    token: String,
    stdout: Option<String>,
    stderr: Option<String>,
    compile_output: Option<String>,
    message: Option<String>,
    status: StatusBody,
    status_id: u32,
    created_at: String,
    finished_at: Option<String>,
    /// CPU seconds, e.g. "0.012"
    time: Option<String>,
    wall_time: Option<String>,
    /// KB
    memory: Option<u64>,
    exit_code: Option<i32>,
    exit_signal: Option<i32>,
    /// Only when the service's registry is at hand (not in a callback); `null` for a language
    /// Judge0 has no id for.
    #[serde(skip_serializing_if = "Option::is_none")]
    language_id: Option<Option<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<LanguageRef>,
    enable_network: bool,
    enable_per_process_and_thread_time_limit: bool,
    enable_per_process_and_thread_memory_limit: bool,
}

/// `GET /config_info`: this service's settings in Judge0's fields.
#[derive(Debug, Serialize)]
struct ConfigInfo {
    maintenance_mode: bool,
    enable_wait_result: bool,
    enable_compiler_options: bool,
    allowed_languages_for_compile_options: Vec<String>,
    enable_command_line_arguments: bool,
    enable_submission_delete: bool,
    enable_callbacks: bool,
    callbacks_max_tries: u32,
    callbacks_timeout: f64,
    enable_additional_files: bool,
    max_queue_size: usize,
    cpu_time_limit: f64,
    max_cpu_time_limit: f64,
    cpu_extra_time: f64,
    max_cpu_extra_time: f64,
    wall_time_limit: f64,
    max_wall_time_limit: f64,
    memory_limit: u64,
    max_memory_limit: u64,
    stack_limit: u64,
    max_stack_limit: u64,
    max_processes_and_or_threads: u64,
    max_max_processes_and_or_threads: u64,
    enable_per_process_and_thread_time_limit: bool,
    allow_enable_per_process_and_thread_time_limit: bool,
    enable_per_process_and_thread_memory_limit: bool,
    allow_enable_per_process_and_thread_memory_limit: bool,
    max_file_size: u64,
    max_max_file_size: u64,
    number_of_runs: u32,
    max_number_of_runs: u32,
    redirect_stderr_to_stdout: bool,
    max_extract_size: u64,
    enable_batched_submissions: bool,
    max_submission_batch_size: usize,
    submission_cache_duration: f64,
    use_docs_as_homepage: bool,
    allow_enable_network: bool,
    enable_network: bool,
}

impl IntoResponse for Judge0Error {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

/// A refusal of the native run API, told in Judge0's shape: the queue is full as Judge0 says
/// it, a refused callback URL or source as a validation error of its field, the rest as
/// `{"error"}` with the same status.
impl From<ApiError> for Judge0Error {
    fn from(e: ApiError) -> Self {
        match e.code {
            "queueFull" => Judge0Error::error(e.status, "queue is full"),
            "callbackNotAllowed" => Judge0Error::field("callback_url", e.message),
            "sourceTooLarge" => Judge0Error::field("source_code", e.message),
            "badRequest" if e.message.starts_with("callbackUrl") => {
                Judge0Error::field("callback_url", e.message)
            }
            "badRequest" if e.message.starts_with("sourceCode") => {
                Judge0Error::field("source_code", e.message)
            }
            "badRequest" if e.message.starts_with("compileArgs") => {
                Judge0Error::field("compiler_options", e.message)
            }
            "badRequest" if e.message.starts_with("args") => {
                Judge0Error::field("command_line_arguments", e.message)
            }
            "badRequest" if e.message.starts_with("wallLimitMs") => {
                Judge0Error::field("wall_time_limit", e.message)
            }
            "badRequest" if e.message.starts_with("a run") => {
                Judge0Error::field("command_line_arguments", e.message)
            }
            "badRequest" if e.message.starts_with("language") => {
                Judge0Error::field("language_id", e.message)
            }
            _ => Judge0Error::Error(e.status, e.message),
        }
    }
}

impl From<BackendError> for Judge0Error {
    fn from(e: BackendError) -> Self {
        ApiError::from(e).into()
    }
}

/// The Judge0 ids of the registry's languages, in registry order: `(id, language id)`.
pub fn language_ids(registry: &Registry) -> Vec<(u32, String)> {
    let mut ids = Vec::new();
    for (position, language) in registry.iter().enumerate() {
        let theirs: Vec<u32> = JUDGE0_IDS
            .iter()
            .filter(|(_, ours)| *ours == language.id)
            .map(|(id, _)| *id)
            .collect();
        if theirs.is_empty() {
            ids.push((OWN_IDS + position as u32, language.id.clone()));
        } else {
            ids.extend(theirs.into_iter().map(|id| (id, language.id.clone())));
        }
    }
    ids.sort_by_key(|(id, _)| *id);
    ids
}

fn registry(state: &AppState) -> Option<&Registry> {
    state.config().languages.as_deref()
}

/// The registry language of Judge0 id `id`.
fn language_of(state: &AppState, id: u32) -> Option<String> {
    let registry = registry(state)?;
    language_ids(registry)
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, language)| language)
}

/// The Judge0 id reported for registry language `language` (its first).
fn id_of(state: &AppState, language: &str) -> Option<u32> {
    let registry = registry(state)?;
    let canonical = registry.resolve(language).map_or(language, |l| &l.id);
    JUDGE0_IDS
        .iter()
        .find(|(_, ours)| *ours == canonical)
        .map(|(id, _)| *id)
        .or_else(|| {
            registry
                .iter()
                .position(|l| l.id == canonical)
                .map(|p| OWN_IDS + p as u32)
        })
}

async fn about() -> Json<About> {
    Json(About {
        version: VERSION,
        homepage: "https://github.com/executioner (a Judge0-compatible API of executioner)",
        source_code: "executioner",
        maintainer: "the operator of this executioner service",
    })
}

/// Seconds as Judge0 writes a decimal: `0.012`, `0.1`, `2.0`.
fn seconds(ms: u64) -> String {
    let text = format!("{}.{:03}", ms / 1000, ms % 1000);
    let trimmed = text.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_owned()
    }
}

/// This service's real settings, as Judge0's `/config_info` fields (floats in seconds, sizes
/// in KB). What it does not support is reported off (compiler options, additional files,
/// network, deletion).
async fn config_info(State(state): State<AppState>) -> Json<ConfigInfo> {
    let config = state.config();
    let (default, max) = (config.run_default, config.run_max);
    let default_ms = default.time_ms.min(max.time_ms);
    let output_kb = crate::judge::JudgeConfig::default().output_limit_bytes / 1024;
    let callbacks = config.callbacks.secret.is_some() && !config.webhook_hosts.is_empty();
    let compile_options_languages: Vec<String> = registry(&state)
        .map(|r| {
            r.iter()
                .filter(|l| l.takes_compiler_options())
                .map(|l| l.name.clone())
                .collect()
        })
        .unwrap_or_default();
    Json(ConfigInfo {
        maintenance_mode: false,
        enable_wait_result: true,
        enable_compiler_options: true,
        allowed_languages_for_compile_options: compile_options_languages,
        enable_command_line_arguments: true,
        enable_submission_delete: false,
        enable_callbacks: callbacks,
        callbacks_max_tries: config.callbacks.attempts,
        callbacks_timeout: config.callbacks.timeout.as_secs_f64(),
        enable_additional_files: false,
        max_queue_size: config.max_queued,
        cpu_time_limit: default_ms as f64 / 1000.0,
        max_cpu_time_limit: max.time_ms as f64 / 1000.0,
        cpu_extra_time: 0.0,
        max_cpu_extra_time: 0.0,
        wall_time_limit: (default_ms * 3) as f64 / 1000.0,
        max_wall_time_limit: (max.time_ms * 3) as f64 / 1000.0,
        memory_limit: default.memory_kb.min(max.memory_kb),
        max_memory_limit: max.memory_kb,
        stack_limit: 0,
        max_stack_limit: 0,
        max_processes_and_or_threads: 0,
        max_max_processes_and_or_threads: 0,
        enable_per_process_and_thread_time_limit: false,
        allow_enable_per_process_and_thread_time_limit: false,
        enable_per_process_and_thread_memory_limit: false,
        allow_enable_per_process_and_thread_memory_limit: false,
        max_file_size: output_kb,
        max_max_file_size: output_kb,
        number_of_runs: 1,
        max_number_of_runs: crate::protocol::MAX_NUMBER_OF_RUNS,
        redirect_stderr_to_stdout: false,
        max_extract_size: 0,
        enable_batched_submissions: true,
        max_submission_batch_size: MAX_BATCH,
        submission_cache_duration: 0.0,
        use_docs_as_homepage: false,
        allow_enable_network: false,
        enable_network: false,
    })
}

async fn languages(State(state): State<AppState>) -> Json<Vec<LanguageBody>> {
    let Some(registry) = registry(&state) else {
        return Json(Vec::new());
    };
    let list = language_ids(registry)
        .into_iter()
        .filter_map(|(id, language)| {
            let name = registry.resolve(&language)?.name.clone();
            Some(LanguageBody { id, name })
        })
        .collect();
    Json(list)
}

async fn language(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<LanguageDetail>, Judge0Error> {
    let not_found = || Judge0Error::error(StatusCode::NOT_FOUND, "language not found");
    let id: u32 = id.parse().map_err(|_| not_found())?;
    let language = language_of(&state, id)
        .and_then(|l| registry(&state)?.resolve(&l).cloned())
        .ok_or_else(not_found)?;
    Ok(Json(LanguageDetail {
        id,
        name: language.name,
        is_archived: false,
        source_file: language.source,
        compile_cmd: language.compile.map(|c| c.join(" ")),
        run_cmd: language.run.join(" "),
    }))
}

async fn statuses() -> Json<Vec<StatusBody>> {
    Json((1..=STATUSES.len() as u32).map(status_body).collect())
}

/// Judge0's status `id` (1-based) with its description.
fn status_body(id: u32) -> StatusBody {
    StatusBody {
        id,
        description: STATUSES[id as usize - 1],
    }
}

/// The query of the submission calls.
#[derive(Debug, Default, serde::Deserialize)]
struct Options {
    #[serde(default)]
    base64_encoded: Option<String>,
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    fields: Option<String>,
    #[serde(default)]
    tokens: Option<String>,
}

impl Options {
    fn base64(&self) -> bool {
        self.base64_encoded.as_deref() == Some("true")
    }

    fn wait(&self) -> bool {
        self.wait.as_deref() == Some("true")
    }

    /// The fields to show; 400 naming those Judge0 does not know.
    fn fields(&self) -> Result<Vec<&'static str>, Judge0Error> {
        let Some(text) = self.fields.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Ok(DEFAULT_FIELDS.to_vec());
        };
        if text.trim() == "*" {
            return Ok(ALL_FIELDS
                .iter()
                .copied()
                .filter(|f| !NOT_KEPT.contains(f))
                .collect());
        }
        let mut fields = Vec::new();
        let mut invalid = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match ALL_FIELDS.iter().find(|f| **f == name) {
                Some(field) => fields.push(*field),
                None => invalid.push(name.to_owned()),
            }
        }
        if invalid.is_empty() {
            Ok(fields)
        } else {
            Err(Judge0Error::error(
                StatusCode::BAD_REQUEST,
                format!("invalid fields: [{}]", invalid.join(", ")),
            ))
        }
    }
}

/// Parses the query; Judge0's `{"error"}` when it is not one.
fn options(
    query: Result<Query<Options>, axum::extract::rejection::QueryRejection>,
) -> Result<Options, Judge0Error> {
    query.map(|Query(o)| o).map_err(|e| {
        Judge0Error::error(
            StatusCode::BAD_REQUEST,
            format!("invalid query: {}", e.body_text()),
        )
    })
}

/// A text field of a request: its text, decoded from base64 when `base64`; a validation error
/// of the field when it is not text (or its bytes are not UTF-8 without NUL, which no store's
/// text can hold).
fn text_field(
    body: &Map<String, Value>,
    name: &str,
    base64: bool,
) -> Result<Option<String>, Judge0Error> {
    let text = match body.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text,
        Some(_) => return Err(Judge0Error::field(name, "must be a string")),
    };
    let text = if base64 {
        let bytes = crate::protocol::base64_decode(text)
            .ok_or_else(|| Judge0Error::field(name, "is not valid base64"))?;
        String::from_utf8(bytes)
            .map_err(|_| Judge0Error::field(name, "is not UTF-8 text once decoded"))?
    } else {
        text.clone()
    };
    if text.contains('\0') {
        return Err(Judge0Error::field(name, "holds a NUL byte"));
    }
    Ok(Some(text))
}

/// A number field (Judge0 also takes numbers written as strings).
fn number_field(body: &Map<String, Value>, name: &str) -> Result<Option<f64>, Judge0Error> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Judge0Error::field(name, "is not a number")),
        Some(_) => Err(Judge0Error::field(name, "is not a number")),
    }
}

fn bool_field(body: &Map<String, Value>, name: &str) -> Option<bool> {
    match body.get(name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s == "true"),
        _ => None,
    }
}

/// Fields this service cannot honour exactly, refused unless neutral (unset, empty, false, or
/// `number_of_runs` 1): Judge0's field name and why.
fn unsupported(body: &Map<String, Value>) -> Result<(), Judge0Error> {
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refuse = |name: &str, why: &str| {
        refused.insert(name.to_owned(), vec![why.to_owned()]);
    };
    let set = |name: &str| match body.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    if set("additional_files") {
        refuse("additional_files", "is not supported by this service");
    }
    for name in [
        "cpu_extra_time",
        "stack_limit",
        "max_processes_and_or_threads",
        "max_file_size",
    ] {
        if set(name) {
            refuse(
                name,
                "is not supported by this service (its limits other than cpu_time_limit, wall_time_limit and memory_limit are fixed; see /config_info)",
            );
        }
    }
    for name in [
        "enable_per_process_and_thread_time_limit",
        "enable_per_process_and_thread_memory_limit",
    ] {
        if bool_field(body, name) == Some(true) {
            refuse(name, "is not supported by this service");
        }
    }
    if bool_field(body, "enable_network") == Some(true) {
        refuse(
            "enable_network",
            "is not allowed: programs never have network access here",
        );
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Judge0Error::Invalid(refused))
    }
}

/// The native run a Judge0 submission body asks for.
fn run_request(state: &AppState, body: &Value, base64: bool) -> Result<RunRequest, Judge0Error> {
    let Some(body) = body.as_object() else {
        return Err(Judge0Error::error(
            StatusCode::BAD_REQUEST,
            "the request body must be a JSON object",
        ));
    };
    unsupported(body)?;
    let mut invalid: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let source_code = text_field(body, "source_code", base64)?;
    if source_code.as_deref().is_none_or(|s| s.trim().is_empty()) {
        invalid.insert("source_code".into(), vec!["can't be blank".into()]);
    }
    let language = match body.get("language_id") {
        None | Some(Value::Null) => {
            invalid.insert("language_id".into(), vec!["can't be blank".into()]);
            None
        }
        Some(value) => {
            let id = match value {
                Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            let shown = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let language = id.and_then(|id| language_of(state, id));
            if language.is_none() {
                invalid.insert(
                    "language_id".into(),
                    vec![format!("language with id {shown} doesn't exist")],
                );
            }
            language
        }
    };
    let max = state.config().run_max;
    let time_limit_ms = match number_field(body, "cpu_time_limit")? {
        None => None,
        Some(s) if s > 0.0 && s * 1000.0 <= max.time_ms as f64 => {
            Some(((s * 1000.0).round() as u64).max(1))
        }
        Some(s) if s <= 0.0 => {
            invalid.insert(
                "cpu_time_limit".into(),
                vec!["must be greater than 0".into()],
            );
            None
        }
        Some(_) => {
            invalid.insert(
                "cpu_time_limit".into(),
                vec![format!(
                    "must be less than or equal to {}",
                    max.time_ms as f64 / 1000.0
                )],
            );
            None
        }
    };
    let memory_limit_kb = match number_field(body, "memory_limit")? {
        None => None,
        Some(kb) if kb >= 1024.0 && kb <= max.memory_kb as f64 => Some(kb.round() as u64),
        Some(kb) if kb < 1024.0 => {
            invalid.insert(
                "memory_limit".into(),
                vec!["must be greater than or equal to 1024".into()],
            );
            None
        }
        Some(_) => {
            invalid.insert(
                "memory_limit".into(),
                vec![format!("must be less than or equal to {}", max.memory_kb)],
            );
            None
        }
    };
    let most_runs = crate::protocol::MAX_NUMBER_OF_RUNS;
    let number_of_runs = match number_field(body, "number_of_runs")? {
        None => None,
        Some(n) if n.fract() == 0.0 && (1.0..=f64::from(most_runs)).contains(&n) => Some(n as u32),
        Some(n) if n < 1.0 => {
            invalid.insert(
                "number_of_runs".into(),
                vec!["must be greater than or equal to 1".into()],
            );
            None
        }
        Some(n) if n.fract() != 0.0 => {
            invalid.insert("number_of_runs".into(), vec!["must be an integer".into()]);
            None
        }
        Some(_) => {
            invalid.insert(
                "number_of_runs".into(),
                vec![format!("must be less than or equal to {most_runs}")],
            );
            None
        }
    };
    let wall_limit_ms = match number_field(body, "wall_time_limit")? {
        None => None,
        Some(s) if s > 0.0 && s * 1000.0 <= (3 * max.time_ms) as f64 => {
            Some(((s * 1000.0).round() as u64).max(1))
        }
        Some(s) if s <= 0.0 => {
            invalid.insert(
                "wall_time_limit".into(),
                vec!["must be greater than 0".into()],
            );
            None
        }
        Some(_) => {
            invalid.insert(
                "wall_time_limit".into(),
                vec![format!(
                    "must be less than or equal to {}",
                    (3 * max.time_ms) as f64 / 1000.0
                )],
            );
            None
        }
    };
    let compile_args = words_field(body, "compiler_options", &mut invalid);
    let args = match body.get("command_line_arguments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(line)) if line.chars().count() > 512 => {
            invalid.insert(
                "command_line_arguments".into(),
                vec!["is too long (maximum is 512 characters)".into()],
            );
            Vec::new()
        }
        Some(Value::String(line)) => match split_words(line) {
            Ok(words) => words,
            Err(why) => {
                invalid.insert("command_line_arguments".into(), vec![why]);
                Vec::new()
            }
        },
        Some(_) => {
            invalid.insert(
                "command_line_arguments".into(),
                vec!["must be a string".into()],
            );
            Vec::new()
        }
    };
    let callback_url = match body.get("callback_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) if url.is_empty() => None,
        Some(Value::String(url)) => Some(url.clone()),
        Some(_) => {
            invalid.insert("callback_url".into(), vec!["must be a string".into()]);
            None
        }
    };
    let stdin = text_field(body, "stdin", base64)?;
    let expected_output = text_field(body, "expected_output", base64)?;
    if !invalid.is_empty() {
        return Err(Judge0Error::Invalid(invalid));
    }
    Ok(RunRequest {
        language: language.unwrap_or_default(),
        source_code: source_code.unwrap_or_default(),
        files: Vec::new(),
        stdin: stdin.unwrap_or_default(),
        expected_output,
        time_limit_ms,
        memory_limit_kb,
        callback_url,
        args,
        compile_args,
        wall_limit_ms,
        stderr_to_stdout: bool_field(body, "redirect_stderr_to_stdout") == Some(true),
        number_of_runs,
        // Judge0 has none; the operator's (`serve --deadline-seconds`) applies.
        deadline_seconds: None,
    })
}

/// Judge0's `command_line_arguments` (which Judge0 hands to a shell after the run command) as
/// the words a shell would make of it: split at blanks, with `'...'`, `"..."` and `\` quoting.
/// Anything else a shell would act on (variables, substitutions, globs, pipes, redirections,
/// `;`, `&`, comments, `~`, braces) is refused: the arguments reach the program as argv, never a
/// shell.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    const SPECIAL: &[char] = &[
        '$', '`', '|', '&', ';', '<', '>', '(', ')', '*', '?', '[', ']', '{', '}', '~', '#', '!',
    ];
    let refused = |c: char| {
        Err(format!(
            "holds {c:?}, which a shell would interpret; arguments are passed as words (quote it)"
        ))
    };
    let unterminated = |quote: char| Err(format!("has an unterminated {quote} quote"));
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => words.extend(word.take()),
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return unterminated('\''),
                    }
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => current.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => return unterminated('"'),
                        },
                        Some(c @ ('$' | '`')) => return refused(c),
                        Some(c) => current.push(c),
                        None => return unterminated('"'),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("ends with a lone \\".to_owned()),
            },
            // `=`, `-` and the rest are plain characters to a shell.
            c if SPECIAL.contains(&c) => return refused(c),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// A string field of words ([`split_words`], at most 512 characters as Judge0 allows); a
/// validation error in `invalid` when it is not one.
fn words_field(
    body: &Map<String, Value>,
    name: &str,
    invalid: &mut BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let why = match body.get(name) {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::String(line)) if line.chars().count() > 512 => {
            "is too long (maximum is 512 characters)".to_owned()
        }
        Some(Value::String(line)) => match split_words(line) {
            Ok(words) => return words,
            Err(why) => why,
        },
        Some(_) => "must be a string".to_owned(),
    };
    invalid.insert(name.to_owned(), vec![why]);
    Vec::new()
}

/// Parses a request body as JSON; Judge0's 400 when it is not.
fn json_body(bytes: &Bytes) -> Result<Value, Judge0Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Judge0Error::error(
            StatusCode::BAD_REQUEST,
            format!("the request body is not JSON: {e}"),
        )
    })
}

/// Queues one Judge0 submission; its run's view.
async fn queue_one(
    state: &AppState,
    body: &Value,
    base64: bool,
) -> Result<SubmissionView, Judge0Error> {
    let request = run_request(state, body, base64)?;
    Ok(queue_with(state, request, Style::Judge0).await?)
}

async fn create(
    State(state): State<AppState>,
    query: Result<Query<Options>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, Judge0Error> {
    let options = options(query)?;
    let fields = options.fields()?;
    let body = json_body(&body)?;
    let view = queue_one(&state, &body, options.base64()).await?;
    if !options.wait() {
        return Ok((StatusCode::CREATED, Json(Answer::Token { token: view.id })).into_response());
    }
    let deadline = wait_deadline(&state, &view);
    let view = wait_for(&state, &view.id, deadline).await?.unwrap_or(view);
    // Created either way: an output that cannot be shown is told in the body.
    let shown = match submission_json(&state, &view, &fields, options.base64()).await {
        Ok(shown) => Answer::Fields(shown),
        Err(e @ Judge0Error::NotUtf8(_)) => Answer::Error(e.body()),
        Err(e) => return Err(e),
    };
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

/// How long `wait=true` waits: the run's wall-clock limit (3× its CPU limit at most) and
/// [`WAIT_SLACK`] for compiling and queueing.
fn wait_deadline(state: &AppState, _view: &SubmissionView) -> tokio::time::Instant {
    let max_ms = state.config().run_max.time_ms;
    tokio::time::Instant::now() + Duration::from_millis(max_ms * 3) + WAIT_SLACK
}

/// Waits until run `id` ends or `deadline` passes (then answers where it stands, as Judge0
/// answers a submission still in queue); its view then.
async fn wait_for(
    state: &AppState,
    id: &str,
    deadline: tokio::time::Instant,
) -> Result<Option<SubmissionView>, BackendError> {
    let backend = state.backend();
    let mut changes = backend.subscribe();
    loop {
        let view = backend.get(id).await?;
        if view.as_ref().is_none_or(|v| v.status.is_terminal())
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(view);
        }
        // Read again on a change (of any submission), now and then (a lost notification), or
        // at the deadline.
        let recheck = tokio::time::Instant::now() + Duration::from_millis(500);
        tokio::select! {
            _ = changes.recv() => {}
            _ = tokio::time::sleep_until(recheck.min(deadline)) => {}
        }
    }
}

async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
    query: Result<Query<Options>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Judge0Error> {
    let options = options(query)?;
    let fields = options.fields()?;
    let view = find(&state, &token).await?;
    let shown = submission_json(&state, &view, &fields, options.base64()).await?;
    Ok(Json(shown).into_response())
}

/// The run with token `token`; Judge0's 404.
async fn find(state: &AppState, token: &str) -> Result<SubmissionView, Judge0Error> {
    match state.backend().get(token).await? {
        Some(view) if view.problem == RUN_PROBLEM => Ok(view),
        _ => Err(Judge0Error::error(StatusCode::NOT_FOUND, "Not Found")),
    }
}

/// Judge0 keeps deleting off unless its operator allows it (`enable_submission_delete`); this
/// service never deletes a run, so it answers as such a Judge0 does (after checking the token).
async fn delete(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, Judge0Error> {
    find(&state, &token).await?;
    Err(Judge0Error::error(
        StatusCode::BAD_REQUEST,
        "delete not allowed",
    ))
}

async fn create_batch(
    State(state): State<AppState>,
    query: Result<Query<Options>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, Judge0Error> {
    let options = options(query)?;
    let body = json_body(&body)?;
    let Some(submissions) = body.get("submissions").and_then(Value::as_array) else {
        return Err(Judge0Error::field("submissions", "can't be blank"));
    };
    if submissions.len() > MAX_BATCH {
        return Err(Judge0Error::error(
            StatusCode::BAD_REQUEST,
            format!("number of submissions in a batch should be less than or equal to {MAX_BATCH}"),
        ));
    }
    let mut answers = Vec::with_capacity(submissions.len());
    for submission in submissions {
        answers.push(
            match queue_one(&state, submission, options.base64()).await {
                Ok(view) => Answer::Token { token: view.id },
                Err(e) => Answer::Error(e.body()),
            },
        );
    }
    Ok((StatusCode::CREATED, Json(answers)).into_response())
}

async fn get_batch(
    State(state): State<AppState>,
    query: Result<Query<Options>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Judge0Error> {
    let options = options(query)?;
    let fields = options.fields()?;
    let tokens: Vec<&str> = options
        .tokens
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.is_empty() {
        return Err(Judge0Error::field("tokens", "can't be blank"));
    }
    if tokens.len() > MAX_BATCH {
        return Err(Judge0Error::error(
            StatusCode::BAD_REQUEST,
            format!("number of submissions in a batch should be less than or equal to {MAX_BATCH}"),
        ));
    }
    let mut shown = Vec::with_capacity(tokens.len());
    for token in tokens {
        shown.push(match state.backend().get(token).await? {
            Some(view) if view.problem == RUN_PROBLEM => Some(
                match submission_json(&state, &view, &fields, options.base64()).await {
                    Ok(one) => Answer::Fields(one),
                    Err(e) => Answer::Error(e.body()),
                },
            ),
            _ => None,
        });
    }
    Ok(Json(Batch { submissions: shown }).into_response())
}

/// Judge0's status of a run: `(id, message)`.
fn status_of(view: &SubmissionView, report: &RunReport) -> (u32, Option<String>) {
    match view.status {
        Status::NotStarted => return (1, None),
        // Judge0 has no state for a worker gone silent: still processing as far as it knows.
        Status::Running | Status::Unresponsive => return (2, None),
        Status::Cancelled => return (13, Some("the run was cancelled".into())),
        Status::Timeout => return (13, Some(crate::store::TIMED_OUT.into())),
        Status::Succeeded | Status::Failed => {}
    }
    if report.compile_error {
        return (6, None);
    }
    let output = report.output.as_ref();
    let exit_code = output.and_then(|o| o.exit_code);
    let exit_signal = output.and_then(|o| o.exit_signal);
    let limit = output.and_then(|o| o.limit.as_deref());
    let crashed = |code: Option<i32>, signal: Option<i32>| match (signal, code) {
        (Some(signal), _) => (
            match signal {
                11 => 7,
                25 => 8,
                8 => 9,
                6 => 10,
                _ => 12,
            },
            Some(format!("Caught fatal signal {signal}")),
        ),
        (None, Some(code)) if code != 0 => (11, Some(format!("Exited with error status {code}"))),
        _ => (12, None),
    };
    match report.verdict {
        Some(Verdict::Accepted) => (3, None),
        Some(Verdict::Wrong) => (4, None),
        Some(Verdict::TimeLimitExceeded) if limit == Some("wall") => {
            (5, Some("Time limit exceeded (wall clock)".into()))
        }
        Some(Verdict::TimeLimitExceeded) => (5, Some("Time limit exceeded".into())),
        // Judge0 has no memory status: a program killed at its memory limit is a runtime error.
        Some(Verdict::MemoryLimitExceeded) => {
            let (id, message) = crashed(exit_code, exit_signal);
            (id, message.or_else(|| Some("Memory limit exceeded".into())))
        }
        Some(Verdict::Error) if limit == Some("output") => {
            (8, Some("Output limit exceeded".into()))
        }
        Some(Verdict::Error) => crashed(exit_code, exit_signal),
        None => (
            13,
            Some(
                report
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the run ended without a result".into()),
            ),
        ),
    }
}

/// Base64 as Ruby's `Base64.encode64` writes it (what Judge0 answers): lines of 60 characters,
/// each ended by a newline.
fn encode64(bytes: &[u8]) -> String {
    let flat = crate::protocol::base64_encode(bytes);
    let mut text = String::with_capacity(flat.len() + flat.len() / 60 + 1);
    for chunk in flat.as_bytes().chunks(60) {
        text.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        text.push('\n');
    }
    text
}

/// What Judge0 answers when an output is not UTF-8 and base64 was not asked for.
const NOT_UTF8: &str =
    "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter";

/// The Judge0 JSON of run `view` with `fields`; with `base64`, its texts base64. Without it, an
/// output that is not UTF-8 makes Judge0's `{"token", "error"}` (400).
pub async fn submission_json(
    state: &AppState,
    view: &SubmissionView,
    fields: &[&str],
    base64: bool,
) -> Result<Map<String, Value>, Judge0Error> {
    let (all, not_utf8) = judge0_json(state.backend().as_ref(), view, base64, Some(state)).await?;
    if fields.iter().any(|f| not_utf8.contains(f)) {
        return Err(Judge0Error::NotUtf8(view.id.clone()));
    }
    Ok(project(&all, fields))
}

/// Of `all`'s fields, `fields` (`null` for one it lacks). The client picks them, so the
/// answer is a map, not a type.
fn project(all: &Judge0Submission, fields: &[&str]) -> Map<String, Value> {
    let all = match serde_json::to_value(all) {
        Ok(Value::Object(all)) => all,
        // A struct of plain fields always serialises to an object.
        _ => Map::new(),
    };
    fields
        .iter()
        .map(|&field| {
            let value = all.get(field).cloned().unwrap_or(Value::Null);
            (field.to_owned(), value)
        })
        .collect()
}

/// Every field of run `view` this service knows, as Judge0 writes them, and the text fields
/// that cannot be shown (not UTF-8 while `base64` is off; `null` then).
async fn judge0_json(
    backend: &dyn Backend,
    view: &SubmissionView,
    base64: bool,
    state: Option<&AppState>,
) -> Result<(Judge0Submission, Vec<&'static str>), BackendError> {
    let messages = backend.messages(&view.id).await?.unwrap_or_default();
    let report = RunReport::of(messages.iter().map(|r| &r.message));
    let (status, message) = status_of(view, &report);
    let output = report.output.as_ref();
    let mut not_utf8 = Vec::new();
    let mut text = |name: &'static str, bytes: Option<Vec<u8>>| -> Option<String> {
        let bytes = bytes.filter(|b| !b.is_empty())?;
        if base64 {
            return Some(encode64(&bytes));
        }
        let text = String::from_utf8(bytes).ok();
        if text.is_none() {
            not_utf8.push(name);
        }
        text
    };
    let stdout = text("stdout", output.map(|o| o.stdout.bytes()));
    let stderr = text("stderr", output.map(|o| o.stderr.bytes()));
    let compile_output = text(
        "compile_output",
        report.compile_output.clone().map(String::into_bytes),
    );
    let message = text("message", message.map(String::into_bytes));
    let language_id = state.map(|state| id_of(state, &view.language));
    let language = state.map(|state| LanguageRef {
        id: id_of(state, &view.language),
        name: state
            .config()
            .languages
            .as_deref()
            .and_then(|r| r.resolve(&view.language))
            .map(|l| l.name.clone()),
    });
    let all = Judge0Submission {
        token: view.id.clone(),
        stdout,
        stderr,
        compile_output,
        message,
        status: status_body(status),
        status_id: status,
        created_at: format_rfc3339(view.created_ms),
        finished_at: view
            .status
            .is_terminal()
            .then(|| format_rfc3339(view.last_action_ms)),
        time: report.time.map(seconds),
        wall_time: output.map(|o| seconds(o.wall_time)),
        memory: report.memory,
        exit_code: output.and_then(|o| o.exit_code),
        exit_signal: output.and_then(|o| o.exit_signal),
        language_id,
        language,
        enable_network: false,
        enable_per_process_and_thread_time_limit: false,
        enable_per_process_and_thread_memory_limit: false,
    };
    Ok((all, not_utf8))
}

/// The body of a Judge0 run's callback: its Judge0 JSON with the default fields, base64 (as
/// Judge0 sends it, so any output can be sent).
pub async fn callback_body(
    backend: &dyn Backend,
    view: &SubmissionView,
) -> Result<Map<String, Value>, BackendError> {
    let (all, _) = judge0_json(backend, view, true, None).await?;
    let fields: Vec<&str> = DEFAULT_FIELDS
        .iter()
        .chain(&[
            "exit_code",
            "exit_signal",
            "created_at",
            "finished_at",
            "wall_time",
        ])
        .copied()
        .collect();
    Ok(project(&all, &fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_written_as_judge0_writes_decimals() {
        assert_eq!(seconds(12), "0.012");
        assert_eq!(seconds(100), "0.1");
        assert_eq!(seconds(2000), "2.0");
        assert_eq!(seconds(0), "0.0");
        assert_eq!(seconds(1234), "1.234");
    }

    #[test]
    fn arguments_are_split_as_a_shell_splits_words_and_shell_syntax_is_refused() {
        let words = |line: &str| split_words(line).unwrap();
        assert_eq!(words("  a  b\tc "), ["a", "b", "c"]);
        assert_eq!(words(r#"'x y' "p q" r\ s"#), ["x y", "p q", "r s"]);
        assert_eq!(words(r#"a'b'"c" '' x=1 -n"#), ["abc", "", "x=1", "-n"]);
        assert_eq!(words(r#""a\"b" '$HOME' \$x"#), ["a\"b", "$HOME", "$x"]);
        assert_eq!(words(""), Vec::<String>::new());
        for bad in [
            "$HOME", "a;b", "a | b", "> f", "*.txt", "`id`", "\"$x\"", "~", "'open",
        ] {
            assert!(split_words(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_is_wrapped_as_ruby_does() {
        assert_eq!(encode64(b"hello, Judge0\n"), "aGVsbG8sIEp1ZGdlMAo=\n");
        let long = encode64(&[0u8; 60]);
        assert_eq!(long.lines().map(str::len).collect::<Vec<_>>(), [60, 20]);
    }

    #[test]
    fn judge0_ids_reach_only_registry_languages_and_ours_start_at_1000() {
        let registry = Registry::builtin().unwrap();
        let ids = language_ids(&registry);
        for (id, language) in &ids {
            assert!(registry.resolve(language).is_some(), "{id} -> {language}");
        }
        let find = |id| ids.iter().find(|(i, _)| *i == id).map(|(_, l)| l.as_str());
        assert_eq!(find(50), Some("gcc-12"));
        assert_eq!(find(54), Some("g++-12"));
        assert_eq!(find(52), Some("g++-12"));
        assert_eq!(find(71), Some("python-3.11"));
        assert_eq!(find(62), Some("java-17"));
        assert_eq!(find(70), None, "no Python 2");
        assert!(ids.iter().any(|(id, l)| *id >= OWN_IDS && l == "pypy-3.9"));
        let mut seen = std::collections::HashSet::new();
        assert!(ids.iter().all(|(id, _)| seen.insert(*id)), "ids are unique");
    }
}
