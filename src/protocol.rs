//! The message protocol between the executioner and an interface (SPEC §1–2): submissions in,
//! messages out, serialised to exactly the wire JSON of the spec.

use serde::{Deserialize, Serialize};

use crate::verdict::Verdict;

/// A submission to judge (SPEC §1). Other fields a store holds are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub id: String,
    pub problem: String,
    pub language: String,
    #[serde(rename = "sourceCode")]
    pub source_code: String,
}

/// One message about one submission: its id and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    #[serde(flatten)]
    pub body: Body,
}

impl Message {
    pub fn new(id: impl Into<String>, body: Body) -> Self {
        Message {
            id: id.into(),
            body,
        }
    }
}

/// The state of a message and its state-specific fields (SPEC §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Body {
    /// The claim: always first.
    Executing,
    /// The submission's own data cannot be judged. Terminal.
    Invalid {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Compiling,
    Compiled {
        result: CompileResult,
        #[serde(
            rename = "compileOutput",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        compile_output: Option<String>,
    },
    Testing {
        #[serde(rename = "testCase")]
        test_case: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subtask: Option<u32>,
    },
    Tested {
        #[serde(rename = "testCase")]
        test_case: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subtask: Option<u32>,
        result: Verdict,
        /// CPU time used, ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time: Option<u64>,
        /// Peak memory, KB.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory: Option<u64>,
        /// The fraction of the test's points in [0, 1] (4 decimals), only when the problem's
        /// checker gave one (SPEC §2, partial `tested`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
    },
    /// Normal end. After a compile error it carries neither field.
    Done {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
        #[serde(
            rename = "failedSubtasks",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        failed_subtasks: Option<Vec<u32>>,
    },
    /// The executioner or its infrastructure failed. Terminal; may be retried.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Body {
    /// True for the messages that end a submission's sequence.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Body::Invalid { .. } | Body::Done { .. } | Body::Error { .. }
        )
    }

    /// The wire name of the state.
    pub fn state(&self) -> &'static str {
        match self {
            Body::Executing => "executing",
            Body::Invalid { .. } => "invalid",
            Body::Compiling => "compiling",
            Body::Compiled { .. } => "compiled",
            Body::Testing { .. } => "testing",
            Body::Tested { .. } => "tested",
            Body::Done { .. } => "done",
            Body::Error { .. } => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CompileResult {
    Success,
    Error,
}

#[cfg(test)]
impl Submission {
    /// A C submission `id` of problem `p`, for tests that never judge it.
    pub(crate) fn sample(id: &str) -> Submission {
        Submission {
            id: id.into(),
            problem: "p".into(),
            language: "c".into(),
            source_code: "x".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(body: Body) -> serde_json::Value {
        serde_json::to_value(Message::new("s1", body)).unwrap()
    }

    #[test]
    fn messages_serialise_to_the_spec_wire_format() {
        assert_eq!(
            wire(Body::Executing),
            json!({"id": "s1", "state": "executing"})
        );
        assert_eq!(
            wire(Body::Invalid { reason: None }),
            json!({"id": "s1", "state": "invalid"})
        );
        assert_eq!(
            wire(Body::Compiled {
                result: CompileResult::Error,
                compile_output: Some("oops".into())
            }),
            json!({"id": "s1", "state": "compiled", "result": "error", "compileOutput": "oops"})
        );
        assert_eq!(
            wire(Body::Testing {
                test_case: 2,
                subtask: Some(1)
            }),
            json!({"id": "s1", "state": "testing", "testCase": 2, "subtask": 1})
        );
        assert_eq!(
            wire(Body::Tested {
                test_case: 3,
                subtask: None,
                result: Verdict::MemoryLimitExceeded,
                time: Some(12),
                memory: Some(2048),
                score: None,
            }),
            json!({"id": "s1", "state": "tested", "testCase": 3, "result": "MLE", "time": 12, "memory": 2048})
        );
        // A checker's fraction: the optional `score` of a partial `tested`.
        assert_eq!(
            wire(Body::Tested {
                test_case: 4,
                subtask: Some(2),
                result: Verdict::Wrong,
                time: Some(3),
                memory: Some(1024),
                score: Some(0.25),
            }),
            json!({"id": "s1", "state": "tested", "testCase": 4, "subtask": 2, "result": "wrong", "time": 3, "memory": 1024, "score": 0.25})
        );
        assert_eq!(
            wire(Body::Done {
                score: Some(0.5),
                failed_subtasks: Some(vec![])
            }),
            json!({"id": "s1", "state": "done", "score": 0.5, "failedSubtasks": []})
        );
        assert_eq!(
            wire(Body::Done {
                score: None,
                failed_subtasks: None
            }),
            json!({"id": "s1", "state": "done"})
        );
    }

    #[test]
    fn messages_round_trip() {
        let m = Message::new(
            "x",
            Body::Tested {
                test_case: 1,
                subtask: Some(2),
                result: Verdict::TimeLimitExceeded,
                time: Some(1001),
                memory: None,
                score: None,
            },
        );
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), m);
    }

    #[test]
    fn submissions_ignore_extra_fields() {
        let s: Submission = serde_json::from_value(json!({
            "id": "a", "problem": "p", "language": "c", "sourceCode": "int main(){}",
            "user": "u", "submissionTime": 5
        }))
        .unwrap();
        assert_eq!(s.source_code, "int main(){}");
    }
}
