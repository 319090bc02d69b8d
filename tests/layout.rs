//! The layout keeps its layers: no module of `src/` imports, directly or through others, a
//! module that imports it back. Checked at the top level (`crate::judge`, `crate::workflow`) and
//! at the second (`crate::workflow::engine`, `crate::api::workers`), for the library (rooted at
//! `src/lib.rs`) and the binary (rooted at `src/main.rs`) apart.
//!
//! What counts as an import: every path that starts with `crate::`, `super::` or `self::` (in a
//! `use`, brace groups included, or inline in code), and a `use` of a child module by its bare
//! name. A path to an item a module only re-exports (`pub use`) leads to the module that defines
//! it. A module's `pub use` of its own descendants makes it their facade, not their dependent,
//! so it is no edge; a `pub use` of anything else is one. A module and the modules inside it are
//! one tree (a child sees its parent's items, a parent uses its children), so only edges between
//! units neither of which contains the other count. Comments, string literals and `#[cfg(test)]`
//! items (test modules, test-only helpers) are left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

/// A module path below its crate's root, e.g. `["workflow", "engine"]`; the root is `[]`.
type ModPath = Vec<String>;
/// One path of a use tree, as written (`super::a::B`), with its alias (`as C`) if any.
type UsePath = (Vec<String>, Option<String>);

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for root in ["lib.rs", "main.rs"] {
        let krate = Crate::read(&src, root);
        for level in [1, 2] {
            for cycle in cycles(&krate.edges(level)) {
                found.push(format!("{root}, level {level}: {}", cycle.join(" <-> ")));
            }
        }
    }
    assert!(
        found.is_empty(),
        "circular imports (break them by moving the shared part down):\n{}",
        found.join("\n")
    );
}

/// The checker itself sees the cycles it must see, and not those it must not.
#[test]
fn reads_imports_as_rust_does() {
    let code = strip(
        r##"
use crate::a::{b::C, d};
use super::{e, f::G as H};
// use crate::comment::X;
/* crate::block::Y */
const S: &str = "crate::string::Z";
const R: &str = r#"crate::raw::W"#;
fn f<'a>(x: &'a str) -> char { crate::inline::call(x); 'c' }
#[cfg(test)]
mod tests { use crate::tested::T; }
#[cfg(test)]
fn helper() { crate::helper::U(); }
mod inner { use super::x::Y; }
"##,
    );
    let module = Module::parse(&["m".to_string(), "n".to_string()], &code, &BTreeSet::new());
    let paths: BTreeSet<String> = module.uses.iter().map(|p| p.join("::")).collect();
    let expected: BTreeSet<String> = [
        "a::b::C",
        "a::d",
        "m::e",
        "m::f::G",
        "inline::call",
        "m::n::x::Y",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(paths, expected);

    let edges = |pairs: &[(&str, &str)]| -> BTreeMap<String, BTreeSet<String>> {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            edges
                .entry(a.to_string())
                .or_default()
                .insert(b.to_string());
        }
        edges
    };
    assert_eq!(
        cycles(&edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
        vec![vec!["a".to_string(), "b".to_string(), "c".to_string()]]
    );
    assert!(cycles(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
}

/// One crate's modules and what each imports.
struct Crate {
    modules: BTreeMap<ModPath, Module>,
}

/// What one module (a file, or a `mod name { ... }` inside one) imports and re-exports.
#[derive(Default)]
struct Module {
    /// Absolute paths (below the crate root) this module's code names.
    uses: Vec<ModPath>,
    /// Names it re-exports (`pub use`), each with the absolute path it stands for.
    exports: HashMap<String, ModPath>,
    /// Its child modules declared `mod name;` (not `#[cfg(test)]`).
    children: Vec<String>,
}

impl Crate {
    /// The crate whose root file is `src/<root>`, following its `mod name;` declarations.
    fn read(src: &Path, root: &str) -> Crate {
        let mut modules = BTreeMap::new();
        let mut queue = vec![(Vec::new(), src.join(root), src.to_path_buf())];
        while let Some((path, file, dir)) = queue.pop() {
            let text = fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            let code = strip(&text);
            let children = declared_modules(&code);
            let module = Module::parse(&path, &code, &children);
            for child in &module.children {
                let mut child_path = path.clone();
                child_path.push(child.clone());
                let flat = dir.join(format!("{child}.rs"));
                let nested = dir.join(child).join("mod.rs");
                let (child_file, child_dir) = if flat.exists() {
                    (flat, dir.join(child))
                } else if nested.exists() {
                    (nested, dir.join(child))
                } else {
                    panic!("{}: module {child} has no file", file.display());
                };
                queue.push((child_path, child_file, child_dir));
            }
            modules.insert(path, module);
        }
        Crate { modules }
    }

    /// The module `path` leads to: the longest prefix that is a module, followed through
    /// re-exports to the module that defines the item.
    fn resolve(&self, path: &[String]) -> ModPath {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let Some(len) = (0..=path.len())
                .rev()
                .find(|&len| self.modules.contains_key(&path[..len]))
            else {
                return Vec::new();
            };
            let module = &self.modules[&path[..len]];
            match path.get(len).and_then(|name| module.exports.get(name)) {
                Some(target) if target.as_slice() != path.as_slice() => {
                    let mut next = target.clone();
                    next.extend_from_slice(&path[len + 1..]);
                    path = next;
                }
                _ => return path[..len].to_vec(),
            }
        }
        path
    }

    /// Edges between modules cut to their first `level` segments (`workflow::engine::step`
    /// counts as `workflow::engine` at level 2), each between units neither of which contains
    /// the other.
    fn edges(&self, level: usize) -> BTreeMap<String, BTreeSet<String>> {
        let unit = |path: &[String]| path[..path.len().min(level)].to_vec();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, module) in &self.modules {
            let from = unit(path);
            for used in &module.uses {
                let to = unit(&self.resolve(used));
                let nested = from.starts_with(&to) || to.starts_with(&from);
                if !nested {
                    edges
                        .entry(from.join("::"))
                        .or_default()
                        .insert(to.join("::"));
                }
            }
        }
        edges
    }
}

