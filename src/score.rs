//! The score of a judged submission (SPEC §4).

use crate::problem::{Aggregation, Problem, Scoring, TestCase};
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

/// What one test gave: its verdict and its fraction of the test's points (1 for `accepted`
/// unless the checker gave less, 0 for a failure). An accepted test with a fraction below 1 is
/// not full: its pass-fail group fails and its group does not get its whole share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Graded {
    pub verdict: Verdict,
    pub fraction: f64,
}

impl Graded {
    /// A test judged without a fraction from its checker.
    pub fn of(verdict: Verdict) -> Graded {
        Graded {
            verdict,
            fraction: if verdict == Verdict::Accepted {
                1.0
            } else {
                0.0
            },
        }
    }

    /// Accepted for all of the test's points.
    fn full(&self) -> bool {
        self.verdict == Verdict::Accepted && self.fraction >= 1.0
    }
}

/// A group's value in [0, 1]: how much of its share it earned.
fn aggregate<'a>(
    aggregation: Aggregation,
    tests: impl Iterator<Item = (&'a TestCase, &'a Graded)>,
) -> f64 {
    let (mut all, mut weight, mut earned, mut min) = (true, 0.0, 0.0, 1.0_f64);
    for (test, graded) in tests {
        all &= graded.full();
        weight += test.weight;
        earned += test.weight * graded.fraction;
        min = min.min(graded.fraction);
    }
    match aggregation {
        Aggregation::PassFail => f64::from(u8::from(all)),
        Aggregation::Sum if weight > 0.0 => earned / weight,
        Aggregation::Sum => f64::from(u8::from(all)),
        Aggregation::Min => min,
    }
}

