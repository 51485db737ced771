//! The object reader against real interpreters: a Python process builds objects of every kind
//! the route readers use, prints their `id()`s and what Python itself says they hold, and waits;
//! the reader must find the same values in its memory. On every CPython here: pyenv 3.8–3.13
//! (shared), Debian's static 3.11, and the Debian chroots' static, stripped 3.13, 3.14 and 3.15.
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use pytracer::cpython::interpreter::Interpreter;
use pytracer::cpython::objects::Objects;
use serde_json::Value;

const PROBE: &str = r#"
import functools, json, sys
class Plain:
    def __init__(self):
        self.a = "x"; self.b = 42; self.c = None
    def meth(self):
        return 1
class Out:
    pass
out_of_order = Out(); out_of_order.c = 3; out_of_order.a = 1; out_of_order.b = 2
class Many:
    pass
many = Many()
for i in range(40):
    setattr(many, "k%d" % i, i)
deleted = Plain(); del deleted.b
extra = Plain(); extra.d = 1.5
materialized = Plain(); vars(materialized)["e"] = "via vars"
class SlotBase:
    __slots__ = ("x",)
class AfterSlots(SlotBase):
    pass
after_slots = AfterSlots(); after_slots.x = 1; after_slots.y = "y"
class Sub(str):
    pass
class Conv:
    regex = r"\d+"
    weight = 50
def deco(f):
    @functools.wraps(f)
    def wrapper(*a):
        return f(*a)
    return wrapper
@deco
def view(x):
    return x
big_dict = {"k%d" % i: i for i in range(600)}
del big_dict["k7"]
objs = dict(
    ascii="hello", latin1="caf\u00e9", ucs2="snow\u2603", ucs4="smile\U0001F600", substr=Sub("sub"),
    zero=0, one=1, neg=-1, big=2**40 + 7, negbig=-(2**33), true=True, false=False, none=None, float=2.5,
    tuple=("a", 1), list=["x", "y", "z"], set={"GET", "HEAD", "OPTIONS"}, frozenset=frozenset({"a"}),
    dict_str={"a": 1, "b": "two"}, dict_int={1: "one", 2: "two"}, big_dict=big_dict,
    plain=Plain(), out_of_order=out_of_order, many=many, deleted=deleted, extra=extra,
    materialized=materialized, after_slots=after_slots, conv=Conv(),
    func=view, method=Plain().meth, partial=functools.partial(view, 1), module=sys.modules["functools"],
)
print(json.dumps({
    "ids": {k: id(v) for k, v in objs.items()},
    "attrs": {k: sorted(vars(v)) for k, v in objs.items() if k in ("plain", "out_of_order", "many", "deleted", "extra", "materialized", "after_slots")},
    "view": [view.__wrapped__.__qualname__, view.__wrapped__.__code__.co_filename, view.__wrapped__.__code__.co_firstlineno],
    "hexversion": sys.hexversion,
}), flush=True)
sys.stdin.read()
"#;

