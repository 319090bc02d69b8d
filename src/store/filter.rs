//! OData `$filter` expressions: a recursive-descent parser and an evaluator.
//!
//! Grammar (precedence from highest to lowest: grouping, `not`, comparisons, `and`, `or`):
//!
//! ```text
//! or         = and *( "or" and )
//! and        = unary *( "and" unary )
//! unary      = "not" unary / "(" or ")" / comparison
//! comparison = operand ( "eq" / "ne" / "gt" / "ge" / "lt" / "le" ) operand
//! operand    = field / 'string' / number / datetime / "null"
//! ```
//!
//! Strings are single-quoted (`''` is a quote); datetimes are unquoted RFC 3339
//! (`2024-01-01T00:00:00Z`). Keywords are lower case, as OData has them.

use std::cmp::Ordering;
use std::fmt;

use crate::time::parse_rfc3339;

/// A value a field holds or a literal denotes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    /// Milliseconds since the Unix epoch.
    Time(i64),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Field(String),
    Literal(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
}

/// Why a filter could not be parsed, and where (0-based character offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Num(f64),
    Time(i64),
    Open,
    Close,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("'{w}'"),
            Token::Str(_) => "a string".into(),
            Token::Num(_) => "a number".into(),
            Token::Time(_) => "a datetime".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::End => "the end of the filter".into(),
        }
    }
}

fn err(position: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        position,
        message: message.into(),
    }
}

/// Splits `text` into tokens, each with its character offset.
fn lex(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => {
                i += 1;
                Token::Open
            }
            ')' => {
                i += 1;
                Token::Close
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated string")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                Token::Str(s)
            }
            c if c.is_ascii_digit() || c == '-' => {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || matches!(chars[i], '-' | '+' | ':' | '.'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let looks_like_date = word.len() > 4 && word.as_bytes()[4] == b'-';
                if looks_like_date {
                    Token::Time(
                        parse_rfc3339(&word)
                            .ok_or_else(|| err(start, format!("invalid datetime '{word}'")))?,
                    )
                } else {
                    match word.parse::<f64>() {
                        Ok(n) if n.is_finite() => Token::Num(n),
                        _ => return Err(err(start, format!("invalid number '{word}'"))),
                    }
                }
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                Token::Word(chars[start..i].iter().collect())
            }
            other => return Err(err(start, format!("unexpected character '{other}'"))),
        };
        tokens.push((start, token));
    }
    tokens.push((chars.len(), Token::End));
    Ok(tokens)
}

const KEYWORDS: [&str; 10] = [
    "and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "null",
];

struct Parser<'a> {
    tokens: Vec<(usize, Token)>,
    at: usize,
    fields: &'a [&'a str],
}

impl Parser<'_> {
    fn peek(&self) -> &(usize, Token) {
        // `lex` always ends the list with `End`, and the parser never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> (usize, Token) {
        let token = self.peek().clone();
        if token.1 != Token::End {
            self.at += 1;
        }
        token
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(&self.peek().1, Token::Word(w) if w == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while self.eat_word("and") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek().1 == Token::Open {
            self.bump();
            let inner = self.or()?;
            return match self.bump() {
                (_, Token::Close) => Ok(inner),
                (at, other) => Err(err(at, format!("expected ')', found {}", other.describe()))),
            };
        }
        let left = self.operand()?;
        let op = match self.bump() {
            (_, Token::Word(w)) if w == "eq" => CmpOp::Eq,
            (_, Token::Word(w)) if w == "ne" => CmpOp::Ne,
            (_, Token::Word(w)) if w == "gt" => CmpOp::Gt,
            (_, Token::Word(w)) if w == "ge" => CmpOp::Ge,
            (_, Token::Word(w)) if w == "lt" => CmpOp::Lt,
            (_, Token::Word(w)) if w == "le" => CmpOp::Le,
            (at, other) => {
                return Err(err(
                    at,
                    format!(
                        "expected a comparison operator (eq, ne, gt, ge, lt, le), found {}",
                        other.describe()
                    ),
                ))
            }
        };
        Ok(Expr::Cmp(left, op, self.operand()?))
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        match self.bump() {
            (_, Token::Str(s)) => Ok(Operand::Literal(Value::Str(s))),
            (_, Token::Num(n)) => Ok(Operand::Literal(Value::Num(n))),
            (_, Token::Time(t)) => Ok(Operand::Literal(Value::Time(t))),
            (_, Token::Word(w)) if w == "null" => Ok(Operand::Literal(Value::Null)),
            (at, Token::Word(w)) if KEYWORDS.contains(&w.as_str()) => {
                Err(err(at, format!("expected a field or a value, found '{w}'")))
            }
            (at, Token::Word(w)) => {
                if self.fields.contains(&w.as_str()) {
                    Ok(Operand::Field(w))
                } else {
                    Err(err(
                        at,
                        format!("unknown field '{w}' (known: {})", self.fields.join(", ")),
                    ))
                }
            }
            (at, other) => Err(err(
                at,
                format!("expected a field or a value, found {}", other.describe()),
            )),
        }
    }
}

