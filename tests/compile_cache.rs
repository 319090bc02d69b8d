//! The compile cache against real Docker (issue #19, item 4): the same code judged again is not
//! compiled again and gets the same messages; other code or other options are compiled; the
//! cache stays under its bound by evicting the least recently used build; an entry changed on
//! disk is detected, removed, counted and compiled again; compile errors are never kept.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use executioner::compile_cache::{CacheStats, CompileCacheConfig};
use executioner::judge::Judge;
use executioner::protocol::{Message, RunSpec, Submission, RUN_PROBLEM};
use executioner::setup::build_judge;

mod judging;

use judging::{program, repo, setup, submission};

/// A judge whose compile cache is `dir`, at most `max_bytes`; with `languages` as its registry
/// when given.
async fn judge_with_cache(dir: &Path, max_bytes: u64, languages: Option<&Path>) -> Arc<Judge> {
    let mut setup = setup();
    setup.judge.compile_cache = Some(CompileCacheConfig {
        dir: dir.to_owned(),
        max_bytes,
    });
    if let Some(languages) = languages {
        setup.languages = Some(languages.to_owned());
    }
    match build_judge(&setup).await {
        Ok(judge) => judge,
        Err(e) => panic!("the sandbox is not available (set EXECUTIONER_DEMOTER?): {e}"),
    }
}

/// Every message after `executing`, as JSON, without what differs from run to run (times,
/// memory).
async fn judged(judge: &Judge, submission: &Submission) -> Vec<Value> {
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let collect = async {
        let mut all = Vec::new();
        while let Some(message) = rx.recv().await {
            all.push(message);
        }
        all
    };
    let cancel = CancellationToken::new();
    let (end, messages) = tokio::join!(judge.judge(submission, tx, &cancel), collect);
    end.expect("the receiver stayed");
    messages
        .iter()
        .map(|m| {
            let mut value = serde_json::to_value(m).unwrap();
            let object = value.as_object_mut().unwrap();
            for field in ["time", "memory", "judgeTime"] {
                object.remove(field);
            }
            if let Some(output) = object.get_mut("output").and_then(Value::as_object_mut) {
                output.remove("wallTime");
            }
            value
        })
        .collect()
}

fn stats(judge: &Judge) -> CacheStats {
    judge.compile_cache().expect("the cache is on").stats()
}

fn states(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            let state = m["state"].as_str().unwrap_or_default();
            match m["result"].as_str() {
                Some(result) => format!("{state} {result}"),
                None => state.to_owned(),
            }
        })
        .collect()
}

/// A gcc-12 submission of `source` for test-base.
fn c_submission(id: &str, source: String) -> Submission {
    Submission {
        source_code: source,
        ..submission(id, "gcc-12", "accepted")
    }
}

#[tokio::test]
async fn the_same_code_judged_again_is_not_compiled_and_gets_the_same_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let judge = judge_with_cache(&dir, 64 << 20, None).await;
    let accepted = c_submission("a", program("gcc-12", "accepted"));

    let first = judged(&judge, &accepted).await;
    assert_eq!(
        states(&first),
        [
            "compiling",
            "compiled success",
            "testing",
            "tested accepted",
            "testing",
            "tested accepted",
            "testing",
            "tested accepted",
            "done"
        ]
    );
    assert_eq!(
        (
            stats(&judge).misses,
            stats(&judge).hits,
            stats(&judge).stored
        ),
        (1, 0, 1)
    );
    // Root-only: the directory 0700, the entry 0600, both this process's user's.
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700);
    let entries = judge.compile_cache().unwrap().entries().unwrap();
    assert_eq!(entries.len(), 1);
    let entry = std::fs::metadata(&entries[0].0).unwrap();
    assert_eq!(entry.mode() & 0o7777, 0o600);
    assert_eq!(entry.uid(), nix::unistd::geteuid().as_raw());

    // Again: a hit, and the very same messages.
    let again = judged(&judge, &accepted).await;
    assert_eq!(again, first);
    assert_eq!((stats(&judge).misses, stats(&judge).hits), (1, 1));

    // Other code: compiled, and judged as itself.
    let wrong = c_submission("b", program("gcc-12", "wrong"));
    let messages = judged(&judge, &wrong).await;
    assert_eq!(messages.last().unwrap()["score"], 0.0);
    assert_eq!((stats(&judge).misses, stats(&judge).hits), (2, 1));
    assert_eq!(judge.compile_cache().unwrap().entries().unwrap().len(), 2);
}

/// A registry with `stamp-c`: C whose compile step bakes the time of compiling (ns) into the
/// program, which prints it: a program that prints the same stamp was not compiled again.
fn stamp_registry(dir: &Path) -> std::path::PathBuf {
    let builtin = std::fs::read_to_string(repo().join("languages.toml")).unwrap();
    let path = dir.join("languages.toml");
    std::fs::write(
        &path,
        format!(
            "{builtin}\n[[language]]\nid = \"stamp-c\"\naliases = []\nname = \"C, stamped\"\n\
             image = \"executioner/gcc-12\"\npackages = []\nsource = \"main.c\"\nextensions = []\n\
             compile = [\"/bin/sh\", \"-c\", \"gcc -O2 -o main main.c -DSTAMP=$(date +%s%N) \\\"$@\\\"\", \"sh\"]\n\
             run = [\"{{build}}/main\"]\nenv = [\"PATH=/usr/local/bin:/usr/bin:/bin\", \"LANG=C.UTF-8\"]\n"
        ),
    )
    .unwrap();
    path
}

