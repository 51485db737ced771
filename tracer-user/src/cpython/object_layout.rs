//! Raw data: where CPython keeps the fields of its everyday objects (str, int, tuple, list, set,
//! dict, instances, modules, functions, bound methods, `functools.partial`, types), per minor
//! version, for 64-bit builds without free threading. Every number was checked on a live object
//! with ctypes in the version it is given for (pyenv 3.8–3.13, Debian 3.11 and 3.13, sid 3.14 and
//! 3.15). Which row a version uses is decided in versions.rs; the object reader (objects.rs) is
//! the only user.

/// How an `int` stores its digit count and sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongRepr {
    /// Up to 3.11: `ob_size` at 16, signed: |ob_size| digits, its sign the int's.
    Size,
    /// 3.12+: `lv_tag` at 16: digits = tag >> 3, sign = tag & 3 (0 positive, 1 zero, 2 negative).
    /// 3.14 also sets bit 2 on small ints, which the mask leaves out.
    Tag,
}

/// The header of a dict's keys object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DictKeys {
    /// 3.8–3.10: `dk_size` at 8, `dk_nentries` at 32, indices at 40 with a width from `dk_size`;
    /// every entry is {hash, key, value} (24 bytes).
    Sized,
    /// 3.11+: `dk_log2_size` at 8, `dk_log2_index_bytes` at 9, `dk_kind` at 10, `dk_nentries`
    /// at 24, indices at 32; entries are 24 bytes for general keys, 16 ({key, value}) for
    /// unicode and split keys.
    Log2,
}

/// Where a split-table dict's values are and in which order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitValues {
    /// 3.8–3.10: a bare `PyObject*[]`, in the shared keys' entry order.
    Bare,
    /// 3.11–3.12: bare values; byte[-2] is the count and byte[-3-j] the slot of the j-th item.
    Prefixed,
    /// 3.13+: {capacity u8, size u8, embedded u8, valid u8} then the values at 8; the order
    /// bytes (u8 × size) follow the capacity's values.
    Header,
}

