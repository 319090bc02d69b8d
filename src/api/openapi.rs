//! `GET /v1.0/openapi.json`: the OpenAPI document of the API, open without a token, built from
//! the route table (which the router hands to [`document`]: each route's method, path, statuses
//! and access, and its [`Doc`]) and the schemas of the types the API answers and accepts (`utoipa::ToSchema`).
//! A test of [`super::router`](mod@super::router) checks it against the route table; a test
//! here, that it keeps the surface it had (the document may only grow: a path, method, status,
//! schema or property it has stays, with its meaning).

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterIn};
use utoipa::openapi::schema::{ComponentsBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    Content, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, SecurityRequirement,
};

use super::doc::{self, Doc};
use super::error::ErrorBody;
use super::judge0::Judge0Error;
use super::route::JUDGE0_PREFIX;
use super::route::{Access, Route, Verb};

/// The document, open to anyone: `served` gives it as JSON (the router builds it once, from its
/// route table, with [`document`]).
pub(super) fn routes(served: fn() -> &'static str) -> Vec<Route> {
    let openapi = move || async move {
        ([(header::CONTENT_TYPE, "application/json")], served()).into_response()
    };
    vec![
        Route::new(Verb::Get, "/v1.0/openapi.json", &[200, 429], openapi)
            .access(Access::Open)
            .doc(Doc::new("This document").empty(200, "OpenAPI 3 document")),
    ]
}

const DESCRIPTION: &str = "Submissions, rejudges and problem validations are long-running operations: POST returns 202 with Operation-Location and Retry-After; poll the operation until it is succeeded, failed or cancelled. Remote workers register, take submissions and report their messages; one that misses its heartbeats has its submissions queued again. When the service is started with a rate limit, a client over it gets 429 with Retry-After (registered workers' heartbeats, takes and reports are not counted).";

/// The shared answers a route's statuses fall back on ([`usual`]).
fn shared_responses(components: ComponentsBuilder) -> ComponentsBuilder {
    let error = Content::new(Some(Ref::from_schema_name("Error")));
    components
        .response(
            "Error",
            utoipa::openapi::Response::builder()
                .description("An error")
                .content("application/json", error.clone())
                .build(),
        )
        .response(
            "Unavailable",
            utoipa::openapi::Response::builder()
                .description(
                    "The service cannot answer now (its store failed); retry after Retry-After seconds",
                )
                .header("Retry-After", doc::integer_header(None))
                .content("application/json", error)
                .build(),
        )
        .response(
            "BodyTooLarge",
            utoipa::openapi::Response::new(
                "The request body is over the service's limit (plain text)",
            ),
        )
        .response(
            "Judge0Unavailable",
            utoipa::openapi::Response::builder()
                .description("The service cannot answer now (its store failed): {\"error\": ...}")
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("Judge0Error"))),
                )
                .build(),
        )
}

fn security_schemes(components: ComponentsBuilder) -> ComponentsBuilder {
    let bearer = |description: &str| {
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build(),
        )
    };
    components
        .security_scheme(
            "workerToken",
            bearer("The service's worker token (serve --worker-token). Required for every worker call (all but GET under /v1.0/workers) when the service has one; without it, 401."),
        )
        .security_scheme(
            "clientToken",
            bearer("The service's client token (serve --client-token). Required for every call but worker calls and this document when the service has one; without it, 401."),
        )
        .security_scheme(
            "judge0AuthToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "Judge0's header for the service's client token (serve --client-token), accepted in place of Authorization: Bearer.",
            ))),
        )
}

/// The shared answer (`#/components/responses/...`) for `status` where `route` does not describe
/// it: 503 from a failing store, 413 from the body limit (the API's error body where the route
/// reads JSON, as its 415 says, else the limit's plain text), any other as the API's error body.
fn usual(route: &Route, status: u16, judge0: bool) -> RefOr<utoipa::openapi::Response> {
    let name = match (status, judge0) {
        (413, _) if !route.answers.contains(&415) => "BodyTooLarge",
        (503, true) => "Judge0Unavailable",
        (503, false) => "Unavailable",
        _ => "Error",
    };
    Ref::new(format!("#/components/responses/{name}")).into()
}

/// Who may call `route`, as the document's security requirements (none for an open route).
fn security(route: &Route, judge0: bool) -> Option<Vec<SecurityRequirement>> {
    let scheme = match route.access {
        Access::Open => return None,
        Access::Client => "clientToken",
        Access::Worker | Access::OwnWorker => "workerToken",
    };
    let mut security = vec![SecurityRequirement::new(scheme, Vec::<String>::new())];
    if judge0 {
        security.push(SecurityRequirement::new(
            "judge0AuthToken",
            Vec::<String>::new(),
        ));
    }
    Some(security)
}

fn method(verb: Verb) -> HttpMethod {
    match verb {
        Verb::Get => HttpMethod::Get,
        Verb::Post => HttpMethod::Post,
        Verb::Delete => HttpMethod::Delete,
    }
}

