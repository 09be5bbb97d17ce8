//! journeyc: a declarative customer-journey compiler and batch orchestrator.
//!
//! The pipeline, one module per stage: [`parser`] (pest) -> [`ast`] ->
//! [`analyzer`] (DAG and checks) -> [`diagnostic`] -> [`render`].

pub mod analyzer;
pub mod ast;
pub mod cli;
pub mod commands;
pub mod deliver;
pub mod diagnostic;
pub mod fault;
pub mod files;
pub mod format;
pub mod graph;
pub mod import;
pub mod message;
pub mod model;
pub mod parser;
pub mod policy;
pub mod preview;
pub mod project;
pub mod render;
pub mod runner;
pub mod settings;
pub mod span;
pub mod store;
pub mod templates;
pub mod unsubscribe;
