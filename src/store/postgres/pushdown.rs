//! How much of a `$filter` the database evaluates. Every field of a submission's operation is a
//! column (or, for `kind`, a constant) except `percentComplete`, which needs the problem's test
//! count that only the service knows. A comparison with it is exact in SQL when the status
//! decides it (a succeeded operation is at 100; any other is somewhere in 0..=100); otherwise
//! it is unknown, and stands for `TRUE` where that widens the condition (under an even number
//! of `not`s) and `FALSE` where it does (under an odd number). The condition then selects every
//! submission the filter does, and perhaps more: the caller applies the filter itself to what
//! it reads ([`Pushdown::exact`] says whether it needs to read past the page).

use crate::interface::postgres::{Column, Comparison, Condition, Operand as SqlOperand};
use crate::store::filter::{CmpOp, Expr, Operand, Value};
use crate::store::Status;

/// A filter as a condition on the `submissions` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushdown {
    /// Selects at least the submissions the filter selects.
    pub condition: Condition,
    /// Selects exactly those.
    pub exact: bool,
}

impl Pushdown {
    pub fn of(filter: &Expr) -> Pushdown {
        let mut exact = true;
        let condition = bound(filter, Widen::Superset, &mut exact);
        Pushdown { condition, exact }
    }
}

/// Which way an unknown comparison may err.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Widen {
    /// Select at least what the expression selects.
    Superset,
    /// Select at most that.
    Subset,
}

impl Widen {
    fn flip(self) -> Widen {
        match self {
            Widen::Superset => Widen::Subset,
            Widen::Subset => Widen::Superset,
        }
    }

    fn unknown(self, exact: &mut bool) -> Condition {
        *exact = false;
        Condition::constant(self == Widen::Superset)
    }
}

fn bound(expr: &Expr, widen: Widen, exact: &mut bool) -> Condition {
    match expr {
        Expr::Or(a, b) => Condition::or(bound(a, widen, exact), bound(b, widen, exact)),
        Expr::And(a, b) => Condition::and(bound(a, widen, exact), bound(b, widen, exact)),
        Expr::Not(e) => !bound(e, widen.flip(), exact),
        Expr::Cmp(left, op, right) => compare(term(left), *op, term(right), widen, exact),
    }
}

/// What a side of a comparison is, as far as the database can tell.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    /// The same for every submission.
    Known(Value),
    /// A text column.
    Text(Column),
    /// An ms column (a datetime).
    Time(Column),
    /// `percentComplete`.
    Percent,
}

/// The value of `operand` as [`crate::api::operations::Operation::field`] gives it for a
/// submission.
fn term(operand: &Operand) -> Term {
    let name = match operand {
        Operand::Literal(value) => return Term::Known(value.clone()),
        Operand::Field(name) => name.as_str(),
    };
    match name {
        "id" => Term::Text(Column::Id),
        "kind" => Term::Text(Column::Kind),
        "status" => Term::Text(Column::Status),
        "problem" => Term::Text(Column::Problem),
        "language" => Term::Text(Column::Language),
        "createdDateTime" => Term::Time(Column::SubmittedMs),
        "lastActionDateTime" => Term::Time(Column::UpdatedMs),
        "percentComplete" => Term::Percent,
        _ => Term::Known(Value::Null),
    }
}

/// The comparison of two values, as `$filter` evaluates it.
fn holds(left: Value, op: CmpOp, right: Value) -> bool {
    Expr::Cmp(Operand::Literal(left), op, Operand::Literal(right)).matches(&|_| Value::Null)
}

/// Whether `op` holds between values of different types (never equal, never ordered).
fn holds_between_types(op: CmpOp) -> bool {
    op == CmpOp::Ne
}

fn comparison(op: CmpOp) -> Comparison {
    match op {
        CmpOp::Eq => Comparison::Eq,
        CmpOp::Ne => Comparison::Ne,
        CmpOp::Gt => Comparison::Gt,
        CmpOp::Ge => Comparison::Ge,
        CmpOp::Lt => Comparison::Lt,
        CmpOp::Le => Comparison::Le,
    }
}

/// `op` with its operands swapped: `a op b` is `b op.swapped() a`.
fn swapped(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        other => other,
    }
}

fn compare(left: Term, op: CmpOp, right: Term, widen: Widen, exact: &mut bool) -> Condition {
    use Term::*;
    let column = |c| SqlOperand::Column(c);
    match (left, right) {
        (Known(a), Known(b)) => Condition::constant(holds(a, op, b)),
        // A field against itself: equal.
        (Percent, Percent) => Condition::constant(matches!(op, CmpOp::Eq | CmpOp::Ge | CmpOp::Le)),
        (Text(a), Text(b)) | (Time(a), Time(b)) => {
            Condition::Compare(column(a), comparison(op), column(b))
        }
        (Text(c), Known(Value::Str(s))) => text(c, op, s, widen, exact),
        (Known(Value::Str(s)), Text(c)) => text(c, swapped(op), s, widen, exact),
        (Time(c), Known(Value::Time(ms))) => {
            Condition::Compare(column(c), comparison(op), SqlOperand::Ms(ms))
        }
        (Known(Value::Time(ms)), Time(c)) => {
            Condition::Compare(column(c), comparison(swapped(op)), SqlOperand::Ms(ms))
        }
        (Percent, Known(Value::Num(n))) => percent(op, n, widen, exact),
        (Known(Value::Num(n)), Percent) => percent(swapped(op), n, widen, exact),
        // Anything else compares values of different types.
        _ => Condition::constant(holds_between_types(op)),
    }
}

