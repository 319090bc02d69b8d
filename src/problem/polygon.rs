//! Polygon packages (`problem.xml`) with their tests and testlib checker.
//!
//! What is read, from a package as Polygon exports it (tests generated, under `tests/`):
//! - `<names><name language value/>`: the name (English first);
//! - `<judging input-file output-file>`: the file names a program reads and writes (empty =
//!   stdin / stdout), and its `<testset name="tests">`: limits, `<test-count>`, the input and
//!   answer path patterns (`tests/%02d`, `tests/%02d.a`), `<tests><test points group/>` and
//!   `<groups><group name points points-policy><dependencies><dependency group/>`;
//! - `<assets><checker><source path/>`: the testlib checker; `<assets><interactor><source
//!   path/>`: a testlib interactor (C or C++), which makes the problem interactive.
//!
//! Scoring: points on tests or groups make the problem scored. With groups, each group that has
//! tests is a subtask (in the order the tests first name it) worth its points over the total;
//! `complete-group` is pass-fail, `each-test` sums its tests' points. Points without groups
//! weigh the tests. No points: pass-fail.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use roxmltree::{Document, Node};

use super::{
    Aggregation, Checker, CheckerLanguage, CheckerProgram, Data, Format, Interaction, Problem,
    ProblemError, ProblemIo, Scoring, Subtask, TestCase, ValidationLimits,
};

/// The testset judged: Polygon's main one (others, like `pretests`, are not).
const TESTSET: &str = "tests";

/// Widest `%0Nd` accepted: far beyond any real pattern, and it bounds what a hostile one costs.
const MAX_WIDTH: usize = 32;

/// Loads the Polygon package in `dir`. What every format must hold is checked by the caller.
pub(super) fn load(dir: &Path, id: &str) -> Result<Problem, ProblemError> {
    let xml = dir.join("problem.xml");
    let text = std::fs::read_to_string(&xml).map_err(|source| ProblemError::Unreadable {
        path: xml.clone(),
        source,
    })?;
    let cx = Cx { dir, id, xml: &xml };
    let doc =
        Document::parse(&text).map_err(|e| cx.invalid(format!("not well-formed XML: {e}")))?;
    let root = doc.root_element();
    if !root.has_tag_name("problem") {
        return Err(cx.invalid(format!(
            "the root element is <{}>, not <problem>",
            root.tag_name().name()
        )));
    }
    let assets = child(root, "assets");
    let interaction = match assets.and_then(|a| child(a, "interactor")) {
        Some(node) => Interaction::Interactor(cx.program(node, "interactor")?),
        None => Interaction::Batch,
    };

    let judging = child(root, "judging").ok_or_else(|| cx.invalid("no <judging>".into()))?;
    let io = ProblemIo {
        input_file: cx.io_name(judging, "input-file")?,
        output_file: cx.io_name(judging, "output-file")?,
    };
    // Only direct children: the checker's own tests are a `<testset>` under `<assets>` too.
    let testset = children(judging, "testset")
        .find(|t| t.attribute("name") == Some(TESTSET))
        .ok_or_else(|| cx.invalid(format!("<judging> has no <testset name=\"{TESTSET}\">")))?;
    let time_ms = cx.number(testset, "time-limit")?;
    let memory_bytes = cx.number(testset, "memory-limit")?;
    let input_pattern = cx.pattern(testset, "input-path-pattern")?;
    let answer_pattern = cx.pattern(testset, "answer-path-pattern")?;

    let raw_tests = child(testset, "tests")
        .map(|t| children(t, "test").collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, node)| cx.raw_test(i + 1, node))
        .collect::<Result<Vec<_>, _>>()?;
    if child(testset, "test-count").is_some() {
        let count = cx.number(testset, "test-count")?;
        if count != raw_tests.len() as u64 {
            return Err(cx.inconsistent(format!(
                "<test-count> says {count} tests, but <tests> lists {}",
                raw_tests.len()
            )));
        }
    }
    let groups = cx.groups(testset)?;

    let mut tests = Vec::with_capacity(raw_tests.len());
    for number in 1..=raw_tests.len() {
        let input = cx.test_file(number, "input", &input_pattern)?;
        let answer = cx.test_file(number, "answer", &answer_pattern)?;
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| number.to_string());
        tests.push(TestCase {
            name,
            input: Data::File(input),
            answer: Data::File(answer),
            subtask: None,
            weight: 1.0,
            max_score: 1.0,
            checker_args: Vec::new(),
        });
    }
    let (scoring, subtasks) = cx.scoring(&raw_tests, &groups, &mut tests)?;
    let checker = cx.checker(assets)?;

    let name = cx.name(root);
    Ok(Problem {
        id: id.to_owned(),
        name,
        format: Format::Polygon,
        dir: dir.to_owned(),
        time_ms,
        memory_kb: memory_bytes.div_ceil(1024),
        output_limit_bytes: None,
        subtasks,
        scoring,
        tests,
        checker,
        io,
        validation: ValidationLimits::default(),
        interaction,
    })
}

