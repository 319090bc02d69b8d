//! The language registry: data (`languages.toml`), not code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The registry shipped with the executioner, used unless another file is given.
pub const BUILTIN: &str = include_str!("../languages.toml");

/// One language: how to compile and run a program written in it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Language {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub name: String,
    pub image: String,
    /// Debian packages of the image (read by `sandbox-images/build`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// File name the source is saved as, in the build directory.
    pub source: String,
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Compile command, run in the build directory; `None` for interpreted languages.
    #[serde(default)]
    pub compile: Option<Vec<String>>,
    /// Run command, run in a fresh empty directory per test.
    pub run: Vec<String>,
    /// The whole environment of compile and run.
    #[serde(default)]
    pub env: Vec<String>,
    /// Processes and threads a run may have alive at once.
    #[serde(default = "default_run_pids")]
    pub run_pids: u64,
    /// Added to the problem's memory limit for the runtime's own baseline, KB.
    #[serde(default)]
    pub memory_extra_kb: u64,
    /// Multiplies the problem's time limit (CPU and wall) for runs of this language, as
    /// DOMjudge's per-language time factor does: for runtimes whose start alone takes a large
    /// part of a second of CPU (Clojure, Scala, Groovy, Elixir, Octave). 1 unless set; the time
    /// reported is the CPU time used, unscaled.
    #[serde(default = "default_time_factor")]
    pub time_factor: f64,
    /// Exit status with which the runtime reports that the program outgrew the heap cap its run
    /// command set (the JVM's `-XX:+ExitOnOutOfMemoryError` exits 3). Such a run is `MLE`, as if
    /// the kernel had killed it at the cgroup limit: a capped runtime fails before the cgroup
    /// limit is reached. A program can exit with this status on purpose; that only changes which
    /// failing verdict it gets (`MLE` instead of `error`).
    #[serde(default)]
    pub oom_exit_code: Option<i32>,
    /// Files and folders of the runtime (absolute paths in the image) read into the page cache by
    /// the agent before the first test: a page a run reads first is charged to the run's memory
    /// cgroup, so a cold 60 MB interpreter library would count against the program's limit (and
    /// thrash in it) on the first test only.
    #[serde(default)]
    pub warm: Vec<String>,
    /// File names that, when a multi-file submission carries one of them (the first listed
    /// wins), are the program's entry point instead of `source`: `{entry}` in `compile` and
    /// `run` (Python's `__main__.py`). Optional.
    #[serde(default)]
    pub entry: Vec<String>,
}

fn default_time_factor() -> f64 {
    1.0
}

/// Default `run_pids`: enough for a single-threaded program and a helper or two.
fn default_run_pids() -> u64 {
    16
}

/// Values substituted into `compile` and `run` commands.
#[derive(Debug, Clone)]
pub struct Placeholders<'a> {
    pub build: &'a str,
    pub memory_kb: u64,
    /// Names of the submission's further files (SPEC §1 `files`), beside `source`.
    pub files: &'a [String],
}

impl Language {
    /// Whether arguments added after its run command reach the program as its own (an ad-hoc
    /// run's `args`): the command ends with the program (`{build}/...`, or Java's
    /// `@{build}/main-class`), not as the value of `-f` or `-x` (gawk's program file, after
    /// which arguments are input files; SWI-Prolog's saved state). Not so either for Erlang,
    /// SBCL or Guile, whose commands go on after the program.
    pub fn takes_args(&self) -> bool {
        let mut last = self.run.iter().rev();
        match (last.next(), last.next()) {
            (Some(program), before) => {
                (program.starts_with("{build}/") || program.starts_with("@{build}/"))
                    && !before.is_some_and(|b| ["-f", "-x"].contains(&b.as_str()))
            }
            (None, _) => false,
        }
    }

    /// Whether an ad-hoc run may add compile options (`compile_args`): its compiler is a GCC or
    /// Clang driver (`gcc`, `g++`, `clang-16`...), whose options [`check_compiler_option`]
    /// knows.
    pub fn takes_compiler_options(&self) -> bool {
        let Some(program) = self.compile.as_ref().and_then(|c| c.first()) else {
            return false;
        };
        let name = program.rsplit('/').next().unwrap_or(program);
        name == "gcc" || name == "g++" || name.starts_with("clang")
    }

    pub fn is_compiled(&self) -> bool {
        self.compile.is_some()
    }

    /// The CPU time limit of a run of this language on a problem whose limit is `time_ms`.
    pub fn time_limit_ms(&self, time_ms: u64) -> u64 {
        (time_ms as f64 * self.time_factor).ceil() as u64
    }

