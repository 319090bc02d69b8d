//! `GET /v1.0/openapi.json`: the OpenAPI document of the API (`openapi.json`), open without a
//! token. A test of [`super::router`](mod@super::router) checks it against the route table; a test here, that it
//! keeps the surface it had (the document may only grow: a path, method, status, schema or
//! property it has stays, with its meaning).

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::route::{Access, Route, Verb};

const OPENAPI: &str = include_str!("openapi.json");

/// The document, open to anyone.
pub(super) fn routes() -> Vec<Route> {
    vec![Route::new(Verb::Get, "/v1.0/openapi.json", &[200, 429], openapi).access(Access::Open)]
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The OpenAPI document as the router serves it (for the tests of the document and of the route
/// table).
#[cfg(test)]
pub(crate) async fn served_document() -> serde_json::Value {
    use tower::ServiceExt;

    let backend = crate::store::memory::MemoryBackend::new(std::sync::Arc::new(
        crate::store::memory::MemoryInterface::new(),
    ));
    let state = crate::api::AppState::new(
        backend,
        crate::api::ApiConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    let request = axum::http::Request::get("/v1.0/openapi.json")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = crate::api::router(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::served_document;

    /// Every operation of the document as of stop 26 (hand-written), with every status it
    /// answers: (method, path, statuses).
    const OPERATIONS: &[(&str, &str, &[u16])] = &[
        (
            "post",
            "/v1.0/submissions",
            &[202, 400, 401, 413, 415, 429, 503],
        ),
        ("get", "/v1.0/submissions/{id}", &[200, 401, 404, 429, 503]),
        (
            "get",
            "/v1.0/submissions/{id}/judge-results",
            &[200, 401, 404, 429, 503],
        ),
        (
            "get",
            "/v1.0/submissions/{id}/events",
            &[200, 401, 404, 429, 503],
        ),
        ("get", "/v1.0/operations", &[200, 400, 401, 429, 503]),
        ("get", "/v1.0/operations/{id}", &[200, 401, 404, 429, 503]),
        (
            "delete",
            "/v1.0/operations/{id}",
            &[200, 401, 404, 405, 409, 429, 503],
        ),
        ("get", "/v1.0/workers", &[200, 401, 429]),
        ("post", "/v1.0/workers", &[201, 400, 401, 413, 415, 429]),
        ("get", "/v1.0/workers/{id}", &[200, 401, 404, 429]),
        ("delete", "/v1.0/workers/{id}", &[204, 401, 404, 429]),
        (
            "post",
            "/v1.0/workers/{id}/heartbeat",
            &[200, 400, 401, 404, 413],
        ),
        (
            "post",
            "/v1.0/workers/{id}/take",
            &[200, 204, 400, 401, 404, 503],
        ),
        (
            "post",
            "/v1.0/workers/{id}/messages",
            &[204, 400, 401, 404, 409, 413, 415, 503],
        ),
        (
            "post",
            "/v1.0/rejudges",
            &[202, 400, 401, 403, 413, 415, 429, 503],
        ),
        (
            "post",
            "/v1.0/problems/{problem}/validations",
            &[202, 400, 401, 404, 409, 413, 415, 429, 503],
        ),
        ("get", "/v1.0/workflows", &[200, 401, 429, 503]),
        ("get", "/v1.0/workflows/{name}", &[200, 401, 404, 429, 503]),
        (
            "get",
            "/v1.0/workflows/{name}/steps",
            &[200, 400, 401, 404, 409, 429, 503],
        ),
        (
            "post",
            "/v1.0/workflows/{name}/steps/{action}",
            &[200, 400, 401, 404, 409, 413, 429, 503],
        ),
        (
            "post",
            "/v1.0/workflows/{name}/messages",
            &[200, 400, 401, 404, 409, 413, 429, 503],
        ),
        (
            "post",
            "/v1.0/workflows/{name}/shutdown",
            &[200, 400, 401, 404, 409, 413, 429, 503],
        ),
        ("get", "/metrics", &[200, 401, 429]),
        ("get", "/v1.0/openapi.json", &[200, 429]),
        ("post", "/v1.0/runs", &[202, 400, 401, 413, 415, 429, 503]),
        ("get", "/v1.0/runs/{id}", &[200, 401, 404, 429, 503]),
        ("get", "/", &[200, 429]),
        ("get", "/v1.0/status", &[200, 401, 429, 503]),
        ("get", "/v1.0/status/events", &[200, 401, 429]),
        ("get", "/judge0/about", &[200, 401, 429]),
        ("get", "/judge0/config_info", &[200, 401, 429]),
        ("get", "/judge0/languages", &[200, 401, 429]),
        ("get", "/judge0/languages/{id}", &[200, 401, 404, 429]),
        ("get", "/judge0/statuses", &[200, 401, 429]),
        (
            "post",
            "/judge0/submissions",
            &[201, 400, 401, 413, 422, 429, 503],
        ),
        (
            "get",
            "/judge0/submissions/{token}",
            &[200, 400, 401, 404, 429, 503],
        ),
        (
            "delete",
            "/judge0/submissions/{token}",
            &[400, 401, 404, 429, 503],
        ),
        (
            "get",
            "/judge0/submissions/batch",
            &[200, 400, 401, 422, 429, 503],
        ),
        (
            "post",
            "/judge0/submissions/batch",
            &[201, 400, 401, 413, 422, 429],
        ),
    ];

    /// Every schema of the document as of stop 26, with its properties.
    const SCHEMAS: &[(&str, &[&str])] = &[
        (
            "SubmissionRequest",
            &[
                "problem",
                "language",
                "sourceCode",
                "files",
                "callbackUrl",
                "deadlineSeconds",
            ],
        ),
        ("SourceFile", &["name", "content"]),
        (
            "Operation",
            &[
                "id",
                "status",
                "createdDateTime",
                "lastActionDateTime",
                "percentComplete",
                "resourceLocation",
                "kind",
            ],
        ),
        (
            "Submission",
            &[
                "id",
                "problem",
                "language",
                "state",
                "submissionTime",
                "score",
                "failedSubtasks",
                "reason",
                "operationLocation",
                "callbackUrl",
            ],
        ),
        (
            "Message",
            &[
                "id",
                "state",
                "judgeTime",
                "testCase",
                "subtask",
                "result",
                "time",
                "memory",
                "score",
                "failedSubtasks",
                "compileOutput",
                "reason",
            ],
        ),
        (
            "Worker",
            &[
                "id",
                "name",
                "concurrency",
                "registeredDateTime",
                "lastHeartbeatDateTime",
                "status",
                "heartbeatIntervalSeconds",
                "runningOperations",
                "reportedStatus",
                "lastError",
                "lastTake",
            ],
        ),
        ("Error", &["error"]),
        (
            "SubmissionToJudge",
            &["id", "problem", "language", "sourceCode", "files"],
        ),
        (
            "RejudgeRequest",
            &[
                "problem",
                "submissions",
                "webhook",
                "attempts",
                "maxRunning",
            ],
        ),
        (
            "ValidationRequest",
            &["solutions", "attempts", "maxRunning"],
        ),
        ("ControlRequest", &["tags", "dryRun", "message"]),
        (
            "Workflow",
            &[
                "name",
                "kind",
                "problem",
                "status",
                "percentComplete",
                "createdDateTime",
                "lastActionDateTime",
                "operationLocation",
                "running",
                "counts",
                "blocked",
                "result",
            ],
        ),
        (
            "RunRequest",
            &[
                "language",
                "sourceCode",
                "files",
                "stdin",
                "expectedOutput",
                "timeLimitMs",
                "memoryLimitKb",
                "deadlineSeconds",
                "callbackUrl",
                "args",
                "wallLimitMs",
                "compileArgs",
            ],
        ),
        (
            "Run",
            &[
                "id",
                "language",
                "status",
                "state",
                "submissionTime",
                "verdict",
                "compileError",
                "compileOutput",
                "time",
                "memory",
                "stdout",
                "stderr",
                "exitCode",
                "exitSignal",
                "wallTime",
                "limit",
                "end",
                "reason",
                "operationLocation",
            ],
        ),
        (
            "Status",
            &[
                "generatedDateTime",
                "queued",
                "localWorker",
                "workers",
                "workersTotal",
                "running",
                "moreRunning",
                "recent",
                "limits",
            ],
        ),
        ("Judge0Error", &[]),
        ("Judge0Status", &["id", "description"]),
        (
            "Judge0SubmissionRequest",
            &[
                "source_code",
                "language_id",
                "stdin",
                "expected_output",
                "cpu_time_limit",
                "memory_limit",
                "callback_url",
                "number_of_runs",
                "wall_time_limit",
                "command_line_arguments",
                "compiler_options",
            ],
        ),
        (
            "Judge0Submission",
            &[
                "token",
                "stdout",
                "stderr",
                "compile_output",
                "message",
                "status",
                "status_id",
                "time",
                "wall_time",
                "memory",
                "exit_code",
                "exit_signal",
                "created_at",
                "finished_at",
                "language_id",
                "language",
                "number_of_runs",
                "redirect_stderr_to_stdout",
                "enable_network",
            ],
        ),
    ];

    /// The properties of `schema` in `document`: its own, and those of the schemas it is made
    /// of (`allOf`, `oneOf`, `anyOf`, `$ref` to a component), as a generated document writes a
    /// flattened struct or an enum.
    fn properties(
        document: &Value,
        schema: &Value,
        seen: &mut BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut found: BTreeSet<String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(name) = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            if seen.insert(name.to_owned()) {
                let target = &document["components"]["schemas"][name];
                found.extend(properties(document, target, seen));
            }
        }
        for combined in ["allOf", "oneOf", "anyOf"] {
            for part in schema[combined].as_array().into_iter().flatten() {
                found.extend(properties(document, part, seen));
            }
        }
        found
    }

    /// What `document` lost of [`OPERATIONS`] and [`SCHEMAS`].
    fn lost(document: &Value) -> Vec<String> {
        let mut lost = Vec::new();
        for (method, path, statuses) in OPERATIONS {
            let name = format!("{} {path}", method.to_uppercase());
            let Some(operation) = document["paths"][path].get(method) else {
                lost.push(name);
                continue;
            };
            for status in *statuses {
                if operation["responses"].get(status.to_string()).is_none() {
                    lost.push(format!("{name} {status}"));
                }
            }
        }
        for (name, wanted) in SCHEMAS {
            let Some(schema) = document["components"]["schemas"].get(name) else {
                lost.push(format!("schema {name}"));
                continue;
            };
            let has = properties(document, schema, &mut BTreeSet::from([name.to_string()]));
            for property in *wanted {
                if !has.contains(*property) {
                    lost.push(format!("{name}.{property}"));
                }
            }
        }
        lost
    }

    #[tokio::test]
    async fn the_document_keeps_every_operation_status_schema_and_property_it_had() {
        let lost = lost(&served_document().await);
        assert!(lost.is_empty(), "{lost:#?}");
    }

    #[tokio::test]
    async fn a_lost_operation_status_schema_or_property_is_found() {
        let mut document = served_document().await;
        let paths = document["paths"].as_object_mut().unwrap();
        paths.remove("/v1.0/runs/{id}");
        paths["/v1.0/submissions"]["post"]["responses"]
            .as_object_mut()
            .unwrap()
            .remove("413");
        let schemas = document["components"]["schemas"].as_object_mut().unwrap();
        schemas.remove("Judge0Status");
        schemas["Worker"]["properties"]
            .as_object_mut()
            .unwrap()
            .remove("lastTake");
        assert_eq!(
            lost(&document),
            [
                "POST /v1.0/submissions 413",
                "GET /v1.0/runs/{id}",
                "Worker.lastTake",
                "schema Judge0Status",
            ]
        );
        // A property the schema gets from a schema it is made of still counts.
        let mut split = served_document().await;
        let run = split["components"]["schemas"]["Run"].take();
        split["components"]["schemas"]["RunFields"] = run;
        split["components"]["schemas"]["Run"] =
            serde_json::json!({"allOf": [{"$ref": "#/components/schemas/RunFields"}]});
        assert_eq!(lost(&split), Vec::<String>::new());
    }
}