struct Probe {
    child: Child,
    report: Value,
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(cmd: &[&str]) -> Probe {
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .args(["-B", "-I", "-c", PROBE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{cmd:?} printed {line:?}: {e}"));
    child.stdin.as_mut().unwrap().write_all(b"").unwrap();
    Probe { child, report }
}

fn id(p: &Probe, name: &str) -> u64 {
    p.report["ids"][name].as_u64().unwrap()
}

#[expect(clippy::many_single_char_names, reason = "a checklist: p the probe, o the reader, s/i the typed reads")]
fn check(label: &str, cmd: &[&str]) {
    let p = start(cmd);
    // `chroot` execs the interpreter: the same pid.
    let pid = p.child.id();
    let interp = Interpreter::open(pid).unwrap_or_else(|e| panic!("{label}: {e}"));
    let o: Objects = interp.reader(200_000);
    let s = |n: &str| o.str(id(&p, n)).unwrap_or_else(|e| panic!("{label} {n}: {e}")).to_string();
    assert_eq!(
        [s("ascii"), s("latin1"), s("ucs2"), s("ucs4"), s("substr")],
        ["hello", "café", "snow☃", "smile😀", "sub"],
        "{label}"
    );
    let i = |n: &str| o.int(id(&p, n)).unwrap_or_else(|e| panic!("{label} {n}: {e}"));
    assert_eq!(
        [i("zero"), i("one"), i("neg"), i("big"), i("negbig")],
        [0, 1, -1, (1 << 40) + 7, -(1 << 33)],
        "{label}"
    );
    assert!(o.bool(id(&p, "true")).unwrap() && !o.bool(id(&p, "false")).unwrap(), "{label}");
    assert!(o.is_none(id(&p, "none")).unwrap() && !o.is_none(id(&p, "zero")).unwrap(), "{label}");
    assert!((o.float(id(&p, "float")).unwrap() - 2.5).abs() < f64::EPSILON, "{label}");
    let strs = |v: Vec<u64>| -> Vec<String> {
        let mut v: Vec<String> =
            v.into_iter().map(|x| o.str(x).map_or_else(|_| "?".into(), |s| s.to_string())).collect();
        v.sort();
        v
    };
    let t = o.sequence(id(&p, "tuple")).unwrap();
    assert_eq!((o.str(t[0]).unwrap().to_string(), o.int(t[1]).unwrap()), ("a".into(), 1), "{label}");
    assert_eq!(strs(o.sequence(id(&p, "list")).unwrap()), ["x", "y", "z"], "{label}");
    assert_eq!(strs(o.set_items(id(&p, "set")).unwrap()), ["GET", "HEAD", "OPTIONS"], "{label}");
    assert_eq!(strs(o.set_items(id(&p, "frozenset")).unwrap()), ["a"], "{label}");
    let d: Vec<(String, u64)> =
        o.str_items(id(&p, "dict_str")).unwrap().iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!((d[0].0.as_str(), o.int(d[0].1).unwrap(), d[1].0.as_str()), ("a", 1, "b"), "{label}");
    let di = o.dict_items(id(&p, "dict_int")).unwrap();
    assert_eq!(di.iter().map(|(k, _)| o.int(*k).unwrap()).collect::<Vec<_>>(), [1, 2], "{label}");
    let big = o.str_items(id(&p, "big_dict")).unwrap();
    assert_eq!(big.len(), 599, "{label}");
    assert!(big.iter().all(|(k, v)| k.strip_prefix('k').unwrap().parse::<i64>().unwrap() == o.int(*v).unwrap()));
    for (name, want) in p.report["attrs"].as_object().unwrap() {
        let mut got: Vec<String> = o
            .instance_attrs(id(&p, name))
            .unwrap_or_else(|e| panic!("{label} {name}: {e}"))
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        got.sort();
        let want: Vec<String> = want.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(got, want, "{label}: attributes of {name}");
    }
    let plain = id(&p, "plain");
    assert_eq!(o.attr_str(plain, "a").unwrap().as_deref(), Some("x"), "{label}");
    assert_eq!(o.int(o.attr(plain, "b").unwrap().unwrap()).unwrap(), 42, "{label}");
    assert_eq!(o.int(o.attr(id(&p, "many"), "k39").unwrap().unwrap()).unwrap(), 39, "{label}");
    assert_eq!(o.attr_str(id(&p, "materialized"), "e").unwrap().as_deref(), Some("via vars"), "{label}");
    // A class attribute, found through the type's MRO.
    assert_eq!(o.attr_str(id(&p, "conv"), "regex").unwrap().as_deref(), Some(r"\d+"), "{label}");
    assert!(o.is_instance_of(id(&p, "substr"), "str").unwrap(), "{label}");
    let want_view = &p.report["view"];
    for callable in ["func", "partial"] {
        let f = o.unwrap_function(id(&p, callable)).unwrap().unwrap_or_else(|| panic!("{label}: {callable}"));
        assert_eq!(f.code.qualname, want_view[0].as_str().unwrap(), "{label} {callable}");
        assert_eq!(f.code.file, want_view[1].as_str().unwrap(), "{label} {callable}");
        assert_eq!(u64::from(f.code.first_line), want_view[2].as_u64().unwrap(), "{label} {callable}");
    }
    assert_eq!(o.unwrap_function(id(&p, "method")).unwrap().unwrap().code.qualname, "Plain.meth", "{label}");
    assert!(o.module_global(id(&p, "module"), "partial").unwrap().is_some(), "{label}");
    let modules = interp.sys_modules(&o).unwrap();
    assert!(modules.iter().any(|(n, _)| &**n == "functools"), "{label}");
    eprintln!("{label}: ok, {} reads", o.reads());
}

fn require_privileged() -> bool {
    std::env::var("PYTRACER_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

fn run_if(label: &str, exists: &Path, cmd: &[&str]) -> bool {
    if !exists.exists() {
        assert!(!require_privileged(), "PYTRACER_REQUIRE_PRIVILEGED=1 but {} is missing", exists.display());
        eprintln!("SKIPPED {label}: {} is missing", exists.display());
        return false;
    }
    check(label, cmd);
    true
}

#[test]
fn objects_read_from_every_interpreter_match_what_python_says() {
    let mut ran = 0;
    for v in ["3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"] {
        let minor = v.rsplit_once('.').unwrap().0;
        let python = format!("/root/.pyenv/versions/{v}/bin/python{minor}");
        ran += u32::from(run_if(&format!("pyenv {v}"), Path::new(&python), &[&python]));
    }
    ran += u32::from(run_if("Debian 3.11", Path::new("/usr/bin/python3.11"), &["/usr/bin/python3.11"]));
    for (root, python) in [
        ("/var/cache/pytracer-chroots/trixie", "python3.13"),
        ("/var/cache/pytracer-chroots/sid", "python3.14"),
        ("/var/cache/pytracer-chroots/sid", "python3.15"),
    ] {
        let bin = format!("{root}/usr/bin/{python}");
        ran += u32::from(run_if(&format!("{root} {python}"), Path::new(&bin), &["chroot", root, python]));
    }
    eprintln!("{ran} interpreters checked");
}