/// A `<test>` as written.
struct RawTest {
    points: Option<f64>,
    group: Option<String>,
}

/// A `<group>` as written.
struct RawGroup {
    points: Option<f64>,
    policy: Option<String>,
    dependencies: Vec<String>,
}

/// What a group makes of its tests.
#[derive(Clone, Copy)]
enum Policy {
    CompleteGroup,
    EachTest,
}

/// The package being read, for paths and error messages.
struct Cx<'a> {
    dir: &'a Path,
    id: &'a str,
    xml: &'a Path,
}

fn child<'a, 'i>(node: Node<'a, 'i>, tag: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.has_tag_name(tag))
}

/// Element children named `tag` (tags are literals: `'static` keeps the lifetimes simple).
fn children<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    tag: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children()
        .filter(move |n| n.is_element() && n.has_tag_name(tag))
}

impl Cx<'_> {
    fn invalid(&self, reason: String) -> ProblemError {
        ProblemError::Invalid {
            path: self.xml.to_owned(),
            reason,
        }
    }

    fn inconsistent(&self, reason: String) -> ProblemError {
        ProblemError::Inconsistent {
            id: self.id.to_owned(),
            reason,
        }
    }

    /// The English name, else the first, else the short name, else the id.
    fn name(&self, root: Node) -> String {
        let names: Vec<_> = child(root, "names")
            .map(|n| children(n, "name").collect())
            .unwrap_or_default();
        names
            .iter()
            .find(|n| n.attribute("language") == Some("english"))
            .or(names.first())
            .and_then(|n| n.attribute("value"))
            .or(root.attribute("short-name"))
            .unwrap_or(self.id)
            .to_owned()
    }

    /// `input-file` / `output-file`: empty or absent = standard stream; else a plain file name,
    /// as the program's working folder is where it is created.
    fn io_name(&self, judging: Node, attribute: &str) -> Result<Option<String>, ProblemError> {
        let value = judging.attribute(attribute).unwrap_or("").trim();
        if value.is_empty() {
            return Ok(None);
        }
        let plain = value != "."
            && value != ".."
            && !value.contains(['/', '\\', '\0'])
            && !value.contains("..");
        if !plain {
            return Err(self.invalid(format!(
                "<judging {attribute}=\"{value}\">: not a plain file name"
            )));
        }
        Ok(Some(value.to_owned()))
    }

    /// The non-negative integer text of `parent`'s child `tag`.
    fn number(&self, parent: Node, tag: &str) -> Result<u64, ProblemError> {
        let text = child(parent, tag)
            .ok_or_else(|| self.invalid(format!("<testset> has no <{tag}>")))?
            .text()
            .unwrap_or("")
            .trim();
        text.parse()
            .map_err(|e| self.invalid(format!("<{tag}>{text}</{tag}>: not a whole number: {e}")))
    }

    /// A path pattern, checked by formatting it once.
    fn pattern(&self, testset: Node, tag: &str) -> Result<String, ProblemError> {
        let text = child(testset, tag)
            .ok_or_else(|| self.invalid(format!("<testset> has no <{tag}>")))?
            .text()
            .unwrap_or("")
            .trim()
            .to_owned();
        format_pattern(&text, 1)
            .and_then(|p| relative_path(&p))
            .map_err(|reason| self.invalid(format!("<{tag}>{text}</{tag}>: {reason}")))?;
        Ok(text)
    }

    fn raw_test(&self, number: usize, node: Node) -> Result<RawTest, ProblemError> {
        let points = self.points(node, &format!("test {number}"))?;
        let group = node
            .attribute("group")
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned);
        Ok(RawTest { points, group })
    }

    /// A `points` attribute: a finite number ≥ 0.
    fn points(&self, node: Node, what: &str) -> Result<Option<f64>, ProblemError> {
        let Some(text) = node.attribute("points") else {
            return Ok(None);
        };
        match text.trim().parse::<f64>() {
            Ok(p) if p.is_finite() && p >= 0.0 => Ok(Some(p)),
            _ => Err(self.invalid(format!("{what} has points=\"{text}\": not a number ≥ 0"))),
        }
    }

    fn groups(&self, testset: Node) -> Result<HashMap<String, RawGroup>, ProblemError> {
        let mut groups = HashMap::new();
        let Some(list) = child(testset, "groups") else {
            return Ok(groups);
        };
        for node in children(list, "group") {
            let name = node
                .attribute("name")
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| self.invalid("a <group> has no name".into()))?
                .to_owned();
            let group = RawGroup {
                points: self.points(node, &format!("group {name:?}"))?,
                policy: node.attribute("points-policy").map(str::to_owned),
                dependencies: child(node, "dependencies")
                    .map(|d| {
                        children(d, "dependency")
                            .filter_map(|d| d.attribute("group"))
                            .map(|g| g.trim().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            if groups.insert(name.clone(), group).is_some() {
                return Err(self.invalid(format!("group {name:?} is defined twice")));
            }
        }
        Ok(groups)
    }

    /// Test `number`'s file by `pattern`; it must exist (its bytes are read when the test runs).
    fn test_file(&self, number: usize, what: &str, pattern: &str) -> Result<PathBuf, ProblemError> {
        let rel = format_pattern(pattern, number)
            .and_then(|p| relative_path(&p))
            .map_err(|reason| self.invalid(format!("path pattern {pattern:?}: {reason}")))?;
        let path = self.dir.join(&rel);
        if !path.is_file() {
            return Err(self.inconsistent(format!(
                "test {number} has no {what} file {}",
                rel.display()
            )));
        }
        Ok(path)
    }

    /// The scoring rule and subtasks; sets the tests' subtasks and weights.
    fn scoring(
        &self,
        raw: &[RawTest],
        groups: &HashMap<String, RawGroup>,
        tests: &mut [TestCase],
    ) -> Result<(Scoring, Vec<Subtask>), ProblemError> {
        let has_points =
            raw.iter().any(|t| t.points.is_some()) || groups.values().any(|g| g.points.is_some());
        if !has_points {
            // Groups without points only sort the tests for people: nothing to score.
            return Ok((Scoring::PassFail, Vec::new()));
        }
        let has_groups = !groups.is_empty() || raw.iter().any(|t| t.group.is_some());
        if !has_groups {
            for (test, raw) in tests.iter_mut().zip(raw) {
                test.weight = raw.points.unwrap_or(0.0);
            }
            if !tests.iter().any(|t| t.weight > 0.0) {
                return Err(self.inconsistent("the tests' points add up to 0".into()));
            }
            return Ok((Scoring::Tests(Aggregation::Sum), Vec::new()));
        }

        // Subtasks in the order the tests first name their groups.
        let mut order: Vec<&str> = Vec::new();
        for t in raw {
            if let Some(g) = t.group.as_deref() {
                if !order.contains(&g) {
                    order.push(g);
                }
            }
        }
        let mut built: Vec<(Subtask, f64)> = Vec::with_capacity(order.len());
        for (index, &name) in order.iter().enumerate() {
            let group = groups.get(name).ok_or_else(|| {
                self.inconsistent(format!(
                    "tests name group {name:?}, which <groups> does not define (its points policy is unknown)"
                ))
            })?;
            let policy = match group.policy.as_deref().map(str::trim) {
                Some("complete-group") => Policy::CompleteGroup,
                Some("each-test") => Policy::EachTest,
                other => {
                    return Err(self.invalid(format!(
                        "group {name:?} has points-policy {other:?}, not \"complete-group\" or \"each-test\""
                    )))
                }
            };
            let sum: f64 = raw
                .iter()
                .filter(|t| t.group.as_deref() == Some(name))
                .filter_map(|t| t.points)
                .sum();
            let worth = match policy {
                Policy::CompleteGroup => group.points.unwrap_or(sum),
                Policy::EachTest => {
                    // Its tests' points are its worth: a different total on the group is a
                    // contradiction, not something to pick from.
                    if let Some(p) = group.points {
                        if (p - sum).abs() > 1e-9 * p.abs().max(1.0) {
                            return Err(self.inconsistent(format!(
                                "group {name:?} (each-test) has {p} points, but its tests' points add up to {sum}"
                            )));
                        }
                    }
                    sum
                }
            };
            let mut requires = Vec::new();
            for dep in &group.dependencies {
                match order.iter().position(|g| g == dep) {
                    Some(j) if j < index => requires.push(j as u32 + 1),
                    Some(j) if j == index => {
                        return Err(self.inconsistent(format!("group {name:?} depends on itself")))
                    }
                    Some(_) => {
                        return Err(self.inconsistent(format!(
                        "group {name:?} depends on group {dep:?}, whose tests come after its own"
                    )))
                    }
                    // A group without tests is complete: nothing to require.
                    None if groups.contains_key(dep.as_str()) => {}
                    None => {
                        return Err(self.inconsistent(format!(
                            "group {name:?} depends on group {dep:?}, which is not defined"
                        )))
                    }
                }
            }
            built.push((
                Subtask {
                    score: worth,
                    constraints: name.to_owned(),
                    aggregation: match policy {
                        Policy::CompleteGroup => Aggregation::PassFail,
                        Policy::EachTest => Aggregation::Sum,
                    },
                    requires,
                },
                worth,
            ));
        }
        // Points nobody could earn would make the shares lie.
        let mut unused: Vec<_> = groups
            .iter()
            .filter(|(name, g)| {
                !order.contains(&name.as_str()) && g.points.is_some_and(|p| p > 0.0)
            })
            .map(|(name, _)| name.as_str())
            .collect();
        unused.sort_unstable();
        if let Some(name) = unused.first() {
            return Err(self.inconsistent(format!("group {name:?} has points but no tests")));
        }
        let total: f64 = built.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return Err(self.inconsistent("the groups' points add up to 0".into()));
        }

        for (i, (test, raw)) in tests.iter_mut().zip(raw).enumerate() {
            let points = raw.points.unwrap_or(0.0);
            match raw.group.as_deref() {
                Some(g) => {
                    let index = order.iter().position(|o| *o == g).unwrap_or_default();
                    test.subtask = Some(index as u32 + 1);
                    test.weight = match built[index].0.aggregation {
                        Aggregation::Sum => points,
                        _ => 1.0,
                    };
                }
                None if points > 0.0 => {
                    return Err(self
                        .inconsistent(format!("test {} has {points} points but no group", i + 1)))
                }
                // Outside every group it counts for nothing.
                None => test.weight = 0.0,
            }
        }
        let subtasks = built
            .into_iter()
            .map(|(mut s, worth)| {
                s.score = worth / total;
                s
            })
            .collect();
        Ok((Scoring::Subtasks, subtasks))
    }

    /// The testlib checker of `<assets>`.
    fn checker(&self, assets: Option<Node>) -> Result<Checker, ProblemError> {
        let checker = assets
            .and_then(|a| child(a, "checker"))
            .ok_or_else(|| self.inconsistent("no checker in <assets>".into()))?;
        Ok(Checker::Testlib(self.program(checker, "checker")?))
    }

    /// The program of a `<checker>` or `<interactor>`: its `<source path>`.
    fn program(&self, node: Node, what: &str) -> Result<CheckerProgram, ProblemError> {
        let source = child(node, "source")
            .and_then(|s| s.attribute("path"))
            .ok_or_else(|| self.invalid(format!("<{what}> has no <source path=...>")))?;
        let rel = relative_path(source)
            .map_err(|reason| self.invalid(format!("{what} source {source:?}: {reason}")))?;
        let path = self.dir.join(&rel);
        if !path.is_file() {
            return Err(self.inconsistent(format!(
                "the {what} source {} does not exist",
                rel.display()
            )));
        }
        let language = CheckerLanguage::of(&rel).ok_or_else(|| {
            self.inconsistent(format!(
                "the {what} source {} is in no supported language",
                rel.display()
            ))
        })?;
        // `relative_path` returns a non-empty path of normal components: it has both.
        let (Some(parent), Some(file)) = (path.parent(), rel.file_name()) else {
            return Err(self.invalid(format!("{what} source {source:?}: not a file path")));
        };
        // The folder, not the file: `testlib.h` beside a C++ checker is what it includes.
        Ok(CheckerProgram {
            dir: parent.to_owned(),
            sources: vec![PathBuf::from(file)],
            language,
        })
    }
}

/// `pattern` with its one printf conversion (`%d`, `%Nd`, `%0Nd`; `%%` is a `%`) made `n`.
fn format_pattern(pattern: &str, n: usize) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() + MAX_WIDTH);
    let mut conversions = 0;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let zero = chars.peek() == Some(&'0');
        if zero {
            chars.next();
        }
        let mut width = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(*d);
            chars.next();
        }
        if chars.next() != Some('d') {
            return Err("only %d, %Nd and %0Nd conversions are supported".into());
        }
        let width: usize = if width.is_empty() {
            0
        } else {
            width
                .parse()
                .ok()
                .filter(|w| *w <= MAX_WIDTH)
                .ok_or_else(|| format!("a width above {MAX_WIDTH}"))?
        };
        if zero {
            out.push_str(&format!("{n:0width$}"));
        } else {
            out.push_str(&format!("{n:width$}"));
        }
        conversions += 1;
    }
    if conversions != 1 {
        return Err(format!(
            "needs exactly one %d conversion for the test number, has {conversions}"
        ));
    }
    Ok(out)
}