/// Text column `c` against `s`.
fn text(c: Column, op: CmpOp, s: String, widen: Widen, exact: &mut bool) -> Condition {
    // No stored text has a NUL, and the database takes none: left to the caller.
    if s.contains('\0') {
        return widen.unknown(exact);
    }
    Condition::Compare(SqlOperand::Column(c), comparison(op), SqlOperand::Text(s))
}

/// `percentComplete op n`: 100 once succeeded, otherwise in 0..=100 depending on the tests done.
fn percent(op: CmpOp, n: f64, widen: Widen, exact: &mut bool) -> Condition {
    let at = |p: u32| holds(Value::Num(f64::from(p)), op, Value::Num(n));
    let succeeded = Condition::Compare(
        SqlOperand::Column(Column::Status),
        Comparison::Eq,
        SqlOperand::Text(Status::Succeeded.as_str().into()),
    );
    let unfinished = if (0..=100).all(at) {
        Condition::True
    } else if (0..=100).any(at) {
        widen.unknown(exact)
    } else {
        Condition::False
    };
    match (unfinished, at(100)) {
        (Condition::True, true) => Condition::True,
        (Condition::False, false) => Condition::False,
        (unfinished, at_100) => Condition::or(
            Condition::and(succeeded.clone(), Condition::constant(at_100)),
            Condition::and(!succeeded, unfinished),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::filter::parse;
    use crate::store::operation::FILTER_FIELDS;

    fn pushdown(filter: &str) -> Pushdown {
        Pushdown::of(&parse(filter, FILTER_FIELDS).unwrap_or_else(|e| panic!("{filter}: {e}")))
    }

    fn text(c: Column, op: Comparison, s: &str) -> Condition {
        Condition::Compare(SqlOperand::Column(c), op, SqlOperand::Text(s.into()))
    }

    fn succeeded() -> Condition {
        text(Column::Status, Comparison::Eq, "succeeded")
    }

    #[test]
    fn columns_compare_in_sql() {
        let p = pushdown("problem eq 'a''b' and not (id lt 'x')");
        assert!(p.exact);
        assert_eq!(
            p.condition,
            Condition::and(
                text(Column::Problem, Comparison::Eq, "a'b"),
                !text(Column::Id, Comparison::Lt, "x"),
            )
        );
        // A literal on the left: the comparison turns round.
        let p = pushdown("2024-01-01T00:00:00Z le createdDateTime");
        assert_eq!(
            p.condition,
            Condition::Compare(
                SqlOperand::Column(Column::SubmittedMs),
                Comparison::Ge,
                SqlOperand::Ms(1_704_067_200_000),
            )
        );
        assert_eq!(
            pushdown("createdDateTime lt lastActionDateTime").condition,
            Condition::Compare(
                SqlOperand::Column(Column::SubmittedMs),
                Comparison::Lt,
                SqlOperand::Column(Column::UpdatedMs),
            )
        );
    }

    #[test]
    fn what_is_the_same_for_every_submission_is_a_constant() {
        for (filter, value) in [
            ("'a' lt 'b'", true),
            ("null eq null", true),
            // Different types: never equal, never ordered.
            ("language eq null", false),
            ("language ne null", true),
            ("createdDateTime gt 'x'", false),
            ("problem eq 3", false),
            ("percentComplete ne 'x'", true),
            ("percentComplete le percentComplete", true),
            ("percentComplete lt percentComplete", false),
        ] {
            let p = pushdown(filter);
            assert_eq!(p.condition, Condition::constant(value), "{filter}");
            assert!(p.exact, "{filter}");
        }
    }

    #[test]
    fn the_kind_tells_runs_from_submissions_in_sql() {
        // A run has no problem: `kind` is a column now, not the constant 'submission'.
        for kind in ["submission", "run", "rejudge"] {
            let p = pushdown(&format!("kind eq '{kind}'"));
            assert_eq!(
                p.condition,
                Condition::Compare(
                    SqlOperand::Column(Column::Kind),
                    Comparison::Eq,
                    SqlOperand::Text(kind.into()),
                )
            );
            assert!(p.exact);
        }
    }

    #[test]
    fn percent_complete_is_exact_when_the_status_decides_it() {
        let p = pushdown("percentComplete lt 100");
        assert!(!p.exact);
        // A superset: any unfinished operation may be below 100.
        assert_eq!(p.condition, !succeeded());
        let p = pushdown("percentComplete eq 100");
        assert!(!p.exact);
        assert_eq!(p.condition, Condition::True);
        // Under `not` the unknown part errs the other way, so that the whole is a superset:
        // only succeeded operations are known to be at 100.
        let p = pushdown("not (percentComplete eq 100)");
        assert_eq!(p.condition, !succeeded());
        // An unfinished one may be at 100 too (every test done, the end not recorded yet).
        let p = pushdown("not (percentComplete lt 100)");
        assert_eq!(p.condition, Condition::True);
        for (filter, expected) in [
            ("percentComplete ge 0", Condition::True),
            ("percentComplete gt 100", Condition::False),
            ("percentComplete lt 0", Condition::False),
            ("percentComplete le 100.5", Condition::True),
        ] {
            let p = pushdown(filter);
            assert!(p.exact, "{filter}");
            assert_eq!(p.condition, expected, "{filter}");
        }
        let p = pushdown("percentComplete gt 99.5 and status eq 'running'");
        assert!(!p.exact);
    }

    #[test]
    fn a_text_with_a_nul_is_left_to_the_caller() {
        let filter = Expr::Cmp(
            Operand::Field("id".into()),
            CmpOp::Eq,
            Operand::Literal(Value::Str("a\0b".into())),
        );
        let p = Pushdown::of(&filter);
        assert!(!p.exact);
        assert_eq!(p.condition, Condition::True);
        let p = Pushdown::of(&Expr::Not(Box::new(filter)));
        assert_eq!(p.condition, Condition::True);
    }
}
