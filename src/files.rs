//! Reading a project's own files: journeys, templates and settings come
//! only from inside the project folder (the folder of `journeyc.yaml`), as
//! UTF-8 text with one kind of line ending. A symlink that leaves the
//! project, loops or leads nowhere is refused, so nothing a repository
//! holds can make `journeyc check` read, or print, a file of the machine
//! it runs on.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The largest journey, template or settings file journeyc reads (4 MiB).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why a file of the project cannot be read.
#[derive(Debug)]
pub enum FileProblem {
    /// A symlink (or a path through one) that resolves outside the project.
    Outside {
        path: PathBuf,
    },
    /// A symlink that leads back into a folder being walked, or to itself.
    Loop {
        path: PathBuf,
    },
    /// A symlink whose target does not exist.
    Dangling {
        path: PathBuf,
    },
    /// Bytes that are not UTF-8, at a 1-based line and column.
    NotUtf8 {
        path: PathBuf,
        line: usize,
        column: usize,
        /// The file's text up to the first bad byte, for the diagnostic.
        valid: String,
    },
    TooLarge {
        path: PathBuf,
        bytes: u64,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl FileProblem {
    pub fn path(&self) -> &Path {
        match self {
            FileProblem::Outside { path }
            | FileProblem::Loop { path }
            | FileProblem::Dangling { path }
            | FileProblem::NotUtf8 { path, .. }
            | FileProblem::TooLarge { path, .. }
            | FileProblem::Io { path, .. } => path,
        }
    }

    /// What the diagnostic says after the path.
    pub fn message(&self) -> String {
        match self {
            FileProblem::Outside { .. } => {
                "leads outside the project folder; journeyc reads only the project's own files"
                    .to_string()
            }
            FileProblem::Loop { .. } => "is a symlink that loops back on itself".to_string(),
            FileProblem::Dangling { .. } => {
                "is a symlink to a file that does not exist".to_string()
            }
            FileProblem::NotUtf8 { .. } => "is not UTF-8 text".to_string(),
            FileProblem::TooLarge { bytes, .. } => format!(
                "is {} KiB, more than the {} KiB journeyc reads",
                bytes / 1024,
                MAX_FILE_BYTES / 1024
            ),
            FileProblem::Io { error, .. } => format!("cannot be read: {error}"),
        }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::NotUtf8 {
                path, line, column, ..
            } => write!(
                f,
                "{}:{line}:{column}: the file is not UTF-8 text",
                path.display()
            ),
            _ => write!(f, "`{}` {}", self.path().display(), self.message()),
        }
    }
}

impl std::error::Error for FileProblem {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileProblem::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Reads a text file: at most [`MAX_FILE_BYTES`], UTF-8 (a bad byte is
/// reported at its line and column), without a byte order mark, with
/// lone carriage returns read as line breaks (a CR is one byte, as is the
/// LF it becomes, so offsets stay those of the file).
pub fn read_text(path: &Path) -> Result<String, FileProblem> {
    let io = |error| FileProblem::Io {
        path: path.to_path_buf(),
        error,
    };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_FILE_BYTES {
        return Err(FileProblem::TooLarge {
            path: path.to_path_buf(),
            bytes,
        });
    }
    decode(path, std::fs::read(path).map_err(io)?)
}

/// [`read_text`] on bytes already read (`path` names them in errors).
pub fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, FileProblem> {
    let text = String::from_utf8(bytes).map_err(|error| {
        let valid_up_to = error.utf8_error().valid_up_to();
        let bytes = error.into_bytes();
        let valid = String::from_utf8_lossy(&bytes[..valid_up_to]).into_owned();
        let (line, column) = line_column(&valid, valid_up_to);
        FileProblem::NotUtf8 {
            path: path.to_path_buf(),
            line,
            column,
            valid,
        }
    })?;
    Ok(normalize_text(text))
}

/// Drops a leading byte order mark and turns lone carriage returns (old
/// Mac line endings) into line feeds; CRLF stays as it is.
pub fn normalize_text(text: String) -> String {
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    if !text.contains('\r') {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(character) = chars.next() {
        if character == '\r' && chars.peek() != Some(&'\n') {
            out.push('\n');
        } else {
            out.push(character);
        }
    }
    out
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// How deeply a YAML document (settings, front matter, `--vars`) may nest.
pub const MAX_YAML_DEPTH: usize = 64;

/// The byte offset where a YAML text nests deeper than
/// [`MAX_YAML_DEPTH`] (indentation, `- ` items and flow brackets counted
/// together), found in one pass before the YAML parser sees it: the parser
/// takes time that grows with the square of the depth.
pub fn yaml_too_deep(text: &str) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_start_matches(' ');
        if flow == 0 {
            let body = content.trim_end();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent = line.len() - content.len();
            while indents.last().is_some_and(|&last| last > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            let mut depth = indents.len();
            let mut rest = body;
            while let Some(after) = rest
                .strip_prefix('-')
                .filter(|after| after.is_empty() || after.starts_with(' '))
            {
                depth += 1;
                rest = after.trim_start();
            }
            if depth > MAX_YAML_DEPTH {
                return Some(start + (line.len() - content.len()));
            }
        }
        let mut quote: Option<char> = None;
        for (at, character) in content.char_indices() {
            match (quote, character) {
                (Some(open), _) if character == open => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') if flow > 0 => quote = Some(character),
                (None, '#') if flow == 0 => break,
                (None, '[' | '{') => {
                    flow += 1;
                    if flow + indents.len() > MAX_YAML_DEPTH {
                        return Some(start + (line.len() - content.len()) + at);
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}

/// The project folder, resolved, that every file read must stay inside.
#[derive(Clone, Debug)]
pub struct Boundary {
    root: PathBuf,
}

impl Boundary {
    /// The boundary of the project whose settings file is `settings`.
    pub fn of_settings(settings: &Path) -> Boundary {
        let folder = settings
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty());
        let folder = folder.unwrap_or(Path::new("."));
        Boundary {
            root: std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf()),
        }
    }

    /// The boundary of a folder a command was pointed at.
    pub fn of_folder(folder: &Path) -> Boundary {
        Boundary {
            root: std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf()),
        }
    }

    /// Whether `path` (which may pass through symlinks) is inside the
    /// project; a missing path is `Ok` (the caller says it is missing),
    /// unless it is a symlink to nothing.
    pub fn check(&self, path: &Path) -> Result<(), FileProblem> {
        match std::fs::canonicalize(path) {
            Ok(resolved) if resolved.starts_with(&self.root) => Ok(()),
            Ok(_) => Err(FileProblem::Outside {
                path: path.to_path_buf(),
            }),
            Err(error) => {
                let is_link = std::fs::symlink_metadata(path)
                    .is_ok_and(|metadata| metadata.file_type().is_symlink());
                // ELOOP: too many levels of symbolic links.
                if error.raw_os_error() == Some(40) {
                    Err(FileProblem::Loop {
                        path: path.to_path_buf(),
                    })
                } else if is_link {
                    Err(FileProblem::Dangling {
                        path: path.to_path_buf(),
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Reads a file of the project with [`read_text`], after checking it
    /// is inside the boundary.
    pub fn read(&self, path: &Path) -> Result<String, FileProblem> {
        self.check(path)?;
        read_text(path)
    }

    /// Every file under `folder` that `wanted` accepts (given its path and
    /// name), sorted, and the problems met on the way. Hidden folders and
    /// `target/` are skipped; a folder reached twice (through a symlink
    /// loop) is reported once and not walked again.
    pub fn walk(
        &self,
        folder: &Path,
        wanted: &dyn Fn(&Path, &str) -> bool,
    ) -> Result<(Vec<PathBuf>, Vec<FileProblem>), FileProblem> {
        self.check(folder)?;
        let mut found = Vec::new();
        let mut problems = Vec::new();
        let mut visited = HashSet::new();
        if let Ok(resolved) = std::fs::canonicalize(folder) {
            visited.insert(resolved);
        }
        let mut pending = vec![folder.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|error| FileProblem::Io {
                path: dir.clone(),
                error,
            })?;
            for entry in entries {
                let entry = entry.map_err(|error| FileProblem::Io {
                    path: dir.clone(),
                    error,
                })?;
                let path = entry.path();
                let name = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .unwrap_or("")
                    .to_string();
                let is_link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
                if is_link {
                    if let Err(problem) = self.check(&path) {
                        // Only files the walk would have taken are its
                        // business; a stray link elsewhere is not.
                        if path.is_dir() || wanted(&path, &name) || !path.exists() {
                            problems.push(problem);
                        }
                        continue;
                    }
                }
                if path.is_dir() {
                    if name.starts_with('.') || name == "target" {
                        continue;
                    }
                    let resolved = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                    if !visited.insert(resolved) {
                        problems.push(FileProblem::Loop { path });
                        continue;
                    }
                    pending.push(path);
                } else if wanted(&path, &name) {
                    found.push(path);
                }
            }
        }
        found.sort();
        problems.sort_by(|a, b| a.path().cmp(b.path()));
        Ok((found, problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_carriage_returns_become_line_feeds_and_the_bom_goes() {
        assert_eq!(normalize_text("\u{feff}a\rb\r\nc\r".into()), "a\nb\r\nc\n");
    }

    #[test]
    fn deep_yaml_is_found_before_it_is_parsed() {
        assert_eq!(yaml_too_deep("a:\n  b: [1, {c: 2}]\n- - x\n"), None);
        let deep = format!("a: {}1{}", "[".repeat(70), "]".repeat(70));
        assert_eq!(yaml_too_deep(&deep), Some(3 + 63));
        let mut indented = String::new();
        for level in 0..70 {
            indented.push_str(&" ".repeat(level));
            indented.push_str("k:\n");
        }
        assert!(yaml_too_deep(&indented).is_some());
        assert!(yaml_too_deep(&"- ".repeat(70)).is_some());
    }

    #[test]
    fn a_bad_byte_is_located() {
        let problem = decode(Path::new("x.journey"), b"ok\nab\xffc".to_vec()).unwrap_err();
        assert!(
            matches!(
                problem,
                FileProblem::NotUtf8 {
                    line: 2,
                    column: 3,
                    ..
                }
            ),
            "{problem:?}"
        );
        assert_eq!(
            problem.to_string(),
            "x.journey:2:3: the file is not UTF-8 text"
        );
    }
}
