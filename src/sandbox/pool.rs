//! The warm pool: containers of the most used images started ahead of time, so that a
//! submission's compile starts in a container that is already up instead of waiting for
//! `docker create` + `start` and the agent's `ready` (a few hundred ms on the critical path).
//!
//! A pooled container is started exactly as [`Sandbox::open`] starts one (its own lent uid,
//! cgroup and io dir) and is never used before it is handed out, so it cannot be told from a
//! fresh one; a used container is never returned to the pool (the judge closes it). Each take is
//! followed by a replacement started in the background, one start at a time per pool. Before a
//! pooled container is handed out its agent must answer an empty `warm` request within
//! [`HEALTH_TIMEOUT`]; one that does not (killed, engine restarted) is closed and the next one,
//! or a fresh start, is used. [`Sandbox::open_with`] (checkers, interactors) never uses the pool.
//!
//! The pool holds at most [`SandboxConfig::warm_pool`] containers per image of
//! [`SandboxConfig::warm_images`], and never more than half of the box uids altogether, since
//! each one holds a lent uid that boxes in use would otherwise get.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use demoter::protocol::{Request, Response};
use tokio_util::task::TaskTracker;

use super::{short, Container, OpenOptions, Sandbox, SandboxConfig, SandboxError};
use crate::sync::lock;

/// How long a pooled container's agent may take to answer the health check.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Ready containers per image, and the one background start of the pool.
pub(super) struct Pool {
    /// Containers kept ready per image (0: no pool).
    size: usize,
    /// The images kept warm.
    images: Vec<String>,
    /// Most containers the pool holds over all images (ready or starting): half the box uids.
    limit: usize,
    state: Mutex<State>,
    /// Mirrors [`State::filling`], for [`Sandbox::pool_settled`].
    filling: tokio::sync::watch::Sender<bool>,
    /// The background start and the closing of discarded containers, awaited by
    /// [`Sandbox::close_pool`].
    tasks: TaskTracker,
}

#[derive(Default)]
struct State {
    ready: HashMap<String, VecDeque<Container>>,
    /// A background start is running (at most one at a time).
    filling: bool,
    /// [`Sandbox::close_pool`] was called: nothing is pooled any more.
    closed: bool,
}

/// A container waiting in the pool, as [`Sandbox::warm_containers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmContainer {
    pub id: String,
    /// Also the name of its box cgroup.
    pub name: String,
    /// Its host io dir.
    pub io_dir: PathBuf,
}

/// How many containers a pool may hold over all images: `size` per image, at most half of the
/// box uids (every container holds one, and boxes in use need theirs).
fn capacity(size: usize, images: usize, box_uids: u32) -> usize {
    size.saturating_mul(images).min(box_uids as usize / 2)
}

impl Pool {
    pub(super) fn new(config: &SandboxConfig) -> Self {
        let mut images: Vec<String> = Vec::new();
        for image in &config.warm_images {
            if !images.contains(image) {
                images.push(image.clone());
            }
        }
        let size = if images.is_empty() {
            0
        } else {
            config.warm_pool
        };
        Pool {
            size,
            limit: capacity(size, images.len(), config.box_uids),
            images,
            state: Mutex::new(State::default()),
            filling: tokio::sync::watch::Sender::new(false),
            tasks: TaskTracker::new(),
        }
    }

    fn keeps(&self, image: &str) -> bool {
        self.size > 0 && self.limit > 0 && self.images.iter().any(|i| i == image)
    }

    /// The image the next background start is for: the kept image with the fewest ready
    /// containers, below its size, not in `skip`, while the pool is below its limit. `None`
    /// ends the filling (under the same lock, so a take never misses a needed refill).
    fn next_image(&self, skip: &HashSet<String>) -> Option<String> {
        let mut state = lock(&self.state);
        let total: usize = state.ready.values().map(VecDeque::len).sum();
        let next = if state.closed || total >= self.limit {
            None
        } else {
            self.images
                .iter()
                .filter(|image| !skip.contains(*image))
                .map(|image| (state.ready.get(image).map_or(0, VecDeque::len), image))
                .filter(|(ready, _)| *ready < self.size)
                .min_by_key(|(ready, _)| *ready)
                .map(|(_, image)| image.clone())
        };
        if next.is_none() {
            state.filling = false;
            self.filling.send_replace(false);
        }
        next
    }

