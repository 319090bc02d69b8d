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
    /// A dot after digits: may end the number.
    TrailingDot,
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
                (Part::Int, b'.') => Part::TrailingDot,
                (Part::LeadingDot | Part::TrailingDot | Part::Frac, b'0'..=b'9') => {
                    if !self.digit(b) {
                        // A leading zero after the point moves the point.
                        self.point = self.point.saturating_sub(1);
                    }
                    Part::Frac
                }
                (Part::Int | Part::TrailingDot | Part::Frac, b'e' | b'E') => Part::ExpMark,
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
        if !matches!(
            self.part,
            Part::Int | Part::TrailingDot | Part::Frac | Part::Exp
        ) {
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
