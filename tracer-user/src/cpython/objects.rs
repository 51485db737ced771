//! Python objects read from outside the process: type names, `str`, `int`, `float`, `None`,
//! `bool`, tuples, lists, sets, dicts (combined and split tables of every version), instance
//! attributes (dict offsets, 3.11's and 3.12's managed dicts, 3.13+ inline values), class
//! attributes through the MRO, modules, functions, bound methods and `functools.partial`.
//!
//! The target keeps running while we read, so any object may change or be freed under us. Every
//! pointer is checked (non-null, aligned), every type is checked before its layout is trusted,
//! every count is bounded, and the number of reads per [`Objects`] is capped: a torn read becomes
//! an [`ObjectError`], never a loop or a wrong value taken for a right one. Nothing is written.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::code::CodeInfo;
use super::layout::FrameLayout;
use super::memory::{ReadError, ReadMemory};
use super::object_layout::{fixed, DictKeys, InstanceDict, LongRepr, ObjectLayout, SplitValues};

/// Items read from one container at most: a route table has thousands, not millions.
pub const MAX_ITEMS: u64 = 65_536;
/// Characters read from one str at most.
pub const MAX_STR_CHARS: u64 = 65_536;
/// Entries in a type's MRO at most.
const MAX_MRO: u64 = 64;
/// `__wrapped__` and wrapper chains followed at most.
pub const MAX_UNWRAP: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("object at {addr:#x} is a {found}, not a {expected}")]
    WrongType { addr: u64, expected: &'static str, found: String },
    #[error("{what} at {addr:#x} claims {n} items, more than the {max} pytracer reads")]
    TooLarge { what: &'static str, addr: u64, n: u64, max: u64 },
    #[error("{what} at {addr:#x} is inconsistent (changed while being read): {why}")]
    Torn { what: &'static str, addr: u64, why: String },
    #[error("bad pointer {addr:#x} where {what} was expected")]
    BadPointer { what: &'static str, addr: u64 },
    #[error("more than {0} reads for one table: stopped (the object graph is larger than any route table)")]
    Budget(u32),
}

impl ObjectError {
    /// A short label for metrics: `read_error`, `torn`, `too_large`, `budget`.
    pub fn label(&self) -> &'static str {
        match self {
            ObjectError::Read(_) => "read_error",
            ObjectError::WrongType { .. } | ObjectError::Torn { .. } | ObjectError::BadPointer { .. } => "torn",
            ObjectError::TooLarge { .. } => "too_large",
            ObjectError::Budget(_) => "budget",
        }
    }
}

pub type Result<T> = std::result::Result<T, ObjectError>;

/// A function as the route tables need it: its code, and its `__dict__` (where `view_class`
/// and `__wrapped__` live).
#[derive(Debug, Clone)]
pub struct Function {
    pub code: CodeInfo,
    pub module: Option<Rc<str>>,
    pub dict: u64,
}

/// A reader over one process's objects, for one pass (reading a route table): strings are
/// cached by address (attribute names are interned and shared), and reads are capped.
pub struct Objects<'m> {
    mem: &'m dyn ReadMemory,
    l: &'static ObjectLayout,
    code: FrameLayout,
    strings: RefCell<HashMap<u64, Rc<str>>>,
    /// Per pass, each object is read once: types' flags and names, dicts' str items, instances'
    /// attributes (a rule's ten attributes are one dict read, not ten).
    flags: RefCell<HashMap<u64, u64>>,
    type_names: RefCell<HashMap<u64, Rc<str>>>,
    str_dicts: RefCell<HashMap<u64, Attrs>>,
    attrs: RefCell<HashMap<u64, Attrs>>,
    reads_left: Cell<u32>,
    budget: u32,
}

/// (name, value) pairs of a dict or an instance, shared from the pass's cache.
pub type Attrs = Rc<Vec<(Rc<str>, u64)>>;

impl<'m> Objects<'m> {
    pub fn new(mem: &'m dyn ReadMemory, l: &'static ObjectLayout, code: FrameLayout, budget: u32) -> Self {
        Objects {
            mem,
            l,
            code,
            strings: RefCell::default(),
            flags: RefCell::default(),
            type_names: RefCell::default(),
            str_dicts: RefCell::default(),
            attrs: RefCell::default(),
            reads_left: Cell::new(budget),
            budget,
        }
    }

    /// Reads made so far.
    pub fn reads(&self) -> u32 {
        self.budget - self.reads_left.get()
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let left = self.reads_left.get();
        if left == 0 {
            return Err(ObjectError::Budget(self.budget));
        }
        self.reads_left.set(left - 1);
        Ok(self.mem.read(addr, buf)?)
    }

    /// Several ranges in one call (one read of the budget); `None` for a range not read.
    fn bytes_many(&self, ranges: &[(u64, usize)]) -> Result<Vec<Option<Vec<u8>>>> {
        let left = self.reads_left.get();
        if left == 0 {
            return Err(ObjectError::Budget(self.budget));
        }
        self.reads_left.set(left - 1);
        let mut bufs: Vec<Vec<u8>> = ranges.iter().map(|&(_, len)| vec![0u8; len]).collect();
        let mut reads: Vec<(u64, &mut [u8])> =
            ranges.iter().zip(bufs.iter_mut()).map(|(&(a, _), b)| (a, b.as_mut_slice())).collect();
        let results = self.mem.read_many(&mut reads);
        Ok(bufs.into_iter().zip(results).map(|(b, r)| r.ok().map(|()| b)).collect())
    }

    fn bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        if len > 0 {
            self.read(addr, &mut b)?;
        }
        Ok(b)
    }

    pub fn u64(&self, addr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    fn u8(&self, addr: u64) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    /// A pointer field that must point at an object.
    pub fn ptr(&self, addr: u64, what: &'static str) -> Result<u64> {
        let p = self.u64(addr)?;
        check_ptr(p, what)?;
        Ok(p)
    }

    /// A pointer field that may be NULL.
    pub fn opt_ptr(&self, addr: u64, what: &'static str) -> Result<Option<u64>> {
        match self.u64(addr)? {
            0 => Ok(None),
            p => check_ptr(p, what).map(|()| Some(p)),
        }
    }

    // ---- types ----

    pub fn type_of(&self, obj: u64) -> Result<u64> {
        check_ptr(obj, "object")?;
        self.ptr(obj + fixed::OB_TYPE, "type")
    }

    pub fn type_flags(&self, ty: u64) -> Result<u64> {
        if let Some(&f) = self.flags.borrow().get(&ty) {
            return Ok(f);
        }
        let f = self.u64(ty + fixed::TP_FLAGS)?;
        self.flags.borrow_mut().insert(ty, f);
        Ok(f)
    }

    /// `tp_name`: the bare class name for classes (`Rule`), maybe dotted for C types
    /// (`functools.partial`).
    pub fn type_name(&self, ty: u64) -> Result<Rc<str>> {
        if let Some(n) = self.type_names.borrow().get(&ty) {
            return Ok(n.clone());
        }
        let n = self.read_type_name(ty)?;
        self.type_names.borrow_mut().insert(ty, n.clone());
        Ok(n)
    }

    fn read_type_name(&self, ty: u64) -> Result<Rc<str>> {
        // A C string: any alignment.
        let p = self.u64(ty + fixed::TP_NAME)?;
        if !(0x1000..0x0000_8000_0000_0000).contains(&p) {
            return Err(ObjectError::BadPointer { what: "tp_name", addr: p });
        }
        if let Some(s) = self.strings.borrow().get(&p) {
            return Ok(s.clone());
        }
        let raw = self.bytes(p, 96)?;
        let end = raw.iter().position(|&b| b == 0).ok_or_else(|| ObjectError::Torn {
            what: "type name",
            addr: ty,
            why: "no NUL in 96 bytes".into(),
        })?;
        let s: Rc<str> = String::from_utf8_lossy(&raw[..end]).into();
        self.strings.borrow_mut().insert(p, s.clone());
        Ok(s)
    }

    /// The object's type name: `"Flask"`, `"str"`, `"NoneType"`.
    pub fn type_name_of(&self, obj: u64) -> Result<Rc<str>> {
        self.type_name(self.type_of(obj)?)
    }

    /// The types of `ty.__mro__`, itself first.
    pub fn mro(&self, ty: u64) -> Result<Vec<u64>> {
        match self.opt_ptr(ty + fixed::TP_MRO, "tp_mro")? {
            Some(mro) => {
                let items = self.tuple_raw(mro, MAX_MRO)?;
                if items.first() != Some(&ty) {
                    return Err(ObjectError::Torn {
                        what: "type",
                        addr: ty,
                        why: "its MRO does not start with it".into(),
                    });
                }
                Ok(items)
            }
            // A type not readied yet; only itself.
            None => Ok(vec![ty]),
        }
    }

    /// Whether the object's class or one of its bases is named `name`.
    pub fn is_instance_of(&self, obj: u64, name: &str) -> Result<bool> {
        for t in self.mro(self.type_of(obj)?)? {
            if &*self.type_name(t)? == name {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn expect_flag(&self, obj: u64, flag: u64, expected: &'static str) -> Result<u64> {
        let ty = self.type_of(obj)?;
        if self.type_flags(ty)? & flag == 0 {
            return Err(ObjectError::WrongType { addr: obj, expected, found: self.type_name(ty)?.to_string() });
        }
        Ok(ty)
    }

    // ---- scalars ----

    pub fn is_none(&self, obj: u64) -> Result<bool> {
        Ok(&*self.type_name_of(obj)? == "NoneType")
    }

    /// A `str` (or str subclass instance) of any kind.
    pub fn str(&self, obj: u64) -> Result<Rc<str>> {
        if let Some(s) = self.strings.borrow().get(&obj) {
            return Ok(s.clone());
        }
        self.expect_flag(obj, fixed::TPFLAGS_UNICODE_SUBCLASS, "str")?;
        let head = self.bytes(obj, 40)?;
        let (data, len, kind) = match self.str_data(obj, &head)? {
            StrData::At { data, len, kind } => (data, len, kind),
            StrData::Behind => {
                (self.ptr(obj + self.l.unicode_compact_size, "str data")?, str_len(&head), str_kind(&head))
            }
        };
        let raw = self.bytes(data, (len * u64::from(kind)) as usize)?;
        let s = decode(&raw, kind);
        self.strings.borrow_mut().insert(obj, s.clone());
        Ok(s)
    }

    /// Where a str's characters are, from its head: in the object (compact), or behind its
    /// data pointer.
    fn str_data(&self, obj: u64, head: &[u8]) -> Result<StrData> {
        let len = str_len(head);
        if len > MAX_STR_CHARS {
            return Err(ObjectError::TooLarge { what: "str", addr: obj, n: len, max: MAX_STR_CHARS });
        }
        // Only the low byte of the state word is the bitfield (the rest is not zeroed).
        let state = head[fixed::STR_STATE as usize];
        let kind = str_kind(head);
        let (compact, ascii) = ((state >> 5) & 1 == 1, (state >> 6) & 1 == 1);
        if !matches!(kind, 1 | 2 | 4) {
            return Err(ObjectError::Torn { what: "str", addr: obj, why: format!("kind {kind}") });
        }
        Ok(match (compact, ascii) {
            (true, true) => StrData::At { data: obj + self.l.unicode_ascii_size, len, kind },
            (true, false) => StrData::At { data: obj + self.l.unicode_compact_size, len, kind },
            (false, _) => StrData::Behind,
        })
    }

    /// Reads many strs at once (the keys of a dict): their heads in one call, their characters
    /// in another, instead of two calls each. What cannot be read so is left for [`Self::str`]
    /// to read, and to report.
    fn prefetch_strs(&self, objs: &[u64]) -> Result<()> {
        let mut todo: Vec<u64> = objs.iter().copied().filter(|o| !self.strings.borrow().contains_key(o)).collect();
        todo.sort_unstable();
        todo.dedup();
        if todo.len() < 2 {
            return Ok(());
        }
        let heads = self.bytes_many(&todo.iter().map(|&o| (o, 40)).collect::<Vec<_>>())?;
        let mut wanted = Vec::new();
        for (&obj, head) in todo.iter().zip(&heads) {
            let Some(head) = head else { continue };
            let ty = u64::from_ne_bytes(head[8..16].try_into().unwrap());
            if check_ptr(ty, "type").is_err() || self.type_flags(ty)? & fixed::TPFLAGS_UNICODE_SUBCLASS == 0 {
                continue;
            }
            if let Ok(StrData::At { data, len, kind }) = self.str_data(obj, head) {
                wanted.push((obj, data, len * u64::from(kind), kind));
            }
        }
        let data = self.bytes_many(&wanted.iter().map(|&(_, d, n, _)| (d, n as usize)).collect::<Vec<_>>())?;
        let mut cache = self.strings.borrow_mut();
        for ((obj, _, _, kind), raw) in wanted.into_iter().zip(data) {
            if let Some(raw) = raw {
                cache.insert(obj, decode(&raw, kind));
            }
        }
        Ok(())
    }

    /// An `int` (or `bool`) that fits in an i64.
    pub fn int(&self, obj: u64) -> Result<i64> {
        self.expect_flag(obj, fixed::TPFLAGS_LONG_SUBCLASS, "int")?;
        let word = self.u64(obj + fixed::OB_SIZE)?;
        let (ndigits, negative) = match self.l.long {
            LongRepr::Size => {
                let size = word as i64;
                (size.unsigned_abs(), size < 0)
            }
            LongRepr::Tag => {
                let sign = word & 3;
                if sign == 3 {
                    return Err(ObjectError::Torn { what: "int", addr: obj, why: "sign 3".into() });
                }
                (word >> 3, sign == 2)
            }
        };
        if ndigits > 2 {
            return Err(ObjectError::TooLarge { what: "int digits", addr: obj, n: ndigits, max: 2 });
        }
        let raw = self.bytes(obj + fixed::LONG_DIGITS, 4 * ndigits as usize)?;
        let mut v: i64 = 0;
        for (i, d) in raw.chunks_exact(4).enumerate() {
            v |= i64::from(u32::from_ne_bytes(d.try_into().unwrap()) & 0x3fff_ffff) << (30 * i);
        }
        Ok(if negative { -v } else { v })
    }

    pub fn bool(&self, obj: u64) -> Result<bool> {
        if &*self.type_name_of(obj)? != "bool" {
            return Err(ObjectError::WrongType {
                addr: obj,
                expected: "bool",
                found: self.type_name_of(obj)?.to_string(),
            });
        }
        Ok(self.int(obj)? != 0)
    }

    pub fn float(&self, obj: u64) -> Result<f64> {
        if !self.is_instance_of(obj, "float")? {
            return Err(ObjectError::WrongType {
                addr: obj,
                expected: "float",
                found: self.type_name_of(obj)?.to_string(),
            });
        }
        Ok(f64::from_bits(self.u64(obj + fixed::FLOAT_VALUE)?))
    }

    /// An int or float as f64 (Werkzeug's `min`/`max` may be either).
    pub fn number(&self, obj: u64) -> Result<f64> {
        match self.int(obj) {
            Ok(v) => Ok(v as f64),
            Err(ObjectError::WrongType { .. }) => self.float(obj),
            Err(e) => Err(e),
        }
    }

    // ---- containers ----

    fn tuple_raw(&self, obj: u64, max: u64) -> Result<Vec<u64>> {
        self.expect_flag(obj, fixed::TPFLAGS_TUPLE_SUBCLASS, "tuple")?;
        let n = self.u64(obj + fixed::OB_SIZE)?;
        self.pointers(obj + self.l.tuple_items, n, max, "tuple")
    }

    /// A tuple's or a list's items.
    pub fn sequence(&self, obj: u64) -> Result<Vec<u64>> {
        let ty = self.type_of(obj)?;
        let flags = self.type_flags(ty)?;
        if flags & fixed::TPFLAGS_TUPLE_SUBCLASS != 0 {
            return self.tuple_raw(obj, MAX_ITEMS);
        }
        if flags & fixed::TPFLAGS_LIST_SUBCLASS == 0 {
            return Err(ObjectError::WrongType {
                addr: obj,
                expected: "list or tuple",
                found: self.type_name(ty)?.to_string(),
            });
        }
        let n = self.u64(obj + fixed::OB_SIZE)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let items = self.ptr(obj + fixed::LIST_ITEMS, "list items")?;
        self.pointers(items, n, MAX_ITEMS, "list")
    }

    /// `n` object pointers from `at`; NULL ones are a torn read.
    fn pointers(&self, at: u64, n: u64, max: u64, what: &'static str) -> Result<Vec<u64>> {
        if n > max {
            return Err(ObjectError::TooLarge { what, addr: at, n, max });
        }
        let raw = self.bytes(at, 8 * n as usize)?;
        raw.chunks_exact(8)
            .map(|c| {
                let p = u64::from_ne_bytes(c.try_into().unwrap());
                check_ptr(p, what).map(|()| p)
            })
            .collect()
    }

    /// A set's or frozenset's items (in table order: sets have no other).
    pub fn set_items(&self, obj: u64) -> Result<Vec<u64>> {
        if !(self.is_instance_of(obj, "set")? || self.is_instance_of(obj, "frozenset")?) {
            return Err(ObjectError::WrongType {
                addr: obj,
                expected: "set",
                found: self.type_name_of(obj)?.to_string(),
            });
        }
        let used = self.u64(obj + fixed::SET_USED)?;
        let mask = self.u64(obj + fixed::SET_MASK)?;
        if mask >= MAX_ITEMS * 8 || !(mask + 1).is_power_of_two() || used > mask + 1 {
            return Err(ObjectError::Torn { what: "set", addr: obj, why: format!("used {used}, mask {mask}") });
        }
        let table = self.ptr(obj + fixed::SET_TABLE, "set table")?;
        let raw = self.bytes(table, 16 * (mask + 1) as usize)?;
        let mut out = Vec::with_capacity(used as usize);
        for entry in raw.chunks_exact(16) {
            let key = u64::from_ne_bytes(entry[..8].try_into().unwrap());
            let hash = i64::from_ne_bytes(entry[8..].try_into().unwrap());
            // An empty slot is NULL; a deleted one holds the dummy key with hash -1.
            if key != 0 && hash != -1 {
                check_ptr(key, "set key")?;
                out.push(key);
            }
        }
        if out.len() as u64 != used {
            return Err(ObjectError::Torn { what: "set", addr: obj, why: format!("{} keys, used {used}", out.len()) });
        }
        Ok(out)
    }

    /// A dict's (key, value) pairs, in insertion order for combined tables.
    pub fn dict_items(&self, obj: u64) -> Result<Vec<(u64, u64)>> {
        self.expect_flag(obj, fixed::TPFLAGS_DICT_SUBCLASS, "dict")?;
        let keys = self.ptr(obj + fixed::DICT_KEYS, "dict keys")?;
        let values = self.opt_ptr(obj + fixed::DICT_VALUES, "dict values")?;
        self.table_items(obj, keys, values)
    }

    /// The items of a keys object, with values from `values` (a split table) or from the
    /// entries themselves.
    fn table_items(&self, owner: u64, keys: u64, values: Option<u64>) -> Result<Vec<(u64, u64)>> {
        let head = self.bytes(keys, 40)?;
        let word = |at: usize| u64::from_ne_bytes(head[at..at + 8].try_into().unwrap());
        let (nentries, entries, entry_size, key_at, value_at) = match self.l.dict_keys {
            DictKeys::Sized => {
                let size = word(8);
                if !size.is_power_of_two() || size > MAX_ITEMS * 4 {
                    return Err(ObjectError::Torn { what: "dict keys", addr: keys, why: format!("dk_size {size}") });
                }
                let width = match size {
                    0..=0xff => 1,
                    0x100..=0xffff => 2,
                    _ => 4,
                };
                (word(32), keys + 40 + size * width, 24, 8, 16)
            }
            DictKeys::Log2 => {
                let (log2_size, log2_index_bytes, kind) = (head[8], head[9], head[10]);
                if log2_size > 24 || log2_index_bytes > 27 || kind > 2 {
                    return Err(ObjectError::Torn {
                        what: "dict keys",
                        addr: keys,
                        why: format!("log2 size {log2_size}, index bytes {log2_index_bytes}, kind {kind}"),
                    });
                }
                let (size, key_at, value_at) = if kind == 0 { (24, 8, 16) } else { (16, 0, 8) };
                (word(24), keys + 32 + (1u64 << log2_index_bytes), size, key_at, value_at)
            }
        };
        if nentries > MAX_ITEMS {
            return Err(ObjectError::TooLarge { what: "dict", addr: owner, n: nentries, max: MAX_ITEMS });
        }
        let raw = self.bytes(entries, (nentries * entry_size) as usize)?;
        let slots = match values {
            Some(v) => Some(self.split_values(v, nentries)?),
            None => None,
        };
        let mut out = Vec::with_capacity(nentries as usize);
        for (i, e) in raw.chunks_exact(entry_size as usize).enumerate() {
            let key = u64::from_ne_bytes(e[key_at..key_at + 8].try_into().unwrap());
            let value = match &slots {
                Some(s) => s.get(i).copied().unwrap_or(0),
                None => u64::from_ne_bytes(e[value_at..value_at + 8].try_into().unwrap()),
            };
            // Deleted entries (and split slots not set on this object) are NULL.
            if key != 0 && value != 0 {
                check_ptr(key, "dict key")?;
                check_ptr(value, "dict value")?;
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// A split table's values by slot (NULL where this object has no value for the key). From
    /// 3.11 only the slots named in the values' order bytes are read: the shared keys may have
    /// grown past what this object's values array holds.
    fn split_values(&self, values: u64, nentries: u64) -> Result<Vec<u64>> {
        let mut out = vec![0u64; nentries as usize];
        let slots: Vec<u8> = match self.l.split_values {
            SplitValues::Bare => {
                let raw = self.bytes(values, 8 * nentries as usize)?;
                return Ok(raw.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect());
            }
            SplitValues::Prefixed => {
                let prefix = u64::from(self.u8(values - 1)?);
                if !(2..=255).contains(&prefix) {
                    return Err(ObjectError::Torn {
                        what: "split values",
                        addr: values,
                        why: format!("prefix {prefix}"),
                    });
                }
                let raw = self.bytes(values - prefix, prefix as usize)?;
                let n = raw[raw.len() - 2] as usize;
                if n + 2 > raw.len() {
                    return Err(ObjectError::Torn { what: "split values", addr: values, why: format!("{n} in order") });
                }
                (0..n).map(|j| raw[raw.len() - 3 - j]).collect()
            }
            SplitValues::Header => {
                let head = self.bytes(values, 8)?;
                let (capacity, size, embedded, valid) = (u64::from(head[0]), head[1] as usize, head[2], head[3]);
                // `valid` is kept for values embedded in the object only; malloc'd ones leave it unset.
                if (embedded == 1 && valid != 1) || embedded > 1 || size as u64 > capacity {
                    return Err(ObjectError::Torn {
                        what: "inline values",
                        addr: values,
                        why: format!("embedded {embedded}, valid {valid}, size {size}, capacity {capacity}"),
                    });
                }
                self.bytes(values + 8 + 8 * capacity, size)?
            }
        };
        let Some(&last) = slots.iter().filter(|&&s| u64::from(s) < nentries).max() else { return Ok(out) };
        let raw = self.bytes(values + self.values_start(), 8 * (usize::from(last) + 1))?;
        for slot in slots.into_iter().filter(|&s| u64::from(s) < nentries) {
            let at = 8 * usize::from(slot);
            out[usize::from(slot)] = u64::from_ne_bytes(raw[at..at + 8].try_into().unwrap());
        }
        Ok(out)
    }

    /// Where the value pointers start in a values block.
    fn values_start(&self) -> u64 {
        if self.l.split_values == SplitValues::Header {
            8
        } else {
            0
        }
    }

    /// A dict's items whose keys are strs (others are skipped).
    pub fn str_items(&self, dict: u64) -> Result<Attrs> {
        if let Some(d) = self.str_dicts.borrow().get(&dict) {
            return Ok(d.clone());
        }
        let items = self.dict_items(dict)?;
        let d = self.str_keyed(items)?;
        self.str_dicts.borrow_mut().insert(dict, d.clone());
        Ok(d)
    }

    fn str_keyed(&self, items: Vec<(u64, u64)>) -> Result<Attrs> {
        self.prefetch_strs(&items.iter().map(|(k, _)| *k).collect::<Vec<_>>())?;
        let mut out = Vec::with_capacity(items.len());
        for (k, v) in items {
            match self.str(k) {
                Ok(s) => out.push((s, v)),
                Err(ObjectError::WrongType { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Rc::new(out))
    }

    // ---- attributes ----

    /// The object's own attributes (its `__dict__`), from wherever this version keeps them.
    pub fn instance_attrs(&self, obj: u64) -> Result<Attrs> {
        if let Some(a) = self.attrs.borrow().get(&obj) {
            return Ok(a.clone());
        }
        let a = self.read_instance_attrs(obj)?;
        self.attrs.borrow_mut().insert(obj, a.clone());
        Ok(a)
    }

    fn read_instance_attrs(&self, obj: u64) -> Result<Attrs> {
        let ty = self.type_of(obj)?;
        let flags = self.type_flags(ty)?;
        let managed = flags & fixed::TPFLAGS_MANAGED_DICT != 0;
        let dict_or_values = match (self.l.instance_dict, managed) {
            (InstanceDict::DictOffset, _) | (_, false) => {
                let off = self.u64(ty + fixed::TP_DICTOFFSET)? as i64;
                if off <= 0 {
                    // No __dict__ (slots or a C type), or a variable-size object's negative
                    // offset, which only int/tuple subclasses have: none of ours.
                    return Ok(Rc::default());
                }
                Holder::Dict(self.opt_ptr(obj + off as u64, "instance dict")?)
            }
            (InstanceDict::Values311, true) => match self.opt_ptr(obj - fixed::MANAGED_DICT, "managed dict")? {
                Some(d) => Holder::Dict(Some(d)),
                None => Holder::Values(self.opt_ptr(obj - fixed::MANAGED_VALUES_311, "managed values")?),
            },
            (InstanceDict::Tagged312, true) => match self.u64(obj - fixed::MANAGED_DICT)? {
                0 => Holder::Dict(None),
                w if w & 1 == 1 => Holder::Values(Some(w + 1)),
                w => Holder::Dict(Some(check_ptr(w, "managed dict").map(|()| w)?)),
            },
            (InstanceDict::Inline { at_basicsize }, true) => {
                match self.opt_ptr(obj - fixed::MANAGED_DICT, "managed dict")? {
                    Some(d) => Holder::Dict(Some(d)),
                    None if flags & fixed::TPFLAGS_INLINE_VALUES != 0 => {
                        let at = if at_basicsize { self.u64(ty + fixed::TP_BASICSIZE)? } else { 16 };
                        if !(16..=4096).contains(&at) {
                            return Err(ObjectError::Torn { what: "type", addr: ty, why: format!("basicsize {at}") });
                        }
                        Holder::Values(Some(obj + at))
                    }
                    None => Holder::Dict(None),
                }
            }
        };
        match dict_or_values {
            Holder::Dict(None) | Holder::Values(None) => Ok(Rc::default()),
            Holder::Dict(Some(d)) => self.str_items(d),
            Holder::Values(Some(v)) => {
                let keys = self.ptr(ty + self.l.ht_cached_keys, "shared keys")?;
                let items = self.table_items(obj, keys, Some(v))?;
                self.str_keyed(items)
            }
        }
    }

    /// `obj.name` when it is an instance attribute.
    pub fn own_attr(&self, obj: u64, name: &str) -> Result<Option<u64>> {
        Ok(self.instance_attrs(obj)?.iter().find(|(k, _)| &**k == name).map(|(_, v)| *v))
    }

    /// `name` in the class dicts along `ty`'s MRO (what `getattr` finds on the class).
    pub fn class_attr(&self, ty: u64, name: &str) -> Result<Option<u64>> {
        for t in self.mro(ty)? {
            // Static builtin types have no tp_dict from 3.12: nothing of ours lives there.
            let Some(dict) = self.opt_ptr(t + fixed::TP_DICT, "type dict")? else { continue };
            if let Some((_, v)) = self.str_items(dict)?.iter().find(|(k, _)| &**k == name) {
                return Ok(Some(*v));
            }
        }
        Ok(None)
    }

    /// `getattr(obj, name)` for plain data: the instance's own attribute, else the class's.
    pub fn attr(&self, obj: u64, name: &str) -> Result<Option<u64>> {
        if let Some(v) = self.own_attr(obj, name)? {
            return Ok(Some(v));
        }
        self.class_attr(self.type_of(obj)?, name)
    }

    /// An attribute holding a str; `None` when missing or not a str.
    pub fn attr_str(&self, obj: u64, name: &str) -> Result<Option<Rc<str>>> {
        match self.attr(obj, name)? {
            Some(v) => match self.str(v) {
                Ok(s) => Ok(Some(s)),
                Err(ObjectError::WrongType { .. }) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// An attribute holding a bool; `None` when missing or not a bool.
    pub fn attr_bool(&self, obj: u64, name: &str) -> Result<Option<bool>> {
        match self.attr(obj, name)? {
            Some(v) if &*self.type_name_of(v)? == "bool" => Ok(Some(self.int(v)? != 0)),
            _ => Ok(None),
        }
    }

    // ---- modules and functions ----

    pub fn module_dict(&self, module: u64) -> Result<Attrs> {
        if !self.is_instance_of(module, "module")? {
            return Err(ObjectError::WrongType {
                addr: module,
                expected: "module",
                found: self.type_name_of(module)?.to_string(),
            });
        }
        let dict = self.ptr(module + fixed::MODULE_DICT, "module dict")?;
        self.str_items(dict)
    }

    /// A module global.
    pub fn module_global(&self, module: u64, name: &str) -> Result<Option<u64>> {
        Ok(self.module_dict(module)?.iter().find(|(k, _)| &**k == name).map(|(_, v)| *v))
    }

    /// A Python function: its qualified name, file, first line, module and `__dict__`.
    pub fn function(&self, obj: u64) -> Result<Function> {
        if &*self.type_name_of(obj)? != "function" {
            return Err(ObjectError::WrongType {
                addr: obj,
                expected: "function",
                found: self.type_name_of(obj)?.to_string(),
            });
        }
        let code = self.ptr(obj + self.l.func_code, "function code")?;
        if &*self.type_name_of(code)? != "code" {
            return Err(ObjectError::WrongType {
                addr: code,
                expected: "code",
                found: self.type_name_of(code)?.to_string(),
            });
        }
        let qualname = self.str(self.ptr(obj + self.l.func_qualname, "function qualname")?)?;
        let file = self.str(self.ptr(code + self.code.code_filename, "code filename")?)?;
        let mut line = [0u8; 4];
        self.read(code + self.code.code_first_line, &mut line)?;
        let module = match self.opt_ptr(obj + self.l.func_module, "function module")? {
            Some(m) => self.str(m).ok(),
            None => None,
        };
        let dict = self.u64(obj + self.l.func_dict)?;
        Ok(Function {
            code: CodeInfo {
                qualname: qualname.to_string(),
                file: file.to_string(),
                first_line: u32::from_ne_bytes(line),
            },
            module,
            dict,
        })
    }

    /// A function's `__dict__` entry (`view_class`, `__wrapped__`).
    pub fn function_attr(&self, f: &Function, name: &str) -> Result<Option<u64>> {
        if f.dict == 0 {
            return Ok(None);
        }
        check_ptr(f.dict, "function dict")?;
        Ok(self.str_items(f.dict)?.iter().find(|(k, _)| &**k == name).map(|(_, v)| *v))
    }

    /// The function behind a callable: bound methods give their function, `functools.partial`
    /// its `func`, and `functools.wraps` wrappers the function they wrap (`__wrapped__`), up to
    /// [`MAX_UNWRAP`] steps. `None` when what is left is not a Python function.
    pub fn unwrap_function(&self, mut obj: u64) -> Result<Option<Function>> {
        for _ in 0..MAX_UNWRAP {
            let name = self.type_name_of(obj)?;
            match &*name {
                "method" => obj = self.ptr(obj + fixed::METHOD_FUNC, "method function")?,
                "functools.partial" => obj = self.ptr(obj + fixed::PARTIAL_FN, "partial function")?,
                "function" => {
                    let f = self.function(obj)?;
                    match self.function_attr(&f, "__wrapped__")? {
                        Some(inner) => obj = inner,
                        None => return Ok(Some(f)),
                    }
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

enum StrData {
    At {
        data: u64,
        len: u64,
        kind: u8,
    },
    /// A non-compact str: the characters are behind the data pointer.
    Behind,
}

fn str_len(head: &[u8]) -> u64 {
    u64::from_ne_bytes(head[fixed::STR_LENGTH as usize..fixed::STR_LENGTH as usize + 8].try_into().unwrap())
}

fn str_kind(head: &[u8]) -> u8 {
    (head[fixed::STR_STATE as usize] >> 2) & 7
}

/// Characters of `kind` bytes each: Latin-1, UCS-2 or UCS-4, little-endian.
fn decode(raw: &[u8], kind: u8) -> Rc<str> {
    match kind {
        1 => raw.iter().map(|&b| b as char).collect::<String>().into(),
        2 => {
            String::from_utf16_lossy(&raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>())
                .into()
        }
        _ => raw
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_le_bytes(c.try_into().unwrap())).unwrap_or('\u{fffd}'))
            .collect::<String>()
            .into(),
    }
}

enum Holder {
    Dict(Option<u64>),
    Values(Option<u64>),
}

/// Objects are 8-aligned and live in user space.
fn check_ptr(p: u64, what: &'static str) -> Result<()> {
    if p < 0x1000 || !p.is_multiple_of(8) || p >= 0x0000_8000_0000_0000 {
        return Err(ObjectError::BadPointer { what, addr: p });
    }
    Ok(())
}
