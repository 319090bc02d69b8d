//! Results and submissions for rejudges, in memory ([`MemoryResultStore`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::protocol::{Message, Submission};
use crate::store::workflow::StoreError;
use crate::store::{ResultStore, Selection, SubmissionStore};
use crate::sync::lock;

/// The latest messages of each submission, in memory; and the submissions a rejudge may select.
#[derive(Default)]
pub struct MemoryResultStore {
    results: Mutex<BTreeMap<String, Vec<Message>>>,
    submissions: Vec<Submission>,
}

impl MemoryResultStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `submissions` (in this order) for rejudges to select.
    pub fn with_submissions(submissions: Vec<Submission>) -> Self {
        MemoryResultStore {
            results: Mutex::default(),
            submissions,
        }
    }

    pub fn messages_of(&self, submission: &str) -> Option<Vec<Message>> {
        let results = lock(&self.results);
        results.get(submission).cloned()
    }

    /// Every submission's messages, by submission id.
    pub fn all(&self) -> BTreeMap<String, Vec<Message>> {
        lock(&self.results).clone()
    }
}

#[async_trait]
impl ResultStore for MemoryResultStore {
    async fn replace(&self, submission: &str, messages: &[Message]) -> Result<(), StoreError> {
        let mut results = lock(&self.results);
        results.insert(submission.to_owned(), messages.to_vec());
        Ok(())
    }
}

#[async_trait]
impl SubmissionStore for MemoryResultStore {
    async fn select(&self, selection: &Selection) -> Result<Vec<Submission>, StoreError> {
        Ok(self
            .submissions
            .iter()
            .filter(|s| match selection {
                Selection::Problem(problem) => &s.problem == problem,
                Selection::Ids(ids) => ids.contains(&s.id),
            })
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Body;

    #[tokio::test]
    async fn new_results_replace_old_ones() {
        let store = MemoryResultStore::new();
        let error = Message::new("s", Body::Error { reason: None });
        let done = Message::new(
            "s",
            Body::Done {
                score: Some(1.0),
                failed_subtasks: None,
            },
        );
        store.replace("s", &[error]).await.unwrap();
        store
            .replace("s", std::slice::from_ref(&done))
            .await
            .unwrap();
        assert_eq!(store.messages_of("s"), Some(vec![done]));
        assert_eq!(store.messages_of("t"), None);
    }
}
