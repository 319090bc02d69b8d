//! The ICPC default output validator, in the worker: token comparison with its flags, streamed.
//!
//! Both files are read only through `fill_buf`/`consume`, so memory stays bounded whatever the
//! output holds (one huge token, gigabytes of whitespace, NUL bytes, invalid UTF-8), and reading
//! stops at the first difference.

use std::io::{self, BufRead, ErrorKind};

/// Longest answer token still tried as a float; longer ones are compared as strings (the spec
/// leaves this open, and a bound keeps the candidate buffer small).
const FLOAT_CANDIDATE_MAX: usize = 4096;
/// Bytes of a token quoted in a message.
const QUOTE_MAX: usize = 64;
/// Significant digits kept when reading a float: a decimal that decides the rounding of an f64
/// has at most 767 of them, so more digits only matter as "something nonzero follows".
const SIGNIFICANT_DIGITS: usize = 800;
/// Saturation of a written exponent (its digits may be arbitrarily many).
const EXPONENT_CAP: i64 = 1_000_000_000;
/// Any decimal exponent beyond this gives 0 or infinity for a mantissa in [0.1, 1).
const EXPONENT_CLAMP: i64 = 100_000;

pub use crate::problem::DefaultFlags;

/// What the comparison found.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub accepted: bool,
    /// Why it was rejected, for the judges' log (bounded: tokens are cut).
    pub message: String,
}

impl Comparison {
    fn accepted() -> Comparison {
        Comparison {
            accepted: true,
            message: String::new(),
        }
    }

    fn rejected(message: String) -> Comparison {
        Comparison {
            accepted: false,
            message,
        }
    }
}

/// Compares `output` with `answer` under `flags`, reading both as streams.
pub fn compare(
    flags: &DefaultFlags,
    answer: &mut dyn BufRead,
    output: &mut dyn BufRead,
) -> io::Result<Comparison> {
    let mut a = Stream::new(answer);
    let mut o = Stream::new(output);
    let floats = flags.float_absolute.is_some() || flags.float_relative.is_some();
    let mut count: u64 = 0;
    loop {
        if flags.space_change_sensitive {
            if let Some(line) = compare_spaces(&mut a, &mut o)? {
                return Ok(Comparison::rejected(format!(
                    "whitespace differs at line {line} (after token {count})"
                )));
            }
        } else {
            a.skip_space()?;
            o.skip_space()?;
        }
        let line = o.newlines + 1;
        match (a.at_end()?, o.at_end()?) {
            (true, true) => return Ok(Comparison::accepted()),
            (true, false) => {
                let mut extra = Vec::new();
                o.extend_quote(&mut extra)?;
                return Ok(Comparison::rejected(format!(
                    "extra output after the last answer token: {} (token {}, line {line})",
                    quote(&extra),
                    count + 1
                )));
            }
            (false, true) => {
                let plural = if count == 1 { "" } else { "s" };
                return Ok(Comparison::rejected(format!(
                    "output ends after {count} token{plural}, answer has more"
                )));
            }
            (false, false) => {}
        }
        count += 1;
        if floats {
            a.read_candidate()?;
            if let Some(expected) = a.candidate_float() {
                // The candidate is the whole token: it is used up here.
                a.pending_at = a.pending.len();
                let (outcome, got) = compare_float(expected, &mut o, flags)?;
                let why = match outcome {
                    FloatOutcome::Within => continue,
                    FloatOutcome::NotFloat => " (not a float)".to_string(),
                    FloatOutcome::Outside(difference) => format!(" (difference {difference:e})"),
                };
                return Ok(Comparison::rejected(format!(
                    "token {count} (line {line}): expected {}, got {}{why}",
                    quote(&a.pending),
                    quote(&got)
                )));
            }
        }
        if let Some((expected, got)) = compare_strings(&mut a, &mut o, flags.case_sensitive)? {
            return Ok(Comparison::rejected(format!(
                "token {count} (line {line}): expected {}, got {}",
                quote(&expected),
                quote(&got)
            )));
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | 0x0c | b'\n' | b'\r' | b'\t' | 0x0b)
}

/// Length of the whitespace run at the start of `bytes`.
fn space_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(bytes.len())
}

/// Length of the token bytes at the start of `bytes`.
fn token_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| is_space(b))
        .unwrap_or(bytes.len())
}

