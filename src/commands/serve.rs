//! `executioner serve`: the HTTP operations API with its local worker and workflows.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use executioner::problem::ProblemStore;
use executioner::setup::{build_judge, load_registry, Setup};
use executioner::store::memory::MemoryInterface;
use executioner::store::postgres::{PostgresConfig, PostgresInterface};
use executioner::worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::worker::remove_leftover_sandboxes;
use super::{bind, CommandError};

/// Settings of `executioner serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0: any free port; the log says which).
    pub listen: String,
    /// Where the Judge0-compatible API is also served at the root, if anywhere.
    pub judge0_listen: Option<String>,
    /// The local worker; concurrency 0: none, only remote workers judge.
    pub worker: WorkerConfig,
    /// The API's limits and timings (its problems and languages are filled in from the setup).
    pub api: executioner::api::ApiConfig,
    /// Keep submissions in this Postgres store instead of in memory.
    pub database: Option<PostgresConfig>,
}

/// `executioner serve`: the HTTP operations API on `config.listen` until `shutdown` fires, with
/// a local worker judging what it accepts (unless its concurrency is 0) beside any remote
/// workers, and rejudges and validations run in this process, their judgings queued for those
/// same workers (with concurrency 0, only remote workers judge them). Submissions are kept in memory,
/// or in the Postgres store of `config.database` (shared with any `executioner worker
/// --interface postgres`; workflows a restart interrupted are continued).
pub async fn serve(
    setup: &Setup,
    config: ServeConfig,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    use executioner::store::{memory::MemoryBackend, postgres::PostgresBackend, Backend};
    let ServeConfig {
        listen,
        judge0_listen,
        worker,
        api,
        database,
    } = config;
    let listen = listen.as_str();
    let judge = build_judge(setup).await?;
    remove_leftover_sandboxes(&judge).await;
    let listener = bind(listen).await?;
    let judge0_listener = match &judge0_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    // Their own caches: the judge's are not shared, and reading a problem twice is cheap.
    let problems = Arc::new(ProblemStore::new(&setup.problems));
    let languages = Arc::new(load_registry(setup.languages.as_deref())?);
    let api_config = executioner::api::ApiConfig {
        problems: Some(problems.clone()),
        languages: Some(languages.clone()),
        ..api
    };
    let (backend, follower, postgres): (Arc<dyn Backend>, _, _) = match database {
        None => {
            let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
            let follower = backend.follow(shutdown.clone());
            (backend as Arc<dyn Backend>, follower, None)
        }
        Some(database) => {
            let interface = Arc::new(PostgresInterface::connect(database).await?);
            let backend = PostgresBackend::new(interface.clone(), Some(problems), Some(languages));
            let follower = backend.follow(shutdown.clone());
            (backend as Arc<dyn Backend>, follower, Some(interface))
        }
    };
    let stores = backend.clone().workflow_stores();
    let runner = executioner::workflow::Runner::new(
        executioner::workflow::Env {
            judge: Arc::new(executioner::workflow::QueuedJudge::new(stores.judgings)),
            submissions: stores.submissions,
            results: stores.results,
            store: stores.workflows,
        },
        shutdown.clone(),
    );
    match runner.resume_all().await {
        Ok(names) if !names.is_empty() => tracing::info!(?names, "workflows continued"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "could not look for workflows to continue"),
    }
    let mut state = executioner::api::AppState::new(backend, api_config, shutdown.clone())
        .with_workflows(runner.clone());
    if worker.concurrency > 0 {
        state = state.with_local_worker(worker.concurrency);
    }
    let sweeper = state.start();
    let sandbox = judge.sandbox().clone();
    let local =
        (worker.concurrency > 0).then(|| Worker::new(state.worker_interface(), judge, worker));
    if local.is_none() {
        tracing::info!("no local worker: only remote workers judge");
    }
    tracing::info!(listen = %listener.local_addr().map_or_else(|_| listen.to_owned(), |a| a.to_string()), "serving the HTTP API");
    if listener
        .local_addr()
        .is_ok_and(|addr| !addr.ip().is_loopback())
    {
        if state.config().worker_token.is_none() {
            warn!("the API is reachable beyond this machine and has no --worker-token: any client can act as a worker and report verdicts");
        }
        if state.config().client_token.is_none() {
            warn!("the API is reachable beyond this machine and has no --client-token: any client can submit, cancel and rejudge");
        }
    }
    let judge0 = judge0_listener.map(|listener| {
        let address = listener.local_addr().map_or_else(
            |_| judge0_listen.clone().unwrap_or_default(),
            |a| a.to_string(),
        );
        tracing::info!(listen = %address, "serving the Judge0-compatible API");
        executioner::api::serve_judge0(listener, state.clone(), shutdown.clone())
    });
    sandbox.prewarm();
    let judging = async {
        if let Some(local) = local {
            local.run(shutdown.clone()).await;
        }
    };
    let judge0_served = async {
        match judge0 {
            Some(served) => served.await,
            None => Ok(()),
        }
    };
    let (served, (), judge0_served) = tokio::join!(
        executioner::api::serve(listener, state, shutdown.clone()),
        judging,
        judge0_served
    );
    if let Err(e) = judge0_served {
        warn!(error = %e, "the Judge0-compatible API's listener failed");
    }
    runner.wait().await;
    sandbox.close_pool().await;
    let _ = tokio::join!(follower, sweeper);
    if let Some(interface) = postgres {
        interface.close().await;
    }
    served.map_err(|source| CommandError::Io {
        path: PathBuf::from(listen),
        source,
    })?;
    Ok(ExitCode::SUCCESS)
}
