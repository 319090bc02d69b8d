//! Building a workflow: its steps and the pre-conditions that order them.
//!
//! A pre-condition says "step `on` is in one of these states"; a step runs once all of its
//! pre-conditions hold. The usual graphs are shorthands: `success_pairs` (b runs if a
//! succeeded or was skipped), `failure_pairs` (b runs if a failed), `completion_pairs` (b runs
//! once a has finished, however). Several successors of one step fork; a step with several
//! predecessors joins.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::step::StepSpec;
use super::Workflow;
use crate::store::workflow::state::StepState;
use crate::store::WorkflowStore;

/// "Step `on` is in one of `states`", by step index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Precondition {
    pub on: usize,
    pub states: Vec<StepState>,
}

/// What a successor of a successful step needs: a skipped step counts as done.
pub const SUCCEEDED: &[StepState] = &[StepState::Succeeded, StepState::Skipped];
pub const FAILED: &[StepState] = &[StepState::Failed];
/// Finished in any way.
pub const FINISHED: &[StepState] = &[StepState::Succeeded, StepState::Failed, StepState::Skipped];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("workflow {workflow}: two steps are named {step:?}")]
    DuplicateStep { workflow: String, step: String },
    #[error("workflow {workflow}: a pre-condition of {step:?} names the unknown step {unknown:?}")]
    UnknownStep {
        workflow: String,
        step: String,
        unknown: String,
    },
    #[error("workflow {workflow}: the pre-conditions form a cycle through {steps:?}, so none of them could ever run")]
    Cycle {
        workflow: String,
        steps: Vec<String>,
    },
}

/// Collects steps and pre-conditions; [`WorkflowBuilder::build`] checks them.
pub struct WorkflowBuilder {
    name: String,
    steps: Vec<StepSpec>,
    /// (step, on, states) by name, resolved in `build`.
    requires: Vec<(String, String, Vec<StepState>)>,
    max_running: usize,
    store: Option<Arc<dyn WorkflowStore>>,
}

impl WorkflowBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        WorkflowBuilder {
            name: name.into(),
            steps: Vec::new(),
            requires: Vec::new(),
            max_running: usize::MAX,
            store: None,
        }
    }

    pub fn step(mut self, spec: StepSpec) -> Self {
        self.steps.push(spec);
        self
    }

    /// `step` runs only while `on` is in one of `states`.
    pub fn require(mut self, step: &str, on: &str, states: &[StepState]) -> Self {
        self.requires
            .push((step.to_owned(), on.to_owned(), states.to_vec()));
        self
    }

    /// For each `(a, b)`: b runs if a succeeded (or was skipped).
    pub fn success_pairs(self, pairs: &[(&str, &str)]) -> Self {
        self.pairs(pairs, SUCCEEDED)
    }

    /// For each `(a, b)`: b runs if a failed.
    pub fn failure_pairs(self, pairs: &[(&str, &str)]) -> Self {
        self.pairs(pairs, FAILED)
    }

    /// For each `(a, b)`: b runs once a has finished, whatever the outcome.
    pub fn completion_pairs(self, pairs: &[(&str, &str)]) -> Self {
        self.pairs(pairs, FINISHED)
    }

    fn pairs(self, pairs: &[(&str, &str)], states: &[StepState]) -> Self {
        pairs
            .iter()
            .fold(self, |b, (on, step)| b.require(step, on, states))
    }

    /// At most `n` steps run at once (default: no limit).
    pub fn max_running(mut self, n: usize) -> Self {
        self.max_running = n.max(1);
        self
    }

    /// Every change of state is saved to `store`.
    pub fn store(mut self, store: Arc<dyn WorkflowStore>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn build(self) -> Result<Workflow, BuildError> {
        let mut index = HashMap::new();
        for (i, spec) in self.steps.iter().enumerate() {
            if index.insert(spec.id.clone(), i).is_some() {
                return Err(BuildError::DuplicateStep {
                    workflow: self.name,
                    step: spec.id.clone(),
                });
            }
        }
        let mut guards = vec![Vec::new(); self.steps.len()];
        for (step, on, states) in self.requires {
            let resolve = |name: &str| {
                index
                    .get(name)
                    .copied()
                    .ok_or_else(|| BuildError::UnknownStep {
                        workflow: self.name.clone(),
                        step: step.clone(),
                        unknown: name.to_owned(),
                    })
            };
            let (s, on) = (resolve(&step)?, resolve(&on)?);
            guards[s].push(Precondition { on, states });
        }
        let order = topological_order(&guards).map_err(|cycle| BuildError::Cycle {
            workflow: self.name.clone(),
            steps: cycle
                .into_iter()
                .map(|i| self.steps[i].id.clone())
                .collect(),
        })?;
        Ok(Workflow::new(
            self.name,
            self.steps,
            guards,
            order,
            index,
            self.max_running,
            self.store,
        ))
    }
}

/// Step indices, each after every step it has a pre-condition on; among steps free at the
/// same time, in the order they were added. `Err` holds the steps caught in a cycle.
fn topological_order(guards: &[Vec<Precondition>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut waiting_on: Vec<BTreeSet<usize>> = guards
        .iter()
        .map(|g| g.iter().map(|p| p.on).collect())
        .collect();
    let mut order = Vec::with_capacity(guards.len());
    let mut free: BTreeSet<usize> = (0..guards.len())
        .filter(|&i| waiting_on[i].is_empty())
        .collect();
    while let Some(next) = free.pop_first() {
        order.push(next);
        for (i, on) in waiting_on.iter_mut().enumerate() {
            if on.remove(&next) && on.is_empty() {
                free.insert(i);
            }
        }
    }
    if order.len() == guards.len() {
        Ok(order)
    } else {
        Err((0..guards.len()).filter(|i| !order.contains(i)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::engine::step::step_fn;

    fn spec(id: &str) -> StepSpec {
        StepSpec::new(id, step_fn(|_| async { Ok(serde_json::Value::Null) }))
    }

    #[test]
    fn duplicate_unknown_and_cyclic_steps_are_refused() {
        let dup = WorkflowBuilder::new("w").step(spec("a")).step(spec("a"));
        assert!(matches!(dup.build(), Err(BuildError::DuplicateStep { step, .. }) if step == "a"));

        let unknown = WorkflowBuilder::new("w")
            .step(spec("a"))
            .success_pairs(&[("a", "nope")]);
        assert!(
            matches!(unknown.build(), Err(BuildError::UnknownStep { unknown, .. }) if unknown == "nope")
        );

        let cycle = WorkflowBuilder::new("w")
            .step(spec("a"))
            .step(spec("b"))
            .step(spec("c"))
            .step(spec("d"))
            .success_pairs(&[("a", "b"), ("b", "c"), ("c", "b"), ("a", "d")]);
        match cycle.build() {
            Err(BuildError::Cycle { steps, .. }) => assert_eq!(steps, ["b", "c"]),
            other => panic!("expected a cycle, got {:?}", other.err()),
        }
    }

    #[test]
    fn order_puts_every_step_after_its_predecessors_and_keeps_insertion_order_otherwise() {
        let p = |on| Precondition {
            on,
            states: SUCCEEDED.to_vec(),
        };
        // 0: join of 2 and 3; 1: free; 2 after 1; 3 after 1.
        let guards = vec![vec![p(2), p(3)], vec![], vec![p(1)], vec![p(1)]];
        assert_eq!(topological_order(&guards), Ok(vec![1, 2, 3, 0]));
    }
}