fn count_lf(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The reader's next bytes (empty at the end), retrying interrupted reads.
fn fill<R: BufRead + ?Sized>(reader: &mut R) -> io::Result<&[u8]> {
    loop {
        match reader.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    // Returns the bytes just buffered (a second call because the borrow checker cannot return
    // the first one from inside the retry loop).
    reader.fill_buf()
}

/// One side of the comparison.
struct Stream<'a> {
    reader: &'a mut dyn BufRead,
    /// Token bytes already taken from `reader` to try them as a float; when they are compared as
    /// a string after all, they are served before the reader's.
    pending: Vec<u8>,
    pending_at: usize,
    /// LF bytes consumed so far.
    newlines: u64,
}

impl<'a> Stream<'a> {
    fn new(reader: &'a mut dyn BufRead) -> Stream<'a> {
        Stream {
            reader,
            pending: Vec::new(),
            pending_at: 0,
            newlines: 0,
        }
    }

    fn chunk(&mut self) -> io::Result<&[u8]> {
        if self.pending_at < self.pending.len() {
            return Ok(&self.pending[self.pending_at..]);
        }
        fill(&mut *self.reader)
    }

    /// Consumes `n` bytes of the last `chunk` (so never across pending and reader bytes).
    fn consume(&mut self, n: usize) {
        if self.pending_at < self.pending.len() {
            self.pending_at += n;
        } else {
            self.reader.consume(n);
        }
    }

    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.chunk()?.is_empty())
    }

    /// Consumes a whitespace run, counting its LFs.
    fn skip_space(&mut self) -> io::Result<()> {
        loop {
            let chunk = self.chunk()?;
            let n = space_len(chunk);
            let done = n < chunk.len() || chunk.is_empty();
            let lf = count_lf(&chunk[..n]);
            self.newlines += lf;
            self.consume(n);
            if done {
                return Ok(());
            }
        }
    }

    /// Appends the rest of the current token to `quote`, up to one byte more than is quoted (to
    /// tell that it is cut); the token's remaining bytes are left unread.
    fn extend_quote(&mut self, quote: &mut Vec<u8>) -> io::Result<()> {
        while quote.len() <= QUOTE_MAX {
            let chunk = self.chunk()?;
            let n = token_len(chunk).min(QUOTE_MAX + 1 - quote.len());
            if n == 0 {
                break;
            }
            quote.extend_from_slice(&chunk[..n]);
            self.consume(n);
        }
        Ok(())
    }

    /// Moves the start of the current token, up to one byte more than a float candidate, into
    /// `pending`.
    fn read_candidate(&mut self) -> io::Result<()> {
        self.pending.clear();
        self.pending_at = 0;
        while self.pending.len() <= FLOAT_CANDIDATE_MAX {
            let chunk = fill(&mut *self.reader)?;
            let n = token_len(chunk).min(FLOAT_CANDIDATE_MAX + 1 - self.pending.len());
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&chunk[..n]);
            self.reader.consume(n);
        }
        Ok(())
    }

    /// The value of the candidate in `pending`, if it is a whole token in the float grammar.
    fn candidate_float(&self) -> Option<f64> {
        if self.pending.len() > FLOAT_CANDIDATE_MAX {
            return None;
        }
        parse_float(&self.pending)
    }
}

/// Appends to a quote, keeping one byte more than is quoted.
fn push_quote(quote: &mut Vec<u8>, bytes: &[u8]) {
    let room = (QUOTE_MAX + 1).saturating_sub(quote.len());
    quote.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// A token for a message: escaped, cut to `QUOTE_MAX` bytes and then marked with `…`.
fn quote(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(QUOTE_MAX)];
    let cut = if bytes.len() > QUOTE_MAX { "…" } else { "" };
    format!("{:?}{cut}", String::from_utf8_lossy(shown))
}

/// Compares the whitespace runs at the current positions byte for byte; on a difference, the
/// output line where it is.
fn compare_spaces(a: &mut Stream, o: &mut Stream) -> io::Result<Option<u64>> {
    loop {
        let ca = a.chunk()?;
        let co = o.chunk()?;
        let (la, lo) = (space_len(ca), space_len(co));
        let n = la.min(lo);
        let differs_at = (0..n).find(|&i| ca[i] != co[i]);
        let lf = count_lf(&co[..differs_at.unwrap_or(n)]);
        a.consume(n);
        o.consume(n);
        o.newlines += lf;
        if differs_at.is_some() || (n == 0 && la != lo) {
            return Ok(Some(o.newlines + 1));
        }
        if n == 0 {
            return Ok(None);
        }
    }
}

/// Compares the tokens at the current positions as strings, chunk by chunk; on a difference,
/// the start of both tokens for the message.
fn compare_strings(
    a: &mut Stream,
    o: &mut Stream,
    case_sensitive: bool,
) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut expected = Vec::new();
    let mut got = Vec::new();
    loop {
        let ca = a.chunk()?;
        let co = o.chunk()?;
        let (la, lo) = (token_len(ca), token_len(co));
        let n = la.min(lo);
        let same = if case_sensitive {
            ca[..n] == co[..n]
        } else {
            ca[..n].eq_ignore_ascii_case(&co[..n])
        };
        push_quote(&mut expected, &ca[..n]);
        push_quote(&mut got, &co[..n]);
        a.consume(n);
        o.consume(n);
        if !same || (n == 0 && la != lo) {
            a.extend_quote(&mut expected)?;
            o.extend_quote(&mut got)?;
            return Ok(Some((expected, got)));
        }
        if n == 0 {
            return Ok(None);
        }
    }
}

enum FloatOutcome {
    Within,
    NotFloat,
    /// Out of tolerance, by this much.
    Outside(f64),
}

/// Reads the output token as a float (any length) and checks it against `expected`; also
/// returns the start of the token for the message.
fn compare_float(
    expected: f64,
    o: &mut Stream,
    flags: &DefaultFlags,
) -> io::Result<(FloatOutcome, Vec<u8>)> {
    let mut scan = FloatScan::default();
    let mut got = Vec::new();
    loop {
        let chunk = o.chunk()?;
        let n = token_len(chunk);
        if n == 0 {
            break;
        }
        let valid = scan.feed(&chunk[..n]);
        push_quote(&mut got, &chunk[..n]);
        o.consume(n);
        if !valid {
            o.extend_quote(&mut got)?;
            return Ok((FloatOutcome::NotFloat, got));
        }
    }
    let outcome = match scan.finish() {
        None => FloatOutcome::NotFloat,
        Some(value) if within(expected, value, flags) => FloatOutcome::Within,
        Some(value) => FloatOutcome::Outside((value - expected).abs()),
    };
    Ok((outcome, got))
}

