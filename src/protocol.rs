//! The message protocol between the executioner and an interface (SPEC §1–2): submissions in,
//! messages out, serialised to exactly the wire JSON of the spec.

use serde::{Deserialize, Serialize};

use crate::verdict::Verdict;

/// A submission to judge (SPEC §1). Other fields a store holds are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = SubmissionToJudge)]
pub struct Submission {
    pub id: String,
    pub problem: String,
    pub language: String,
    #[serde(rename = "sourceCode")]
    pub source_code: String,
    /// Further source files of a multi-file submission (SPEC section 1): plain names (no '/',
    /// no '..', not starting with '-' or '@', unique, not the language's own source name), at
    /// most 64; sourceCode and files together at most the source size limit
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 64)]
    pub files: Vec<SourceFile>,
    /// An ad-hoc run (`POST /v1.0/runs`, `executioner run`): the program runs once on the given
    /// input instead of the tests of `problem` (which is then empty). Absent for a submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub run: Option<Box<RunSpec>>,
}

/// What an ad-hoc run is given: its input, optionally the output it should write, its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    #[serde(default)]
    pub stdin: String,
    /// When given, the output is compared with it as a test's answer (the default checker:
    /// tokens, whitespace-insensitive) and the verdict says whether it matched; without it the
    /// verdict only says whether the program ran within its limits and exited 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<String>,
    /// CPU time limit, ms.
    pub time_limit_ms: u64,
    /// Memory limit, KB.
    pub memory_limit_kb: u64,
    /// Arguments the program is given after its language's run command, as they are (never
    /// through a shell). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Options added at the end of the language's compile command, as they are (never through
    /// a shell). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compile_args: Vec<String>,
    /// Wall-clock limit, ms; absent: the judge's multiple of the CPU limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_limit_ms: Option<u64>,
    /// The program's stderr goes to its stdout (`2>&1`, interleaved as written): the output
    /// compared and reported holds both; stderr is empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stderr_to_stdout: bool,
    /// Times the program is run on the input (Judge0's `number_of_runs`); absent: once. Each
    /// run is a test of its own; the report averages their time and memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_runs: Option<u32>,
}

/// Most times one ad-hoc run may be repeated (`RunSpec::number_of_runs`), as Judge0 allows.
pub const MAX_NUMBER_OF_RUNS: u32 = 20;

/// The id a run stands for in place of a problem: no problem has it (problem ids are
/// `[a-z0-9-]+`).
pub const RUN_PROBLEM: &str = "";

/// What one ad-hoc run wrote and how it ended, carried by its `tested` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunOutput {
    pub stdout: Captured,
    pub stderr: Captured,
    /// The exit status when the program exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did (the judge's own SIGKILL at a limit included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    /// Wall-clock time, ms.
    pub wall_time: u64,
    /// The limit that ended it: `time`, `wall`, `memory` or `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = limits)]
    pub limit: Option<String>,
}

/// `limit` in the OpenAPI document.
fn limits() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["time", "wall", "memory", "output"]))
        .build()
}

/// Bytes a program wrote, at most a cap of them: as text when they are UTF-8 without NUL (which
/// no store's text can hold), else base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Captured {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// Bytes written in all (more than kept when `truncated`).
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Captured {
    /// The first bytes of an output of `total` bytes.
    pub fn of(kept: Vec<u8>, total: u64) -> Captured {
        let truncated = total > kept.len() as u64;
        match String::from_utf8(kept) {
            Ok(text) if !text.contains('\0') => Captured {
                text: Some(text),
                base64: None,
                bytes: total,
                truncated,
            },
            Ok(text) => Captured {
                text: None,
                base64: Some(base64_encode(text.as_bytes())),
                bytes: total,
                truncated,
            },
            Err(e) => Captured {
                text: None,
                base64: Some(base64_encode(e.as_bytes())),
                bytes: total,
                truncated,
            },
        }
    }

    /// The bytes kept.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.text, &self.base64) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(encoded)) => base64_decode(encoded).unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }
}

/// Standard base64 with padding (Judge0's `base64_encoded`, outputs that are not UTF-8).
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard base64, line breaks ignored (as Judge0 clients wrap it); `None` when it is not.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let joined: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .ok()
}

/// One further source file of a submission: a plain file name (no directory) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceFile {
    pub name: String,
    pub content: String,
}

/// Most further files a submission may carry.
pub const MAX_FILES: usize = 64;

impl Submission {
    /// Bytes of all the submission's sources: `sourceCode` and every file's content.
    pub fn source_bytes(&self) -> usize {
        self.source_code.len() + self.files.iter().map(|f| f.content.len()).sum::<usize>()
    }

    /// Checks the further files against the language's own source name `main` ([`check_files`]).
    pub fn check_files(&self, main: &str) -> Result<(), String> {
        check_files(&self.files, main)
    }
}

