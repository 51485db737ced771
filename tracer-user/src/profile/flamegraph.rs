//! The SVG flame graph of the folded stacks, drawn by inferno.
pub fn svg(folded: &[String]) -> Result<Vec<u8>, String> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = "pytracer: CPU by route".into();
    opts.count_name = "samples".into();
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.iter().map(String::as_str), &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}
