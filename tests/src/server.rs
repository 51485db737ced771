//! What starting a server under test has in common: the port is picked free, but another process
//! may take it before the server binds it, so a start that failed on "Address already in use" is
//! tried again on another port.
use anyhow::Result;

pub(crate) trait Started: Sized {
    fn log(&self) -> String;
    fn wait_ready(&mut self) -> Result<()>;
}

pub(crate) fn start_retrying<S: Started>(mut spawn: impl FnMut() -> Result<S>) -> Result<S> {
    let mut last_err = None;
    for _ in 0..3 {
        let mut s = spawn()?;
        match s.wait_ready() {
            Ok(()) => return Ok(s),
            Err(e) => {
                let collided = s.log().contains("Address already in use");
                last_err = Some(e);
                if !collided {
                    break;
                }
                // Dropping `s` stops what is left of it.
            }
        }
    }
    Err(last_err.expect("at least one attempt"))
}