/// The names `path` has in braces.
fn path_names(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
}

/// The operation of `route`: its [`Doc`], every status it answers, its security.
fn operation(route: &Route) -> utoipa::openapi::path::Operation {
    let judge0 = route.path.starts_with(JUDGE0_PREFIX);
    let doc = &route.doc;
    let mut operation = OperationBuilder::new()
        .summary(Some(doc.summary))
        .description(doc.description)
        .securities(security(route, judge0));
    if judge0 {
        operation = operation.tag("Judge0-compatible");
    }
    for name in path_names(&route.path) {
        let listed = doc
            .parameters
            .iter()
            .any(|p| p.name == name && p.parameter_in == ParameterIn::Path);
        if !listed {
            operation = operation.parameter(doc::path(name, doc::of_type(Type::String)));
        }
    }
    for parameter in &doc.parameters {
        operation = operation.parameter(parameter.clone());
    }
    operation = operation.request_body(doc.body.clone());
    for status in route.answers {
        let response = doc
            .answers
            .iter()
            .find(|(s, _)| s == status)
            .map(|(_, response)| response.clone())
            .unwrap_or_else(|| usual(route, *status, judge0));
        operation = operation.response(status.to_string(), response);
    }
    operation.build()
}

/// The document: every route of the table with its schemas.
pub(super) fn document(routes: &[Route]) -> serde_json::Value {
    let mut paths = Paths::new();
    let mut components = security_schemes(shared_responses(ComponentsBuilder::new()));
    // The schemas the shared answers name.
    let mut schemas = Doc::new("")
        .schema::<ErrorBody>()
        .schema::<Judge0Error>()
        .schemas;
    for route in routes {
        paths.add_path_operation(&route.path, vec![method(route.verb)], operation(route));
        schemas.extend(route.doc.schemas.iter().cloned());
    }
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    let openapi: OpenApi = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("executioner operations API")
                .version("1.0")
                .description(Some(DESCRIPTION))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build();
    let mut document = serde_json::to_value(&openapi).unwrap_or_default();
    // utoipa 5 has no callbacks: they go in as JSON.
    for route in routes {
        if let Some(callbacks) = &route.doc.callbacks {
            document["paths"][&route.path][route.verb.openapi()]["callbacks"] = callbacks.clone();
        }
    }
    document
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

    /// Every `$ref` of `value` that names nothing in `document`.
    fn dangling(document: &Value, value: &Value, found: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    let target = reference
                        .strip_prefix("#/")
                        .map(|path| {
                            path.split('/')
                                .try_fold(document, |at, part| at.get(part))
                                .is_some()
                        })
                        .unwrap_or(false);
                    if !target {
                        found.insert(reference.clone());
                    }
                }
                for inner in map.values() {
                    dangling(document, inner, found);
                }
            }
            Value::Array(items) => {
                for inner in items {
                    dangling(document, inner, found);
                }
            }
            _ => {}
        }
    }

    #[tokio::test]
    async fn every_reference_names_a_component_of_the_document() {
        let document = served_document().await;
        let mut found = BTreeSet::new();
        dangling(&document, &document, &mut found);
        assert!(found.is_empty(), "{found:#?}");
        // A schema gone is found wherever it is named.
        let mut without = document.clone();
        without["components"]["schemas"]
            .as_object_mut()
            .unwrap()
            .remove("SourceFile");
        let mut found = BTreeSet::new();
        dangling(&without, &without, &mut found);
        assert_eq!(
            found,
            BTreeSet::from(["#/components/schemas/SourceFile".to_owned()])
        );
    }

    /// The limits the document states (literals in `#[schema]` attributes) are the service's.
    #[tokio::test]
    async fn the_limits_the_document_states_are_the_services() {
        let document = served_document().await;
        let schemas = &document["components"]["schemas"];
        let files = crate::protocol::MAX_FILES as u64;
        for name in ["SubmissionRequest", "SubmissionToJudge"] {
            let stated = &schemas[name]["properties"]["files"]["maxItems"];
            assert_eq!(stated.as_u64(), Some(files), "{name}.files");
        }
        let deadline = crate::api::admission::MAX_DEADLINE_SECONDS;
        for name in ["SubmissionRequest", "RunRequest"] {
            let stated = &schemas[name]["properties"]["deadlineSeconds"]["maximum"];
            assert_eq!(stated.as_f64(), Some(deadline), "{name}.deadlineSeconds");
        }
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
        // Where the generated schema has it: its own properties or a part of its `allOf`.
        let worker = &mut schemas["Worker"];
        if let Some(properties) = worker.get_mut("properties").and_then(Value::as_object_mut) {
            properties.remove("lastTake");
        }
        let parts = worker.get_mut("allOf").and_then(Value::as_array_mut);
        for part in parts.into_iter().flatten() {
            if let Some(properties) = part.get_mut("properties").and_then(Value::as_object_mut) {
                properties.remove("lastTake");
            }
        }
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
