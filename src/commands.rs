//! The commands behind the CLI. Each writes its report to the given
//! writers and returns what the exit code should say.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::diagnostic::Severity;
use crate::graph;
use crate::project::{self, ProjectError};
use crate::render;
use crate::span::FileId;

/// How a command ended, mapped to the exit code by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Success,
    /// Exit 1: problems found.
    Problems,
}

/// Why a command could not do its work: exit 2.
#[derive(Debug)]
pub enum CommandError {
    Project(ProjectError),
    Usage(String),
    Output(std::io::Error),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Project(error) => error.fmt(f),
            CommandError::Usage(message) => f.write_str(message),
            CommandError::Output(error) => write!(f, "cannot write output: {error}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<ProjectError> for CommandError {
    fn from(error: ProjectError) -> Self {
        CommandError::Project(error)
    }
}

impl From<std::io::Error> for CommandError {
    fn from(error: std::io::Error) -> Self {
        CommandError::Output(error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckFormat {
    #[default]
    Human,
    Json,
    Github,
}

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub paths: Vec<PathBuf>,
    pub format: CheckFormat,
    pub deny_warnings: bool,
}

/// The settings file of `--project PATH`, or of the current folder.
pub fn project_settings(project: Option<&Path>) -> Result<PathBuf, ProjectError> {
    match project {
        Some(path) => project::find_settings(path).ok_or_else(|| ProjectError::NoSettings {
            path: path.to_path_buf(),
        }),
        None => current_project(),
    }
}

fn current_project() -> Result<PathBuf, ProjectError> {
    let cwd = std::env::current_dir().map_err(|error| ProjectError::Io {
        path: PathBuf::from("."),
        error,
    })?;
    project::find_settings(&cwd).ok_or(ProjectError::NoSettings {
        path: PathBuf::from("."),
    })
}

/// `journeyc check [PATH...]`
pub fn check(options: &CheckOptions, out: &mut dyn Write) -> Result<Status, CommandError> {
    let groups = if options.paths.is_empty() {
        let settings = current_project()?;
        std::iter::once((settings, BTreeSet::new())).collect()
    } else {
        project::group_paths(&options.paths)?
    };
    let (mut errors, mut warnings, mut journeys, mut files) = (0, 0, 0, 0);
    for (settings, reported) in &groups {
        let checked = project::load(settings, reported)?;
        let filter = (!reported.is_empty()).then_some(reported);
        let diagnostics = checked.diagnostics_for(filter);
        for diagnostic in &diagnostics {
            match diagnostic.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            match options.format {
                CheckFormat::Human => {
                    writeln!(out, "{}", render::human(&checked.sources, diagnostic))?;
                }
                CheckFormat::Json => {
                    writeln!(out, "{}", render::json(&checked.sources, diagnostic))?;
                }
                CheckFormat::Github => {
                    writeln!(out, "{}", render::github(&checked.sources, diagnostic))?;
                }
            }
        }
        let counted: Vec<FileId> = checked
            .sources
            .files()
            .filter(|(_, file)| {
                file.path
                    .extension()
                    .is_some_and(|extension| extension == "journey")
            })
            .filter(|(_, file)| filter.is_none_or(|reported| reported.contains(&file.path)))
            .map(|(id, _)| id)
            .collect();
        files += counted.len();
        journeys += checked
            .analysis
            .journeys
            .iter()
            .filter(|journey| counted.contains(&journey.span.file))
            .count();
    }
    if options.format == CheckFormat::Human {
        let plural = |count: usize, word: &str| {
            format!("{count} {word}{}", if count == 1 { "" } else { "s" })
        };
        if errors + warnings == 0 {
            writeln!(
                out,
                "ok: {} in {} checked, no problems",
                plural(journeys, "journey"),
                plural(files, "file")
            )?;
        } else {
            let verdict = if errors > 0 || options.deny_warnings {
                "failed"
            } else {
                "ok"
            };
            let place = if files == 0 {
                String::new()
            } else {
                format!(" in {}", plural(files, "file"))
            };
            writeln!(
                out,
                "{verdict}: {}, {}{place}",
                plural(errors, "error"),
                plural(warnings, "warning")
            )?;
        }
    }
    let failed = errors > 0 || (options.deny_warnings && warnings > 0);
    Ok(if failed {
        Status::Problems
    } else {
        Status::Success
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphFormat {
    #[default]
    Dot,
    Mermaid,
    Text,
}

/// `journeyc graph JOURNEY`
pub fn graph(
    journey: &str,
    project_path: Option<&Path>,
    format: GraphFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Status, CommandError> {
    let settings = project_settings(project_path)?;
    // A journey file outside the project's folders is drawn too.
    let extra: BTreeSet<PathBuf> = project_path
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|extension| extension == "journey")
        })
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    let checked = project::load(&settings, &extra)?;
    let Some(compiled) = checked
        .analysis
        .journeys
        .iter()
        .find(|compiled| compiled.name == journey)
    else {
        let names: Vec<&str> = checked
            .analysis
            .journeys
            .iter()
            .map(|compiled| compiled.name.as_str())
            .collect();
        let hint = crate::diagnostic::did_you_mean(journey, names.iter().copied())
            .unwrap_or_else(|| format!("the journeys are: {}", names.join(", ")));
        return Err(CommandError::Usage(format!(
            "no journey named `{journey}`; {hint}"
        )));
    };
    let closing = format!("failed: fix the errors above before drawing `{journey}`");
    if checked.report_errors(
        err,
        &|diagnostic| diagnostic.span.file == compiled.span.file,
        &closing,
    )? {
        return Ok(Status::Problems);
    }
    let text = match format {
        GraphFormat::Dot => graph::to_dot(compiled),
        GraphFormat::Mermaid => graph::to_mermaid(compiled),
        GraphFormat::Text => graph::to_text(compiled),
    };
    out.write_all(text.as_bytes())?;
    Ok(Status::Success)
}

#[derive(Debug, Clone, Default)]
pub struct FmtOptions {
    pub paths: Vec<PathBuf>,
    pub check: bool,
    pub write: bool,
}

/// `journeyc fmt [--check] [--write] [PATH...]`
pub fn fmt(
    options: &FmtOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Status, CommandError> {
    let mut files = Vec::new();
    if options.paths.is_empty() {
        let settings = current_project()?;
        for set in project::group_paths(&[settings])?.into_values() {
            files.extend(set);
        }
    } else {
        for path in &options.paths {
            if path.is_dir() {
                files.extend(project::journey_files(path)?);
            } else {
                files.push(path.clone());
            }
        }
    }
    let mut status = Status::Success;
    let mut sources = crate::span::SourceMap::new();
    for path in files {
        let text = match crate::files::read_text(&path) {
            Ok(text) => text,
            Err(crate::files::FileProblem::Io { path, error }) => {
                return Err(ProjectError::Io { path, error }.into())
            }
            Err(problem) => {
                writeln!(err, "error: {problem}")?;
                status = Status::Problems;
                continue;
            }
        };
        let file = sources.add(path.clone(), text);
        let source = &sources.get(file).text;
        let formatted = match crate::format::format_source(file, source) {
            Ok(formatted) => formatted,
            Err(diagnostic) => {
                writeln!(err, "{}", render::human(&sources, &diagnostic))?;
                status = Status::Problems;
                continue;
            }
        };
        if options.check {
            if formatted != *source {
                writeln!(out, "{}", path.display())?;
                status = Status::Problems;
            }
        } else if options.write {
            if formatted != *source {
                std::fs::write(&path, &formatted).map_err(|error| ProjectError::Io {
                    path: path.clone(),
                    error,
                })?;
                writeln!(err, "formatted {}", path.display())?;
            }
        } else {
            out.write_all(formatted.as_bytes())?;
        }
    }
    if options.check && status == Status::Problems {
        writeln!(
            err,
            "these files are not formatted; run `journeyc fmt --write`"
        )?;
    }
    Ok(status)
}
