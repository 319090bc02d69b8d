//! The ICPC / Kattis problem package format (`problem.yaml`): legacy and the 2023-07 / 2025-09
//! drafts.

use std::path::Path;

use super::{Defaults, Problem, ProblemError};

/// Loads the ICPC package in `dir`. What every format must hold is checked by the caller.
pub(super) fn load(dir: &Path, id: &str, defaults: &Defaults) -> Result<Problem, ProblemError> {
    let _ = defaults;
    Err(ProblemError::Inconsistent {
        id: id.to_owned(),
        reason: format!("{}: ICPC packages are not supported yet", dir.display()),
    })
}
