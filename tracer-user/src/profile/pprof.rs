//! pprof's profile.proto (github.com/google/pprof, proto/profile.proto), gzipped: the messages
//! that a CPU profile uses, declared with prost's derive (field numbers as in the .proto). Each
//! sample carries `span_id`, `trace_id` and `http.route` labels, as Pyroscope ingests them.
use std::collections::HashMap;
use std::io::Write;

use super::{Frame, Profile};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbProfile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<PbSample>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// Interns strings into the string table (index 0 is the empty string, as pprof requires).
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        Strings { table: vec![String::new()], index: HashMap::from([(String::new(), 0)]) }
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

pub fn build(profile: &Profile) -> PbProfile {
    let mut strings = Strings::new();
    let period = 1_000_000_000 / profile.rate_hz.max(1) as i64;
    let cpu = ValueType { r#type: strings.id("cpu"), unit: strings.id("nanoseconds") };
    let sample_type = vec![ValueType { r#type: strings.id("samples"), unit: strings.id("count") }, cpu.clone()];
    let mut functions: HashMap<(String, String), u64> = HashMap::new();
    let mut locations: HashMap<Frame, u64> = HashMap::new();
    let mut pb = PbProfile {
        sample_type,
        duration_nanos: profile.duration_ns as i64,
        period_type: Some(cpu),
        period,
        ..PbProfile::default()
    };
    let (k_span, k_trace, k_route) = (strings.id("span_id"), strings.id("trace_id"), strings.id("http.route"));
    let k_pid = strings.id("pid");
    for s in &profile.samples {
        let mut ids = Vec::with_capacity(s.frames.len());
        for f in s.frames.iter().rev() {
            let next = locations.len() as u64 + 1;
            let loc = *locations.entry((**f).clone()).or_insert(next);
            if loc == next {
                let fkey = (f.function.clone(), f.file.clone());
                let next_fn = functions.len() as u64 + 1;
                let fid = *functions.entry(fkey).or_insert(next_fn);
                if fid == next_fn {
                    let name = strings.id(&f.function);
                    pb.function.push(Function { id: fid, name, system_name: name, filename: strings.id(&f.file) });
                }
                pb.location.push(Location {
                    id: loc,
                    line: vec![Line { function_id: fid, line: f.line.map_or(0, i64::from) }],
                });
            }
            ids.push(loc);
        }
        let mut label = vec![Label { key: k_pid, str: 0, num: i64::from(s.pid) }];
        if let Some(r) = &s.request {
            label.push(Label { key: k_span, str: strings.id(&r.span_id), num: 0 });
            label.push(Label { key: k_trace, str: strings.id(&r.trace_id), num: 0 });
            if let Some(route) = &r.route {
                label.push(Label { key: k_route, str: strings.id(route), num: 0 });
            }
        }
        pb.sample.push(PbSample { location_id: ids, value: vec![1, period], label });
    }
    pb.string_table = strings.table;
    pb
}

pub fn gzipped(profile: &Profile) -> Vec<u8> {
    use prost::Message;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&build(profile).encode_to_vec());
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;

    use prost::Message;

    use super::*;
    use crate::profile::{Request, Sample};

    #[test]
    fn labels_and_frames_survive_a_round_trip() {
        let f = Arc::new(Frame { function: "hash_loop".into(), file: "/srv/app.py".into(), line: Some(12) });
        let req = Arc::new(Request {
            span_id: "00f067aa0ba902b7".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            root: "GET /hash".into(),
            route: Some("/hash".into()),
        });
        let p = Profile {
            samples: vec![Sample { pid: 1, request: Some(req), frames: vec![f.clone(), f] }],
            rate_hz: 20,
            duration_ns: 5,
        };
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gzipped(&p)[..]).read_to_end(&mut raw).unwrap();
        let pb = PbProfile::decode(&raw[..]).unwrap();
        let s = |i: i64| pb.string_table[i as usize].as_str();
        assert_eq!(pb.sample.len(), 1);
        assert_eq!(pb.sample[0].value, vec![1, 50_000_000]);
        assert_eq!(pb.sample[0].location_id, vec![1, 1]);
        assert_eq!((s(pb.sample[0].label[0].key), pb.sample[0].label[0].num), ("pid", 1));
        let labels: Vec<(&str, &str)> = pb.sample[0].label[1..].iter().map(|l| (s(l.key), s(l.str))).collect();
        assert_eq!(
            labels,
            vec![
                ("span_id", "00f067aa0ba902b7"),
                ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("http.route", "/hash")
            ]
        );
        assert_eq!(s(pb.function[0].name), "hash_loop");
        assert_eq!(pb.location[0].line[0].line, 12);
    }
}
