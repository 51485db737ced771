//! Routes read from the running application: which rule the framework picks for a request, and
//! the view that serves it, so every server span carries `http.route` and the view's code.
pub mod listing;
pub mod read;
pub mod table;
