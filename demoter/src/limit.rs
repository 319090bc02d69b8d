//! Which limit a finished run hit, from what the kernel reported.

use crate::protocol::{Exit, LimitHit, Limits};

/// Memory is charged to a cgroup in batches of pages, so a run the OOM killer stopped may peak a
/// little under its limit.
pub const PEAK_SLACK_BYTES: u64 = 256 * 1024;

/// What was measured about a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub exit: Exit,
    pub cpu_ns: u64,
    pub wall_ms: u64,
    pub peak_bytes: u64,
    pub oom_kills: u64,
    /// The limit for which the demoter killed the run, if it did.
    pub killed_for: Option<LimitHit>,
    /// The program wrote more than `output_bytes` to stdout.
    pub output_exceeded: bool,
}

/// The limit that ended or was exceeded by the run; when several were, the first of memory,
/// time, wall, output.
pub fn decide(o: &Observed, limits: &Limits) -> Option<LimitHit> {
    let memory_bytes = limits.memory_kb.saturating_mul(1024);
    // Failcnt is no evidence (reclaiming page cache bumps it); an OOM kill is. A SIGKILL the
    // demoter did not send, at the memory limit, is the OOM killer too (kernels without the
    // oom_kill counter).
    let oom_signal = o.killed_for.is_none()
        && o.exit
            == Exit::Signaled {
                signal: libc::SIGKILL,
            }
        && o.peak_bytes.saturating_add(PEAK_SLACK_BYTES) >= memory_bytes;
    if o.oom_kills > 0 || oom_signal {
        Some(LimitHit::Memory)
    } else if o.killed_for == Some(LimitHit::Time)
        || o.cpu_ns > limits.cpu_ms.saturating_mul(1_000_000)
    {
        // Also when the program exited by itself: it used more CPU than it was allowed.
        Some(LimitHit::Time)
    } else if o.killed_for == Some(LimitHit::Wall) || o.wall_ms > limits.wall_ms {
        Some(LimitHit::Wall)
    } else if o.killed_for == Some(LimitHit::Output) || o.output_exceeded {
        Some(LimitHit::Output)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        cpu_ms: 1000,
        wall_ms: 3000,
        memory_kb: 65536,
        pids: 16,
        output_bytes: 1 << 20,
        stderr_bytes: 1 << 16,
        idle_ms: None,
    };

    fn ok() -> Observed {
        Observed {
            exit: Exit::Exited { code: 0 },
            cpu_ns: 10_000_000,
            wall_ms: 12,
            peak_bytes: 1 << 20,
            oom_kills: 0,
            killed_for: None,
            output_exceeded: false,
        }
    }

    const KILLED: Exit = Exit::Signaled {
        signal: libc::SIGKILL,
    };

    #[test]
    fn a_run_within_limits_hit_none() {
        assert_eq!(decide(&ok(), &LIMITS), None);
        let at_limits = Observed {
            cpu_ns: 1_000_000_000,
            wall_ms: 3000,
            peak_bytes: 64 << 20,
            ..ok()
        };
        // Reaching the memory limit without being killed is not exceeding it.
        assert_eq!(decide(&at_limits, &LIMITS), None);
    }

    #[test]
    fn oom_kill_is_memory_even_with_every_other_limit_hit() {
        let o = Observed {
            exit: KILLED,
            oom_kills: 1,
            cpu_ns: 5_000_000_000,
            wall_ms: 9000,
            killed_for: Some(LimitHit::Time),
            output_exceeded: true,
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), Some(LimitHit::Memory));
    }

    #[test]
    fn an_unexplained_sigkill_at_the_memory_limit_is_memory() {
        let o = Observed {
            exit: KILLED,
            peak_bytes: (64 << 20) - 8192,
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), Some(LimitHit::Memory));
        // Far below the limit, it is just a signal.
        let o = Observed {
            exit: KILLED,
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), None);
        // When the demoter killed the run for time, a high peak does not make it memory.
        let o = Observed {
            exit: KILLED,
            peak_bytes: 64 << 20,
            killed_for: Some(LimitHit::Time),
            cpu_ns: 1_000_000_000,
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), Some(LimitHit::Time));
    }

    #[test]
    fn time_comes_before_wall_and_output() {
        let o = Observed {
            cpu_ns: 1_000_000_001,
            wall_ms: 4000,
            killed_for: Some(LimitHit::Wall),
            output_exceeded: true,
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), Some(LimitHit::Time));
        // A program that exits by itself after using too much CPU still exceeded the limit.
        let o = Observed {
            cpu_ns: 1_200_000_000,
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), Some(LimitHit::Time));
        // Killed for time the moment usage reached the limit.
        let o = Observed {
            exit: KILLED,
            cpu_ns: 1_000_000_000,
            killed_for: Some(LimitHit::Time),
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), Some(LimitHit::Time));
    }

    #[test]
    fn wall_comes_before_output() {
        let o = Observed {
            exit: KILLED,
            wall_ms: 3001,
            killed_for: Some(LimitHit::Wall),
            output_exceeded: true,
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), Some(LimitHit::Wall));
        let o = Observed {
            exit: KILLED,
            killed_for: Some(LimitHit::Output),
            output_exceeded: true,
            ..ok()
        };
        assert_eq!(decide(&o, &LIMITS), Some(LimitHit::Output));
    }
}