/// Checks further files against the language's own source name `main`:
/// `Err(reason)` when one cannot be written into the build directory as given (a path, `.`,
/// `..`, a NUL, the main source's name, a duplicate) or there are too many.
pub fn check_files(files: &[SourceFile], main: &str) -> Result<(), String> {
    if files.len() > MAX_FILES {
        return Err(format!(
            "the submission has {} files, more than the limit of {MAX_FILES}",
            files.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for file in files {
        check_file_name(&file.name)?;
        if file.name == main {
            return Err(format!(
                "file name {:?} is the language's own source file name",
                file.name
            ));
        }
        if !seen.insert(file.name.as_str()) {
            return Err(format!("file name {:?} appears twice", file.name));
        }
    }
    Ok(())
}

/// `Err(reason)` unless `name` is a plain file name: non-empty, at most 255 bytes, no `/`, `\\`
/// or NUL, not `.` and no `..` in it, not starting with `-` or `@` (a compiler's option or
/// argument file).
pub fn check_file_name(name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(64).collect();
    let bad = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 255 {
        Some("is longer than 255 bytes")
    } else if name.contains('/') || name.contains('\\') {
        Some("holds a path separator")
    } else if name.contains('\0') {
        Some("holds a NUL byte")
    } else if name == "." || name.contains("..") {
        Some("is or holds \"..\" or is \".\"")
    } else if name.starts_with('-') || name.starts_with('@') {
        // A compiler would read it as an option or an argument file.
        Some("starts with '-' or '@'")
    } else {
        None
    };
    match bad {
        Some(why) => Err(format!("file name {shown:?} {why}")),
        None => Ok(()),
    }
}

/// One message about one submission: its id and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    #[serde(flatten)]
    pub body: Body,
}

/// A message's schema, written here: its fields are those of its state ([`Body`], a flattened
/// enum tagged by `state`), each described with the states that carry it.
impl utoipa::PartialSchema for Message {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Type};
        let of = |kind: Type, description: &str| {
            let schema = ObjectBuilder::new().schema_type(kind);
            if description.is_empty() {
                schema
            } else {
                schema.description(Some(description))
            }
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A judge message (SPEC section 2)"))
            .required("id")
            .required("state")
            .property("id", of(Type::String, ""))
            .property(
                "state",
                of(Type::String, "").enum_values(Some([
                    "executing", "invalid", "compiling", "compiled", "testing", "tested", "done",
                    "error",
                ])),
            )
            .property("testCase", of(Type::Integer, "testing / tested: the 1-based test number"))
            .property("subtask", of(Type::Integer, "testing / tested: the 1-based subtask (group), only in problems with subtasks"))
            .property("result", of(Type::String, "compiled: success or error; tested: accepted, wrong, MLE, TLE or error"))
            .property("time", of(Type::Integer, "tested: CPU time used, ms"))
            .property("memory", of(Type::Integer, "tested: peak memory, KB"))
            .property(
                "score",
                of(Type::Number, "tested: the fraction of the test's points (4 decimals), only when the problem's checker gave one (an ICPC validator's score.txt or score_multiplier.txt, a testlib checker's points); accepted with a score below 1 is a partly correct test. done: the submission's score in [0, 1]")
                    .minimum(Some(0))
                    .maximum(Some(1)),
            )
            .property(
                "failedSubtasks",
                ArrayBuilder::new()
                    .items(of(Type::Integer, ""))
                    .description(Some("done: the subtasks (groups) that did not get their full share, only in problems with subtasks")),
            )
            .property("compileOutput", of(Type::String, "compiled: what the compiler said (truncated)"))
            .property("reason", of(Type::String, "invalid / error: why"))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for Message {
    fn name() -> std::borrow::Cow<'static, str> {
        // `Message` is the recorded message the API answers (with its `judgeTime`).
        "JudgeMessage".into()
    }
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
        /// An ad-hoc run's output and exit; absent for a problem's test.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<RunOutput>>,
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
            files: Vec::new(),
            run: None,
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

    fn named(names: &[&str]) -> Vec<SourceFile> {
        names
            .iter()
            .map(|n| SourceFile {
                name: (*n).into(),
                content: "x".into(),
            })
            .collect()
    }

    #[test]
    fn files_are_optional_on_the_wire_and_carried_when_present() {
        let plain = Submission::sample("a");
        let value = serde_json::to_value(&plain).unwrap();
        assert!(value.get("files").is_none(), "{value}");
        let line = r#"{"id":"a","problem":"p","language":"c","sourceCode":"x","files":[{"name":"b.c","content":"y"}]}"#;
        let read: Submission = serde_json::from_str(line).unwrap();
        assert_eq!(
            read.files,
            named(&["b.c"])
                .into_iter()
                .map(|f| SourceFile {
                    content: "y".into(),
                    ..f
                })
                .collect::<Vec<_>>()
        );
        assert_eq!(serde_json::to_string(&read).unwrap(), line);
        assert_eq!(read.source_bytes(), 2);
    }

    #[test]
    fn file_names_are_plain_unique_and_bounded() {
        assert!(check_files(&named(&["a.c", "b.h", ".hidden", "x-y_z.cpp"]), "main.c").is_ok());
        for bad in [
            "", "../x", "a/b", "..", ".", "a..b", "a\\b", "a\0b", "-o", "@args", "main.c",
        ] {
            let reason = check_files(&named(&[bad]), "main.c").unwrap_err();
            assert!(reason.contains("file name"), "{bad:?}: {reason}");
        }
        assert!(check_files(&named(&["a.c", "a.c"]), "main.c")
            .unwrap_err()
            .contains("twice"));
        let many: Vec<String> = (0..=MAX_FILES).map(|i| format!("f{i}.c")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(check_files(&named(&many), "main.c")
            .unwrap_err()
            .contains("more than the limit of 64"));
        assert!(check_files(&named(&many[..MAX_FILES]), "main.c").is_ok());
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
                output: None,
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
                output: None,
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
                output: None,
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
