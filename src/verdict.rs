//! The verdict of one test (SPEC §3) and token comparison of outputs.

use demoter::protocol::{Exit, LimitHit, RunResult};
use serde::{Deserialize, Serialize};

/// The result of one test, with the exact wire names of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Verdict {
    #[serde(rename = "accepted")]
    Accepted,
    #[serde(rename = "wrong")]
    Wrong,
    #[serde(rename = "MLE")]
    MemoryLimitExceeded,
    #[serde(rename = "TLE")]
    TimeLimitExceeded,
    #[serde(rename = "error")]
    Error,
}

impl Verdict {
    /// The verdict of a run, in the order of SPEC §3. `output_matches` is only asked when the
    /// program exited normally, so the output is not read for a crashed program.
    ///
    /// `oom_exit_code` is the language's exit status for "the runtime's heap cap was exceeded"
    /// (see `Language::oom_exit_code`): a run that ends with it exceeded the memory limit, as
    /// much as one the kernel killed at the cgroup limit.
    pub fn of_run(
        run: &RunResult,
        oom_exit_code: Option<i32>,
        output_matches: impl FnOnce() -> bool,
    ) -> Verdict {
        if run.exited_normally() {
            return if output_matches() {
                Verdict::Accepted
            } else {
                Verdict::Wrong
            };
        }
        let runtime_oom = matches!(
            (run.exit, oom_exit_code),
            (Exit::Exited { code }, Some(oom)) if code == oom
        );
        match run.limit {
            Some(LimitHit::Memory) => Verdict::MemoryLimitExceeded,
            _ if runtime_oom => Verdict::MemoryLimitExceeded,
            Some(LimitHit::Time | LimitHit::Wall) => Verdict::TimeLimitExceeded,
            Some(LimitHit::Output) | None => Verdict::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Wrong => "wrong",
            Verdict::MemoryLimitExceeded => "MLE",
            Verdict::TimeLimitExceeded => "TLE",
            Verdict::Error => "error",
        }
    }
}

/// White space as SPEC §3 means it: space, tab, newline, carriage return, vertical tab, form feed.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn tokens(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| is_space(b)).filter(|t| !t.is_empty())
}

/// Token equality: both texts split on runs of white space and compared token by token. Works
/// on bytes, so output that is not UTF-8 is compared (and usually found wrong), never an error.
pub fn tokens_equal(expected: &[u8], actual: &[u8]) -> bool {
    tokens(expected).eq(tokens(actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(exit: Exit, limit: Option<LimitHit>) -> RunResult {
        RunResult {
            exit,
            cpu_ms: 1,
            wall_ms: 1,
            memory_kb: 1,
            limit,
            stdout_bytes: 0,
            ended_ns: None,
        }
    }

    #[test]
    fn token_equality_ignores_white_space_layout() {
        assert!(tokens_equal(b"1 2\n3\n", b"  1\t2 3"));
        assert!(tokens_equal(b"", b"\n\n  \r\n"));
        assert!(tokens_equal(b"a\x0bb\x0cc", b"a b c"));
        assert!(!tokens_equal(b"1 2", b"12"));
        assert!(!tokens_equal(b"1 2", b"1 2 3"));
        assert!(!tokens_equal(b"1 2 3", b"1 2"));
        assert!(!tokens_equal(b"abc", b"ABC"));
        assert!(!tokens_equal(b"3", b"\xff\xfe"));
        assert!(tokens_equal(b"\xff", b"\xff\n"));
    }

    #[test]
    fn verdicts_follow_the_spec_order() {
        let ok = run(Exit::Exited { code: 0 }, None);
        assert_eq!(Verdict::of_run(&ok, None, || true), Verdict::Accepted);
        assert_eq!(Verdict::of_run(&ok, None, || false), Verdict::Wrong);

        let killed = Exit::Signaled { signal: 9 };
        let never = || -> bool { panic!("output read for a failed run") };
        assert_eq!(
            Verdict::of_run(&run(killed, Some(LimitHit::Memory)), None, never),
            Verdict::MemoryLimitExceeded
        );
        assert_eq!(
            Verdict::of_run(&run(killed, Some(LimitHit::Time)), None, never),
            Verdict::TimeLimitExceeded
        );
        assert_eq!(
            Verdict::of_run(&run(killed, Some(LimitHit::Wall)), None, never),
            Verdict::TimeLimitExceeded
        );
        assert_eq!(
            Verdict::of_run(&run(killed, Some(LimitHit::Output)), None, never),
            Verdict::Error
        );
        assert_eq!(
            Verdict::of_run(&run(Exit::Exited { code: 1 }, None), None, never),
            Verdict::Error
        );
        assert_eq!(
            Verdict::of_run(&run(Exit::Signaled { signal: 11 }, None), None, never),
            Verdict::Error
        );
        // Exit 0 but over the CPU limit is not a normal exit: TLE, not accepted.
        assert_eq!(
            Verdict::of_run(
                &run(Exit::Exited { code: 0 }, Some(LimitHit::Time)),
                None,
                never
            ),
            Verdict::TimeLimitExceeded
        );
    }

    #[test]
    fn a_runtime_heap_overflow_exit_status_is_mle() {
        let never = || -> bool { panic!("output read for a failed run") };
        // The JVM with -XX:+ExitOnOutOfMemoryError: exit 3 when its heap cap is exceeded.
        let jvm_oom = run(Exit::Exited { code: 3 }, None);
        assert_eq!(
            Verdict::of_run(&jvm_oom, Some(3), never),
            Verdict::MemoryLimitExceeded
        );
        // Only for the language that declares it; other statuses stay errors.
        assert_eq!(Verdict::of_run(&jvm_oom, None, never), Verdict::Error);
        assert_eq!(
            Verdict::of_run(&run(Exit::Exited { code: 1 }, None), Some(3), never),
            Verdict::Error
        );
        assert_eq!(
            Verdict::of_run(&run(Exit::Signaled { signal: 3 }, None), Some(3), never),
            Verdict::Error
        );
        // Memory comes before time (SPEC §3): exit 3 after going over the CPU limit is MLE.
        assert_eq!(
            Verdict::of_run(
                &run(Exit::Exited { code: 3 }, Some(LimitHit::Time)),
                Some(3),
                never
            ),
            Verdict::MemoryLimitExceeded
        );
        // A kill for time is not an exit status: still TLE.
        assert_eq!(
            Verdict::of_run(
                &run(Exit::Signaled { signal: 9 }, Some(LimitHit::Time)),
                Some(3),
                never
            ),
            Verdict::TimeLimitExceeded
        );
        // A normal exit is judged on its output whatever the rule says.
        let ok = run(Exit::Exited { code: 0 }, None);
        assert_eq!(Verdict::of_run(&ok, Some(3), || true), Verdict::Accepted);
    }

    #[test]
    fn verdicts_use_the_wire_names() {
        for v in [
            Verdict::Accepted,
            Verdict::Wrong,
            Verdict::MemoryLimitExceeded,
            Verdict::TimeLimitExceeded,
            Verdict::Error,
        ] {
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::Value::String(v.as_str().into())
            );
        }
    }
}
