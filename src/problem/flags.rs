//! The flags of the default output validator, as a problem gives them: parsed when the problem
//! is validated (so a bad flag is the problem's fault, found when it loads) and when a test is
//! checked (`crate::check::default`).

/// The flags of the default output validator (ICPC `validator_flags` / `output_validator_args`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DefaultFlags {
    pub case_sensitive: bool,
    pub space_change_sensitive: bool,
    /// `float_absolute_tolerance` (or `float_tolerance`).
    pub float_absolute: Option<f64>,
    /// `float_relative_tolerance` (or `float_tolerance`).
    pub float_relative: Option<f64>,
}

impl DefaultFlags {
    /// Parses the flags; an unknown flag, a missing or bad number, or a tolerance given twice is
    /// an error (the problem's fault). Every argument is split on ASCII whitespace first, since
    /// legacy packages pass the whole flag string as one argument.
    pub fn parse(args: &[String]) -> Result<DefaultFlags, String> {
        let mut flags = DefaultFlags::default();
        let (mut relative, mut absolute, mut both) = (false, false, false);
        let mut words = args.iter().flat_map(|arg| arg.split_ascii_whitespace());
        while let Some(word) = words.next() {
            match word {
                "case_sensitive" => flags.case_sensitive = true,
                "space_change_sensitive" => flags.space_change_sensitive = true,
                "float_relative_tolerance" => {
                    once(&mut relative, word)?;
                    flags.float_relative = Some(tolerance(word, words.next())?);
                }
                "float_absolute_tolerance" => {
                    once(&mut absolute, word)?;
                    flags.float_absolute = Some(tolerance(word, words.next())?);
                }
                "float_tolerance" => {
                    once(&mut both, word)?;
                    let value = tolerance(word, words.next())?;
                    flags.float_relative = Some(value);
                    flags.float_absolute = Some(value);
                }
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        if both && (relative || absolute) {
            return Err(
                "float_tolerance cannot be combined with float_relative_tolerance or \
                        float_absolute_tolerance"
                    .to_string(),
            );
        }
        Ok(flags)
    }
}

/// Marks a tolerance flag as seen; a second one is ambiguous, so an error.
fn once(seen: &mut bool, flag: &str) -> Result<(), String> {
    if std::mem::replace(seen, true) {
        return Err(format!("{flag} given more than once"));
    }
    Ok(())
}

/// The number after a tolerance flag: finite and not negative.
fn tolerance(flag: &str, value: Option<&str>) -> Result<f64, String> {
    let Some(text) = value else {
        return Err(format!("{flag} needs a number after it"));
    };
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!(
            "{flag} {text:?}: the tolerance must be a finite number, not negative"
        )),
        Err(_) => Err(format!("{flag} {text:?}: not a number")),
    }
}