/// Whether `value` is within the tolerances of `expected`.
fn within(expected: f64, value: f64, flags: &DefaultFlags) -> bool {
    if !expected.is_finite() {
        // An answer beyond f64's range: only the same infinity matches (a relative tolerance of
        // infinity would accept anything).
        return value == expected;
    }
    let difference = (value - expected).abs();
    flags.float_absolute.is_some_and(|eps| difference <= eps)
        || flags
            .float_relative
            .is_some_and(|eps| difference <= eps * expected.abs())
}

/// The value of a whole token in the float grammar, or `None`.
fn parse_float(token: &[u8]) -> Option<f64> {
    let mut scan = FloatScan::default();
    if scan.feed(token) {
        scan.finish()
    } else {
        None
    }
}

/// Where a float scan is in `sign? (digit* "." digit+ | digit+ "." | digit+) ([eE] sign? digit+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Part {
    #[default]
    Start,
    Sign,
    Int,
    /// A dot with no digit before it: a digit must follow.
    LeadingDot,
    /// After a dot that has a digit before or after it: the number may end here.
    Frac,
    ExpMark,
    ExpSign,
    Exp,
    Invalid,
}

/// A float read in pieces with bounded memory: the value is kept as `0.digits × 10^point`
/// (plus the written exponent), with the significant digits cut at `SIGNIFICANT_DIGITS` and a
/// flag for nonzero digits cut off, which is enough to round correctly.
#[derive(Debug, Default)]
struct FloatScan {
    part: Part,
    negative: bool,
    /// Significant digits, from the first nonzero one.
    digits: String,
    /// A nonzero digit was cut off.
    sticky: bool,
    /// Decimal point position relative to the start of `digits`.
    point: i64,
    exponent: i64,
    exponent_negative: bool,
}

