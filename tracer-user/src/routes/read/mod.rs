//! Reading an application's route table out of a live worker: find the app (the object the
//! server was told to load, or the framework's own settings), see through wrappers, and hand it
//! to the reader of its framework. One pass is capped at [`READ_BUDGET`] memory reads.
mod django;
mod find;
mod flask;
mod starlette;
mod view;

use super::table::RouteTable;
use crate::cpython::interpreter::{Interpreter, OpenError};
use crate::cpython::objects::ObjectError;

/// Reads per table at most: a 1 000-rule app takes ~60 000 here.
pub const READ_BUDGET: u32 = 400_000;

#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("reading the route table failed: {0}; it is read again later")]
    Object(#[from] ObjectError),
    /// Nothing to read (yet): not a Flask, Django, Starlette or FastAPI app, or one that has not
    /// loaded its routes.
    #[error("{0}")]
    NoApp(String),
}

impl RoutesError {
    /// For the `pytracer_route_tables_total{result}` label.
    pub fn label(&self) -> &'static str {
        match self {
            RoutesError::Open(e) => e.label(),
            RoutesError::Object(e) => e.label(),
            RoutesError::NoApp(_) => "no_app",
        }
    }
}

/// The route table of the application process `pid` serves, with the number of memory reads it
/// took.
pub fn read(pid: u32) -> Result<(RouteTable, u32), RoutesError> {
    let interp = Interpreter::open(pid)?;
    let o = interp.reader(READ_BUDGET);
    let table = find::table(&interp, &o, pid)?;
    Ok((table, o.reads()))
}