    /// Expands `{build}`, `{source}`, `{entry}`, `{memory_kb}` and `{memory_mb}` in `args`; an
    /// argument that is exactly `{sources}` becomes several: `source`, then every further file
    /// whose extension is one of `extensions`, sorted by name.
    pub fn expand(&self, args: &[String], values: &Placeholders<'_>) -> Vec<String> {
        let entry = self
            .entry
            .iter()
            .find(|e| values.files.contains(e))
            .unwrap_or(&self.source);
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            if a == "{sources}" {
                out.extend(self.sources(values.files));
                continue;
            }
            out.push(
                a.replace("{build}", values.build)
                    .replace("{sources}", &self.source)
                    .replace("{source}", &self.source)
                    .replace("{entry}", entry)
                    .replace("{memory_kb}", &values.memory_kb.to_string())
                    .replace("{memory_mb}", &(values.memory_kb / 1024).max(1).to_string()),
            );
        }
        out
    }

    /// `source`, then the further files among `files` that the compiler takes (their extension
    /// is one of `extensions`), sorted by name.
    pub fn sources(&self, files: &[String]) -> Vec<String> {
        let mut extra: Vec<&String> = files
            .iter()
            .filter(|f| {
                f.rsplit_once('.').is_some_and(|(stem, ext)| {
                    !stem.is_empty() && self.extensions.iter().any(|e| e == ext)
                })
            })
            .collect();
        extra.sort();
        std::iter::once(self.source.clone())
            .chain(extra.into_iter().cloned())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read language registry {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("language registry {origin} is not valid: {source}")]
    Malformed {
        origin: String,
        source: toml::de::Error,
    },
    #[error("language registry {origin}: {reason}")]
    Inconsistent { origin: String, reason: String },
}

/// All languages a worker supports, with their aliases.
#[derive(Debug, Clone)]
pub struct Registry {
    languages: Vec<Language>,
    by_name: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    language: Vec<Language>,
}

impl Registry {
    /// The registry shipped with the executioner.
    pub fn builtin() -> Result<Self, RegistryError> {
        Self::parse(BUILTIN, "(built in)")
    }

    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, RegistryError> {
        let file: File = toml::from_str(text).map_err(|source| RegistryError::Malformed {
            origin: origin.to_owned(),
            source,
        })?;
        let inconsistent = |reason: String| RegistryError::Inconsistent {
            origin: origin.to_owned(),
            reason,
        };
        let mut by_name = HashMap::new();
        for (index, lang) in file.language.iter().enumerate() {
            if lang.run.is_empty() {
                return Err(inconsistent(format!(
                    "{} has an empty run command",
                    lang.id
                )));
            }
            if lang.compile.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(inconsistent(format!(
                    "{} has an empty compile command",
                    lang.id
                )));
            }
            if lang.oom_exit_code == Some(0) {
                return Err(inconsistent(format!(
                    "{} has oom_exit_code 0, the status of a normal exit",
                    lang.id
                )));
            }
            if !(lang.time_factor.is_finite() && (1.0..=10.0).contains(&lang.time_factor)) {
                return Err(inconsistent(format!(
                    "{} has time_factor {}, not between 1 and 10",
                    lang.id, lang.time_factor
                )));
            }
            if lang.source.is_empty() || lang.source.contains('/') {
                return Err(inconsistent(format!(
                    "{} has an invalid source file name {:?}",
                    lang.id, lang.source
                )));
            }
            for name in std::iter::once(&lang.id).chain(&lang.aliases) {
                if by_name.insert(name.clone(), index).is_some() {
                    return Err(inconsistent(format!("the name {name:?} is used twice")));
                }
            }
        }
        Ok(Registry {
            languages: file.language,
            by_name,
        })
    }

    /// The language named `name` (an id or an alias).
    pub fn resolve(&self, name: &str) -> Option<&Language> {
        self.by_name.get(name).map(|&i| &self.languages[i])
    }

    /// The language whose `extensions` include `ext` (without the dot).
    pub fn by_extension(&self, ext: &str) -> Option<&Language> {
        self.languages
            .iter()
            .find(|l| l.extensions.iter().any(|e| e == ext))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Language> {
        self.languages.iter()
    }

    /// Keeps only the languages `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&Language) -> bool) {
        self.languages.retain(keep);
        self.by_name = self
            .languages
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                std::iter::once(l.id.clone())
                    .chain(l.aliases.iter().cloned())
                    .map(move |n| (n, i))
            })
            .collect();
    }
}

