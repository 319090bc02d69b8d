//! What the tests that judge through the library share: the judge built as `executioner
//! judge` builds it (the demoter of `EXECUTIONER_DEMOTER`, the registry of
//! `EXECUTIONER_LANGUAGES` if set), and submissions made of the fixture programs.

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bollard::query_parameters::ListContainersOptions;

use executioner::judge::{Judge, JudgeConfig};
use executioner::protocol::{Body, Submission};
use executioner::setup::{build_judge, Setup};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn problems() -> PathBuf {
    repo().join("fixtures").join("problems")
}

pub fn setup() -> Setup {
    Setup {
        problems: problems(),
        languages: std::env::var_os("EXECUTIONER_LANGUAGES").map(PathBuf::from),
        demoter: std::env::var_os("EXECUTIONER_DEMOTER").map(PathBuf::from),
        cgroup_parent: std::env::var("EXECUTIONER_CGROUP_PARENT")
            .unwrap_or_else(|_| "executioner".to_owned()),
        judge: JudgeConfig::default(),
        pool: Default::default(),
    }
}

pub async fn judge() -> Arc<Judge> {
    match build_judge(&setup()).await {
        Ok(judge) => judge,
        Err(e) => panic!("the sandbox is not available (set EXECUTIONER_DEMOTER?): {e}"),
    }
}

/// The fixture program `test_<kind>` of `language` (gcc-12, g++-12 or python-3.11).
pub fn program(language: &str, kind: &str) -> String {
    let extension = match language {
        "gcc-12" => "c",
        "g++-12" => "cpp",
        _ => "py",
    };
    let path = repo()
        .join("fixtures/submissions")
        .join(language)
        .join(format!("test_{kind}.{extension}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A submission of the fixture program `test_<kind>` for problem `test-base`.
pub fn submission(id: &str, language: &str, kind: &str) -> Submission {
    Submission {
        id: id.to_owned(),
        problem: "test-base".to_owned(),
        language: language.to_owned(),
        source_code: program(language, kind),
        files: Vec::new(),
        run: None,
    }
}

/// Sandbox containers process `pid` owns (their label is `host:pid`), running or not.
pub async fn containers_of(pid: u32) -> usize {
    owned_containers(pid).await.len()
}

/// The engine's summaries of the sandbox containers process `pid` owns, running or not.
pub async fn owned_containers(pid: u32) -> Vec<bollard::models::ContainerSummary> {
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let filters = HashMap::from([("label".to_owned(), vec!["executioner.owner".to_owned()])]);
    let all = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    let owner = format!(":{pid}");
    all.into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("executioner.owner"))
                .is_some_and(|o| o.ends_with(&owner))
        })
        .collect()
}

/// `bodies` without the measured time and memory, which differ from run to run.
pub fn untimed(bodies: &[Body]) -> Vec<Body> {
    bodies
        .iter()
        .cloned()
        .map(|body| match body {
            Body::Tested {
                test_case,
                subtask,
                result,
                score,
                ..
            } => Body::Tested {
                test_case,
                subtask,
                result,
                time: None,
                memory: None,
                score,
                output: None,
            },
            other => other,
        })
        .collect()
}
