//! The in-memory interface: a queue of submissions and an ordered log of messages. The default
//! for local runs (`executioner judge`, `worker --interface memory`) and for embedding.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::{broadcast, Notify};

use crate::interface::{Interface, InterfaceError, Sent};
use crate::protocol::{Body, Message, Submission};
use crate::sync::lock;

#[derive(Default)]
struct State {
    queue: VecDeque<Submission>,
    taken: HashSet<String>,
    log: Vec<Message>,
    closed: bool,
}

/// Submissions pushed in, messages kept in order and broadcast to subscribers.
pub struct MemoryInterface {
    state: Mutex<State>,
    arrived: Notify,
    messages: broadcast::Sender<Message>,
}

impl Default for MemoryInterface {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryInterface {
    pub fn new() -> Self {
        MemoryInterface {
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            // Subscribers that fall this far behind miss messages (and are told so).
            messages: broadcast::channel(65536).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Queues a submission.
    pub fn push(&self, submission: Submission) {
        self.state().queue.push_back(submission);
        self.arrived.notify_waiters();
        self.arrived.notify_one();
    }

    /// Queues again a submission taken earlier (its worker is gone), ahead of the others: it
    /// may be claimed once more, and its next `executing` starts a new attempt in the log.
    pub fn requeue(&self, submission: Submission) {
        {
            let mut state = self.state();
            state.taken.remove(&submission.id);
            state.queue.push_front(submission);
        }
        self.arrived.notify_waiters();
        self.arrived.notify_one();
    }

    /// No more submissions will be pushed: `next` answers `None` once the queue is empty.
    pub fn close(&self) {
        self.state().closed = true;
        self.arrived.notify_waiters();
        self.arrived.notify_one();
    }

    /// Every message recorded so far, in order.
    pub fn messages(&self) -> Vec<Message> {
        self.state().log.clone()
    }

    /// The messages of one submission, in order.
    pub fn messages_of(&self, id: &str) -> Vec<Message> {
        self.state()
            .log
            .iter()
            .filter(|m| m.id == id)
            .cloned()
            .collect()
    }

    /// Messages recorded from now on, as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.messages.subscribe()
    }
}

#[async_trait]
impl Interface for MemoryInterface {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        loop {
            let arrived = self.arrived.notified();
            {
                let mut state = self.state();
                if let Some(s) = state.queue.pop_front() {
                    return Ok(Some(s));
                }
                if state.closed {
                    return Ok(None);
                }
            }
            arrived.await;
        }
    }

    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        let mut state = self.state();
        if message.body == Body::Executing && !state.taken.insert(message.id.clone()) {
            return Ok(Sent::NotTaken);
        }
        state.log.push(message.clone());
        // Sent under the lock so subscribers see messages in log order.
        let _ = self.messages.send(message.clone());
        Ok(Sent::Recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn submission(id: &str) -> Submission {
        Submission::sample(id)
    }

    #[tokio::test]
    async fn submissions_come_out_in_order_and_close_ends_the_stream() {
        let iface = MemoryInterface::new();
        iface.push(submission("a"));
        iface.push(submission("b"));
        iface.close();
        assert_eq!(iface.next().await.unwrap().unwrap().id, "a");
        assert_eq!(iface.next().await.unwrap().unwrap().id, "b");
        assert_eq!(iface.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn next_waits_for_a_push() {
        let iface = Arc::new(MemoryInterface::new());
        let waiter = tokio::spawn({
            let iface = iface.clone();
            async move { iface.next().await }
        });
        tokio::task::yield_now().await;
        iface.push(submission("late"));
        assert_eq!(waiter.await.unwrap().unwrap().unwrap().id, "late");
    }

    #[tokio::test]
    async fn executing_claims_once() {
        let iface = MemoryInterface::new();
        let exec = Message::new("a", Body::Executing);
        assert_eq!(iface.send(&exec).await.unwrap(), Sent::Recorded);
        assert_eq!(iface.send(&exec).await.unwrap(), Sent::NotTaken);
        let mut rx = iface.subscribe();
        let done = Message::new(
            "a",
            Body::Done {
                score: Some(1.0),
                failed_subtasks: None,
            },
        );
        iface.send(&done).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), done);
        assert_eq!(iface.messages_of("a"), vec![exec.clone(), done.clone()]);

        // Requeued, it is offered again, first, and may be claimed once more.
        iface.push(submission("b"));
        iface.requeue(submission("a"));
        assert_eq!(iface.next().await.unwrap().unwrap().id, "a");
        assert_eq!(iface.send(&exec).await.unwrap(), Sent::Recorded);
        assert_eq!(iface.messages_of("a"), vec![exec.clone(), done, exec]);
    }
}
