//! The worker registry: workers register, then send heartbeats; one that missed too many is
//! listed as unresponsive (the seed's "zombie" state).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use super::time::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    Active,
    Unresponsive,
}

#[derive(Debug, Clone)]
pub struct RegisteredWorker {
    pub id: String,
    pub name: String,
    pub concurrency: Option<u32>,
    pub registered_ms: i64,
    pub last_heartbeat_ms: i64,
}

/// Registered workers; a worker is unresponsive once `interval_ms * missed` passed without a
/// heartbeat.
pub struct Workers {
    workers: Mutex<HashMap<String, RegisteredWorker>>,
    interval_ms: i64,
    missed: i64,
}

impl Workers {
    pub fn new(interval_ms: i64, missed: i64) -> Self {
        Workers {
            workers: Mutex::new(HashMap::new()),
            interval_ms,
            missed,
        }
    }

    fn workers(&self) -> MutexGuard<'_, HashMap<String, RegisteredWorker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, name: String, concurrency: Option<u32>) -> RegisteredWorker {
        let now = now_ms();
        let worker = RegisteredWorker {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            concurrency,
            registered_ms: now,
            last_heartbeat_ms: now,
        };
        self.workers().insert(worker.id.clone(), worker.clone());
        worker
    }

    /// Records a heartbeat; `None` for an unknown worker (it must register again).
    pub fn heartbeat(&self, id: &str) -> Option<RegisteredWorker> {
        let mut workers = self.workers();
        let worker = workers.get_mut(id)?;
        worker.last_heartbeat_ms = now_ms();
        Some(worker.clone())
    }

    /// Every worker, oldest registration first.
    pub fn all(&self) -> Vec<RegisteredWorker> {
        let mut all: Vec<_> = self.workers().values().cloned().collect();
        all.sort_by_key(|w| (w.registered_ms, w.id.clone()));
        all
    }

    pub fn status_at(&self, worker: &RegisteredWorker, now_ms: i64) -> WorkerStatus {
        if now_ms - worker.last_heartbeat_ms > self.interval_ms.saturating_mul(self.missed) {
            WorkerStatus::Unresponsive
        } else {
            WorkerStatus::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_unresponsive_after_missed_heartbeats() {
        let workers = Workers::new(1000, 3);
        let w = workers.register("w1".into(), Some(2));
        let t = w.last_heartbeat_ms;
        assert_eq!(workers.status_at(&w, t + 3000), WorkerStatus::Active);
        assert_eq!(workers.status_at(&w, t + 3001), WorkerStatus::Unresponsive);
        let beat = workers.heartbeat(&w.id).unwrap();
        assert!(beat.last_heartbeat_ms >= t);
        assert!(workers.heartbeat("unknown").is_none());
        assert_eq!(workers.all().len(), 1);
    }
}
