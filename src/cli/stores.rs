//! `journeyc store copy FROM TO`: a project's store moved between
//! backends, row for row with the same ids.

use std::path::Path;

use super::{Io, Outcome, Report, Status};
use crate::error::Error;
use crate::settings::url_holds_password;
use crate::store::{self, PASSWORD_VARIABLE};

/// The environment variable the password of FROM is read from when the two
/// stores need different ones.
const FROM_PASSWORD_VARIABLE: &str = "JOURNEYC_FROM_STORE_PASSWORD";

/// Work on a store as a whole.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc store copy journeyc.db postgres://journeyc@db.internal/marketing")]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    Copy(CopyArgs),
}

/// Copy a whole store into an empty one, SQLite or PostgreSQL.
///
/// Contacts, events, suppressions, enrolments, transitions, the outbox
/// and the run history go over with the same ids, in one transaction.
///
/// A store is named as `store:` in journeyc.yaml names it: a SQLite file
/// (a path, or `sqlite:PATH`) or `postgres://USER@HOST/DB`, whose password
/// comes from JOURNEYC_STORE_PASSWORD (FROM's from
/// JOURNEYC_FROM_STORE_PASSWORD when that is set). Both stores' run locks
/// are held while copying; stop `journeyc deliver` too, or what it sends
/// after the copy began stays unsent in TO. Then point `store:` at TO.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc store copy journeyc.db postgres://journeyc@db.internal/marketing
  JOURNEYC_STORE_PASSWORD=... journeyc store copy journeyc.db 'postgres://journeyc@db/marketing?sslmode=require'
  journeyc store copy postgres://journeyc@db/marketing backup.db --format json")]
struct CopyArgs {
    /// The store to copy from; it must exist.
    #[arg(value_name = "FROM")]
    from: String,
    /// The store to copy into: a new SQLite file, or an empty database.
    #[arg(value_name = "TO")]
    to: String,
    /// How to report.
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let Action::Copy(args) = args.action;
    for store in [&args.from, &args.to] {
        if url_holds_password(store) {
            return Err(Error::Usage(format!(
                "`{}` holds a password, which others on this machine can see in the process list; put it in {PASSWORD_VARIABLE} (or {FROM_PASSWORD_VARIABLE} for FROM)",
                store::postgres::without_password(store)
            )));
        }
    }
    if args.from == args.to {
        return Err(Error::Usage(
            "FROM and TO are the same store; name another one to copy into".to_string(),
        ));
    }
    let here = Path::new(".");
    if !store::named_exists(&args.from, here) {
        return Err(Error::Usage(format!(
            "there is no store at `{}` to copy from",
            args.from
        )));
    }
    let from_password = if std::env::var_os(FROM_PASSWORD_VARIABLE).is_some() {
        FROM_PASSWORD_VARIABLE
    } else {
        PASSWORD_VARIABLE
    };
    let from = store::open_named(&args.from, here, from_password)?;
    let mut to = store::open_named(&args.to, here, PASSWORD_VARIABLE)?;
    let _from_lock = from.lock_run()?;
    let _to_lock = to.lock_run()?;
    let copied = to.restore(&*from)?;
    if args.format == Report::Json {
        let tables: serde_json::Map<String, serde_json::Value> = copied
            .iter()
            .map(|(table, rows)| ((*table).to_string(), (*rows).into()))
            .collect();
        super::json_line(
            io,
            &serde_json::json!({"from": from.describe(), "to": to.describe(), "tables": tables}),
        )?;
        return Ok(Status::Success);
    }
    writeln!(
        io.out,
        "copied `{}` into `{}`:",
        from.describe(),
        to.describe()
    )?;
    let width = copied
        .iter()
        .map(|(table, _)| table.len())
        .max()
        .unwrap_or(0);
    for (table, rows) in &copied {
        writeln!(io.out, "  {table:<width$}  {rows}")?;
    }
    writeln!(
        io.out,
        "point `store:` in journeyc.yaml at `{}` to work on the copy",
        to.describe()
    )?;
    Ok(Status::Success)
}
