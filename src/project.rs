//! Finding and loading projects: a `journeyc.yaml` and the `.journey` files
//! in its journey folders. `journeyc check PATH...` groups the paths it is
//! given by the nearest `journeyc.yaml` above each of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::analyzer::{self, Analysis};
use crate::ast;
use crate::diagnostic::Diagnostic;
use crate::parser;
use crate::settings::{self, Settings};
use crate::span::{FileId, SourceMap};
use crate::templates::{self, TemplateSet};

/// Problems that stop a command before any checking: exit code 2.
#[derive(Debug)]
pub enum ProjectError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    NoSettings {
        path: PathBuf,
    },
    NotJourney {
        path: PathBuf,
    },
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectError::Io { path, error } => write!(f, "cannot read `{}`: {error}", path.display()),
            ProjectError::NoSettings { path } => write!(
                f,
                "no {} in `{}` or any folder above it; run `journeyc` inside a project or pass the path of one",
                settings::FILE_NAME,
                path.display()
            ),
            ProjectError::NotJourney { path } => write!(f, "`{}` is not a .journey file or a folder", path.display()),
        }
    }
}

impl std::error::Error for ProjectError {}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ProjectError + '_ {
    move |error| ProjectError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// One project, loaded and analyzed.
pub struct Checked {
    pub sources: SourceMap,
    pub settings: Option<Settings>,
    pub analysis: Analysis,
    /// Parsed files, by id (files with a syntax error are absent).
    pub files: Vec<(FileId, ast::File)>,
    /// The project's templates (absent when the settings are broken).
    pub templates: Option<TemplateSet>,
}

impl Checked {
    /// Diagnostics in files under any of `paths` (and in the settings),
    /// sorted by file and position.
    pub fn diagnostics_for(&self, paths: Option<&BTreeSet<PathBuf>>) -> Vec<&Diagnostic> {
        let mut selected: Vec<&Diagnostic> = self
            .analysis
            .diagnostics
            .iter()
            .filter(|diagnostic| {
                let path = self.sources.path(diagnostic.span.file);
                // Settings and templates serve every journey: their
                // problems are always reported.
                let is_settings = path
                    .file_name()
                    .is_some_and(|name| name == settings::FILE_NAME)
                    || path
                        .extension()
                        .and_then(|extension| extension.to_str())
                        .is_some_and(|extension| {
                            ["email", "sms", "task", "webhook"].contains(&extension)
                        });
                paths.is_none_or(|paths| is_settings || paths.contains(path))
            })
            .collect();
        selected.sort_by(|a, b| {
            let key = |diagnostic: &Diagnostic| {
                (
                    self.sources.path(diagnostic.span.file).to_path_buf(),
                    diagnostic.span.start,
                    diagnostic.code,
                )
            };
            key(a).cmp(&key(b))
        });
        selected.dedup_by(|a, b| a == b);
        selected
    }
}

impl Checked {
    /// Prints the errors `wanted` selects, then `closing`; returns whether
    /// there were any (the command then stops).
    pub fn report_errors(
        &self,
        err: &mut dyn std::io::Write,
        wanted: &dyn Fn(&Diagnostic) -> bool,
        closing: &str,
    ) -> std::io::Result<bool> {
        let errors: Vec<&Diagnostic> = self
            .diagnostics_for(None)
            .into_iter()
            .filter(|diagnostic| diagnostic.is_error() && wanted(diagnostic))
            .collect();
        for diagnostic in &errors {
            writeln!(err, "{}", crate::render::human(&self.sources, diagnostic))?;
        }
        if !errors.is_empty() {
            writeln!(err, "{closing}")?;
        }
        Ok(!errors.is_empty())
    }
}

/// The nearest `journeyc.yaml` in `start` or above it.
pub fn find_settings(start: &Path) -> Option<PathBuf> {
    let start = if start.is_file() {
        start.parent()?
    } else {
        start
    };
    // `Path::new("a.journey").parent()` is the empty path, which means here.
    let start = if start.as_os_str().is_empty() {
        Path::new(".")
    } else {
        start
    };
    let mut folder = std::path::absolute(start).ok()?;
    loop {
        let candidate = folder.join(settings::FILE_NAME);
        if candidate.is_file() {
            return Some(relative_to_cwd(&candidate));
        }
        if !folder.pop() {
            return None;
        }
    }
}

