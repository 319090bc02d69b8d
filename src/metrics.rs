//! Prometheus metrics of this process, in the OpenMetrics text format: what the judge, the
//! sandbox and the worker did (counted where it happens) and what the API's store holds (read
//! when scraped). `executioner serve` answers `GET /metrics`; a worker does with
//! `--metrics-listen ADDR`.
//!
//! One registry per process ([`global`]): every worker, judge and sandbox of the process adds to
//! the same series, as a scrape of the process expects. Label values come from closed sets
//! (verdicts, outcomes, error kinds) or from the operator's configuration (language ids, image
//! names, store names), never from a submission, so the series stay few.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What `GET /metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TestLabels {
    pub language: String,
    pub verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LanguageLabels {
    pub language: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompileCacheLabels {
    pub language: String,
    /// `hit`, `miss` or `tampered`.
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabels {
    pub image: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WarmTakeLabels {
    pub image: String,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    pub store: &'static str,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub status: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Judging and compiling: 50 ms to about 3.4 min.
fn long_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 13))
}

/// Container starts: 10 ms to about 5 s.
fn short_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 10))
}

/// Every series this process exports.
pub struct Metrics {
    registry: Registry,
    /// Judgings by how they ended: `judged`, `compile_error`, `invalid`, `error`, `not_taken`
    /// (another worker had it), `unreported` (the store failed before the end was recorded).
    pub submissions: Family<OutcomeLabels, Counter>,
    /// Tests judged, by language and verdict.
    pub tests: Family<TestLabels, Counter>,
    /// From the claim (`executing`) to the terminal message, by language.
    pub judging_seconds: Histograms<LanguageLabels>,
    /// Compiler runs, by language (successful or not).
    pub compile_seconds: Histograms<LanguageLabels>,
    /// Creating and starting a sandbox container, by image.
    pub container_start_seconds: Histograms<ImageLabels>,
    /// Compile cache lookups, by language and result (`hit`, `miss`, `tampered`).
    pub compile_cache: Family<CompileCacheLabels, Counter>,
    /// Compile cache entries removed to stay under its size bound.
    pub compile_cache_evictions: Counter,
    /// Submissions being judged by this process now.
    pub in_flight: Gauge,
    /// Failures of a store: `take` (getting a submission), `report` (recording a message),
    /// `api` (a request the store failed).
    pub store_errors: Family<StoreErrorLabels, Counter>,
    /// Failures of the sandbox, by kind (`docker`, `image_missing`, `agent_gone`, ...).
    pub sandbox_errors: Family<KindLabels, Counter>,
    /// Submissions waiting for a worker, by store (read when scraped; `serve` only).
    pub queue_depth: Family<StoreLabels, Gauge>,
    /// Age of the oldest submission waiting for a worker, by store (0 when none; `serve` only).
    pub oldest_queued_seconds: Family<StoreLabels, Gauge<f64, AtomicU64>>,
    /// Registered remote workers by status (`serve` only).
    pub workers: Family<WorkerLabels, Gauge>,
    /// Containers ready in the warm pool, by image.
    pub warm_pool_ready: Family<ImageLabels, Gauge>,
    /// Opens of a warm-pool image by how the pool served them: `hit` (a ready container),
    /// `miss` (none ready: started on the spot), `unhealthy` (a pooled one failed its health
    /// check and was discarded; the next one or a fresh start followed).
    pub warm_pool_takes: Family<WarmTakeLabels, Counter>,
    /// Pooled containers closed without being handed out (unhealthy, or the pool closed).
    pub warm_pool_discarded: Family<ImageLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("executioner"),
            submissions: Family::default(),
            tests: Family::default(),
            judging_seconds: Family::new_with_constructor(long_buckets),
            compile_seconds: Family::new_with_constructor(long_buckets),
            container_start_seconds: Family::new_with_constructor(short_buckets),
            compile_cache: Family::default(),
            compile_cache_evictions: Counter::default(),
            in_flight: Gauge::default(),
            store_errors: Family::default(),
            sandbox_errors: Family::default(),
            queue_depth: Family::default(),
            oldest_queued_seconds: Family::default(),
            workers: Family::default(),
            warm_pool_ready: Family::default(),
            warm_pool_takes: Family::default(),
            warm_pool_discarded: Family::default(),
        };
        let r = &mut metrics.registry;
        r.register(
            "submissions",
            "Judgings by how they ended",
            metrics.submissions.clone(),
        );
        r.register(
            "tests",
            "Tests judged, by language and verdict",
            metrics.tests.clone(),
        );
        r.register(
            "judging_seconds",
            "Time from claiming a submission to its terminal message",
            metrics.judging_seconds.clone(),
        );
        r.register(
            "compile_seconds",
            "Time compiling a submission",
            metrics.compile_seconds.clone(),
        );
        r.register(
            "container_start_seconds",
            "Time creating and starting a sandbox container",
            metrics.container_start_seconds.clone(),
        );
        r.register(
            "compile_cache",
            "Compile cache lookups, by language and result",
            metrics.compile_cache.clone(),
        );
        r.register(
            "compile_cache_evictions",
            "Compile cache entries removed to stay under its size bound",
            metrics.compile_cache_evictions.clone(),
        );
        r.register(
            "in_flight_submissions",
            "Submissions being judged by this process",
            metrics.in_flight.clone(),
        );
        r.register(
            "store_errors",
            "Failures of a store, by kind",
            metrics.store_errors.clone(),
        );
        r.register(
            "sandbox_errors",
            "Failures of the sandbox, by kind",
            metrics.sandbox_errors.clone(),
        );
        r.register(
            "queue_depth",
            "Submissions waiting for a worker",
            metrics.queue_depth.clone(),
        );
        r.register(
            "oldest_queued_seconds",
            "Age of the oldest submission waiting for a worker",
            metrics.oldest_queued_seconds.clone(),
        );
        r.register(
            "workers",
            "Registered remote workers by status",
            metrics.workers.clone(),
        );
        r.register(
            "warm_pool_ready",
            "Containers ready in the warm pool, by image",
            metrics.warm_pool_ready.clone(),
        );
        r.register(
            "warm_pool_takes",
            "Opens of a warm-pool image, by result (hit, miss, unhealthy)",
            metrics.warm_pool_takes.clone(),
        );
        r.register(
            "warm_pool_discarded",
            "Pooled containers closed without being handed out, by image",
            metrics.warm_pool_discarded.clone(),
        );
        metrics
    }

    /// Every series, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub fn count_submission(&self, outcome: &'static str) {
        self.submissions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn count_test(&self, language: &str, verdict: &'static str) {
        self.tests
            .get_or_create(&TestLabels {
                language: language.to_owned(),
                verdict,
            })
            .inc();
    }

    pub fn observe_judging(&self, language: &str, took: Duration) {
        self.judging_seconds
            .get_or_create(&LanguageLabels {
                language: language.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn observe_compile(&self, language: &str, took: Duration) {
        self.compile_seconds
            .get_or_create(&LanguageLabels {
                language: language.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn observe_container_start(&self, image: &str, took: Duration) {
        self.container_start_seconds
            .get_or_create(&ImageLabels {
                image: image.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn count_compile_cache(&self, language: &str, result: &'static str) {
        self.compile_cache
            .get_or_create(&CompileCacheLabels {
                language: language.to_owned(),
                result,
            })
            .inc();
    }

    pub fn count_compile_cache_eviction(&self) {
        self.compile_cache_evictions.inc();
    }

    pub fn count_store_error(&self, store: &'static str, kind: &'static str) {
        self.store_errors
            .get_or_create(&StoreErrorLabels { store, kind })
            .inc();
    }

    pub fn count_sandbox_error(&self, kind: &'static str) {
        self.sandbox_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub fn set_warm_pool_ready(&self, image: &str, count: usize) {
        self.warm_pool_ready
            .get_or_create(&ImageLabels {
                image: image.to_owned(),
            })
            .set(count as i64);
    }

    pub fn count_warm_pool_take(&self, image: &str, result: &'static str) {
        self.warm_pool_takes
            .get_or_create(&WarmTakeLabels {
                image: image.to_owned(),
                result,
            })
            .inc();
    }

    pub fn count_warm_pool_discarded(&self, image: &str) {
        self.warm_pool_discarded
            .get_or_create(&ImageLabels {
                image: image.to_owned(),
            })
            .inc();
    }

    /// Counts a submission in flight until the guard is dropped.
    pub fn in_flight(&'static self) -> InFlight {
        self.in_flight.inc();
        InFlight(self)
    }
}

/// One submission counted in [`Metrics::in_flight`] while it lives.
pub struct InFlight(&'static Metrics);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Serves `GET /metrics` (this process's metrics) on `listener` until `shutdown` fires: the
/// exporter of a worker process (`worker --metrics-listen`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new().route("/metrics", axum::routing::get(exposition));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The response to a scrape.
pub async fn exposition() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        global().encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `line_start` (a metric name with its labels) in `text`.
    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
    }

    #[test]
    fn counted_events_appear_in_the_exposition_under_their_labels() {
        let metrics = Metrics::new();
        metrics.count_submission("judged");
        metrics.count_submission("judged");
        metrics.count_test("c", "TLE");
        metrics.observe_judging("c", Duration::from_millis(300));
        metrics.count_store_error("postgres", "take");
        metrics.set_warm_pool_ready("executioner/gcc-12", 2);
        metrics.count_warm_pool_take("executioner/gcc-12", "hit");
        metrics.count_warm_pool_discarded("executioner/gcc-12");
        metrics.count_compile_cache("c", "hit");
        metrics.count_compile_cache_eviction();
        let flight = {
            let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
            let guard = m.in_flight();
            let during = sample(&m.encode(), "executioner_in_flight_submissions");
            drop(guard);
            (
                during,
                sample(&m.encode(), "executioner_in_flight_submissions"),
            )
        };
        let text = metrics.encode();
        assert_eq!(
            sample(&text, r#"executioner_submissions_total{outcome="judged"}"#),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"executioner_tests_total{language="c",verdict="TLE"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"executioner_judging_seconds_count{language="c"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"executioner_judging_seconds_bucket{le="0.4",language="c"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"executioner_store_errors_total{store="postgres",kind="take"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"executioner_warm_pool_ready{image="executioner/gcc-12"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"executioner_warm_pool_takes_total{image="executioner/gcc-12",result="hit"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"executioner_warm_pool_discarded_total{image="executioner/gcc-12"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"executioner_compile_cache_total{language="c",result="hit"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "executioner_compile_cache_evictions_total"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(flight, (Some(1.0), Some(0.0)));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
