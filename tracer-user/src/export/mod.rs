//! Where spans go: the sink the agent writes to, and the OTLP/HTTP exporter behind it.
pub mod json_line;
pub mod otlp;
pub mod pretty;
pub mod proto;
pub mod sink;

/// A writer a test can read back after a sink owns it.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(pub std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
