//! Operations: what a client polls after a `202 Accepted`. A submission is one operation (its
//! id is the submission's); a rejudge or a validation is one too (its id is the workflow's
//! name). Both kinds are listed, sorted and filtered together. What a submission's operation is
//! and how operations are ordered is the stores' (`crate::store::operation`); the workflows'
//! operations, the bodies and the `$skiptoken`s are here.

use serde::Serialize;
use serde_json::Value;

use crate::store::operation::{Kind, SortKey};
/// A submission's operation and its `$filter` fields are the stores'; the handlers name them
/// here, with what the API adds to them.
pub use crate::store::operation::{Operation, FILTER_FIELDS};
use crate::store::Status;
use crate::time::format_rfc3339;
use crate::workflow::runner::{Outcome, View};

pub fn location(id: &str) -> String {
    format!("/v1.0/operations/{id}")
}

impl Operation {
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
            Kind::Run => format!("/v1.0/runs/{}", self.id),
            Kind::Rejudge | Kind::Validation => format!("/v1.0/workflows/{}", self.id),
        })
    }

    /// Its body as JSON (what [`OperationBody`] serialises to).
    pub fn to_json(&self) -> Value {
        // Plain fields: serialising cannot fail.
        serde_json::to_value(OperationBody::from(self)).unwrap_or_default()
    }

    /// Where the operation is listed: by [`Operation::sort_key`], and a submission before a
    /// workflow with an equal key (their ids are apart, so this is only ever a tie of names).
    pub fn position(&self) -> Position {
        Position {
            key: self.sort_key(),
            workflow: self.kind.is_workflow(),
        }
    }
}

/// `kind` in the OpenAPI document: the names of [`Kind`].
fn kinds() -> utoipa::openapi::schema::Object {
    let all = [Kind::Submission, Kind::Run, Kind::Rejudge, Kind::Validation];
    crate::api::doc::of_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(all.map(Kind::as_str)))
        .build()
}

/// A workflow's `kind` in the OpenAPI document: the names of the workflows' [`Kind`]s.
pub(super) fn workflow_kinds() -> utoipa::openapi::schema::Object {
    crate::api::doc::of_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some([Kind::Rejudge, Kind::Validation].map(Kind::as_str)))
        .build()
}

/// An operation as polled, listed and answered with `202 Accepted`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Operation)]
pub struct OperationBody {
    pub id: String,
    #[schema(schema_with = kinds)]
    pub kind: &'static str,
    pub status: Status,
    #[schema(format = DateTime)]
    pub created_date_time: String,
    #[schema(format = DateTime)]
    pub last_action_date_time: String,
    #[schema(minimum = 0, maximum = 100)]
    pub percent_complete: u32,
    /// Present once succeeded or failed: the submission, or the workflow
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_location: Option<String>,
}

impl From<&Operation> for OperationBody {
    fn from(op: &Operation) -> Self {
        OperationBody {
            id: op.id.clone(),
            kind: op.kind.as_str(),
            status: op.status,
            created_date_time: format_rfc3339(op.created_ms),
            last_action_date_time: format_rfc3339(op.last_action_ms),
            percent_complete: op.percent_complete,
            resource_location: op.resource_location(),
        }
    }
}

/// Where an operation stands in the listing; `$skiptoken` carries the last one of a page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub key: SortKey,
    /// A workflow comes after a submission with an equal key.
    pub workflow: bool,
}

/// A `$skiptoken` that is not one this service handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid $skiptoken: {0}")]
pub struct TokenError(&'static str);

/// Version of the token layout, its first byte.
const TOKEN_VERSION: u8 = 1;
/// Version, group, created ms, seq, workflow flag; then the id.
const TOKEN_HEAD: usize = 1 + 1 + 8 + 8 + 1;

impl Position {
    /// An opaque, URL-safe token (lower-case hex of a versioned binary layout). Not secret and
    /// not signed: [`Position::from_token`] checks every field instead.
    pub fn to_token(&self) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_HEAD + self.key.id.len());
        bytes.push(TOKEN_VERSION);
        bytes.push(self.key.group);
        bytes.extend_from_slice(&self.key.created_ms.to_be_bytes());
        bytes.extend_from_slice(&self.key.seq.to_be_bytes());
        bytes.push(u8::from(self.workflow));
        bytes.extend_from_slice(self.key.id.as_bytes());
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_token(token: &str) -> Result<Position, TokenError> {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let text = token.as_bytes();
        if text.len() % 2 != 0 {
            return Err(TokenError("not hex"));
        }
        let bytes = text
            .chunks_exact(2)
            .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or(TokenError("not hex"))?;
        if bytes.len() <= TOKEN_HEAD {
            return Err(TokenError("too short"));
        }
        let (head, id) = bytes.split_at(TOKEN_HEAD);
        if head[0] != TOKEN_VERSION {
            return Err(TokenError("unknown version"));
        }
        let group = head[1];
        if group > Status::Cancelled.sort_group() {
            return Err(TokenError("no such status group"));
        }
        let number = |at: usize| {
            let mut be = [0u8; 8];
            be.copy_from_slice(&head[at..at + 8]);
            be
        };
        let workflow = match head[18] {
            0 => false,
            1 => true,
            _ => return Err(TokenError("no such kind")),
        };
        let id = String::from_utf8(id.to_vec()).map_err(|_| TokenError("id is not UTF-8"))?;
        Ok(Position {
            key: SortKey {
                group,
                created_ms: i64::from_be_bytes(number(2)),
                seq: u64::from_be_bytes(number(10)),
                id,
            },
            workflow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(workflow: bool) -> Position {
        Position {
            key: SortKey {
                group: 1,
                created_ms: -5,
                seq: u64::MAX,
                id: "a-é/?&=".into(),
            },
            workflow,
        }
    }

    #[test]
    fn a_token_is_url_safe_and_gives_back_its_position() {
        for workflow in [false, true] {
            let token = position(workflow).to_token();
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
            assert_eq!(Position::from_token(&token), Ok(position(workflow)));
        }
    }

    #[test]
    fn a_workflow_follows_a_submission_of_an_equal_key() {
        assert!(position(false) < position(true));
    }

    #[test]
    fn a_bad_token_is_refused_without_panicking() {
        let good = position(true).to_token();
        let with = |at: usize, byte: &str| {
            let mut t = good.clone();
            t.replace_range(at * 2..at * 2 + 2, byte);
            t
        };
        let invalid_utf8 = format!("{}ff", &good[..TOKEN_HEAD * 2]);
        for bad in [
            String::new(),
            "x".into(),
            "abc".into(),
            "zz".repeat(30),
            good.to_uppercase(),
            good[..TOKEN_HEAD * 2].to_owned(),
            with(0, "02"),
            with(1, "03"),
            with(18, "02"),
            invalid_utf8,
            "é".repeat(20),
        ] {
            assert!(Position::from_token(&bad).is_err(), "{bad}");
        }
    }
}