impl Module {
    /// Reads the imports of a module at `path` from its stripped `code`; `children` are the
    /// modules it declares (a bare `use child::...` is relative to it).
    fn parse(path: &[String], code: &str, children: &BTreeSet<String>) -> Module {
        let tokens = tokenize(code);
        let mut module = Module {
            children: children.iter().cloned().collect(),
            ..Module::default()
        };
        // `mod name { ... }` inside the file: where `super::` and `self::` start from.
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let mut here = path.to_vec();
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i].as_str();
            let after_colons = i > 0 && tokens[i - 1] == "::";
            if token == "{" {
                depth += 1;
                if i >= 2 && tokens[i - 2] == "mod" && is_ident(&tokens[i - 1]) {
                    inline.push((tokens[i - 1].clone(), depth));
                    here.push(tokens[i - 1].clone());
                }
                i += 1;
            } else if token == "}" {
                if inline.last().is_some_and(|(_, at)| *at == depth) {
                    inline.pop();
                    here.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            } else if token == "use" {
                let public = i > 0 && (tokens[i - 1] == "pub" || tokens[i - 1] == ")");
                let (trees, end) = use_tree(&tokens, i + 1);
                for (segments, alias) in trees {
                    let Some(first) = segments.first() else {
                        continue;
                    };
                    let relative = inline.is_empty() && children.contains(first);
                    let absolute = match absolute(&here, &segments) {
                        Some(absolute) => absolute,
                        None if relative => [path, &segments[..]].concat(),
                        None => continue,
                    };
                    let own = absolute.len() > path.len() && absolute.starts_with(path);
                    if public {
                        if let Some(name) = alias.or_else(|| segments.last().cloned()) {
                            module.exports.insert(name, absolute.clone());
                        }
                    }
                    if !(public && own) {
                        module.uses.push(absolute);
                    }
                }
                i = end;
            } else if matches!(token, "crate" | "super" | "self") && !after_colons {
                let (trees, end) = use_tree(&tokens, i);
                for (segments, _) in trees {
                    if let Some(absolute) = absolute(&here, &segments) {
                        module.uses.push(absolute);
                    }
                }
                i = end.max(i + 1);
            } else {
                i += 1;
            }
        }
        module
    }
}