    /// Marks a background start as running; `false` when one already runs or the pool is closed.
    fn start_filling(&self) -> bool {
        let mut state = lock(&self.state);
        if state.filling || state.closed {
            return false;
        }
        state.filling = true;
        self.filling.send_replace(true);
        true
    }

    /// Adds a started container; gives it back when the pool was closed meanwhile.
    fn put(&self, image: &str, container: Container) -> Option<Container> {
        let mut state = lock(&self.state);
        if state.closed {
            return Some(container);
        }
        let queue = state.ready.entry(image.to_owned()).or_default();
        queue.push_back(container);
        set_ready(image, queue.len());
        None
    }

    /// The oldest ready container of `image`, if any.
    fn pop(&self, image: &str) -> Option<Container> {
        let mut state = lock(&self.state);
        if state.closed {
            return None;
        }
        let queue = state.ready.get_mut(image)?;
        let container = queue.pop_front();
        set_ready(image, queue.len());
        container
    }

    /// Closes the pool: every ready container, for the caller to close.
    fn drain(&self) -> Vec<(String, Container)> {
        let mut state = lock(&self.state);
        state.closed = true;
        let ready = std::mem::take(&mut state.ready);
        ready
            .into_iter()
            .flat_map(|(image, queue)| {
                set_ready(&image, 0);
                queue.into_iter().map(move |c| (image.clone(), c))
            })
            .collect()
    }
}

fn set_ready(image: &str, count: usize) {
    crate::metrics::global().set_warm_pool_ready(image, count);
}

impl Container {
    /// Whether the agent answers an empty `warm` request (which does nothing) within `timeout`.
    async fn healthy(&mut self, timeout: Duration) -> Result<(), SandboxError> {
        let request = Request::Warm { paths: Vec::new() };
        match self.request(&request, timeout).await? {
            Response::Ok => Ok(()),
            other => Err(SandboxError::AgentProtocol {
                container: short(&self.id),
                answer: format!("{other:?}"),
            }),
        }
    }

    fn warm_entry(&self) -> WarmContainer {
        WarmContainer {
            id: self.id.clone(),
            name: self.name.clone(),
            io_dir: self.io_dir.clone(),
        }
    }
}

impl Sandbox {
    /// A healthy ready container of `image` from the warm pool, with a replacement started in
    /// the background; `None` when `image` is not kept warm or none is ready (then the caller
    /// starts one).
    pub(super) async fn take_warm(&self, image: &str) -> Option<Container> {
        if !self.pool.keeps(image) {
            return None;
        }
        let metrics = crate::metrics::global();
        let taken = loop {
            let Some(mut container) = self.pool.pop(image) else {
                metrics.count_warm_pool_take(image, "miss");
                break None;
            };
            match container.healthy(HEALTH_TIMEOUT).await {
                Ok(()) => {
                    metrics.count_warm_pool_take(image, "hit");
                    tracing::debug!(image, container = %short(&container.id), "took a warm container");
                    break Some(container);
                }
                Err(e) => {
                    metrics.count_warm_pool_take(image, "unhealthy");
                    metrics.count_warm_pool_discarded(image);
                    tracing::warn!(image, container = %short(&container.id), error = %e, "a warm container failed its health check; it is discarded");
                    self.pool.tasks.spawn(container.close());
                }
            }
        };
        self.refill();
        taken
    }

