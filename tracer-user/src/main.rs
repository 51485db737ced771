static OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));
fn main() {
    let mut bpf = aya::Ebpf::load(OBJ).unwrap();
    for (name, p) in bpf.programs_mut() {
        let p: &mut aya::programs::TracePoint = p.try_into().unwrap();
        match p.load() { Ok(()) => println!("{name}: ok"), Err(e) => println!("{name}: {e:?}") }
    }
}