/// `segments` (starting with `crate`, `super` or `self`) as a path below the crate root, seen
/// from the module at `path`; `None` for a path that starts elsewhere (another crate).
fn absolute(path: &[String], segments: &[String]) -> Option<ModPath> {
    let mut at: ModPath = match segments.first()?.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => path.to_vec(),
        _ => return None,
    };
    let mut rest = segments.iter().peekable();
    if rest.peek().map(|s| s.as_str()) == Some("crate") {
        rest.next();
    }
    while let Some(segment) = rest.peek() {
        match segment.as_str() {
            "super" => {
                at.pop();
            }
            "self" => {}
            _ => break,
        }
        rest.next();
    }
    at.extend(rest.cloned());
    Some(at)
}

/// The paths of a use tree starting at `tokens[start]` (`a::b::{c, d::e as f, g::*}`), each
/// with its alias; and the index after the tree.
fn use_tree(tokens: &[String], start: usize) -> (Vec<UsePath>, usize) {
    let mut out = Vec::new();
    let end = tree(tokens, start, &[], &mut out);
    (out, end)
}

fn tree(tokens: &[String], mut i: usize, prefix: &[String], out: &mut Vec<UsePath>) -> usize {
    let mut segments = prefix.to_vec();
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        None => return i,
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        Some(_) => i = tree(tokens, i, &segments, out),
                    }
                }
            }
            Some("*") => {
                out.push((segments, None));
                return i + 1;
            }
            Some(token) if is_ident(token) => {
                // `{self, ..}` names the prefix itself.
                if !(token == "self" && !prefix.is_empty() && segments.len() == prefix.len()) {
                    segments.push(token.to_string());
                }
                i += 1;
                if tokens.get(i).map(String::as_str) == Some("::") {
                    i += 1;
                    continue;
                }
                let alias = if tokens.get(i).map(String::as_str) == Some("as") {
                    i += 2;
                    tokens.get(i - 1).cloned()
                } else {
                    None
                };
                out.push((segments, alias));
                return i;
            }
            _ => return i,
        }
    }
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The modules `code` declares with `mod name;` (its `#[cfg(test)]` items already removed).
fn declared_modules(code: &str) -> BTreeSet<String> {
    let tokens = tokenize(code);
    tokens
        .windows(3)
        .filter(|w| w[0] == "mod" && is_ident(&w[1]) && w[2] == ";")
        .map(|w| w[1].clone())
        .collect()
}

/// Identifiers, `::`, and every other character of `code` as one token (whitespace dropped).
fn tokenize(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_string());
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

/// `text` without comments, without the contents of string and char literals, and without
/// `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    without_test_items(&without_comments_and_literals(text))
}

fn without_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if !prev_ident && (c == 'r' || (c == 'b' && next == Some('r'))) && {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            chars.get(j) == Some(&'"')
        } {
            // A raw string: r#"..."#, closed by a quote and as many hashes.
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{..}'.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            // Anything else, a lifetime's quote included.
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` without the items under `#[cfg(test)]`: up to their `;`, or their `{ ... }` block.
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The strongly connected components of more than one unit, each sorted, in order.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two units are in one cycle when each reaches the other.
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(unit) = stack.pop() {
            for next in edges.get(&unit).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|unit| (unit, reach(unit))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (unit, from_here) in &reached {
        if !from_here.contains(*unit) || out.iter().any(|c| c.contains(unit)) {
            continue;
        }
        let cycle: Vec<String> = reached
            .iter()
            .filter(|(other, r)| from_here.contains(**other) && r.contains(*unit))
            .map(|(other, _)| (*other).clone())
            .collect();
        out.push(cycle);
    }
    out
}
