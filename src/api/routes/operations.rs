//! Operations: a submission's, a run's, a rejudge's or a validation's, polled, cancelled and
//! listed together (the types are in [`crate::api::operations`]).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::doc::{self, Doc};
use crate::api::error::ApiError;
use crate::api::operations::{Operation, OperationBody, Position, FILTER_FIELDS};
use crate::api::respond::{not_cancellable, polled};
use crate::api::route::{Route, Verb};
use crate::api::types::Page;
use crate::api::{workflows, AppState};
use crate::store::filter;
use crate::store::Cancel;
use crate::store::Status;
use utoipa::openapi::schema::Type;

/// Listing, polling and cancelling operations.
pub(in crate::api) fn routes() -> Vec<Route> {
    use Verb::{Delete, Get};
    vec![
        Route::new(
            Get,
            "/v1.0/operations",
            &[200, 400, 401, 429, 503],
            list_operations,
        )
        .doc(
            Doc::new("List operations (submissions, rejudges, validations): not started, running, then completed, each by creation time")
                .param(doc::query("$filter", doc::of_type(Type::String), Some("OData filter over id, kind, status, problem, language, createdDateTime, lastActionDateTime, percentComplete with eq ne gt ge lt le, and or not, parentheses")))
                .param(doc::query("$top", doc::of_type(Type::Integer).minimum(Some(1)).maximum(Some(1000)).default(Some(serde_json::json!(50))), None))
                .param(doc::query("$skip", doc::of_type(Type::Integer).minimum(Some(0)).default(Some(serde_json::json!(0))), Some("Operations to pass over; the service reads them all, so a deep page costs as many rows. Not with $skiptoken")))
                .param(doc::query("$skiptoken", doc::of_type(Type::String), Some("Where the page starts: just after the operation whose position the token carries (opaque; taken from nextLink). A deep page costs as much as the first. Not with $skip; a malformed token is a 400")))
                .paged::<crate::api::operations::OperationBody>(200, "A page of operations", "The next page, when there is one: /v1.0/operations with the same $top and $filter and the $skiptoken of this page's last operation. Following it never repeats or skips an operation whose status did not change meanwhile (one that starts or finishes moves between status groups, and so between pages)"),
        ),
        Route::new(
            Get,
            "/v1.0/operations/{id}",
            &[200, 401, 404, 429, 503],
            operation,
        )
        .doc(
            Doc::new("Poll an operation")
                .json::<crate::api::operations::OperationBody>(200, "The operation (Retry-After while not finished)"),
        ),
        Route::new(
            Delete,
            "/v1.0/operations/{id}",
            &[200, 401, 404, 405, 409, 429, 503],
            cancel_operation,
        )
        .doc(
            Doc::new("Cancel a not started submission, or shut down a running rejudge or validation (idempotent)")
                .json::<crate::api::operations::OperationBody>(200, "Cancelled"),
        ),
    ]
}

/// The operation `id`: a workflow's, or a submission's.
async fn find_operation(state: &AppState, id: &str) -> Result<Operation, ApiError> {
    if let Some(runner) = &state.workflows {
        if let Some(view) = runner.view(id).await? {
            return Ok(Operation::of_workflow(&view));
        }
    }
    match state.backend.get(id).await? {
        Some(view) => Ok(Operation::of_submission(&view)),
        None => Err(ApiError::not_found("operation", id)),
    }
}

async fn operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let op = find_operation(&state, &id).await?;
    Ok(polled(&op, state.config.retry_after_secs))
}

/// Cancels a submission that no worker has taken, or shuts a running workflow down; idempotent.
async fn cancel_operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let op = find_operation(&state, &id).await?;
    if op.kind.is_workflow() {
        return workflows::cancel(&state, op).await;
    }
    if op.status == Status::Timeout {
        // Already ended (its state is `cancelled` in the store, which `cancel` takes as done).
        return Ok(not_cancellable(op.status));
    }
    match state.backend.cancel(&id).await? {
        Cancel::Cancelled => {
            let op = find_operation(&state, &id).await?;
            Ok(Json(OperationBody::from(&op)).into_response())
        }
        Cancel::NotFound => Err(ApiError::not_found("operation", &id)),
        Cancel::TooLate(status) => Ok(not_cancellable(status)),
    }
}

fn query_number(query: &HashMap<String, String>, name: &str) -> Result<Option<usize>, ApiError> {
    let value = query.get(&format!("${name}")).or_else(|| query.get(name));
    value
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!("${name} must be a non-negative integer"))
            })
        })
        .transpose()
}

/// Minimal percent-encoding for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Operations: not started, running, then completed, each oldest first; `$filter`, `$top`,
/// `$skip` or `$skiptoken` (also without the `$`); `nextLink` when there are more. `nextLink`
/// carries the position of the page's last operation (`$skiptoken`), so a page deep in the
/// listing reads as much as the first. An operation changes group as it runs (not started,
/// running, completed), so it may move to a page the client has read or has yet to read;
/// following `nextLink` never repeats or skips one whose status did not change meanwhile.
async fn list_operations(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Page<OperationBody>>, ApiError> {
    let Query(query) = query?;
    let (default_top, max_top) = state.config.page_size;
    let top = query_number(&query, "top")?.unwrap_or(default_top);
    if top == 0 || top > max_top {
        return Err(ApiError::bad_request(format!(
            "$top must be between 1 and {max_top}"
        )));
    }
    let skip = query_number(&query, "skip")?;
    let after = query
        .get("$skiptoken")
        .or_else(|| query.get("skiptoken"))
        .map(|token| Position::from_token(token))
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if skip.is_some() && after.is_some() {
        return Err(ApiError::bad_request(
            "$skip and $skiptoken cannot be given together",
        ));
    }
    let skip = skip.unwrap_or(0);
    let filter_text = query.get("$filter").or_else(|| query.get("filter"));
    let filter = filter_text
        .map(|text| filter::parse(text, FILTER_FIELDS))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("invalid $filter {e}")))?;
    let listed = |op: &Operation| {
        filter
            .as_ref()
            .is_none_or(|f| f.matches(&|field| op.field(field)))
            && after.as_ref().is_none_or(|after| op.position() > *after)
    };
    // One more than the page: whether there is a next one.
    let limit = skip.saturating_add(top).saturating_add(1);
    let mut ops: Vec<(Position, Operation)> = state
        .backend
        .list_page(filter.as_ref(), after.as_ref().map(|a| &a.key), limit)
        .await?
        .iter()
        .map(Operation::of_submission)
        .map(|op| (op.position(), op))
        .collect();
    if let Some(runner) = &state.workflows {
        let workflows = runner.views().await?;
        ops.extend(
            workflows
                .iter()
                .map(Operation::of_workflow)
                .filter(listed)
                .map(|op| (op.position(), op)),
        );
    }
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    let more = ops.len() > skip.saturating_add(top);
    let page: Vec<&(Position, Operation)> = ops.iter().skip(skip).take(top).collect();
    let next = page
        .last()
        .filter(|_| more)
        .map(|(last, _)| last.to_token());
    let next_link = next.map(|token| {
        let mut link = format!("/v1.0/operations?$top={top}&$skiptoken={token}");
        if let Some(text) = filter_text {
            link.push_str(&format!("&$filter={}", encode(text)));
        }
        link
    });
    Ok(Json(Page {
        value: page.iter().map(|(_, op)| OperationBody::from(op)).collect(),
        next_link,
    }))
}