impl FloatScan {
    /// Feeds more bytes of the token; false once the bytes cannot be a float.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            self.part = match (self.part, b) {
                (Part::Start, b'+' | b'-') => {
                    self.negative = b == b'-';
                    Part::Sign
                }
                (Part::Start | Part::Sign | Part::Int, b'0'..=b'9') => {
                    if self.digit(b) {
                        self.point = self.point.saturating_add(1);
                    }
                    Part::Int
                }
                (Part::Start | Part::Sign, b'.') => Part::LeadingDot,
                (Part::Int, b'.') => Part::Frac,
                (Part::LeadingDot | Part::Frac, b'0'..=b'9') => {
                    if !self.digit(b) {
                        // A leading zero after the point moves the point.
                        self.point = self.point.saturating_sub(1);
                    }
                    Part::Frac
                }
                (Part::Int | Part::Frac, b'e' | b'E') => Part::ExpMark,
                (Part::ExpMark, b'+' | b'-') => {
                    self.exponent_negative = b == b'-';
                    Part::ExpSign
                }
                (Part::ExpMark | Part::ExpSign | Part::Exp, b'0'..=b'9') => {
                    self.exponent = (self.exponent * 10 + i64::from(b - b'0')).min(EXPONENT_CAP);
                    Part::Exp
                }
                _ => Part::Invalid,
            };
            if self.part == Part::Invalid {
                return false;
            }
        }
        true
    }

    /// Records a mantissa digit; false if it is a leading zero (not significant).
    fn digit(&mut self, b: u8) -> bool {
        if self.digits.is_empty() && b == b'0' {
            return false;
        }
        if self.digits.len() < SIGNIFICANT_DIGITS {
            self.digits.push(char::from(b));
        } else if b != b'0' {
            self.sticky = true;
        }
        true
    }

    /// The value, if the bytes fed make a whole float.
    fn finish(&self) -> Option<f64> {
        if !matches!(self.part, Part::Int | Part::Frac | Part::Exp) {
            return None;
        }
        let magnitude = if self.digits.is_empty() {
            0.0
        } else {
            let exponent = if self.exponent_negative {
                -self.exponent
            } else {
                self.exponent
            };
            let scale = self
                .point
                .saturating_add(exponent)
                .clamp(-EXPONENT_CLAMP, EXPONENT_CLAMP);
            // A trailing 1 stands for the cut-off nonzero digits: it lies strictly between the
            // same two neighbours as the exact value, so the rounding is the same.
            let sticky = if self.sticky { "1" } else { "" };
            format!("0.{}{sticky}e{scale}", self.digits)
                .parse::<f64>()
                .ok()?
        };
        Some(if self.negative { -magnitude } else { magnitude })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    /// A reader that hands out at most one byte per `read`.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// Compares under many buffer sizes (so tokens and whitespace runs straddle buffer
    /// boundaries at every position) and checks that all give the same result.
    fn run(flags: &DefaultFlags, answer: &[u8], output: &[u8]) -> Comparison {
        let mut results = Vec::new();
        for (cap_a, cap_o) in [
            (8192, 8192),
            (1, 1),
            (2, 3),
            (3, 2),
            (5, 7),
            (64, 1),
            (1, 64),
        ] {
            let mut a = BufReader::with_capacity(cap_a, answer);
            let mut o = BufReader::with_capacity(cap_o, output);
            let result = compare(flags, &mut a, &mut o).expect("in-memory readers do not fail");
            results.push(result);
        }
        let mut a = BufReader::new(OneByte(answer));
        let mut o = BufReader::new(OneByte(output));
        results.push(compare(flags, &mut a, &mut o).expect("in-memory readers do not fail"));
        for other in &results[1..] {
            assert_eq!(&results[0], other, "buffer sizes disagree");
        }
        assert_eq!(results[0].accepted, results[0].message.is_empty());
        results.swap_remove(0)
    }

    fn flags(text: &str) -> DefaultFlags {
        DefaultFlags::parse(&[text.to_string()]).expect("valid test flags")
    }

    fn accepts(flag_text: &str, answer: &[u8], output: &[u8]) -> bool {
        run(&flags(flag_text), answer, output).accepted
    }

    fn message(flag_text: &str, answer: &[u8], output: &[u8]) -> String {
        let result = run(&flags(flag_text), answer, output);
        assert!(!result.accepted, "expected a rejection");
        result.message
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    // ---- flags ----

    #[test]
    fn parse_defaults_and_each_flag() {
        assert_eq!(DefaultFlags::parse(&[]), Ok(DefaultFlags::default()));
        assert_eq!(
            DefaultFlags::parse(&args(&["", "  "])),
            Ok(DefaultFlags::default())
        );
        let d = DefaultFlags::default();
        assert!(!d.case_sensitive && !d.space_change_sensitive);
        assert_eq!((d.float_absolute, d.float_relative), (None, None));
        assert_eq!(
            DefaultFlags::parse(&args(&["case_sensitive"])),
            Ok(DefaultFlags {
                case_sensitive: true,
                ..d
            })
        );
        assert_eq!(
            DefaultFlags::parse(&args(&["space_change_sensitive"])),
            Ok(DefaultFlags {
                space_change_sensitive: true,
                ..d
            })
        );
        assert_eq!(
            DefaultFlags::parse(&args(&["float_relative_tolerance", "1e-6"])),
            Ok(DefaultFlags {
                float_relative: Some(1e-6),
                ..d
            })
        );
        assert_eq!(
            DefaultFlags::parse(&args(&["float_absolute_tolerance", "0.5"])),
            Ok(DefaultFlags {
                float_absolute: Some(0.5),
                ..d
            })
        );
        assert_eq!(
            DefaultFlags::parse(&args(&["float_tolerance", ".25"])),
            Ok(DefaultFlags {
                float_absolute: Some(0.25),
                float_relative: Some(0.25),
                ..d
            })
        );
        let all = DefaultFlags {
            case_sensitive: true,
            space_change_sensitive: true,
            float_absolute: Some(1e-3),
            float_relative: Some(1e-9),
        };
        assert_eq!(
            DefaultFlags::parse(&args(&[
                "float_relative_tolerance",
                "1e-9",
                "case_sensitive",
                "float_absolute_tolerance",
                "1e-3",
                "space_change_sensitive",
            ])),
            Ok(all)
        );
        // Boolean flags may repeat; zero is a tolerance.
        assert!(DefaultFlags::parse(&args(&["case_sensitive", "case_sensitive"])).is_ok());
        assert_eq!(
            DefaultFlags::parse(&args(&["float_tolerance", "0"])).map(|f| f.float_absolute),
            Ok(Some(0.0))
        );
    }

    #[test]
    fn parse_legacy_single_argument() {
        assert_eq!(
            DefaultFlags::parse(&args(&["float_tolerance 1e-6"])),
            DefaultFlags::parse(&args(&["float_tolerance", "1e-6"]))
        );
        assert_eq!(
            DefaultFlags::parse(&args(&["case_sensitive space_change_sensitive"])),
            Ok(DefaultFlags {
                case_sensitive: true,
                space_change_sensitive: true,
                ..DefaultFlags::default()
            })
        );
        // A flag in one argument, its number in the next; tabs and newlines split too.
        assert_eq!(
            DefaultFlags::parse(&args(&["case_sensitive\tfloat_absolute_tolerance", "2\n"]))
                .map(|f| (f.case_sensitive, f.float_absolute)),
            Ok((true, Some(2.0)))
        );
    }

    #[test]
    fn parse_errors() {
        let error = |list: &[&str]| match DefaultFlags::parse(&args(list)) {
            Err(e) => e,
            Ok(f) => panic!("{list:?} parsed as {f:?}"),
        };
        assert!(error(&["case_insensitive"]).contains("unknown flag"));
        assert!(error(&["Case_Sensitive"]).contains("unknown flag"));
        assert!(error(&["1e-6"]).contains("unknown flag"));
        assert!(error(&["float_tolerance"]).contains("needs a number"));
        assert!(error(&["float_relative_tolerance"]).contains("needs a number"));
        assert!(error(&["float_absolute_tolerance", "abc"]).contains("not a number"));
        assert!(error(&["float_tolerance", "case_sensitive"]).contains("not a number"));
        assert!(error(&["float_tolerance", "-1e-6"]).contains("negative"));
        assert!(error(&["float_tolerance", "NaN"]).contains("finite"));
        assert!(error(&["float_tolerance", "inf"]).contains("finite"));
        assert!(error(&["float_tolerance", "1e999"]).contains("finite"));
        for twice in [
            &["float_tolerance 1", "float_tolerance 1"][..],
            &["float_relative_tolerance 1 float_relative_tolerance 2"],
            &[
                "float_absolute_tolerance",
                "1",
                "float_absolute_tolerance",
                "1",
            ],
        ] {
            assert!(error(twice).contains("more than once"), "{twice:?}");
        }
        for mixed in [
            "float_tolerance 1 float_relative_tolerance 1",
            "float_absolute_tolerance 1 float_tolerance 1",
            "float_relative_tolerance 1 float_absolute_tolerance 1 float_tolerance 1",
        ] {
            assert!(error(&[mixed]).contains("cannot be combined"), "{mixed}");
        }
    }

    // ---- tokens and whitespace ----

    #[test]
    fn default_mode_ignores_amount_and_kind_of_whitespace() {
        assert!(accepts("", b"1 2\n3\n", b"  1\t2 3"));
        assert!(accepts("", b"a\x0bb\x0cc", b"a b\r\nc\n\n"));
        assert!(accepts("", b"x", b"\r\n\t\x0b\x0c x \r\n\t\x0b\x0c"));
        assert!(!accepts("", b"1 2", b"12"));
        assert!(!accepts("", b"12", b"1 2"));
        // Other control bytes are not whitespace.
        assert!(!accepts("", b"a b", b"a\x1cb"));
        assert!(!accepts("", b"a b", b"a\xa0b"));
    }

    #[test]
    fn empty_and_whitespace_only_files() {
        for flag_text in ["", "case_sensitive", "float_tolerance 1e-6"] {
            assert!(accepts(flag_text, b"", b""));
            assert!(accepts(flag_text, b"", b"\n\n  \r\n"));
            assert!(accepts(flag_text, b" \n", b""));
            assert!(!accepts(flag_text, b"", b"0"));
            assert!(!accepts(flag_text, b"0", b""));
            assert!(!accepts(flag_text, b"0", b" \n "));
        }
        assert!(accepts("space_change_sensitive", b"", b""));
        assert!(accepts("space_change_sensitive", b" \n", b" \n"));
        assert!(!accepts("space_change_sensitive", b"", b"\n"));
        assert!(!accepts("space_change_sensitive", b"\n", b""));
        assert!(!accepts("space_change_sensitive", b"\n", b" "));
    }

    #[test]
    fn token_count_mismatch_both_ways() {
        assert_eq!(
            message("", b"1 2 3 4 5", b"1 2 3 4"),
            "output ends after 4 tokens, answer has more"
        );
        assert_eq!(
            message("", b"1 2", b"1"),
            "output ends after 1 token, answer has more"
        );
        assert_eq!(
            message("", b"1", b""),
            "output ends after 0 tokens, answer has more"
        );
        let m = message("", b"1 2\n", b"1 2\n7\n");
        assert!(
            m.starts_with("extra output after the last answer token: \"7\""),
            "{m}"
        );
        assert!(m.contains("token 3, line 2"), "{m}");
        let m = message("float_tolerance 1e-6", b"1.5", b"1.5 1.5");
        assert!(m.starts_with("extra output"), "{m}");
    }

    #[test]
    fn case_folding_is_ascii_only() {
        assert!(accepts("", b"Yes", b"yES"));
        assert!(accepts(
            "",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            b"abcdefghijklmnopqrstuvwxyz"
        ));
        assert!(!accepts("case_sensitive", b"Yes", b"yes"));
        assert!(accepts("case_sensitive", b"Yes", b"Yes"));
        // Non-ASCII letters are compared exactly, in UTF-8 and in Latin-1.
        assert!(!accepts("", "É".as_bytes(), "é".as_bytes()));
        assert!(!accepts("", "STRASSE".as_bytes(), "straße".as_bytes()));
        assert!(!accepts("", b"\xc9", b"\xe9"));
        // Neighbours of the letter ranges do not fold: '@'/'`', '['/'{'.
        assert!(!accepts("", b"@", b"`"));
        assert!(!accepts("", b"[", b"{"));
    }

    #[test]
    fn nul_bytes_and_invalid_utf8() {
        assert!(accepts("", b"a\0b", b"a\0b"));
        assert!(!accepts("", b"a\0b", b"a\0c"));
        assert!(!accepts("", b"a b", b"a\0b"));
        assert!(accepts("", b"\xff\xfe", b"\n\xff\xfe\n"));
        assert!(!accepts("", b"3", b"\xff\xfe"));
        let m = message("", b"ok", b"\xffok\0");
        assert_eq!(
            m,
            "token 1 (line 1): expected \"ok\", got \"\u{fffd}ok\\0\""
        );
    }

    #[test]
    fn mismatch_message_has_token_and_output_line() {
        assert_eq!(
            message("", b"1\n2\n3.1416", b"1 2\n\n3.15"),
            "token 3 (line 3): expected \"3.1416\", got \"3.15\""
        );
        // Answer lines do not count.
        assert_eq!(
            message("", b"1\n\n\n\n2", b"1 3"),
            "token 2 (line 1): expected \"2\", got \"3\""
        );
        // Prefix relations in both directions.
        assert_eq!(
            message("", b"abc", b"abcd"),
            "token 1 (line 1): expected \"abc\", got \"abcd\""
        );
        assert_eq!(
            message("", b"abcd", b"abc"),
            "token 1 (line 1): expected \"abcd\", got \"abc\""
        );
    }

    #[test]
    fn long_tokens_are_cut_in_messages() {
        let long = vec![b'x'; 100];
        let mut other = long.clone();
        other[99] = b'y';
        let m = message("", &long, &other);
        let shown = "x".repeat(64);
        assert_eq!(
            m,
            format!("token 1 (line 1): expected \"{shown}\"…, got \"{shown}\"…")
        );
        // Exactly 64 bytes is not cut.
        let m = message("", &[b'a'; 64], &[b'b'; 64]);
        assert!(!m.contains('…'), "{m}");
        let m = message("", b"1", &[b'z'; 65]);
        assert!(m.ends_with("\"…"), "{m}");
        let m = message("", b"", &[b'z'; 1000]);
        assert!(m.contains(&format!("\"{}\"…", "z".repeat(64))), "{m}");
    }

    #[test]
    fn space_change_sensitive() {
        let f = "space_change_sensitive";
        assert!(accepts(f, b"1 2\n", b"1 2\n"));
        assert!(accepts(f, b" 1\t2\r\n\x0b", b" 1\t2\r\n\x0b"));
        assert!(!accepts(f, b"1 2\n", b"1 2"));
        assert!(!accepts(f, b"1 2", b"1 2\n"));
        assert!(!accepts(f, b"1\r\n2\r\n", b"1\n2\n"));
        assert!(!accepts(f, b"1\n2\n", b"1\r\n2\r\n"));
        assert!(!accepts(f, b"1  2", b"1 2"));
        assert!(!accepts(f, b"1 2", b"1  2"));
        assert!(!accepts(f, b"1 2", b"1\t2"));
        assert!(!accepts(f, b"1", b" 1"));
        assert!(!accepts(f, b" 1", b"1"));
        // Still case-insensitive unless asked.
        assert!(accepts(f, b"a B\n", b"A b\n"));
        assert!(!accepts(
            "space_change_sensitive case_sensitive",
            b"a B\n",
            b"A b\n"
        ));
        assert_eq!(
            message(f, b"1\n2\n3 4\n", b"1\n2\n3  4\n"),
            "whitespace differs at line 3 (after token 3)"
        );
        assert_eq!(
            message(f, b"1\n2\n", b"1\n\n2\n"),
            "whitespace differs at line 2 (after token 1)"
        );
        assert_eq!(
            message(f, b"1\n2\n", b"1\n2"),
            "whitespace differs at line 2 (after token 2)"
        );
        // Tokens still compared; count mismatch still reported.
        assert!(message(f, b"1 2", b"1 3").starts_with("token 2"));
        assert!(message(f, b"1 2\n", b"1 2\n3").starts_with("extra output"));
        assert!(message(f, b"1 2", b"1 ").contains("ends after 1 token"));
    }

    // ---- floats ----

    #[test]
    fn float_grammar() {
        let valid: &[(&str, f64)] = &[
            ("0", 0.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("-0", -0.0),
            ("+1e5", 1e5),
            ("1.e5", 1e5),
            ("1E5", 1e5),
            ("1e+5", 1e5),
            ("1e-5", 1e-5),
            ("-.5e-1", -0.05),
            ("007", 7.0),
            ("0.000123", 0.000123),
            ("123.456e2", 12345.6),
            ("1e0000000000000000000000000000005", 1e5),
            ("1e400", f64::INFINITY),
            ("-1e400", f64::NEG_INFINITY),
            ("1e-400", 0.0),
            ("0e99999999999999999999", 0.0),
            ("1.7976931348623157e308", f64::MAX),
            ("4.9e-324", 4.9e-324),
        ];
        for &(text, value) in valid {
            let parsed = parse_float(text.as_bytes());
            assert_eq!(parsed, Some(value), "{text}");
            assert_eq!(
                parsed.map(f64::is_sign_negative),
                Some(value.is_sign_negative()),
                "{text}"
            );
        }
        let invalid = [
            "", "+", "-", ".", "+.", "-.e1", ".e1", "e5", "1e", "1e+", "1e-", "1.2.3", "1e5.0",
            "1e5e5", "--1", "+-1", "1-", "inf", "-inf", "nan", "NaN", "infinity", "0x10", "1f",
            "1,5", "1_000", "1 ", " 1", "\u{661}", "1e5 ",
        ];
        for text in invalid {
            assert_eq!(parse_float(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn long_floats_round_like_the_exact_decimal() {
        // 2^53 + 1 is a tie between 2^53 and 2^53 + 2; any nonzero digit far behind breaks it.
        let tie = "9007199254740993";
        assert_eq!(parse_float(tie.as_bytes()), Some(9007199254740992.0));
        for zeros in [0, 10, 790, 800, 1000, 5000] {
            let text = format!("{tie}.{}1", "0".repeat(zeros));
            assert_eq!(
                parse_float(text.as_bytes()),
                Some(9007199254740994.0),
                "{zeros}"
            );
            assert_eq!(text.parse::<f64>().ok(), Some(9007199254740994.0));
            let text = format!("{tie}.{}", "0".repeat(zeros + 1));
            assert_eq!(
                parse_float(text.as_bytes()),
                Some(9007199254740992.0),
                "{zeros}"
            );
        }
        // Agrees with the standard parser on long digit strings.
        for (i, digits) in ["1234567890", "9999999999", "1000000001", "4999999999"]
            .iter()
            .enumerate()
        {
            let text = format!("{}.{}e-{}", digits.repeat(120), digits.repeat(3), 1000 + i);
            assert_eq!(
                parse_float(text.as_bytes()),
                text.parse::<f64>().ok(),
                "{text}"
            );
        }
        let tiny = format!("0.{}1", "0".repeat(5000));
        assert_eq!(parse_float(tiny.as_bytes()), Some(0.0));
        let huge = format!("1{}", "0".repeat(1000));
        assert_eq!(parse_float(huge.as_bytes()), Some(f64::INFINITY));
        let back = format!("0.{}1e5002", "0".repeat(5000));
        assert_eq!(parse_float(back.as_bytes()), Some(10.0));
    }

    #[test]
    fn absolute_relative_and_either() {
        let abs = "float_absolute_tolerance 1e-6";
        assert!(accepts(abs, b"1.0", b"1.0000005"));
        assert!(accepts(abs, b"1.0", b"0.9999995"));
        assert!(!accepts(abs, b"1.0", b"1.000002"));
        assert!(!accepts(abs, b"1000", b"1000.0005"));
        assert!(accepts(abs, b"1e-9", b"5e-7"));

        let rel = "float_relative_tolerance 1e-6";
        assert!(accepts(rel, b"1000", b"1000.0005"));
        assert!(accepts(rel, b"-1000", b"-999.9995"));
        assert!(!accepts(rel, b"1000", b"1000.002"));
        assert!(!accepts(rel, b"1e-9", b"5e-7"));
        assert!(!accepts(rel, b"1000", b"-1000"));
        // Relative to the answer, not the output.
        assert!(accepts("float_relative_tolerance 0.5", b"2", b"3"));
        assert!(!accepts("float_relative_tolerance 0.5", b"2", b"0.9"));

        let either = "float_tolerance 1e-6";
        assert!(accepts(either, b"1000", b"1000.0005"));
        assert!(accepts(either, b"1e-9", b"5e-7"));
        assert!(!accepts(either, b"1000", b"1000.002"));
        assert!(!accepts(either, b"1e-9", b"2e-6"));

        let separate = "float_absolute_tolerance 1e-6 float_relative_tolerance 1e-3";
        assert!(accepts(separate, b"1000", b"1000.5"));
        assert!(accepts(separate, b"0", b"0.0000009"));
        assert!(!accepts(separate, b"0", b"0.00001"));

        // The bound is inclusive; a zero tolerance still accepts the same value.
        assert!(accepts("float_absolute_tolerance 0.5", b"0", b"0.5"));
        assert!(accepts("float_absolute_tolerance 0.5", b"0", b"-0.5"));
        assert!(accepts("float_absolute_tolerance 0", b"1.5", b"1.50"));
        assert!(!accepts("float_absolute_tolerance 0", b"1.5", b"1.5000001"));
        assert!(accepts("float_relative_tolerance 0", b"-0", b"0"));
        assert!(accepts("float_relative_tolerance 1e-6", b"0", b"-0.0"));
        assert!(!accepts("float_relative_tolerance 1e-6", b"0", b"1e-300"));
    }

    #[test]
    fn integers_and_strings_under_float_tolerance() {
        let f = "float_tolerance 1e-6";
        assert!(accepts(f, b"3", b"3.0000001"));
        assert!(accepts(f, b"3", b"3e0"));
        assert!(accepts(f, b"3", b"+3."));
        assert!(accepts(f, b"3", b"0003"));
        assert!(accepts(f, b"100000", b"1e5"));
        assert!(!accepts(f, b"3", b"4"));
        // The output must be in the grammar when the answer is.
        for bad in [
            "three", "0x3", "3,0", "inf", "nan", "3.0.0", "3e", "3a", "\u{663}",
        ] {
            let m = message(f, b"3", bad.as_bytes());
            assert!(m.ends_with("(not a float)"), "{bad}: {m}");
        }
        assert_eq!(
            message(f, b"1\n2.5", b"1 2.6"),
            "token 2 (line 1): expected \"2.5\", got \"2.6\" (difference 1.0000000000000009e-1)"
        );
        // Answer tokens outside the grammar are compared as strings.
        assert!(accepts(f, b"abc", b"ABC"));
        assert!(!accepts(
            "float_tolerance 1e-6 case_sensitive",
            b"abc",
            b"ABC"
        ));
        assert!(accepts(f, b"inf", b"INF"));
        assert!(accepts(f, b"nan", b"nan"));
        assert!(!accepts(f, b"0x10", b"16"));
        assert!(accepts(f, b"0x10", b"0X10"));
        assert!(!accepts(f, b"1e", b"1e0"));
        assert!(!accepts(f, b"1.2.3", b"1.2.30"));
        // Without a tolerance, numbers are strings.
        assert!(!accepts("", b"1.0", b"1"));
        assert!(!accepts("", b"1", b"1.0"));
        assert!(accepts("", b"1E5", b"1e5"));
        assert!(!accepts("case_sensitive", b"1E5", b"1e5"));
    }

    #[test]
    fn floats_beyond_f64_range() {
        let f = "float_tolerance 1e-6";
        assert!(accepts(f, b"1e400", b"1e400"));
        assert!(accepts(f, b"1e400", b"2e400"));
        assert!(!accepts(f, b"1e400", b"1e308"));
        assert!(!accepts(f, b"1e400", b"-1e400"));
        assert!(!accepts("float_relative_tolerance 1e-6", b"1e400", b"0"));
        assert!(!accepts(f, b"1e308", b"1e400"));
        assert!(accepts(f, b"0", b"1e-400"));
    }

    #[test]
    fn long_float_tokens() {
        let f = "float_tolerance 1e-6";
        // An answer token too long to be a float is a string.
        let long = format!("1{}", "0".repeat(5000));
        assert!(!accepts(f, long.as_bytes(), b"1e5000"));
        assert!(accepts(f, long.as_bytes(), long.as_bytes()));
        let mut near = long.clone().into_bytes();
        near[4000] = b'1';
        assert!(!accepts(f, long.as_bytes(), &near));
        // At the limit it is still a float.
        let at_limit = format!("1.{}", "0".repeat(FLOAT_CANDIDATE_MAX - 2));
        assert!(accepts(f, at_limit.as_bytes(), b"1.0000001"));
        let over = format!("1.{}", "0".repeat(FLOAT_CANDIDATE_MAX - 1));
        assert!(!accepts(f, over.as_bytes(), b"1.0000001"));
        assert!(accepts(f, over.as_bytes(), over.as_bytes()));
        // An output float of any length is read as a float.
        let output = format!("1.{}", "0".repeat(10_000));
        assert!(accepts(f, b"1", output.as_bytes()));
        let output = format!("0.{}1e10001", "0".repeat(10_000));
        assert!(accepts(f, b"1", output.as_bytes()));
        let output = format!("1.{}x", "0".repeat(10_000));
        assert!(message(f, b"1", output.as_bytes()).ends_with("\"… (not a float)"));
    }

    // ---- readers ----

    /// Hands out its bytes, interrupted once first if asked, then fails or ends.
    struct Faulty {
        data: &'static [u8],
        interrupt: bool,
        fail: bool,
    }

    impl Read for Faulty {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if std::mem::take(&mut self.interrupt) {
                return Err(ErrorKind::Interrupted.into());
            }
            if self.data.is_empty() && self.fail {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.data.len().min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reader_errors_are_errors() {
        let f = DefaultFlags::default();
        let failing = |data| {
            BufReader::new(Faulty {
                data,
                interrupt: false,
                fail: true,
            })
        };
        let result = compare(&f, &mut &b"1 2"[..], &mut failing(b"1 2"));
        assert_eq!(
            result.map_err(|e| e.to_string()),
            Err("disk on fire".into())
        );
        assert!(compare(&f, &mut failing(b"1 2"), &mut &b"1 2"[..]).is_err());
        assert!(compare(&f, &mut failing(b"1 2 "), &mut &b"1 2"[..]).is_err());
        // A verdict reached without touching the failure is given.
        let result = compare(&f, &mut &b"1 2"[..], &mut failing(b"3 "));
        assert!(matches!(
            result,
            Ok(Comparison {
                accepted: false,
                ..
            })
        ));
        // Interrupted reads are retried, at any buffer size.
        for cap in [1, 2, 8192] {
            let interrupted = |data| {
                BufReader::with_capacity(
                    cap,
                    Faulty {
                        data,
                        interrupt: true,
                        fail: false,
                    },
                )
            };
            let result = compare(&f, &mut interrupted(b"1 2"), &mut interrupted(b"1\n2\n"));
            assert_eq!(result.map(|c| c.accepted).ok(), Some(true));
        }
    }

    /// `len` bytes of `fill`, the last replaced by `last`, then `tail`; made on the fly.
    struct Generated {
        remaining: u64,
        fill: u8,
        last: u8,
        tail: &'static [u8],
    }

    impl Generated {
        fn new(len: u64, fill: u8) -> Generated {
            Generated {
                remaining: len,
                fill,
                last: fill,
                tail: b"",
            }
        }
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.remaining == 0 {
                let n = self.tail.len().min(buf.len());
                buf[..n].copy_from_slice(&self.tail[..n]);
                self.tail = &self.tail[n..];
                return Ok(n);
            }
            let n = buf
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            buf[..n].fill(self.fill);
            self.remaining -= n as u64;
            if self.remaining == 0 && n > 0 {
                buf[n - 1] = self.last;
            }
            Ok(n)
        }
    }

    const BIG: u64 = 50 * 1024 * 1024;

    fn compare_readers(flag_text: &str, answer: impl Read, output: impl Read) -> Comparison {
        let mut a = BufReader::new(answer);
        let mut o = BufReader::new(output);
        compare(&flags(flag_text), &mut a, &mut o).expect("generated readers do not fail")
    }

    #[test]
    fn fifty_megabyte_token_is_streamed() {
        let big = || Generated::new(BIG, b'a');
        let short = compare_readers("", &b"aaa\n"[..], big());
        assert!(!short.accepted);
        let cut = "a".repeat(64);
        assert_eq!(
            short.message,
            format!("token 1 (line 1): expected \"aaa\", got \"{cut}\"…")
        );
        assert!(compare_readers("", big(), big()).accepted);
        assert!(compare_readers("float_tolerance 1e-6", big(), big()).accepted);
        let upper = Generated::new(BIG, b'A');
        assert!(compare_readers("", big(), upper).accepted);
        let upper = Generated::new(BIG, b'A');
        assert!(!compare_readers("case_sensitive", big(), upper).accepted);
        let mut differs_at_end = big();
        differs_at_end.last = b'b';
        let m = compare_readers("", big(), differs_at_end).message;
        assert_eq!(
            m,
            format!("token 1 (line 1): expected \"{cut}\"…, got \"{cut}\"…")
        );
        let mut longer = big();
        longer.tail = b"a\n";
        assert!(!compare_readers("", big(), longer).accepted);
        let mut spaced = big();
        spaced.tail = b"\n";
        assert!(compare_readers("", big(), spaced).accepted);
    }

    #[test]
    fn huge_whitespace_is_streamed() {
        let mut spaces = Generated::new(BIG, b' ');
        spaces.tail = b"\n";
        let answer = || &b"1\n"[..];
        let output = |spaces: Generated| (&b"1"[..]).chain(spaces);
        assert!(compare_readers("", answer(), output(spaces)).accepted);
        let mut lines = Generated::new(BIG, b'\n');
        lines.tail = b"2";
        let m = compare_readers("", answer(), output(lines)).message;
        assert_eq!(
            m,
            format!(
                "extra output after the last answer token: \"2\" (token 2, line {})",
                BIG + 1
            )
        );
    }

    /// Never ends: a verdict needs the comparison to stop at the first difference.
    struct Endless(u8);

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(self.0);
            Ok(buf.len())
        }
    }

    #[test]
    fn stops_at_the_first_difference() {
        assert!(!compare_readers("", &b"y"[..], Endless(b'x')).accepted);
        assert!(!compare_readers("", &b"x"[..], Endless(b'x')).accepted);
        assert!(!compare_readers("float_tolerance 1", &b"1"[..], Endless(b'x')).accepted);
        assert!(
            !compare_readers(
                "space_change_sensitive",
                &b"1 "[..],
                (&b"1"[..]).chain(Endless(b' '))
            )
            .accepted
        );
        let extra = compare_readers("", &b"1"[..], (&b"1 "[..]).chain(Endless(b'z')));
        assert!(
            extra.message.starts_with("extra output"),
            "{}",
            extra.message
        );
    }
}