/// Paths are shown relative to the current folder when they are inside it,
/// as a user typed them.
fn relative_to_cwd(path: &Path) -> PathBuf {
    let Ok(cwd) = std::env::current_dir() else {
        return path.to_path_buf();
    };
    path.strip_prefix(&cwd)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

fn normalize(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut clean = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    relative_to_cwd(&clean)
}

/// Every file under a folder that `wanted` accepts (given its name),
/// sorted; hidden folders and `target/` are skipped.
fn files_under(
    folder: &Path,
    wanted: &dyn Fn(&Path, &str) -> bool,
) -> Result<Vec<PathBuf>, ProjectError> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    pending.push(path);
                }
            } else if wanted(&path, name) {
                found.push(normalize(&path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Every `.journey` file under a folder, sorted.
pub fn journey_files(folder: &Path) -> Result<Vec<PathBuf>, ProjectError> {
    files_under(folder, &|path, _| {
        path.extension()
            .is_some_and(|extension| extension == "journey")
    })
}

fn settings_files(folder: &Path) -> Result<Vec<PathBuf>, ProjectError> {
    files_under(folder, &|_, name| name == settings::FILE_NAME)
}

/// What `check PATH...` should look at: for each project (its settings
/// file), the journey files whose diagnostics are reported.
pub fn group_paths(
    paths: &[PathBuf],
) -> Result<BTreeMap<PathBuf, BTreeSet<PathBuf>>, ProjectError> {
    let mut projects: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for path in paths {
        if !path.exists() {
            return Err(ProjectError::Io {
                path: path.clone(),
                error: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let files = if path.is_dir() {
            for settings in settings_files(path)? {
                projects.entry(settings).or_default();
            }
            journey_files(path)?
        } else if path
            .extension()
            .is_some_and(|extension| extension == "journey")
        {
            vec![normalize(path)]
        } else if path
            .file_name()
            .is_some_and(|name| name == settings::FILE_NAME)
        {
            projects.entry(normalize(path)).or_default();
            continue;
        } else {
            return Err(ProjectError::NotJourney { path: path.clone() });
        };
        for file in files {
            let settings = find_settings(&file)
                .ok_or_else(|| ProjectError::NoSettings { path: file.clone() })?;
            projects
                .entry(normalize(&settings))
                .or_default()
                .insert(file);
        }
    }
    // A project named only through its settings file or a folder above it
    // reports all its journeys.
    for (settings, files) in &mut projects {
        if files.is_empty() {
            files.extend(project_files_of(settings)?);
        }
    }
    Ok(projects)
}

/// The journey files a project's settings point to, without parsing the
/// settings fully (a broken settings file still lets syntax be checked).
fn project_files_of(settings_path: &Path) -> Result<Vec<PathBuf>, ProjectError> {
    let mut sources = SourceMap::new();
    let root = settings_path.parent().unwrap_or(Path::new(""));
    let dirs = match Settings::load(settings_path, &mut sources).map_err(io_error(settings_path))? {
        Ok(settings) => settings.journey_dirs(),
        Err(_) => vec![root.join("journeys")],
    };
    let mut files = Vec::new();
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        files.extend(journey_files(dir)?);
    }
    Ok(files)
}

/// Loads a project: its settings, every journey file in its folders plus
/// `extra` files, parses them and analyzes them together.
pub fn load(settings_path: &Path, extra: &BTreeSet<PathBuf>) -> Result<Checked, ProjectError> {
    let mut sources = SourceMap::new();
    let mut diagnostics = Vec::new();
    let settings =
        match Settings::load(settings_path, &mut sources).map_err(io_error(settings_path))? {
            Ok(settings) => Some(settings),
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                None
            }
        };
    let mut paths: BTreeSet<PathBuf> = extra.iter().map(|path| normalize(path)).collect();
    let dirs = match &settings {
        Some(settings) => settings.journey_dirs(),
        None => vec![settings_path
            .parent()
            .unwrap_or(Path::new(""))
            .join("journeys")],
    };
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        paths.extend(journey_files(dir)?);
    }
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        let file = sources.add(path, text);
        match parser::parse(file, &sources.get(file).text) {
            Ok((ast, mut value_errors)) => {
                diagnostics.append(&mut value_errors);
                files.push((file, ast));
            }
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    let templates = match &settings {
        Some(settings) => {
            let dir = settings.templates_dir();
            let (set, mut problems) =
                templates::load(settings, &mut sources).map_err(io_error(&dir))?;
            diagnostics.append(&mut problems);
            Some(set)
        }
        None => None,
    };
    let mut analysis = match (&settings, &templates) {
        (Some(settings), Some(set)) => {
            let borrowed: Vec<(FileId, &ast::File)> =
                files.iter().map(|(id, file)| (*id, file)).collect();
            let exempt: analyzer::Exempt = set
                .templates
                .values()
                .filter(|template| template.kind == templates::MessageKind::Transactional)
                .map(|template| (template.channel, template.name.clone()))
                .collect();
            let mut analysis = analyzer::analyze_with(settings, &borrowed, &exempt);
            analysis.diagnostics.extend(templates::check::check(
                settings,
                set,
                &analysis.messages,
                &sources,
            ));
            analysis
        }
        _ => Analysis::default(),
    };
    diagnostics.append(&mut analysis.diagnostics);
    analysis.diagnostics = diagnostics;
    Ok(Checked {
        sources,
        settings,
        analysis,
        files,
        templates,
    })
}
