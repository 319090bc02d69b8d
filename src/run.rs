//! Ad-hoc runs: a program run once on an input the caller gives (`POST /v1.0/runs`,
//! `executioner run`), the contestant's "run on my own input". A run is a [`Submission`] with
//! [`Submission::run`] set: it is queued, taken and judged by the same workers and stores as any
//! submission, as a one-test problem ([`crate::problem::Problem::ad_hoc`]), and its `tested`
//! message carries what the program wrote ([`RunOutput`]). [`RunReport`] reads a run's result
//! back from its messages.

use serde::Serialize;

#[cfg(doc)]
use crate::protocol::Submission;
use crate::protocol::{Body, CompileResult, Message, RunOutput};
use crate::verdict::Verdict;

/// What a run did, as its messages tell it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The test's verdict: `accepted` (ran within its limits, exited 0 and, when an expected
    /// output was given, wrote it), `wrong`, `TLE`, `MLE` or `error` (a runtime error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// It did not compile; `compileOutput` says why.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compile_error: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_output: Option<String>,
    /// CPU time, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// Peak memory, KB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Output, exit and wall time.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub output: Option<RunOutput>,
    /// How the sequence ended: `done`, `error` (the judge failed) or `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = ends)]
    pub end: Option<&'static str>,
    /// Why it ended in `error` or `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `end` in the OpenAPI document.
fn ends() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["done", "error", "invalid"]))
        .build()
}

impl RunReport {
    /// The report of a run's messages so far (in order).
    ///
    /// A run repeated (`number_of_runs`) has one `tested` per repetition: the verdict and the
    /// output are those of the first that was not accepted (else the last), time and memory
    /// the average over the repetitions (as Judge0 reports them).
    pub fn of<'a>(messages: impl IntoIterator<Item = &'a Message>) -> RunReport {
        let mut report = RunReport::default();
        let (mut runs, mut time_sum, mut memory_sum) = (0u64, 0u64, 0u64);
        for message in messages {
            match &message.body {
                Body::Compiled {
                    result,
                    compile_output,
                } => {
                    report.compile_error = *result == CompileResult::Error;
                    report.compile_output = compile_output.clone();
                }
                Body::Tested {
                    result,
                    time,
                    memory,
                    output,
                    ..
                } => {
                    runs += 1;
                    time_sum += time.unwrap_or(0);
                    memory_sum += memory.unwrap_or(0);
                    // Kept from the first repetition that failed.
                    if report.verdict.is_none_or(|v| v == Verdict::Accepted) {
                        report.verdict = Some(*result);
                        report.output = output.as_deref().cloned();
                    }
                    report.time = Some((time_sum as f64 / runs as f64).round() as u64);
                    report.memory = Some((memory_sum as f64 / runs as f64).round() as u64);
                }
                Body::Error { reason } | Body::Invalid { reason } => {
                    report.end = Some(message.body.state());
                    report.reason = reason.clone();
                }
                Body::Done { .. } => report.end = Some("done"),
                Body::Executing | Body::Compiling | Body::Testing { .. } => {}
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Captured;

    #[test]
    fn a_report_gathers_the_compile_the_test_and_the_end() {
        let output = RunOutput {
            stdout: Captured::of(b"3\n".to_vec(), 2),
            stderr: Captured::of(vec![0xff, 0x00], 2),
            exit_code: Some(0),
            exit_signal: None,
            wall_time: 7,
            limit: None,
        };
        let messages = [
            Body::Executing,
            Body::Compiling,
            Body::Compiled {
                result: CompileResult::Success,
                compile_output: None,
            },
            Body::Testing {
                test_case: 1,
                subtask: None,
            },
            Body::Tested {
                test_case: 1,
                subtask: None,
                result: Verdict::Accepted,
                time: Some(3),
                memory: Some(1024),
                score: None,
                output: Some(Box::new(output.clone())),
            },
            Body::Done {
                score: Some(1.0),
                failed_subtasks: None,
            },
        ]
        .map(|body| Message::new("r", body));
        let report = RunReport::of(&messages);
        assert_eq!(report.verdict, Some(Verdict::Accepted));
        assert_eq!(report.end, Some("done"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["stdout"]["text"], "3\n");
        assert_eq!(json["stderr"]["base64"], "/wA=");
        assert_eq!(json["exitCode"], 0);
        assert_eq!(json["wallTime"], 7);
        assert_eq!(json["time"], 3);
        assert!(json.get("compileError").is_none(), "{json}");
    }

    #[test]
    fn text_with_nul_or_not_utf8_is_kept_as_base64_and_reads_back() {
        for bytes in [b"a\0b".to_vec(), vec![0xc3, 0x28], b"plain".to_vec()] {
            let captured = Captured::of(bytes.clone(), 10);
            assert_eq!(captured.bytes(), bytes);
            assert!(captured.truncated);
            assert_eq!(captured.text.is_some(), bytes == b"plain");
        }
    }
}
