//! Polygon packages (`problem.xml`) with their tests and testlib checker.

use std::path::Path;

use super::{Problem, ProblemError};

/// Loads the Polygon package in `dir`. What every format must hold is checked by the caller.
pub(super) fn load(dir: &Path, id: &str) -> Result<Problem, ProblemError> {
    Err(ProblemError::Inconsistent {
        id: id.to_owned(),
        reason: format!("{}: Polygon packages are not supported yet", dir.display()),
    })
}