/// A path inside the package: relative, no `..`, not empty.
fn relative_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return Err("not a path inside the package".into()),
        }
    }
    if out.as_os_str().is_empty() || text.contains('\0') {
        return Err("not a path inside the package".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::*;

    /// A package `p` under a new root: `problem.xml` from `judging` (the `<judging>` element)
    /// and `assets`, the files `tests/01`.. `tests/NN.a` for `tests` tests, and a checker.
    fn package(judging: &str, assets: &str, tests: usize) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("p");
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        std::fs::create_dir_all(dir.join("files")).unwrap();
        for i in 1..=tests {
            std::fs::write(dir.join(format!("tests/{i:02}")), format!("{i}\n")).unwrap();
            std::fs::write(dir.join(format!("tests/{i:02}.a")), format!("{i}\n")).unwrap();
        }
        std::fs::write(dir.join("files/check.cpp"), "int main() {}\n").unwrap();
        std::fs::write(dir.join("files/testlib.h"), "\n").unwrap();
        let xml = format!(
            r#"<?xml version="1.0" encoding="utf-8" standalone="no"?>
<problem revision="3" short-name="sum">
  <names><name language="russian" value="Сумма"/><name language="english" value="Sum"/></names>
  {judging}
  <assets>{assets}</assets>
</problem>"#
        );
        std::fs::write(dir.join("problem.xml"), xml).unwrap();
        root
    }

    const CHECKER: &str = r#"<checker name="std::wcmp.cpp" type="testlib">
      <source path="files/check.cpp" type="cpp.g++17"/>
      <testset><test-count>0</test-count><input-path-pattern>files/tests/checker-tests/%02d</input-path-pattern></testset>
    </checker>"#;

    fn judging(io: &str, tests: &str, count: usize, groups: &str) -> String {
        format!(
            r#"<judging cpu-name="x" {io}>
    <testset name="pretests"><time-limit>1</time-limit></testset>
    <testset name="tests">
      <time-limit>2000</time-limit>
      <memory-limit>268435457</memory-limit>
      <test-count>{count}</test-count>
      <input-path-pattern>tests/%02d</input-path-pattern>
      <answer-path-pattern>tests/%02d.a</answer-path-pattern>
      <tests>{tests}</tests>
      {groups}
    </testset>
  </judging>"#
        )
    }

    const STD_IO: &str = r#"input-file="" output-file="""#;

    fn load_p(root: &tempfile::TempDir) -> Result<Problem, ProblemError> {
        load(root.path(), "p")
    }

    fn error(root: &tempfile::TempDir) -> String {
        match load_p(root) {
            Ok(p) => panic!("expected an error, loaded {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn loads_a_package_without_groups() {
        let tests = r#"<test method="manual" sample="true"/><test method="generated" cmd="gen 1"/><test method="manual"/>"#;
        let root = package(&judging(STD_IO, tests, 3, ""), CHECKER, 3);
        let p = load_p(&root).unwrap();
        let dir = root.path().join("p");
        assert_eq!(p.format, Format::Polygon);
        assert_eq!(p.name, "Sum");
        assert_eq!(p.time_ms, 2000);
        assert_eq!(p.memory_kb, 262145, "rounded up");
        assert_eq!(p.output_limit_bytes, None);
        assert_eq!(p.io, ProblemIo::default());
        assert_eq!(p.scoring, Scoring::PassFail);
        assert!(p.subtasks.is_empty());
        assert_eq!(p.tests.len(), 3);
        let t = &p.tests[2];
        assert_eq!(t.name, "03");
        assert_eq!(t.input, Data::File(dir.join("tests/03")));
        assert_eq!(t.answer, Data::File(dir.join("tests/03.a")));
        assert_eq!((t.subtask, t.weight, t.max_score), (None, 1.0, 1.0));
        assert!(t.checker_args.is_empty());
        assert_eq!(
            p.checker,
            Checker::Testlib(CheckerProgram {
                dir: dir.join("files"),
                sources: vec![PathBuf::from("check.cpp")],
                language: CheckerLanguage::Cpp,
            })
        );
    }

    #[test]
    fn each_test_points_are_test_weights() {
        let tests = r#"<test points="0" sample="true"/><test points="30"/><test points="70"/>"#;
        let root = package(&judging(STD_IO, tests, 3, ""), CHECKER, 3);
        let p = load_p(&root).unwrap();
        assert_eq!(p.scoring, Scoring::Tests(Aggregation::Sum));
        let weights: Vec<_> = p.tests.iter().map(|t| t.weight).collect();
        assert_eq!(weights, [0.0, 30.0, 70.0]);

        // Groups without points do not make subtasks.
        let tests = r#"<test group="1"/><test group="2"/>"#;
        let groups = r#"<groups><group name="1" points-policy="complete-group"/><group name="2" points-policy="each-test"/></groups>"#;
        let root = package(&judging(STD_IO, tests, 2, groups), CHECKER, 2);
        let p = load_p(&root).unwrap();
        assert_eq!(p.scoring, Scoring::PassFail);
        assert!(p.subtasks.is_empty());
        assert!(p
            .tests
            .iter()
            .all(|t| t.weight == 1.0 && t.subtask.is_none()));
    }

    #[test]
    fn groups_make_subtasks_with_dependencies() {
        let tests = r#"
          <test group="samples" points="0" sample="true"/>
          <test group="1" points="10"/><test group="1" points="10"/>
          <test group="2" points="20"/><test group="2" points="40"/>
          <test group="3" points="5"/>"#;
        let groups = r#"<groups>
          <group name="1" points="40" points-policy="complete-group"/>
          <group name="2" points-policy="each-test" points="60.0">
            <dependencies><dependency group="1"/><dependency group="samples"/></dependencies>
          </group>
          <group name="samples" points="0" points-policy="each-test"/>
          <group name="3" points-policy="complete-group">
            <dependencies><dependency group="2"/><dependency group="empty"/></dependencies>
          </group>
          <group name="empty" points-policy="complete-group" points="0"/>
        </groups>"#;
        let root = package(&judging(STD_IO, tests, 6, groups), CHECKER, 6);
        let p = load_p(&root).unwrap();
        assert_eq!(p.scoring, Scoring::Subtasks);
        let names: Vec<_> = p.subtasks.iter().map(|s| s.constraints.as_str()).collect();
        assert_eq!(names, ["samples", "1", "2", "3"]);
        let total = 105.0;
        let scores: Vec<_> = p.subtasks.iter().map(|s| s.score).collect();
        assert_eq!(scores, [0.0, 40.0 / total, 60.0 / total, 5.0 / total]);
        let aggregations: Vec<_> = p.subtasks.iter().map(|s| s.aggregation).collect();
        use Aggregation::{PassFail, Sum};
        assert_eq!(aggregations, [Sum, PassFail, Sum, PassFail]);
        let requires: Vec<_> = p.subtasks.iter().map(|s| s.requires.clone()).collect();
        assert_eq!(requires, [vec![], vec![], vec![2, 1], vec![3]]);
        let tests: Vec<_> = p.tests.iter().map(|t| (t.subtask, t.weight)).collect();
        assert_eq!(
            tests,
            [
                (Some(1), 0.0),
                (Some(2), 1.0),
                (Some(2), 1.0),
                (Some(3), 20.0),
                (Some(3), 40.0),
                (Some(4), 1.0)
            ]
        );
    }

    #[test]
    fn group_points_that_cannot_be_shared_are_refused() {
        let cases = [
            // each-test group whose points differ from its tests'
            (
                r#"<test group="a" points="1"/>"#,
                r#"<group name="a" points="5" points-policy="each-test"/>"#,
                "add up to 1",
            ),
            (
                r#"<test group="a" points="0"/>"#,
                r#"<group name="a" points-policy="complete-group"/>"#,
                "add up to 0",
            ),
            (
                r#"<test group="a" points="1"/>"#,
                r#"<group name="a" points-policy="complete-group"/><group name="b" points="3" points-policy="complete-group"/>"#,
                "\"b\" has points but no tests",
            ),
            (
                r#"<test group="a" points="1"/><test group="b" points="1"/>"#,
                r#"<group name="a" points-policy="each-test"><dependencies><dependency group="b"/></dependencies></group><group name="b" points-policy="each-test"/>"#,
                "come after",
            ),
            (
                r#"<test group="a" points="1"/>"#,
                r#"<group name="a" points-policy="each-test"><dependencies><dependency group="x"/></dependencies></group>"#,
                "not defined",
            ),
            (
                r#"<test group="a" points="1"/><test group="z" points="1"/>"#,
                r#"<group name="a" points-policy="each-test"/>"#,
                "does not define",
            ),
            (
                r#"<test group="a" points="1"/>"#,
                r#"<group name="a" points-policy="best-test"/>"#,
                "points-policy",
            ),
            (
                r#"<test group="a" points="1"/><test points="2"/>"#,
                r#"<group name="a" points-policy="each-test"/>"#,
                "test 2 has 2 points but no group",
            ),
            (r#"<test points="-1"/>"#, "", "not a number"),
        ];
        for (tests, groups, expected) in cases {
            let count = tests.matches("<test").count();
            let groups = format!("<groups>{groups}</groups>");
            let root = package(&judging(STD_IO, tests, count, &groups), CHECKER, count);
            let e = error(&root);
            assert!(e.contains(expected), "{tests} {groups}: {e}");
        }
    }

    #[test]
    fn named_input_and_output_files() {
        let io = r#"input-file="sum.in" output-file="sum.out""#;
        let root = package(&judging(io, "<test/>", 1, ""), CHECKER, 1);
        let p = load_p(&root).unwrap();
        assert_eq!(p.io.input_file.as_deref(), Some("sum.in"));
        assert_eq!(p.io.output_file.as_deref(), Some("sum.out"));

        for bad in ["../sum.in", "a/b", ".."] {
            let io = format!(r#"input-file="{bad}" output-file="""#);
            let root = package(&judging(&io, "<test/>", 1, ""), CHECKER, 1);
            let e = load_p(&root).unwrap_err();
            assert!(matches!(e, ProblemError::Invalid { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_files_and_wrong_counts_are_named() {
        let root = package(&judging(STD_IO, "<test/><test/><test/>", 3, ""), CHECKER, 3);
        std::fs::remove_file(root.path().join("p/tests/03.a")).unwrap();
        assert!(error(&root).contains("test 3 has no answer file tests/03.a"));
        std::fs::remove_file(root.path().join("p/tests/02")).unwrap();
        assert!(error(&root).contains("test 2 has no input file tests/02"));

        let root = package(&judging(STD_IO, "<test/><test/>", 3, ""), CHECKER, 3);
        assert!(error(&root).contains("<test-count> says 3 tests, but <tests> lists 2"));

        let root = package(&judging(STD_IO, "", 0, ""), CHECKER, 0);
        assert!(error(&root).contains("no test cases"));
    }

    #[test]
    fn interactors_are_read_and_missing_checkers_refused() {
        let interactor = format!(
            r#"{CHECKER}<interactor><source path="files/interactor.cpp" type="cpp.g++17"/></interactor>"#
        );
        let root = package(&judging(STD_IO, "<test/>", 1, ""), &interactor, 1);
        // Named but not there.
        assert!(error(&root).contains("the interactor source files/interactor.cpp does not exist"));
        std::fs::write(
            root.path().join("p/files/interactor.cpp"),
            "int main() {}\n",
        )
        .unwrap();
        let problem = load_p(&root).unwrap();
        let Interaction::Interactor(program) = &problem.interaction else {
            panic!("not interactive: {:?}", problem.interaction)
        };
        assert_eq!(program.sources, [PathBuf::from("interactor.cpp")]);
        assert_eq!(program.language, CheckerLanguage::Cpp);
        assert!(matches!(problem.checker, Checker::Testlib(_)));

        // A Python interactor, or one with files for input and output, is refused.
        std::fs::write(root.path().join("p/files/interactor.py"), "\n").unwrap();
        let python = interactor.replace(
            "interactor.cpp\" type=\"cpp.g++17",
            "interactor.py\" type=\"python.3",
        );
        let root_py = package(&judging(STD_IO, "<test/>", 1, ""), &python, 1);
        std::fs::write(root_py.path().join("p/files/interactor.py"), "\n").unwrap();
        assert!(error(&root_py).contains("interactors must be C or C++"));

        let root = package(&judging(STD_IO, "<test/>", 1, ""), "", 1);
        assert!(error(&root).contains("no checker"));

        let root = package(&judging(STD_IO, "<test/>", 1, ""), CHECKER, 1);
        std::fs::remove_file(root.path().join("p/files/check.cpp")).unwrap();
        assert!(error(&root).contains("the checker source files/check.cpp does not exist"));

        let escaping = r#"<checker><source path="../check.cpp"/></checker>"#;
        let root = package(&judging(STD_IO, "<test/>", 1, ""), escaping, 1);
        assert!(error(&root).contains("not a path inside the package"));
    }

    #[test]
    fn bad_patterns_and_xml_are_invalid() {
        for (pattern, expected) in [
            ("tests/%s", "only %d"),
            ("tests/in", "exactly one"),
            ("tests/%d-%d", "exactly one"),
            ("tests/%099d", "width above"),
            ("/etc/%d", "inside the package"),
            ("../%02d", "inside the package"),
        ] {
            let xml =
                judging(STD_IO, "<test/>", 1, "").replace("tests/%02d<", &format!("{pattern}<"));
            let root = package(&xml, CHECKER, 1);
            let e = load_p(&root).unwrap_err();
            assert!(matches!(e, ProblemError::Invalid { .. }), "{pattern}: {e}");
            assert!(e.to_string().contains(expected), "{pattern}: {e}");
        }
        let root = package("<judging", CHECKER, 1);
        assert!(error(&root).contains("not well-formed"));
        let root = package(
            &judging(STD_IO, "<test/>", 1, "").replace("268435457", "lots"),
            CHECKER,
            1,
        );
        assert!(error(&root).contains("<memory-limit>lots</memory-limit>"));
    }

    #[test]
    fn patterns_format_like_printf() {
        assert_eq!(format_pattern("tests/%02d", 3).unwrap(), "tests/03");
        assert_eq!(format_pattern("tests/%02d", 123).unwrap(), "tests/123");
        assert_eq!(format_pattern("t/%d.a", 12).unwrap(), "t/12.a");
        assert_eq!(format_pattern("t/%3d", 7).unwrap(), "t/  7");
        assert_eq!(format_pattern("t/100%%-%03d", 7).unwrap(), "t/100%-007");
    }

    #[test]
    fn the_fixture_package_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/problems");
        let p = load(&root, "polygon-sum-points").unwrap();
        assert_eq!(p.scoring, Scoring::Subtasks);
        let scores: Vec<_> = p.subtasks.iter().map(|s| s.score).collect();
        assert_eq!(scores, [0.0, 0.4, 0.6]);
        assert_eq!(p.subtasks[2].requires, [2]);
        assert_eq!(p.time_ms, 1000);
        assert_eq!(p.memory_kb, 256 * 1024);
    }
}
