//! An operation as the stores list it: what a submission's operation is ([`Operation`]), the
//! value of each `$filter` field ([`Operation::field`], [`FILTER_FIELDS`]) and the order
//! operations are listed in ([`SortKey`]). What the API adds (workflows' operations, bodies,
//! `$skiptoken`s) is `crate::api::operations`.

use super::filter::Value as FilterValue;
use super::view::SubmissionView;
use super::Status;

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
    /// An ad-hoc run (`POST /v1.0/runs`).
    Run,
    Rejudge,
    Validation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Submission => "submission",
            Kind::Run => "run",
            Kind::Rejudge => "rejudge",
            Kind::Validation => "validation",
        }
    }

    /// A rejudge or validation, run by the workflow engine (not a row of the submission store).
    pub fn is_workflow(self) -> bool {
        matches!(self, Kind::Rejudge | Kind::Validation)
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

impl Operation {
    pub fn of_submission(view: &SubmissionView) -> Operation {
        Operation {
            id: view.id.clone(),
            kind: if view.problem == crate::protocol::RUN_PROBLEM {
                Kind::Run
            } else {
                Kind::Submission
            },
            status: view.status,
            created_ms: view.created_ms,
            last_action_ms: view.last_action_ms,
            percent_complete: view.percent_complete(),
            problem: Some(view.problem.clone()),
            language: Some(view.language.clone()),
            seq: view.seq,
        }
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
    pub fn sort_key(&self) -> SortKey {
        SortKey {
            group: self.status.sort_group(),
            created_ms: self.created_ms,
            seq: self.seq,
            id: self.id.clone(),
        }
    }
}

/// The order operations are listed in (fields compared in this order): the status group
/// ([`Status::sort_group`]), the creation time, the creation order among equal times, the id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SortKey {
    pub group: u8,
    pub created_ms: i64,
    pub seq: u64,
    pub id: String,
}
