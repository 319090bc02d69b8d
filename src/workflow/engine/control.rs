//! The vocabulary of the control API: selecting steps by tags, and what a call did.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::end::BlockReason;
use crate::store::workflow::state::{Action, StepState};

/// Steps that carry every one of these `key=value` tags. The key `id` also matches the step's
/// id. No tags selects every step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a tag: tags are key=value")]
pub struct NotATag(pub String);

impl Selector {
    pub fn all() -> Self {
        Selector::default()
    }

    /// The step with this id.
    pub fn id(id: impl Into<String>) -> Self {
        Selector::all().and("id", id)
    }

    pub fn tag(key: impl Into<String>, value: impl Into<String>) -> Self {
        Selector::all().and(key, value)
    }

    pub fn and(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// From `key=value` arguments.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, NotATag> {
        args.iter().try_fold(Selector::all(), |selector, arg| {
            let arg = arg.as_ref();
            match arg.split_once('=') {
                Some((key, value)) if !key.is_empty() => Ok(selector.and(key, value)),
                _ => Err(NotATag(arg.to_owned())),
            }
        })
    }

    pub fn matches(&self, id: &str, tags: &BTreeMap<String, String>) -> bool {
        self.tags
            .iter()
            .all(|(key, value)| tags.get(key) == Some(value) || (key == "id" && value == id))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tags.is_empty() {
            return f.write_str("(all steps)");
        }
        let tags: Vec<_> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&tags.join(" "))
    }
}

/// A step a control call moved (or, on a dry run, would have moved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub step: String,
    pub from: StepState,
    pub to: StepState,
}

/// A selected step the call could not apply to, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub step: String,
    pub state: StepState,
    pub reason: String,
}

/// What a control call did to the steps it selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlReport {
    pub action: Action,
    /// Nothing was changed; `applied` says what would have been.
    pub dry_run: bool,
    pub applied: Vec<Applied>,
    pub refused: Vec<Refusal>,
}

impl ControlReport {
    /// Ids of the steps the call applied to.
    pub fn steps(&self) -> Vec<&str> {
        self.applied.iter().map(|a| a.step.as_str()).collect()
    }
}

/// To which selected steps a message went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageReport {
    pub dry_run: bool,
    pub delivered: Vec<String>,
    pub refused: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("workflow {workflow} is shut down: it takes no more control calls")]
    ShutDown { workflow: String },
}

/// A step as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepInfo {
    pub id: String,
    pub tags: BTreeMap<String, String>,
}

/// A step as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepStatus {
    pub id: String,
    pub tags: BTreeMap<String, String>,
    pub state: StepState,
    /// Attempts started since the step was added or last rerun.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last progress the running step reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    /// What the step asks for, while it waits for user input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for_input: Option<String>,
    /// Why the step cannot move now, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<BlockReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status field {field:?}; the fields are {known}")]
pub struct UnknownField {
    pub field: String,
    pub known: String,
}

impl StepStatus {
    pub const FIELDS: [&'static str; 9] = [
        "id",
        "tags",
        "state",
        "attempts",
        "result",
        "error",
        "progress",
        "waiting_for_input",
        "blocked",
    ];

    /// Only the named fields (absent optional fields are left out).
    pub fn project(&self, fields: &[&str]) -> Result<Map<String, Value>, UnknownField> {
        let Ok(Value::Object(mut all)) = serde_json::to_value(self) else {
            unreachable!("a status serialises to an object");
        };
        let mut out = Map::new();
        for &field in fields {
            if !Self::FIELDS.contains(&field) {
                return Err(UnknownField {
                    field: field.to_owned(),
                    known: Self::FIELDS.join(", "),
                });
            }
            if let Some(value) = all.remove(field) {
                out.insert(field.to_owned(), value);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_all_their_tags_and_the_id() {
        let t = tags(&[("kind", "judge"), ("problem", "p")]);
        assert!(Selector::all().matches("s", &t));
        assert!(Selector::tag("kind", "judge").matches("s", &t));
        assert!(Selector::tag("kind", "judge")
            .and("problem", "p")
            .matches("s", &t));
        assert!(!Selector::tag("kind", "judge")
            .and("problem", "q")
            .matches("s", &t));
        assert!(!Selector::tag("language", "c").matches("s", &t));
        assert!(Selector::id("s").matches("s", &t));
        assert!(!Selector::id("t").matches("s", &t));
    }

    #[test]
    fn selectors_parse_key_value_arguments() {
        assert_eq!(
            Selector::parse(&["kind=judge", "id=a=b"]),
            Ok(Selector::tag("kind", "judge").and("id", "a=b"))
        );
        assert_eq!(Selector::parse(&["judge"]), Err(NotATag("judge".into())));
        assert!(Selector::parse(&["=x"]).is_err());
        assert_eq!(Selector::parse::<&str>(&[]), Ok(Selector::all()));
    }

    #[test]
    fn status_projects_the_fields_asked_for() {
        let status = StepStatus {
            id: "a".into(),
            tags: tags(&[("k", "v")]),
            state: StepState::Failed,
            attempts: 2,
            result: None,
            error: Some("boom".into()),
            progress: None,
            waiting_for_input: None,
            blocked: None,
        };
        let fields = status.project(&["id", "state", "error", "result"]).unwrap();
        assert_eq!(
            Value::Object(fields),
            serde_json::json!({"id": "a", "state": "failed", "error": "boom"})
        );
        let err = status.project(&["colour"]).unwrap_err();
        assert_eq!(err.field, "colour");
        assert!(err.to_string().contains("waiting_for_input"), "{err}");
    }
}
