//! The score of a judged submission (SPEC §4).

use crate::problem::Problem;
use crate::verdict::Verdict;

/// Score and failed subtasks, as `done` carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// In [0, 1], rounded to 4 decimals.
    pub score: f64,
    /// Failed subtask numbers (1-based, ascending); `None` when the problem has no subtasks.
    pub failed_subtasks: Option<Vec<u32>>,
}

/// Rounds to 4 decimals, the precision of `done.score`.
pub fn round4(x: f64) -> f64 {
    // `+ 0.0` turns -0.0 into 0.0: a score is never negative, not even in its sign bit.
    (x * 10_000.0).round() / 10_000.0 + 0.0
}

/// Scores `verdicts` (one per test of `problem`, in test order).
pub fn score(problem: &Problem, verdicts: &[Verdict]) -> Score {
    debug_assert_eq!(verdicts.len(), problem.tests.len());
    let accepted = |v: &Verdict| *v == Verdict::Accepted;
    if problem.subtasks.is_empty() {
        let all = verdicts.len() == problem.tests.len() && verdicts.iter().all(accepted);
        return Score {
            score: if all { 1.0 } else { 0.0 },
            failed_subtasks: None,
        };
    }
    let mut failed = vec![false; problem.subtasks.len()];
    for (test, verdict) in problem.tests.iter().zip(verdicts) {
        if !accepted(verdict) {
            // Problem validation guarantees every test of a subtask problem names a valid subtask.
            if let Some(index) = test.subtask.and_then(|s| (s as usize).checked_sub(1)) {
                if let Some(f) = failed.get_mut(index) {
                    *f = true;
                }
            }
        }
    }
    // Tests not judged count as failed (never happens in a complete run).
    for test in problem.tests.iter().skip(verdicts.len()) {
        if let Some(index) = test.subtask.and_then(|s| (s as usize).checked_sub(1)) {
            if let Some(f) = failed.get_mut(index) {
                *f = true;
            }
        }
    }
    let total: f64 = problem
        .subtasks
        .iter()
        .zip(&failed)
        .filter(|(_, failed)| !**failed)
        .map(|(subtask, _)| subtask.score)
        .fold(0.0, |sum, score| sum + score);
    Score {
        score: round4(total).clamp(0.0, 1.0),
        failed_subtasks: Some(
            failed
                .iter()
                .enumerate()
                .filter(|(_, f)| **f)
                .map(|(i, _)| i as u32 + 1)
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{Checker, Data, Format, Scoring, Subtask, TestCase};
    use Verdict::*;

    fn problem(subtask_scores: &[f64], test_subtasks: &[Option<u32>]) -> Problem {
        Problem {
            id: "p".into(),
            name: "P".into(),
            format: Format::Staoj,
            dir: "p".into(),
            time_ms: 1000,
            memory_kb: 65536,
            output_limit_bytes: None,
            scoring: if subtask_scores.is_empty() { Scoring::PassFail } else { Scoring::Subtasks },
            checker: Checker::Default,
            io: Default::default(),
            validation: Default::default(),
            subtasks: subtask_scores
                .iter()
                .map(|&score| Subtask {
                    score,
                    constraints: String::new(),
                    aggregation: Default::default(),
                    requires: Vec::new(),
                })
                .collect(),
            tests: test_subtasks
                .iter()
                .map(|&subtask| TestCase {
                    name: String::new(),
                    input: Data::Inline("".into()),
                    answer: Data::Inline("".into()),
                    subtask,
                    weight: 1.0,
                    max_score: 1.0,
                    checker_args: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn without_subtasks_all_or_nothing() {
        let p = problem(&[], &[None, None, None]);
        let s = score(&p, &[Accepted, Accepted, Accepted]);
        assert_eq!(s.score, 1.0);
        assert_eq!(s.failed_subtasks, None);
        assert_eq!(score(&p, &[Accepted, Wrong, Accepted]).score, 0.0);
        assert_eq!(score(&p, &[TimeLimitExceeded, Error, Accepted]).score, 0.0);
    }

    #[test]
    fn subtasks_fail_on_any_non_accepted_test() {
        let p = problem(
            &[0.2, 0.3, 0.5],
            &[Some(1), Some(1), Some(2), Some(3), Some(3)],
        );
        let s = score(&p, &[Accepted, Accepted, Accepted, Accepted, Accepted]);
        assert_eq!((s.score, s.failed_subtasks), (1.0, Some(vec![])));
        let s = score(
            &p,
            &[Accepted, Wrong, Accepted, Accepted, MemoryLimitExceeded],
        );
        assert_eq!((s.score, s.failed_subtasks), (0.3, Some(vec![1, 3])));
        let s = score(&p, &[Error, Error, Error, Error, Error]);
        assert_eq!((s.score, s.failed_subtasks), (0.0, Some(vec![1, 2, 3])));
        // Serialised as 0.0, never -0.0 (an empty f64 sum is -0.0).
        assert!(s.score.is_sign_positive());
        assert_eq!(serde_json::to_string(&s.score).unwrap(), "0.0");
    }

    #[test]
    fn scores_are_rounded_to_four_decimals() {
        let third = 1.0 / 3.0;
        let p = problem(&[third, third, third], &[Some(1), Some(2), Some(3)]);
        let s = score(&p, &[Accepted, Accepted, Wrong]);
        assert_eq!(s.score, 0.6667);
        assert_eq!(s.failed_subtasks, Some(vec![3]));
        assert_eq!(round4(0.12346), 0.1235);
        assert_eq!(round4(0.1 + 0.2), 0.3);
    }
}