/// `Err(reason)` unless `option` is one a run may add to a GCC or Clang compile command: it
/// changes how the program is compiled, never where the compiler reads or writes files or
/// what it runs. Allowed: `-O*`, `-std=`, `-D`/`-U` macros, warnings (`-w`, `-W...` but not
/// `-Wl,`/`-Wa,`/`-Wp,` pass-throughs), `-g*`, `-pedantic*`, `-ansi`, `-pthread`, `-static`,
/// `-f...` switches (not plugins, dumps or profiles, nor any with `=` but `-fsanitize=`),
/// `-m...` target options, `-l` libraries.
pub fn check_compiler_option(option: &str) -> Result<(), String> {
    let word = |s: &str, extra: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(c))
    };
    let macro_name = |s: &str| {
        let name = s.split_once('=').map_or(s, |(name, _)| name);
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let allowed = match option {
        "-O" | "-O0" | "-O1" | "-O2" | "-O3" | "-Os" | "-Og" | "-Oz" | "-Ofast" => true,
        "-w" | "-g" | "-g0" | "-g1" | "-g2" | "-g3" | "-ggdb" | "-pedantic"
        | "-pedantic-errors" | "-ansi" | "-pthread" | "-static" => true,
        _ => {
            if let Some(standard) = option.strip_prefix("-std=") {
                word(standard, "+")
            } else if let Some(definition) = option.strip_prefix("-D") {
                macro_name(definition)
            } else if let Some(name) = option.strip_prefix("-U") {
                macro_name(name) && !name.contains('=')
            } else if let Some(warning) = option.strip_prefix("-W") {
                // Names (-Wall, -Werror=...); no comma, so never a -Wl, -Wa, -Wp pass-through.
                word(warning, "=+")
            } else if let Some(switch) = option.strip_prefix("-f") {
                let forbidden = [
                    "plugin",
                    "dump",
                    "profile",
                    "auto-profile",
                    "record",
                    "debug-prefix",
                    "macro-prefix",
                    "file-prefix",
                    "lto",
                    "coverage",
                    "stack-usage",
                    "callgraph",
                ];
                let named = switch.strip_prefix("no-").unwrap_or(switch);
                (word(switch, "")
                    || switch
                        .strip_prefix("sanitize=")
                        .is_some_and(|s| word(s, ",")))
                    && !forbidden.iter().any(|f| named.starts_with(f))
            } else if let Some(target) = option.strip_prefix("-m") {
                word(target, "=.")
            } else if let Some(library) = option.strip_prefix("-l") {
                word(library, "+.")
            } else {
                false
            }
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "option {option:?} is not allowed (only options that change how the program is compiled: -O, -std=, -D, -U, -W, -g, -f, -m, -l, -pedantic, -pthread, -static)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_registry_resolves_ids_and_aliases() {
        let r = Registry::builtin().unwrap();
        let c = r.resolve("c").unwrap();
        assert_eq!(c.id, "gcc-12");
        assert!(c.is_compiled());
        assert_eq!(r.resolve("gcc-12").unwrap().id, "gcc-12");
        assert_eq!(r.resolve("cpp").unwrap().id, "g++-12");
        assert!(!r.resolve("python3").unwrap().is_compiled());
        assert!(r.resolve("intercal").is_none());
        assert_eq!(r.resolve("cobol").unwrap().id, "gnucobol-3.1");
        assert_eq!(r.by_extension("py").unwrap().id, "python-3.11");
        let java = r.resolve("java").unwrap();
        assert_eq!(java.id, "java-17");
        assert_eq!(java.oom_exit_code, Some(3));
        assert_eq!(r.resolve("c").unwrap().oom_exit_code, None);
    }

    #[test]
    fn time_factors_scale_the_limit_and_stay_between_1_and_10() {
        let with = |factor: &str| {
            Registry::parse(
                &format!(
                    "[[language]]\nid='a'\nname='A'\nimage='i'\nsource='a'\nrun=['a']\n{factor}"
                ),
                "t",
            )
        };
        let plain = with("").unwrap();
        assert_eq!(plain.resolve("a").unwrap().time_limit_ms(1000), 1000);
        let slow = with("time_factor=1.5").unwrap();
        assert_eq!(slow.resolve("a").unwrap().time_limit_ms(999), 1499);
        for bad in ["time_factor=0.5", "time_factor=11.0", "time_factor=nan"] {
            assert!(
                with(bad).unwrap_err().to_string().contains("time_factor"),
                "{bad}"
            );
        }
    }

    #[test]
    fn arguments_go_to_languages_whose_run_command_ends_with_the_program() {
        let registry = Registry::builtin().unwrap();
        let takes: Vec<_> = registry
            .iter()
            .filter(|l| !l.takes_args())
            .map(|l| l.id.as_str())
            .collect();
        assert_eq!(
            takes,
            [
                "gawk-5.2",
                "erlang-25",
                "sbcl-2.2",
                "guile-3.0",
                "swipl-9.0"
            ]
        );
    }

    #[test]
    fn compiler_options_change_compiling_but_never_files_or_programs_run() {
        for ok in [
            "-O0",
            "-Ofast",
            "-std=c++20",
            "-std=gnu11",
            "-DANSWER=42",
            "-DX",
            "-UNDEBUG",
            "-Wall",
            "-Wextra",
            "-Werror=return-type",
            "-Wpedantic",
            "-g",
            "-fno-exceptions",
            "-fsanitize=address,undefined",
            "-march=native",
            "-lm",
            "-pthread",
            "-static",
        ] {
            assert_eq!(check_compiler_option(ok), Ok(()), "{ok}");
        }
        for bad in [
            "-o",
            "-o/tmp/x",
            "-I/etc",
            "-L/tmp",
            "-include",
            "@args",
            "-B/tmp",
            "-specs=x",
            "-wrapper",
            "-Wl,-rpath,/tmp",
            "-Wa,-x",
            "-Wp,-MD,/tmp/x",
            "-fplugin=x.so",
            "-fdump-tree-all",
            "-fprofile-generate",
            "-fno-plugin",
            "-D1X",
            "-D",
            "-x",
            "c",
            "-save-temps",
            "--param",
            "-E",
            "-M",
            "-MF/tmp/x",
            "-fdebug-prefix-map=a=b",
        ] {
            assert!(check_compiler_option(bad).is_err(), "{bad}");
        }
        let registry = Registry::builtin().unwrap();
        let takes: Vec<_> = registry
            .iter()
            .filter(|l| l.takes_compiler_options())
            .map(|l| l.id.as_str())
            .collect();
        assert!(
            takes.contains(&"gcc-12") && takes.contains(&"clang++-16"),
            "{takes:?}"
        );
        assert!(
            !takes.contains(&"java-17") && !takes.contains(&"python-3.11"),
            "{takes:?}"
        );
    }

    #[test]
    fn oom_exit_code_zero_is_refused() {
        let zero =
            "[[language]]\nid='a'\nname='A'\nimage='i'\nsource='a'\nrun=['a']\noom_exit_code=0\n";
        assert!(Registry::parse(zero, "t")
            .unwrap_err()
            .to_string()
            .contains("oom_exit_code 0"));
    }

    #[test]
    fn placeholders_are_expanded() {
        let r = Registry::parse(
            r#"[[language]]
id = "j"
name = "J"
image = "i"
source = "Main.java"
run = ["java", "-Xmx{memory_mb}m", "-cp", "{build}", "{source}"]
"#,
            "test",
        )
        .unwrap();
        let j = r.resolve("j").unwrap();
        let args = j.expand(
            &j.run,
            &Placeholders {
                build: "/box/build",
                memory_kb: 65536,
                files: &[],
            },
        );
        assert_eq!(args, ["java", "-Xmx64m", "-cp", "/box/build", "Main.java"]);
        assert_eq!(j.run_pids, 16);
    }

    #[test]
    fn sources_and_entry_expand_from_the_files() {
        let r = Registry::parse(
            r#"[[language]]
id = "c"
name = "C"
image = "i"
source = "main.cpp"
extensions = ["cpp", "cc"]
entry = ["__main__.cpp"]
compile = ["g++", "-o", "main", "{sources}", "-lm"]
run = ["{build}/{entry}"]
"#,
            "test",
        )
        .unwrap();
        let c = r.resolve("c").unwrap();
        let files = ["z.cpp", "b.h", "a.cc", ".cpp", "x.cpp.txt"].map(String::from);
        let values = Placeholders {
            build: "/b",
            memory_kb: 1024,
            files: &files,
        };
        let compile = c.expand(c.compile.as_ref().unwrap(), &values);
        assert_eq!(
            compile,
            ["g++", "-o", "main", "main.cpp", "a.cc", "z.cpp", "-lm"]
        );
        assert_eq!(c.expand(&c.run, &values), ["/b/main.cpp"]);
        let none = Placeholders {
            files: &[],
            ..values.clone()
        };
        assert_eq!(
            c.expand(c.compile.as_ref().unwrap(), &none),
            ["g++", "-o", "main", "main.cpp", "-lm"]
        );
        let with_entry = ["__main__.cpp".to_string()];
        let entry = Placeholders {
            files: &with_entry,
            ..values
        };
        assert_eq!(c.expand(&c.run, &entry), ["/b/__main__.cpp"]);
    }

    #[test]
    fn duplicate_names_and_unknown_fields_are_refused() {
        let dup = r#"
[[language]]
id = "a"
name = "A"
image = "i"
source = "a"
run = ["a"]
[[language]]
id = "b"
aliases = ["a"]
name = "B"
image = "i"
source = "b"
run = ["b"]
"#;
        assert!(Registry::parse(dup, "t")
            .unwrap_err()
            .to_string()
            .contains("used twice"));
        let unknown = "[[language]]\nid='a'\nname='A'\nimage='i'\nsource='a'\nrun=['a']\nrnu=1\n";
        assert!(matches!(
            Registry::parse(unknown, "t"),
            Err(RegistryError::Malformed { .. })
        ));
    }
}