/// Where an instance of a plain class keeps its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceDict {
    /// 3.8–3.10: a dict pointer at obj + `tp_dictoffset`.
    DictOffset,
    /// 3.11: values pointer at obj − 32, dict pointer at obj − 24 (managed dict).
    Values311,
    /// 3.12: one word at obj − 24: values + 1 with bit 0 set, else the dict pointer.
    Tagged312,
    /// 3.13+: the dict pointer at obj − 24 when one was made, else inline values at
    /// obj + 16 (3.13) or obj + `tp_basicsize` (3.14+) for types with INLINE_VALUES.
    Inline { at_basicsize: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLayout {
    pub minor: u8,
    /// offsetof(PyInterpreterState, modules), `imports.modules` from 3.12: `sys.modules`. 3.13+
    /// processes give it in `_Py_DebugOffsets` too, and that value wins.
    pub interp_modules: u64,
    /// Where a tuple's items start: 24, 32 from 3.14 (the cached hash came first).
    pub tuple_items: u64,
    pub long: LongRepr,
    /// sizeof(PyASCIIObject): the characters of a compact ASCII str.
    pub unicode_ascii_size: u64,
    /// sizeof(PyCompactUnicodeObject): the characters of a compact non-ASCII str; also where a
    /// non-compact str (a str subclass instance) keeps its `data` pointer.
    pub unicode_compact_size: u64,
    pub dict_keys: DictKeys,
    pub split_values: SplitValues,
    pub instance_dict: InstanceDict,
    /// PyHeapTypeObject's `ht_cached_keys`: the keys shared by instances' split dicts and values.
    pub ht_cached_keys: u64,
    pub func_code: u64,
    pub func_globals: u64,
    pub func_name: u64,
    pub func_qualname: u64,
    pub func_module: u64,
    /// The function's `__dict__` (`view_class`, `__wrapped__`, ...).
    pub func_dict: u64,
    pub func_closure: u64,
    /// PyModuleObject's `md_name` (3.15 moved it from 48 to 40).
    pub module_name: u64,
    /// From 3.12 the Python-level signal handlers live in `_PyRuntime.signals.handlers`: the
    /// offset of `handlers[0].func` from `_PyRuntime` (each entry is 16 bytes). Up to 3.11 they
    /// are a static array without an exported symbol: `None`.
    pub signal_handlers: Option<u64>,
    /// Where a frame's locals start (`f_localsplus` of PyFrameObject up to 3.10, `localsplus`
    /// of `_PyInterpreterFrame` after): local 0 of a method is `self`. DWARF of pyenv's builds
    /// (3.8–3.13) and `_Py_DebugOffsets.interpreter_frame.localsplus` (3.13–3.15).
    pub frame_locals: u64,
}

/// Offsets every version here shares (checked on all of them).
pub mod fixed {
    pub const OB_TYPE: u64 = 8;
    pub const OB_SIZE: u64 = 16;
    pub const TP_NAME: u64 = 24;
    pub const TP_BASICSIZE: u64 = 32;
    pub const TP_FLAGS: u64 = 168;
    pub const TP_DICT: u64 = 264;
    pub const TP_DICTOFFSET: u64 = 288;
    pub const TP_MRO: u64 = 344;
    pub const STR_LENGTH: u64 = 16;
    pub const STR_STATE: u64 = 32;
    pub const LONG_DIGITS: u64 = 24;
    pub const FLOAT_VALUE: u64 = 16;
    pub const BYTES_DATA: u64 = 32;
    pub const LIST_ITEMS: u64 = 24;
    pub const DICT_KEYS: u64 = 32;
    pub const DICT_VALUES: u64 = 40;
    pub const SET_USED: u64 = 24;
    pub const SET_MASK: u64 = 32;
    pub const SET_TABLE: u64 = 40;
    pub const MODULE_DICT: u64 = 16;
    pub const METHOD_FUNC: u64 = 16;
    pub const METHOD_SELF: u64 = 24;
    pub const PARTIAL_FN: u64 = 16;
    pub const PARTIAL_ARGS: u64 = 24;
    pub const PARTIAL_KW: u64 = 32;
    /// The managed dict pointer (3.11+), before the object.
    pub const MANAGED_DICT: u64 = 24;
    /// The 3.11 values pointer, before the object.
    pub const MANAGED_VALUES_311: u64 = 32;

    pub const TPFLAGS_INLINE_VALUES: u64 = 1 << 2;
    pub const TPFLAGS_MANAGED_DICT: u64 = 1 << 4;
    pub const TPFLAGS_HEAPTYPE: u64 = 1 << 9;
    pub const TPFLAGS_LONG_SUBCLASS: u64 = 1 << 24;
    pub const TPFLAGS_LIST_SUBCLASS: u64 = 1 << 25;
    pub const TPFLAGS_TUPLE_SUBCLASS: u64 = 1 << 26;
    pub const TPFLAGS_BYTES_SUBCLASS: u64 = 1 << 27;
    pub const TPFLAGS_UNICODE_SUBCLASS: u64 = 1 << 28;
    pub const TPFLAGS_DICT_SUBCLASS: u64 = 1 << 29;
    pub const TPFLAGS_TYPE_SUBCLASS: u64 = 1 << 31;
}

const FUNC_3_8: (u64, u64, u64, u64, u64, u64, u64) = (16, 24, 64, 104, 88, 72, 48);
const FUNC_3_10: (u64, u64, u64, u64, u64, u64, u64) = (48, 16, 32, 40, 104, 88, 72);

const fn row(
    minor: u8,
    interp_modules: u64,
    ht_cached_keys: u64,
    func: (u64, u64, u64, u64, u64, u64, u64),
    instance_dict: InstanceDict,
) -> ObjectLayout {
    let new_str = minor >= 12;
    ObjectLayout {
        minor,
        interp_modules,
        tuple_items: if minor >= 14 { 32 } else { 24 },
        long: if minor >= 12 { LongRepr::Tag } else { LongRepr::Size },
        unicode_ascii_size: if new_str { 40 } else { 48 },
        unicode_compact_size: if new_str { 56 } else { 72 },
        dict_keys: if minor >= 11 { DictKeys::Log2 } else { DictKeys::Sized },
        split_values: if minor >= 13 {
            SplitValues::Header
        } else if minor >= 11 {
            SplitValues::Prefixed
        } else {
            SplitValues::Bare
        },
        instance_dict,
        ht_cached_keys,
        func_code: func.0,
        func_globals: func.1,
        func_name: func.2,
        func_qualname: func.3,
        func_module: func.4,
        func_dict: func.5,
        func_closure: func.6,
        module_name: if minor >= 15 { 40 } else { 48 },
        // `signals` at 464 (3.12.1), 1080 (3.13.0, 3.13.5), 1256 (3.14.10), 1384 (3.15.2); `func`
        // 8 bytes into the first entry.
        signal_handlers: match minor {
            12 => Some(464 + 8),
            13 => Some(1080 + 8),
            14 => Some(1256 + 8),
            15 => Some(1384 + 8),
            _ => None,
        },
        frame_locals: match minor {
            8 | 9 => 360,
            10 => 352,
            11..=13 => 72,
            _ => 80,
        },
    }
}

/// One row per minor version, 3.8 to 3.15.
pub const ROWS: [ObjectLayout; 8] = [
    row(8, 56, 872, FUNC_3_8, InstanceDict::DictOffset),
    row(9, 856, 864, FUNC_3_8, InstanceDict::DictOffset),
    row(10, 856, 872, FUNC_3_10, InstanceDict::DictOffset),
    row(11, 888, 872, FUNC_3_10, InstanceDict::Values311),
    row(12, 944, 880, FUNC_3_10, InstanceDict::Tagged312),
    row(13, 7656, 880, FUNC_3_10, InstanceDict::Inline { at_basicsize: false }),
    row(14, 7688, 880, FUNC_3_10, InstanceDict::Inline { at_basicsize: true }),
    row(15, 7592, 888, FUNC_3_10, InstanceDict::Inline { at_basicsize: true }),
];

pub fn for_minor(minor: u8) -> Option<&'static ObjectLayout> {
    ROWS.iter().find(|r| r.minor == minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_minor_and_the_measured_changes() {
        for (i, r) in ROWS.iter().enumerate() {
            assert_eq!(r.minor as usize, 8 + i);
        }
        let r = |m| for_minor(m).unwrap();
        assert_eq!((r(8).func_code, r(9).func_qualname, r(10).func_code, r(15).func_qualname), (16, 104, 48, 40));
        assert_eq!((r(13).tuple_items, r(14).tuple_items), (24, 32));
        assert_eq!((r(11).unicode_compact_size, r(12).unicode_compact_size), (72, 56));
        assert_eq!((r(14).module_name, r(15).module_name), (48, 40));
        assert_eq!(r(9).ht_cached_keys, 864);
        assert!(for_minor(7).is_none() && for_minor(16).is_none());
    }
}