    /// Starts the background filling of the pool unless it runs already (or the pool is off
    /// or closed).
    fn refill(&self) {
        if self.pool.limit == 0 || !self.pool.start_filling() {
            return;
        }
        let sandbox = self.clone();
        self.pool.tasks.spawn(async move { sandbox.fill().await });
    }

    /// Starts containers one at a time until every kept image has its size (or the pool its
    /// limit). An image whose start fails is left until the next take asks for a refill.
    async fn fill(&self) {
        let mut failed = HashSet::new();
        while let Some(image) = self.pool.next_image(&failed) {
            match self.start_container(&image, &OpenOptions::default()).await {
                Ok(container) => {
                    let id = short(&container.id);
                    match self.pool.put(&image, container) {
                        None => {
                            tracing::debug!(image, container = %id, "a warm container is ready")
                        }
                        Some(late) => late.close().await,
                    }
                }
                Err(e) => {
                    crate::metrics::global().count_sandbox_error(e.kind());
                    tracing::warn!(image, error = %e, "could not start a warm container");
                    failed.insert(image);
                }
            }
        }
    }

    /// Fills the warm pool for the configured images ([`SandboxConfig::warm_images`]) in the
    /// background, as at a worker's start; nothing when the pool is off. See
    /// [`Sandbox::pool_settled`] to wait for it.
    pub fn prewarm(&self) {
        if self.pool.limit == 0 {
            return;
        }
        tracing::info!(
            images = ?self.pool.images,
            per_image = self.pool.size,
            most = self.pool.limit,
            "filling the warm pool"
        );
        self.refill();
    }

    /// Waits until no background start runs: the pool is full, closed, or a start failed.
    pub async fn pool_settled(&self) {
        let mut filling = self.pool.filling.subscribe();
        // Err only when the sender is gone, i.e. never while `self` holds the pool.
        let _ = filling.wait_for(|filling| !filling).await;
    }

    /// The containers waiting in the pool for `image`, oldest first.
    pub fn warm_containers(&self, image: &str) -> Vec<WarmContainer> {
        lock(&self.pool.state)
            .ready
            .get(image)
            .map(|queue| queue.iter().map(Container::warm_entry).collect())
            .unwrap_or_default()
    }

    /// Closes every pooled container and waits for them to be gone (and for a background start,
    /// whose container is closed too): nothing is left behind. The pool takes and starts no
    /// more containers afterwards. For every shutdown of a process that judged.
    pub async fn close_pool(&self) {
        let drained = self.pool.drain();
        if !drained.is_empty() {
            tracing::info!(containers = drained.len(), "closing the warm pool");
        }
        let metrics = crate::metrics::global();
        let closing = drained.into_iter().map(|(image, container)| {
            metrics.count_warm_pool_discarded(&image);
            container.close()
        });
        futures_util::future::join_all(closing).await;
        self.pool.tasks.close();
        self.pool.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_holds_its_size_per_image_and_at_most_half_the_uids() {
        assert_eq!(capacity(2, 3, 1000), 6);
        assert_eq!(capacity(0, 3, 1000), 0);
        assert_eq!(capacity(5, 2, 8), 4);
        assert_eq!(capacity(1, 1, 1), 0);
        assert_eq!(capacity(usize::MAX, 2, 1000), 500);
    }

    #[test]
    fn a_pool_without_size_or_images_keeps_nothing() {
        let mut config = SandboxConfig::new(PathBuf::from("/nonexistent/demoter"));
        config.warm_images = vec!["executioner/gcc-12".into(), "executioner/gcc-12".into()];
        assert!(!Pool::new(&config).keeps("executioner/gcc-12"));
        config.warm_pool = 2;
        let pool = Pool::new(&config);
        assert!(pool.keeps("executioner/gcc-12"));
        assert!(!pool.keeps("executioner/python-3.11"));
        assert_eq!((pool.images.len(), pool.limit), (1, 2));
        config.warm_images.clear();
        assert!(!Pool::new(&config).keeps("executioner/gcc-12"));
    }
}
