//! `GET /metrics`: this process's metrics (see [`crate::metrics`]), with what the store and the
//! worker registry hold read at the moment of the scrape.

use axum::extract::State;
use axum::response::IntoResponse;

use super::operations::FILTER_FIELDS;
use super::time::now_ms;
use super::workers::WorkerStatus;
use super::AppState;
use crate::metrics::{self, StoreLabels, WorkerLabels};
use crate::store::filter;

/// The scrape (the client token, like the rest of the API).
pub(super) fn routes() -> Vec<super::route::Route> {
    use super::route::{Route, Verb};
    use crate::api::doc::Doc;
    vec![Route::new(Verb::Get, "/metrics", &[200, 401, 429], scrape)
        .doc(
            Doc::new("Prometheus metrics of this process (OpenMetrics text): judgings by outcome, tests by language and verdict, judging, compile and container start times, queue depth and oldest queued age of the store, workers by status, store and sandbox errors by kind, submissions in flight")
                .text(200, "The exposition", "application/openmetrics-text"),
        )]
}

pub async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = metrics::global();
    let backend = state.backend();
    let store = StoreLabels {
        store: backend.name(),
    };
    // A store that fails leaves its last figures and counts the failure; the scrape still
    // answers with everything else.
    match backend.queued().await {
        Ok(queued) => {
            let queued = i64::try_from(queued).unwrap_or(i64::MAX);
            metrics.queue_depth.get_or_create(&store).set(queued);
        }
        Err(_) => metrics.count_store_error(store.store, "metrics"),
    }
    // Operations list the waiting ones first, oldest first.
    let waiting = filter::parse("status eq 'notstarted'", FILTER_FIELDS).expect("a valid filter");
    match backend.list_page(Some(&waiting), None, 1).await {
        Ok(oldest) => {
            let age_ms = oldest.first().map_or(0, |view| now_ms() - view.created_ms);
            metrics
                .oldest_queued_seconds
                .get_or_create(&store)
                .set(age_ms.max(0) as f64 / 1000.0);
        }
        Err(_) => metrics.count_store_error(store.store, "metrics"),
    }
    let now = now_ms();
    let workers = state.workers();
    let (mut active, mut unresponsive) = (0, 0);
    for worker in workers.all() {
        match workers.status_at(&worker, now) {
            WorkerStatus::Active => active += 1,
            WorkerStatus::Unresponsive => unresponsive += 1,
        }
    }
    for (status, count) in [("active", active), ("unresponsive", unresponsive)] {
        metrics
            .workers
            .get_or_create(&WorkerLabels { status })
            .set(count);
    }
    metrics::exposition().await
}
