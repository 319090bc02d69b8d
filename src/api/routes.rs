//! The handlers of submissions, operations and remote workers, one module each (`routes/`). The
//! other resources are modules of [`super`] of their own: `runs.rs`, `workflows.rs` (rejudges,
//! validations, workflows), `status.rs` (the status page), `judge0.rs`, `metrics.rs`,
//! `openapi.rs`.

mod operations;
mod submissions;
mod workers;

pub(super) use workers::own_worker_routes;

use super::route::Route;

/// The routes of submissions, operations and workers (but a worker's own calls:
/// [`own_worker_routes`]).
pub(super) fn routes() -> Vec<Route> {
    let mut routes = submissions::routes();
    routes.extend(operations::routes());
    routes.extend(workers::routes());
    routes
}
