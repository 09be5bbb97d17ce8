//! `journeyc store copy`: a project's whole store moved from one backend
//! to another (SQLite to PostgreSQL when a team outgrows one machine, or
//! back), row for row with the same ids. Ids must survive: outbox keys
//! carry enrolment ids, and delivery names rows by id.
//!
//! Both backends hold the same tables with the same columns; [`TABLES`]
//! lists them once. A backend dumps every table from one snapshot and
//! restores into a store that holds nothing, in one transaction, so a copy
//! that fails leaves the target as empty as it was.

use super::StoreError;

/// How a column is stored: the two backends agree on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit integer (times are seconds since 1970).
    Int,
    /// A 32-bit integer in PostgreSQL, an integer in SQLite.
    Int4,
    /// `true`/`false` in PostgreSQL, 1/0 in SQLite.
    Bool,
    Text,
}

/// One value of a row; booleans as 1 and 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// A table of the store and its columns, in the order rows are handed
/// over.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// Whether `id` comes from a counter that must go on after the
    /// copied ids.
    pub counted: bool,
}

impl Table {
    /// The column names, comma-separated, for SQL.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

use Kind::{Bool, Int, Int4, Text};

/// Every table a store holds, parents before the tables that refer to
/// them. The schema version table of each backend is not among them: the
/// target is migrated by opening it.
pub const TABLES: &[Table] = &[
    Table {
        name: "contacts",
        columns: &[
            ("id", Text),
            ("data", Text),
            ("updated_at", Int),
            ("wake_at", Int),
            ("touched", Int),
        ],
        counted: false,
    },
    Table {
        name: "events",
        columns: &[
            ("id", Text),
            ("contact_id", Text),
            ("name", Text),
            ("at", Int),
            ("seq", Int),
            ("properties", Text),
        ],
        counted: false,
    },
    Table {
        name: "suppressions",
        columns: &[
            ("address", Text),
            ("channel", Text),
            ("reason", Text),
            ("at", Int),
        ],
        counted: false,
    },
    Table {
        name: "enrolments",
        columns: &[
            ("id", Int),
            ("contact_id", Text),
            ("journey", Text),
            ("version", Text),
            ("state", Text),
            ("step", Text),
            ("step_print", Text),
            ("due_at", Int),
            ("entered_at", Int),
            ("ended_at", Int),
            ("event_id", Text),
            ("data", Text),
        ],
        counted: true,
    },
    Table {
        name: "transitions",
        columns: &[
            ("id", Int),
            ("enrolment_id", Int),
            ("contact_id", Text),
            ("journey", Text),
            ("from_step", Text),
            ("to_step", Text),
            ("reason", Text),
            ("at", Int),
        ],
        counted: true,
    },
    Table {
        name: "outbox",
        columns: &[
            ("id", Int),
            ("key", Text),
            ("enrolment_id", Int),
            ("contact_id", Text),
            ("journey", Text),
            ("step", Text),
            ("channel", Text),
            ("template", Text),
            ("kind", Text),
            ("send_at", Int),
            ("expires_at", Int),
            ("status", Text),
            ("planned_at", Int),
            ("attempt_at", Int),
            ("attempts", Int4),
            ("claimed_by", Text),
            ("claimed_at", Int),
            ("sent_at", Int),
            ("provider_id", Text),
            ("error", Text),
            ("note", Text),
        ],
        counted: true,
    },
    Table {
        name: "journey_versions",
        columns: &[("journey", Text), ("version", Text), ("deployed_at", Int)],
        counted: false,
    },
    Table {
        name: "runs",
        columns: &[
            ("id", Int),
            ("now", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("summary", Text),
        ],
        counted: true,
    },
    Table {
        name: "journey_progress",
        columns: &[
            ("journey", Text),
            ("deployed_at", Int),
            ("until", Int),
            ("seen_seq", Int),
        ],
        counted: false,
    },
    Table {
        name: "assignments",
        columns: &[
            ("enrolment_id", Int),
            ("test", Text),
            ("arm", Text),
            ("at", Int),
        ],
        counted: false,
    },
    Table {
        name: "sweep",
        columns: &[("id", Int4), ("mark", Int), ("fingerprint", Text)],
        counted: false,
    },
    Table {
        name: "nights",
        columns: &[
            ("id", Int),
            ("now", Int),
            ("run_seq", Int),
            ("mark", Int),
            ("touched_after", Int),
            ("fingerprint", Text),
            ("started_at", Int),
            ("closed_at", Int),
            ("abandoned", Bool),
        ],
        counted: true,
    },
    Table {
        name: "night_parts",
        columns: &[
            ("night", Int),
            ("part", Int4),
            ("done", Bool),
            ("after", Text),
            ("counts", Text),
        ],
        counted: false,
    },
];

/// The rows of one table as a backend reads them.
pub type Rows<'a> = &'a mut dyn Iterator<Item = Result<Vec<Cell>, StoreError>>;

/// What a dump hands each table to, in [`TABLES`] order.
pub type Dumped<'a> = &'a mut dyn FnMut(&'static Table, Rows<'_>) -> Result<(), StoreError>;

/// How many rows of each table a copy wrote, in [`TABLES`] order.
pub type Copied = Vec<(&'static str, u64)>;

fn refused(reason: String) -> StoreError {
    StoreError::CannotCopy(reason)
}

/// Every `(table, column)` of [`TABLES`].
fn listed() -> Vec<(String, String)> {
    TABLES
        .iter()
        .flat_map(|table| {
            table
                .columns
                .iter()
                .map(|(column, _)| (table.name.to_string(), (*column).to_string()))
        })
        .collect()
}

/// Refuses a store whose tables and columns (as `(table, column)` pairs)
/// are not exactly [`TABLES`]: a copy must not leave anything behind.
pub fn check_schema(store: &str, mut actual: Vec<(String, String)>) -> Result<(), StoreError> {
    let mut expected = listed();
    actual.sort();
    expected.sort();
    if let Some((table, column)) = actual.iter().find(|pair| !expected.contains(pair)) {
        return Err(refused(format!(
            "`{store}` has a column `{table}.{column}` this journeyc does not know; copy it with the journeyc that wrote it"
        )));
    }
    if let Some((table, column)) = expected.iter().find(|pair| !actual.contains(pair)) {
        return Err(refused(format!(
            "`{store}` has no column `{table}.{column}`; it is not a journeyc store of this version"
        )));
    }
    Ok(())
}

/// The rows of `table` as they may be copied: a night that is still open
/// (a run in progress, or one that died and has not been finished) is
/// refused, because its partitions are the source backend's.
pub fn checked<'a>(
    table: &'static Table,
    rows: Rows<'a>,
) -> impl Iterator<Item = Result<Vec<Cell>, StoreError>> + 'a {
    rows.map(move |row| {
        let row = row?;
        if row.len() != table.columns.len() {
            return Err(refused(format!(
                "a row of `{}` has {} values for {} columns",
                table.name,
                row.len(),
                table.columns.len()
            )));
        }
        if table.name == "nights" && row[7] == Cell::Null && row[8] == Cell::Int(0) {
            return Err(refused(
                "a night is still open (a run is in progress, or one died); let `journeyc run` finish it, then copy"
                    .to_string(),
            ));
        }
        Ok(row)
    })
}

/// The error for a target that already holds rows.
pub fn not_empty(store: &str, table: &str) -> StoreError {
    refused(format!(
        "`{store}` already holds rows in `{table}`; copy into an empty store"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_columns_once() {
        for table in TABLES {
            let mut names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), table.columns.len(), "{}", table.name);
            assert_eq!(
                table.counted,
                table.columns.first() == Some(&("id", Kind::Int)),
                "{}: counted ids are integers that lead their rows",
                table.name
            );
        }
    }

    #[test]
    fn a_store_with_an_unknown_column_is_refused() {
        let mut actual = listed();
        assert!(check_schema("s", actual.clone()).is_ok());
        actual.push(("contacts".into(), "nickname".into()));
        let error = check_schema("s", actual.clone()).expect_err("refused");
        assert!(error.to_string().contains("`contacts.nickname`"), "{error}");
        actual.retain(|(_, column)| column != "nickname" && column != "touched");
        let error = check_schema("s", actual).expect_err("refused");
        assert!(
            error.to_string().contains("no column `contacts.touched`"),
            "{error}"
        );
    }

    #[test]
    fn an_open_night_is_refused() {
        let table = TABLES
            .iter()
            .find(|table| table.name == "nights")
            .expect("nights");
        let night = |closed: Cell, abandoned: i64| {
            let mut row = vec![Cell::Int(1); 9];
            row[5] = Cell::Text("f".into());
            row[7] = closed;
            row[8] = Cell::Int(abandoned);
            row
        };
        let rows = [night(Cell::Int(5), 0), night(Cell::Null, 1)];
        let mut rows = rows.into_iter().map(Ok);
        assert!(checked(table, &mut rows).all(|row| row.is_ok()));
        let mut open = std::iter::once(Ok(night(Cell::Null, 0)));
        let error = checked(table, &mut open)
            .next()
            .expect("a row")
            .expect_err("refused");
        assert!(error.to_string().contains("still open"), "{error}");
    }
}
