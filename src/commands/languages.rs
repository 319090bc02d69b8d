//! `executioner languages`: the language registry, listed.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use executioner::setup::load_registry;

use super::{stdout_error, CommandError};

/// How `executioner languages` lists the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanguageList {
    /// SPEC §7: one line per language, the id then its aliases.
    Names,
    /// An aligned table with a header: id, aliases, extensions, compiled, image, time factor,
    /// name.
    Long,
    /// One JSON object per line: `id`, `name`, `aliases`, `extensions`, `compiled`, `image`,
    /// `timeFactor`.
    Json,
}

/// `executioner languages`: the registry, in registry order (which also decides which language
/// a file extension maps to when several claim it: the first).
pub fn languages(path: Option<&Path>, format: LanguageList) -> Result<ExitCode, CommandError> {
    let registry = load_registry(path)?;
    let lines: Vec<String> = match format {
        LanguageList::Names => registry
            .iter()
            .map(|lang| {
                std::iter::once(lang.id.as_str())
                    .chain(lang.aliases.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect(),
        LanguageList::Json => registry
            .iter()
            .map(|lang| {
                serde_json::json!({
                    "id": lang.id,
                    "name": lang.name,
                    "aliases": lang.aliases,
                    "extensions": lang.extensions,
                    "compiled": lang.is_compiled(),
                    "image": lang.image,
                    "timeFactor": lang.time_factor,
                })
                .to_string()
            })
            .collect(),
        LanguageList::Long => {
            let rows: Vec<[String; 7]> = std::iter::once(
                [
                    "ID",
                    "ALIASES",
                    "EXTENSIONS",
                    "COMPILED",
                    "IMAGE",
                    "TIME",
                    "NAME",
                ]
                .map(String::from),
            )
            .chain(registry.iter().map(|lang| {
                [
                    lang.id.clone(),
                    or_dash(lang.aliases.join(",")),
                    or_dash(lang.extensions.join(",")),
                    if lang.is_compiled() { "yes" } else { "no" }.to_owned(),
                    lang.image.clone(),
                    format!("{}x", lang.time_factor),
                    lang.name.clone(),
                ]
            }))
            .collect();
            let mut widths = [0; 7];
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            rows.iter()
                .map(|row| {
                    let cells: Vec<String> = row
                        .iter()
                        .zip(widths)
                        .map(|(cell, width)| format!("{cell:width$}"))
                        .collect();
                    cells.join("  ").trim_end().to_owned()
                })
                .collect()
        }
    };
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").map_err(stdout_error)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A table cell that is never empty, so that the columns split on white space.
fn or_dash(cell: String) -> String {
    if cell.is_empty() {
        "-".to_owned()
    } else {
        cell
    }
}