fn stamp_run(id: &str, compile_args: &[&str]) -> Submission {
    Submission {
        id: id.to_owned(),
        problem: RUN_PROBLEM.to_owned(),
        language: "stamp-c".to_owned(),
        source_code: "#include <stdio.h>\nint main(void) { printf(\"%lld\\n\", (long long)STAMP); return 0; }\n".to_owned(),
        files: Vec::new(),
        run: Some(Box::new(RunSpec {
            stdin: String::new(),
            expected_output: None,
            time_limit_ms: 1000,
            memory_limit_kb: 65536,
            args: Vec::new(),
            compile_args: compile_args.iter().map(|a| a.to_string()).collect(),
            wall_limit_ms: None,
            stderr_to_stdout: false,
            number_of_runs: None,
        })),
    }
}

/// What the run printed.
fn stdout(messages: &[Value]) -> String {
    let tested = messages
        .iter()
        .find(|m| m["state"] == "tested")
        .unwrap_or_else(|| panic!("no tested message: {messages:?}"));
    tested["output"]["stdout"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no stdout: {tested}"))
        .to_owned()
}

fn metric(language: &str, result: &str) -> f64 {
    let line =
        format!(r#"executioner_compile_cache_total{{language="{language}",result="{result}"}}"#);
    executioner::metrics::global()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_hit_runs_no_compiler_and_other_options_compile_again() {
    let tmp = tempfile::tempdir().unwrap();
    let languages = stamp_registry(tmp.path());
    let judge = judge_with_cache(&tmp.path().join("cache"), 64 << 20, Some(&languages)).await;

    let first = judged(&judge, &stamp_run("s1", &[])).await;
    let stamp = stdout(&first);
    assert!(stamp.trim().parse::<u64>().is_ok(), "{stamp:?}");
    let again = judged(&judge, &stamp_run("s1", &[])).await;
    // The same stamp: the program is the one compiled the first time.
    assert_eq!(stdout(&again), stamp);
    assert_eq!(again, first);
    assert_eq!(metric("stamp-c", "hit"), 1.0);
    assert_eq!(metric("stamp-c", "miss"), 1.0);

    // Another compile option is another build: the compiler runs, a new stamp.
    let other = judged(&judge, &stamp_run("s1", &["-O0"])).await;
    assert_ne!(stdout(&other), stamp);
    assert_eq!(metric("stamp-c", "miss"), 2.0);
    assert_eq!((stats(&judge).hits, stats(&judge).misses), (1, 2));
}

#[tokio::test]
async fn the_least_recently_used_build_is_evicted() {
    let tmp = tempfile::tempdir().unwrap();
    // The size of one entry, measured; then a cache that holds two of them but not three.
    let probe = judge_with_cache(&tmp.path().join("probe"), 64 << 20, None).await;
    let source = |tag: &str| format!("{}\n// build {tag}\n", program("gcc-12", "accepted"));
    judged(&probe, &c_submission("p", source("p"))).await;
    let size = probe.compile_cache().unwrap().entries().unwrap()[0].1;
    let judge = judge_with_cache(&tmp.path().join("cache"), 2 * size + size / 2, None).await;

    let hit_or_miss = |before: CacheStats, after: CacheStats| {
        if after.hits > before.hits {
            "hit"
        } else {
            "miss"
        }
    };
    let mut seen = Vec::new();
    for tag in ["a", "b", "a", "c", "a", "b"] {
        let before = stats(&judge);
        let messages = judged(&judge, &c_submission(tag, source(tag))).await;
        assert_eq!(messages.last().unwrap()["score"], 1.0, "{messages:?}");
        seen.push(format!("{tag} {}", hit_or_miss(before, stats(&judge))));
    }
    // c pushed out b (used before a's hit), not a; b is then compiled again, pushing out c.
    assert_eq!(
        seen,
        ["a miss", "b miss", "a hit", "c miss", "a hit", "b miss"]
    );
    assert_eq!(stats(&judge).evictions, 2);
    let entries = judge.compile_cache().unwrap().entries().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().map(|(_, size)| size).sum::<u64>() <= 2 * size + size / 2);
}

#[tokio::test]
async fn a_tampered_entry_is_removed_counted_and_compiled_again() {
    let tmp = tempfile::tempdir().unwrap();
    let judge = judge_with_cache(&tmp.path().join("cache"), 64 << 20, None).await;
    let accepted = c_submission("t", program("gcc-12", "accepted"));
    let first = judged(&judge, &accepted).await;
    let cache = judge.compile_cache().unwrap();
    let (entry, _) = cache.entries().unwrap().remove(0);

    // One bit of the stored build flipped (in the program's code, say).
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&entry, &bytes).unwrap();

    let again = judged(&judge, &accepted).await;
    assert_eq!(again, first, "judged as the sound build was");
    let after = stats(&judge);
    assert_eq!((after.tampered, after.hits, after.stored), (1, 0, 2));
    // Compiled again and stored again, sound this time.
    let restored = std::fs::read(&entry).unwrap();
    assert_ne!(restored, bytes);
    assert_eq!(judged(&judge, &accepted).await, first);
    assert_eq!(stats(&judge).hits, 1);
}

#[tokio::test]
async fn compile_errors_are_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let judge = judge_with_cache(&tmp.path().join("cache"), 64 << 20, None).await;
    let source = repo().join("fixtures/submissions/gcc-12/compile_error.c");
    let broken = c_submission("e", std::fs::read_to_string(source).unwrap());
    for _ in 0..2 {
        let messages = judged(&judge, &broken).await;
        assert_eq!(states(&messages), ["compiling", "compiled error", "done"]);
        assert!(messages[1]["compileOutput"]
            .as_str()
            .is_some_and(|o| o.contains("error")));
    }
    let stats = stats(&judge);
    assert_eq!((stats.misses, stats.hits, stats.stored), (2, 0, 0));
    assert!(judge.compile_cache().unwrap().entries().unwrap().is_empty());
}
