//! journeyc's integration tests: one binary, one module per area. They run
//! the built `journeyc` as users do (through [`common::test::Test`] or
//! [`common::project::Project`]) and read what it did through its
//! `--format json` output, or call the library's pipeline (parser,
//! analyzer, runner over a store) where a property is checked over many
//! generated cases. Tests that need a server start a real one on loopback
//! ([`common::servers`]).

mod common;

mod cli;
mod copy;
mod deliver;
mod examples;
mod fixtures;
mod format;
mod import;
mod parser;
mod preview;
mod properties;
mod quickstart;
mod runner;
mod servers;
mod shipped;
mod store;
mod workers;
