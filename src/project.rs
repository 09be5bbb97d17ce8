//! Finding and loading projects: a `journeyc.yaml` and the `.journey` files
//! in its journey folders. `journeyc check PATH...` groups the paths it is
//! given by the nearest `journeyc.yaml` above each of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::analyzer::{self, Analysis};
use crate::ast;
use crate::diagnostic::{Code, Diagnostic};
use crate::files::{Boundary, FileProblem};
use crate::parser;
use crate::settings::{self, Settings};
use crate::span::{FileId, SourceMap, Span};
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
    /// A folder the command was pointed at that cannot be walked.
    File(FileProblem),
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
            ProjectError::File(problem) => write!(f, "{problem}"),
        }
    }
}

impl std::error::Error for ProjectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProjectError::Io { error, .. } => Some(error),
            ProjectError::File(problem) => Some(problem),
            ProjectError::NoSettings { .. } | ProjectError::NotJourney { .. } => None,
        }
    }
}

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
                // Settings, templates and the files the project refuses
                // serve every journey: their problems are always reported.
                let is_journey = path
                    .extension()
                    .is_some_and(|extension| extension == "journey");
                paths.is_none_or(|paths| !is_journey || paths.contains(path))
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
    /// The compiled journey named `name`.
    pub fn journey(&self, name: &str) -> Option<&crate::journey::CompiledJourney> {
        self.analysis
            .journeys
            .iter()
            .find(|journey| journey.name == name)
    }

    /// What to say about a journey name that is not in the project: the
    /// closest name, or where to find them.
    pub fn journey_hint(&self, name: &str) -> String {
        let names = self
            .analysis
            .journeys
            .iter()
            .map(|journey| journey.name.as_str());
        crate::diagnostic::did_you_mean(name, names)
            .unwrap_or_else(|| "`journeyc check` lists the project's journeys".into())
    }

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
            writeln!(
                err,
                "{}",
                crate::diagnostic::render::human(&self.sources, diagnostic)
            )?;
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
/// sorted; hidden folders and `target/` are skipped. Symlinks that leave
/// `folder`, loop or lead nowhere are not followed ([`load`] reports them).
fn files_under(
    folder: &Path,
    wanted: &dyn Fn(&Path, &str) -> bool,
) -> Result<Vec<PathBuf>, ProjectError> {
    let boundary = Boundary::of_folder(folder);
    let (found, _) = boundary.walk(folder, wanted).map_err(ProjectError::File)?;
    Ok(found.iter().map(|path| normalize(path)).collect())
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
    // Folders outside the project are reported by `load`, not walked.
    let boundary = Boundary::of_settings(settings_path);
    let mut files = Vec::new();
    for dir in dirs
        .iter()
        .filter(|dir| dir.is_dir() && boundary.check(dir).is_ok())
    {
        let (found, _) = boundary
            .walk(dir, &|path, _| {
                path.extension()
                    .is_some_and(|extension| extension == "journey")
            })
            .map_err(ProjectError::File)?;
        files.extend(found.iter().map(|path| normalize(path)));
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
    let boundary = Boundary::of_settings(settings_path);
    for dir in &dirs {
        match boundary.walk(dir, &|path, _| {
            path.extension()
                .is_some_and(|extension| extension == "journey")
        }) {
            Ok((found, problems)) => {
                paths.extend(found.iter().map(|path| normalize(path)));
                diagnostics.extend(
                    problems
                        .iter()
                        .map(|problem| file_diagnostic(&mut sources, problem)),
                );
            }
            // A journey folder that does not exist holds no journeys.
            Err(FileProblem::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(FileProblem::Io { path, error }) => return Err(ProjectError::Io { path, error }),
            Err(problem) => diagnostics.push(file_diagnostic(&mut sources, &problem)),
        }
    }
    let mut files = Vec::new();
    for path in paths {
        let text = match boundary.read(&path) {
            Ok(text) => text,
            Err(FileProblem::Io { path, error }) => return Err(ProjectError::Io { path, error }),
            Err(problem) => {
                diagnostics.push(file_diagnostic(&mut sources, &problem));
                continue;
            }
        };
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
                templates::load(settings, &boundary, &mut sources).map_err(io_error(&dir))?;
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

/// A file that cannot be read, as a diagnostic at the file (at the bad
/// byte for text that is not UTF-8).
pub fn file_diagnostic(sources: &mut SourceMap, problem: &FileProblem) -> Diagnostic {
    let (text, at) = match problem {
        FileProblem::NotUtf8 { valid, .. } => (valid.clone(), valid.len()),
        _ => (String::new(), 0),
    };
    let code = match problem {
        FileProblem::Outside { .. } | FileProblem::Loop { .. } | FileProblem::Dangling { .. } => {
            Code::OutsideProject
        }
        FileProblem::TooLarge { .. } => Code::TooLarge,
        FileProblem::NotUtf8 { .. } | FileProblem::Io { .. } => Code::Unreadable,
    };
    let help = match code {
        Code::OutsideProject => "keep journeys and templates inside the project folder; copy the file in instead of linking it",
        Code::TooLarge => "split the file",
        _ => "save the file as UTF-8",
    };
    let file = sources.add(problem.path().to_path_buf(), text);
    Diagnostic::new(
        code,
        Span::new(file, at, at),
        format!("`{}` {}", problem.path().display(), problem.message()),
    )
    .label(if matches!(problem, FileProblem::NotUtf8 { .. }) {
        "not UTF-8 from here"
    } else {
        "refused"
    })
    .help(help)
}
