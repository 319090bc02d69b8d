//! Firestore documents as the wire holds them: building field values and reading them back.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firestore::gcloud_sdk::google::firestore::v1::{value::ValueType, ArrayValue, Document, Value};
use firestore::gcloud_sdk::prost_types::Timestamp;

pub fn string(s: impl Into<String>) -> Value {
    Value {
        value_type: Some(ValueType::StringValue(s.into())),
    }
}

pub fn integer(n: impl Into<i64>) -> Value {
    Value {
        value_type: Some(ValueType::IntegerValue(n.into())),
    }
}

/// A count that may not fit Firestore's i64 (it always does in practice).
pub fn count(n: u64) -> Value {
    integer(i64::try_from(n).unwrap_or(i64::MAX))
}

pub fn double(x: f64) -> Value {
    Value {
        value_type: Some(ValueType::DoubleValue(x)),
    }
}

pub fn integers(ns: impl IntoIterator<Item = u32>) -> Value {
    Value {
        value_type: Some(ValueType::ArrayValue(ArrayValue {
            values: ns.into_iter().map(integer).collect(),
        })),
    }
}

pub fn timestamp(at: SystemTime) -> Value {
    Value {
        value_type: Some(ValueType::TimestampValue(to_timestamp(at))),
    }
}

pub fn to_timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

pub fn from_timestamp(t: &Timestamp) -> SystemTime {
    let seconds = u64::try_from(t.seconds).unwrap_or(0);
    let nanos = u32::try_from(t.nanos).unwrap_or(0);
    UNIX_EPOCH + Duration::new(seconds, nanos)
}

/// The fields of one document, read leniently: a field of the wrong type reads as absent.
pub struct Fields<'a>(pub &'a HashMap<String, Value>);

impl<'a> Fields<'a> {
    pub fn of(document: &'a Document) -> Self {
        Fields(&document.fields)
    }

    fn get(&self, name: &str) -> Option<&'a ValueType> {
        self.0.get(name).and_then(|v| v.value_type.as_ref())
    }

    pub fn string(&self, name: &str) -> Option<&'a str> {
        match self.get(name)? {
            ValueType::StringValue(s) => Some(s),
            _ => None,
        }
    }

    pub fn integer(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            ValueType::IntegerValue(n) => Some(*n),
            _ => None,
        }
    }

    /// A number, integer or double (front ends written in JavaScript store either).
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            ValueType::IntegerValue(n) => Some(*n as f64),
            ValueType::DoubleValue(x) => Some(*x),
            _ => None,
        }
    }

    pub fn integers(&self, name: &str) -> Option<Vec<i64>> {
        match self.get(name)? {
            ValueType::ArrayValue(a) => a
                .values
                .iter()
                .map(|v| match v.value_type {
                    Some(ValueType::IntegerValue(n)) => Some(n),
                    Some(ValueType::DoubleValue(x)) if x.fract() == 0.0 => Some(x as i64),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    pub fn timestamp(&self, name: &str) -> Option<SystemTime> {
        match self.get(name)? {
            ValueType::TimestampValue(t) => Some(from_timestamp(t)),
            _ => None,
        }
    }

    /// The names of the fields present, sorted (for tests that check a document's shape).
    pub fn names(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The last segment of a document's name: its id.
pub fn document_id(document: &Document) -> &str {
    document.name.rsplit('/').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_nanosecond() {
        let at = UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_789);
        assert_eq!(from_timestamp(&to_timestamp(at)), at);
    }

    #[test]
    fn fields_of_the_wrong_type_read_as_absent() {
        let fields: HashMap<String, Value> = [
            ("s".to_string(), string("x")),
            ("n".to_string(), integer(3)),
            ("d".to_string(), double(0.5)),
            ("a".to_string(), integers([1, 3])),
        ]
        .into();
        let f = Fields(&fields);
        assert_eq!(f.string("s"), Some("x"));
        assert_eq!(f.string("n"), None);
        assert_eq!(f.integer("n"), Some(3));
        assert_eq!(f.number("n"), Some(3.0));
        assert_eq!(f.number("d"), Some(0.5));
        assert_eq!(f.integers("a"), Some(vec![1, 3]));
        assert_eq!(f.integers("s"), None);
        assert_eq!(f.names(), ["a", "d", "n", "s"]);
    }
}
