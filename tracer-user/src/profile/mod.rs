//! CPU profiles joined to requests: the samples `pytracer profile` collected, each with the
//! request it fell in (span id, trace id, route) and its Python frames, and the files written
//! from them: folded stacks, an SVG flame graph and pprof.
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod flamegraph;
pub mod folded;
pub mod pprof;

/// One Python frame of a sample.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The qualified name (`Cart.price`), or the bare name before 3.11.
    pub function: String,
    pub file: String,
    /// None when the line table could not be read or gives none.
    pub line: Option<u32>,
}

impl Frame {
    /// `module:function:line`, the module being the file's name without `.py` (or, for the
    /// interpreter's own code, its whole `<frozen ...>` name).
    pub fn label(&self) -> String {
        let stem = if self.file.starts_with('<') {
            self.file.as_str()
        } else {
            Path::new(&self.file).file_stem().and_then(|s| s.to_str()).unwrap_or(&self.file)
        };
        match self.line {
            Some(l) => format!("{stem}:{}:{l}", self.function),
            None => format!("{stem}:{}", self.function),
        }
    }
}

/// The request a sample fell in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub span_id: String,
    pub trace_id: String,
    /// `GET /checkout`: the method and the route (or, with no route known, the method alone).
    pub root: String,
    pub route: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub pid: u32,
    /// None: the thread was serving no request (or none that was settled).
    pub request: Option<Arc<Request>>,
    /// Outermost first.
    pub frames: Vec<Arc<Frame>>,
}

/// The root frame of samples outside any request.
pub const UNATTRIBUTED: &str = "unattributed";

impl Sample {
    pub fn root(&self) -> &str {
        self.request.as_ref().map_or(UNATTRIBUTED, |r| r.root.as_str())
    }
}

#[derive(Debug, Default)]
pub struct Profile {
    pub samples: Vec<Sample>,
    pub rate_hz: u64,
    pub duration_ns: u64,
}

/// What `pytracer profile` asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rate_hz: u64,
    pub dir: PathBuf,
}

/// 19 Hz, as Parca's: off the 10 ms scheduler tick, and about 1% CPU at most here (see README).
pub const DEFAULT_RATE_HZ: u64 = 19;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot draw the flame graph {path}: {message}")]
    Svg { path: PathBuf, message: String },
}

/// Writes profile.folded, profile.svg and profile.pb.gz into the settings' directory.
pub fn write_all(profile: &Profile, dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let lines = folded::lines(profile);
    let folded_path = dir.join("profile.folded");
    std::fs::write(&folded_path, lines.join("\n") + "\n").map_err(io(&folded_path))?;
    let svg_path = dir.join("profile.svg");
    let svg = flamegraph::svg(&lines).map_err(|message| WriteError::Svg { path: svg_path.clone(), message })?;
    std::fs::write(&svg_path, svg).map_err(io(&svg_path))?;
    let pprof_path = dir.join("profile.pb.gz");
    std::fs::write(&pprof_path, pprof::gzipped(profile)).map_err(io(&pprof_path))?;
    Ok(vec![folded_path, svg_path, pprof_path])
}
