//! What every source queued for judging passes (a submission's, a run's): its size, its files
//! and language, its deadline, and room in the queue.

use axum::http::StatusCode;

use super::error::ApiError;
use super::time::now_ms;
use super::AppState;
use crate::protocol::{check_files, SourceFile};

/// Refuses a source that can never be judged: oversized or empty, files the judge would refuse,
/// an unknown language (when the service knows them).
pub(super) fn check_source(
    state: &AppState,
    language: &str,
    source_code: &str,
    files: &[SourceFile],
) -> Result<(), ApiError> {
    let config = &state.config;
    if source_code.len() > config.max_source_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "sourceTooLarge",
            format!(
                "sourceCode is {} bytes; at most {} are accepted",
                source_code.len(),
                config.max_source_bytes
            ),
        ));
    }
    if source_code.trim().is_empty() {
        return Err(ApiError::bad_request("sourceCode is empty"));
    }
    let total = source_code.len() + files.iter().map(|f| f.content.len()).sum::<usize>();
    if total > config.max_source_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "sourceTooLarge",
            format!(
                "sourceCode and files are {total} bytes; at most {} are accepted",
                config.max_source_bytes
            ),
        ));
    }
    // The names the judge would refuse (`invalid`) are refused here at once; the language's own
    // source name is checked when the registry is known.
    let main = config
        .languages
        .as_ref()
        .and_then(|l| l.resolve(language))
        .map_or("", |l| l.source.as_str());
    check_files(files, main).map_err(ApiError::bad_request)?;
    if let Some(languages) = &config.languages {
        if languages.resolve(language).is_none() {
            return Err(ApiError::bad_request(format!(
                "unknown language {language:?}"
            )));
        }
    }
    Ok(())
}

/// Longest deadline an operation may be given: a week (the OpenAPI document's `maximum` of
/// `deadlineSeconds`, a literal there, which a test checks).
pub(super) const MAX_DEADLINE_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// When an operation asking for `deadlineSeconds` (or, without, the operator's default) times
/// out, ms since the epoch; 400 for a deadline that is not a positive number of seconds up to
/// a week.
pub(super) fn deadline_ms(state: &AppState, asked: Option<f64>) -> Result<Option<i64>, ApiError> {
    let Some(seconds) = asked.or(state.config.deadline.map(|d| d.as_secs_f64())) else {
        return Ok(None);
    };
    if !(seconds > 0.0 && seconds <= MAX_DEADLINE_SECONDS) {
        return Err(ApiError::bad_request(format!(
            "deadlineSeconds must be above 0 and at most {MAX_DEADLINE_SECONDS}"
        )));
    }
    Ok(Some(now_ms() + (seconds * 1000.0).round() as i64))
}

/// 503 with `Retry-After` when the queue is full.
pub(super) async fn check_queue(state: &AppState) -> Result<(), ApiError> {
    let config = &state.config;
    if state.backend.queued().await? >= config.max_queued {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queueFull",
            "too many submissions are waiting; try again later",
        );
        e.retry_after = Some(config.retry_after_secs.max(1));
        return Err(e);
    }
    Ok(())
}
