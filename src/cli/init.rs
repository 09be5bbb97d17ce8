//! `journeyc init [DIR]`: writes the starter project (settings, two
//! journeys, their templates, and sample contacts and events) into a new
//! folder, so the whole job runs from the first minute. The files are
//! `examples/starter/` of the journeyc repository, built into the binary.

use std::path::PathBuf;

use super::{Io, Outcome, Report, Status};
use crate::error::Error;

/// The starter project, file by file.
const STARTER: &[(&str, &str)] = &[
    (
        ".gitignore",
        include_str!("../../examples/starter/.gitignore"),
    ),
    (
        "README.md",
        include_str!("../../examples/starter/README.md"),
    ),
    (
        "data/contacts.csv",
        include_str!("../../examples/starter/data/contacts.csv"),
    ),
    (
        "data/events.jsonl",
        include_str!("../../examples/starter/data/events.jsonl"),
    ),
    (
        "journeyc.yaml",
        include_str!("../../examples/starter/journeyc.yaml"),
    ),
    (
        "journeys/welcome.journey",
        include_str!("../../examples/starter/journeys/welcome.journey"),
    ),
    (
        "journeys/winback.journey",
        include_str!("../../examples/starter/journeys/winback.journey"),
    ),
    (
        "templates/welcome/day0.email",
        include_str!("../../examples/starter/templates/welcome/day0.email"),
    ),
    (
        "templates/welcome/getting_started.email",
        include_str!("../../examples/starter/templates/welcome/getting_started.email"),
    ),
    (
        "templates/welcome/invite_team.email",
        include_str!("../../examples/starter/templates/welcome/invite_team.email"),
    ),
    (
        "templates/welcome/next_steps.email",
        include_str!("../../examples/starter/templates/welcome/next_steps.email"),
    ),
    (
        "templates/welcome/tips.email",
        include_str!("../../examples/starter/templates/welcome/tips.email"),
    ),
    (
        "templates/winback/last_call.email",
        include_str!("../../examples/starter/templates/winback/last_call.email"),
    ),
    (
        "templates/winback/whats_new.email",
        include_str!("../../examples/starter/templates/winback/whats_new.email"),
    ),
];

/// Write a starter project with sample contacts and events into a new
/// folder.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc init my-journeys && cd my-journeys && journeyc check
  journeyc init .                # into the current folder, if it is empty")]
pub(crate) struct Args {
    /// The folder to write it to; it must not exist yet, or be empty.
    #[arg(default_value = "journeyc-starter", value_name = "DIR")]
    dir: PathBuf,
    /// How to report.
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let dir = &args.dir;
    let io_error = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
        if entries.next().is_some() {
            return Err(Error::Usage(format!(
                "`{}` is not empty; `journeyc init` writes a new project only into a new or empty folder",
                dir.display()
            )));
        }
    }
    for (name, text) in STARTER {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        std::fs::write(&path, text).map_err(io_error(&path))?;
    }
    if args.format == Report::Json {
        let files: Vec<&str> = STARTER.iter().map(|(name, _)| *name).collect();
        super::json_line(
            io,
            &serde_json::json!({"dir": dir.display().to_string(), "files": files}),
        )?;
        return Ok(Status::Success);
    }
    writeln!(
        io.out,
        "wrote a starter project to {}: journeyc.yaml, 2 journeys, {} templates, sample contacts and events in data/",
        dir.display(),
        STARTER
            .iter()
            .filter(|(name, _)| name.starts_with("templates/"))
            .count()
    )?;
    writeln!(
        io.out,
        "next: cd {} and follow its README.md (check, import, run, deliver)",
        dir.display()
    )?;
    Ok(Status::Success)
}

#[cfg(test)]
mod tests {
    use super::STARTER;

    /// The binary carries exactly the files of `examples/starter/`.
    #[test]
    fn the_starter_is_the_example_folder() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    let name = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    on_disk.push(name);
                }
            }
        }
        on_disk.retain(|name| {
            !name.starts_with("outbox/")
                && !name.starts_with("journeyc.db")
                && name != "journeyc.lock"
        });
        on_disk.sort();
        let mut built_in: Vec<String> = STARTER
            .iter()
            .map(|(name, _)| (*name).to_string())
            .collect();
        built_in.sort();
        assert_eq!(on_disk, built_in);
    }
}