/// Parses a filter over the given field names.
pub fn parse(text: &str, fields: &[&str]) -> Result<Expr, FilterError> {
    let mut parser = Parser {
        tokens: lex(text)?,
        at: 0,
        fields,
    };
    let expr = parser.or()?;
    match parser.bump() {
        (_, Token::End) => Ok(expr),
        (at, other) => Err(err(
            at,
            format!(
                "expected 'and', 'or' or the end, found {}",
                other.describe()
            ),
        )),
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
        (Value::Num(a), Value::Num(b)) => a.partial_cmp(b),
        (Value::Time(a), Value::Time(b)) => Some(a.cmp(b)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

impl Expr {
    /// Whether a record whose fields `field` looks up matches. Values of different types are
    /// never equal and never ordered.
    pub fn matches(&self, field: &dyn Fn(&str) -> Value) -> bool {
        let value = |operand: &Operand| match operand {
            Operand::Field(name) => field(name),
            Operand::Literal(v) => v.clone(),
        };
        match self {
            Expr::Or(a, b) => a.matches(field) || b.matches(field),
            Expr::And(a, b) => a.matches(field) && b.matches(field),
            Expr::Not(e) => !e.matches(field),
            Expr::Cmp(left, op, right) => {
                let ord = compare(&value(left), &value(right));
                match op {
                    CmpOp::Eq => ord == Some(Ordering::Equal),
                    CmpOp::Ne => ord != Some(Ordering::Equal),
                    CmpOp::Gt => ord == Some(Ordering::Greater),
                    CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                    CmpOp::Lt => ord == Some(Ordering::Less),
                    CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &["status", "n", "created"];

    fn eval(filter: &str, status: &str, n: f64) -> bool {
        let expr = parse(filter, FIELDS).unwrap_or_else(|e| panic!("{filter}: {e}"));
        expr.matches(&|name| match name {
            "status" => Value::Str(status.into()),
            "n" => Value::Num(n),
            "created" => Value::Time(1_000),
            _ => Value::Null,
        })
    }

    fn cmp(field: &str, op: CmpOp, v: Value) -> Expr {
        Expr::Cmp(Operand::Field(field.into()), op, Operand::Literal(v))
    }

    #[test]
    fn every_comparison_operator() {
        assert!(eval("n eq 5", "", 5.0));
        assert!(!eval("n ne 5", "", 5.0));
        assert!(eval("n gt 4", "", 5.0) && !eval("n gt 5", "", 5.0));
        assert!(eval("n ge 5", "", 5.0) && !eval("n ge 6", "", 5.0));
        assert!(eval("n lt 6", "", 5.0) && !eval("n lt 5", "", 5.0));
        assert!(eval("n le 5", "", 5.0) && !eval("n le 4.5", "", 5.0));
        assert!(eval("status eq 'running'", "running", 0.0));
        assert!(eval("'running' eq status", "running", 0.0));
        assert!(eval("status eq 'it''s'", "it's", 0.0));
        assert!(eval("n gt -1", "", 0.0));
    }

    #[test]
    fn datetime_literals_compare_with_datetime_fields() {
        assert!(eval("created lt 1970-01-01T00:00:02Z", "", 0.0));
        assert!(eval("created eq 1970-01-01T00:00:01.000Z", "", 0.0));
        assert!(!eval("created gt 1970-01-01T00:00:01Z", "", 0.0));
        // Mismatched types are never equal.
        assert!(!eval("created eq 1000", "", 0.0));
        assert!(eval("created ne 'x'", "", 0.0));
    }

    #[test]
    fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
        let e = parse("not status eq 'a' and n eq 1 or n eq 2", FIELDS).unwrap();
        let expected = Expr::Or(
            Box::new(Expr::And(
                Box::new(Expr::Not(Box::new(cmp(
                    "status",
                    CmpOp::Eq,
                    Value::Str("a".into()),
                )))),
                Box::new(cmp("n", CmpOp::Eq, Value::Num(1.0))),
            )),
            Box::new(cmp("n", CmpOp::Eq, Value::Num(2.0))),
        );
        assert_eq!(e, expected);
        // a or b and c = a or (b and c)
        assert!(eval("n eq 1 or n eq 2 and status eq 'x'", "y", 1.0));
        assert!(!eval("(n eq 1 or n eq 2) and status eq 'x'", "y", 1.0));
        assert!(eval("not (n eq 1 and status eq 'x')", "x", 2.0));
        assert!(eval("not not n eq 2", "", 2.0));
        assert!(eval("((n eq 2))", "", 2.0));
    }

    #[test]
    fn malformed_filters_say_where() {
        let cases = [
            ("status eq", 9, "expected a field or a value"),
            ("status eq 'a' and", 17, "expected a field or a value"),
            ("(n eq 1", 7, "expected ')'"),
            ("n eq 1)", 6, "expected 'and', 'or' or the end"),
            ("n foo 1", 2, "expected a comparison operator"),
            ("bogus eq 1", 0, "unknown field 'bogus'"),
            ("status eq 'open", 10, "unterminated string"),
            ("n eq 2024-99-01T00:00:00Z", 5, "invalid datetime"),
            ("n eq 1 # 2", 7, "unexpected character '#'"),
            ("", 0, "expected a field or a value, found the end"),
        ];
        for (text, position, message) in cases {
            let e = parse(text, FIELDS).expect_err(text);
            assert_eq!(e.position, position, "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
            assert!(e
                .to_string()
                .starts_with(&format!("at position {position}:")));
        }
    }

    #[test]
    fn null_matches_missing_values() {
        let expr = parse("n eq null", FIELDS).unwrap();
        assert!(expr.matches(&|_| Value::Null));
        assert!(!expr.matches(&|_| Value::Num(1.0)));
    }
}
