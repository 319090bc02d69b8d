//! Operations: what a client polls after a `202 Accepted`. A submission is one operation (its
//! id is the submission's); a rejudge or a validation is one too (its id is the workflow's
//! name). Both kinds are listed, sorted and filtered together.

use serde_json::{json, Value};

use super::backend::{Status, SubmissionView};
use super::filter::Value as FilterValue;
use super::time::format_rfc3339;
use crate::workflow::runner::{Outcome, View};

/// Fields `$filter` may name.
pub const FILTER_FIELDS: &[&str] = &[
    "id",
    "kind",
    "status",
    "problem",
    "language",
    "createdDateTime",
    "lastActionDateTime",
    "percentComplete",
];

/// What an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Submission,
    Rejudge,
    Validation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Submission => "submission",
            Kind::Rejudge => "rejudge",
            Kind::Validation => "validation",
        }
    }
}

/// One operation, as polled and listed.
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub kind: Kind,
    pub status: Status,
    pub created_ms: i64,
    pub last_action_ms: i64,
    pub percent_complete: u32,
    pub problem: Option<String>,
    pub language: Option<String>,
    /// Ties between equal creation times.
    pub seq: u64,
}

pub fn location(id: &str) -> String {
    format!("/v1.0/operations/{id}")
}

impl Operation {
    pub fn of_submission(view: &SubmissionView) -> Operation {
        Operation {
            id: view.id.clone(),
            kind: Kind::Submission,
            status: view.status,
            created_ms: view.created_ms,
            last_action_ms: view.last_action_ms,
            percent_complete: view.percent_complete(),
            problem: Some(view.problem.clone()),
            language: Some(view.language.clone()),
            seq: view.seq,
        }
    }

    pub fn of_workflow(view: &View) -> Operation {
        let kind = match view.definition.as_ref().map(|d| d.kind()) {
            Some("validation") => Kind::Validation,
            _ => Kind::Rejudge,
        };
        Operation {
            id: view.name.clone(),
            kind,
            status: match view.outcome {
                Outcome::Running => Status::Running,
                Outcome::Succeeded => Status::Succeeded,
                Outcome::Failed => Status::Failed,
                Outcome::Cancelled => Status::Cancelled,
            },
            created_ms: view.created_ms,
            last_action_ms: view.last_action_ms,
            percent_complete: if view.outcome == Outcome::Succeeded {
                100
            } else {
                view.percent_complete
            },
            problem: view
                .definition
                .as_ref()
                .and_then(|d| d.problem())
                .map(str::to_owned),
            language: None,
            seq: 0,
        }
    }

    /// Where the finished operation's result is.
    pub fn resource_location(&self) -> Option<String> {
        if !self.status.is_terminal() || self.status == Status::Cancelled {
            return None;
        }
        Some(match self.kind {
            Kind::Submission => format!("/v1.0/submissions/{}", self.id),
            Kind::Rejudge | Kind::Validation => format!("/v1.0/workflows/{}", self.id),
        })
    }

    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "status": self.status,
            "createdDateTime": format_rfc3339(self.created_ms),
            "lastActionDateTime": format_rfc3339(self.last_action_ms),
            "percentComplete": self.percent_complete,
        });
        if let Some(resource) = self.resource_location() {
            body["resourceLocation"] = json!(resource);
        }
        body
    }

    /// The value of a `$filter` field.
    pub fn field(&self, field: &str) -> FilterValue {
        let text = |t: &Option<String>| t.clone().map_or(FilterValue::Null, FilterValue::Str);
        match field {
            "id" => FilterValue::Str(self.id.clone()),
            "kind" => FilterValue::Str(self.kind.as_str().into()),
            "status" => FilterValue::Str(self.status.as_str().into()),
            "problem" => text(&self.problem),
            "language" => text(&self.language),
            "createdDateTime" => FilterValue::Time(self.created_ms),
            "lastActionDateTime" => FilterValue::Time(self.last_action_ms),
            "percentComplete" => FilterValue::Num(f64::from(self.percent_complete)),
            _ => FilterValue::Null,
        }
    }

    /// The seed's default order: not started, running, completed; each oldest first.
    pub fn sort_key(&self) -> (u8, i64, u64, String) {
        (
            self.status.sort_group(),
            self.created_ms,
            self.seq,
            self.id.clone(),
        )
    }
}