/// Scores `graded` (one per test of `problem`, in test order; tests missing count as failed).
pub fn score(problem: &Problem, graded: &[Graded]) -> Score {
    debug_assert_eq!(graded.len(), problem.tests.len());
    let missing = Graded::of(Verdict::Error);
    let results: Vec<(&TestCase, &Graded)> = problem
        .tests
        .iter()
        .enumerate()
        .map(|(i, t)| (t, graded.get(i).unwrap_or(&missing)))
        .collect();
    // Each subtask's value, then zeroed where an earlier one it requires was not full.
    let mut values: Vec<f64> = (1..=problem.subtasks.len() as u32)
        .zip(&problem.subtasks)
        .map(|(number, subtask)| {
            let tests = results.iter().filter(|(t, _)| t.subtask == Some(number));
            aggregate(subtask.aggregation, tests.copied())
        })
        .collect();
    for (i, subtask) in problem.subtasks.iter().enumerate() {
        let unmet = subtask.requires.iter().any(|&r| {
            let r = r as usize;
            r >= 1 && r - 1 < i && values[r - 1] < 1.0
        });
        if unmet {
            values[i] = 0.0;
        }
    }
    let failed_subtasks = (!problem.subtasks.is_empty()).then(|| {
        (1..=values.len() as u32)
            .zip(&values)
            .filter(|(_, v)| **v < 1.0)
            .map(|(n, _)| n)
            .collect()
    });
    let total = match problem.scoring {
        Scoring::PassFail => f64::from(u8::from(results.iter().all(|(_, g)| g.full()))),
        Scoring::Subtasks => problem
            .subtasks
            .iter()
            .zip(&values)
            .map(|(subtask, value)| subtask.score * value)
            .fold(0.0, |sum, score| sum + score),
        Scoring::Tests(aggregation) => aggregate(
            aggregation,
            results.iter().filter(|(t, _)| t.weight > 0.0).copied(),
        ),
    };
    Score {
        score: round4(total).clamp(0.0, 1.0),
        failed_subtasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{Checker, Data, Format, Scoring, Subtask, TestCase};
    use Verdict::*;

    fn score(problem: &Problem, verdicts: &[Verdict]) -> Score {
        let graded: Vec<Graded> = verdicts.iter().copied().map(Graded::of).collect();
        super::score(problem, &graded)
    }

    fn problem(subtask_scores: &[f64], test_subtasks: &[Option<u32>]) -> Problem {
        Problem {
            id: "p".into(),
            name: "P".into(),
            format: Format::Staoj,
            dir: "p".into(),
            time_ms: 1000,
            memory_kb: 65536,
            output_limit_bytes: None,
            scoring: if subtask_scores.is_empty() {
                Scoring::PassFail
            } else {
                Scoring::Subtasks
            },
            checker: Checker::Default,
            io: Default::default(),
            validation: Default::default(),
            interaction: Default::default(),
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

    fn graded(verdict: Verdict, fraction: f64) -> Graded {
        Graded { verdict, fraction }
    }

    #[test]
    fn groups_aggregate_fractions_by_sum_min_and_pass_fail() {
        let mut p = problem(
            &[0.2, 0.3, 0.5],
            &[None, Some(1), Some(1), Some(2), Some(2), Some(3), Some(3)],
        );
        p.subtasks[1].aggregation = Aggregation::Sum;
        p.subtasks[2].aggregation = Aggregation::Min;
        // Polygon-style points: the second test of subtask 2 is worth three times the first.
        p.tests[4].weight = 3.0;
        let results = [
            Graded::of(Wrong), // a sample outside every subtask counts for nothing here
            Graded::of(Accepted),
            Graded::of(Accepted),
            Graded::of(Accepted),
            graded(Accepted, 0.5),
            graded(Accepted, 0.4),
            Graded::of(Accepted),
        ];
        let s = super::score(&p, &results);
        // 0.2 + 0.3 × (1 + 3 × 0.5) / 4 + 0.5 × 0.4
        assert_eq!(s.score, round4(0.2 + 0.3 * 2.5 / 4.0 + 0.5 * 0.4));
        assert_eq!(s.failed_subtasks, Some(vec![2, 3]));
    }

    #[test]
    fn a_subtask_scores_only_when_the_ones_it_requires_are_full() {
        let mut p = problem(&[0.4, 0.6], &[Some(1), Some(2), Some(2)]);
        p.subtasks[1].aggregation = Aggregation::Sum;
        p.subtasks[1].requires = vec![1];
        let s = super::score(
            &p,
            &[
                Graded::of(Wrong),
                Graded::of(Accepted),
                Graded::of(Accepted),
            ],
        );
        assert_eq!((s.score, s.failed_subtasks), (0.0, Some(vec![1, 2])));
        let s = super::score(
            &p,
            &[
                Graded::of(Accepted),
                Graded::of(Accepted),
                graded(Wrong, 0.5),
            ],
        );
        assert_eq!((s.score, s.failed_subtasks), (0.85, Some(vec![2])));
    }

    #[test]
    fn a_pass_fail_problem_with_groups_is_all_or_nothing_and_names_failed_groups() {
        let mut p = problem(&[0.5, 0.5], &[None, Some(1), Some(2)]);
        p.scoring = Scoring::PassFail;
        let s = super::score(
            &p,
            &[
                Graded::of(Accepted),
                Graded::of(Accepted),
                Graded::of(Wrong),
            ],
        );
        assert_eq!((s.score, s.failed_subtasks), (0.0, Some(vec![2])));
        // A failed sample fails the problem, though it belongs to no group.
        let s = super::score(
            &p,
            &[
                Graded::of(Wrong),
                Graded::of(Accepted),
                Graded::of(Accepted),
            ],
        );
        assert_eq!((s.score, s.failed_subtasks), (0.0, Some(vec![])));
        let s = super::score(&p, &[Graded::of(Accepted); 3]);
        assert_eq!((s.score, s.failed_subtasks), (1.0, Some(vec![])));
    }

    #[test]
    fn a_problem_scored_by_its_tests_ignores_weightless_samples() {
        let mut p = problem(&[], &[None, None, None]);
        p.tests[0].weight = 0.0;
        p.scoring = Scoring::Tests(Aggregation::Sum);
        let s = super::score(
            &p,
            &[Graded::of(Wrong), graded(Wrong, 0.25), Graded::of(Accepted)],
        );
        assert_eq!((s.score, s.failed_subtasks), (0.625, None));
        p.scoring = Scoring::Tests(Aggregation::Min);
        let s = super::score(
            &p,
            &[Graded::of(Wrong), graded(Wrong, 0.25), Graded::of(Accepted)],
        );
        assert_eq!(s.score, 0.25);
    }
}
