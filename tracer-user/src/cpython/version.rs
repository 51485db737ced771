//! A Python version, as CPython encodes it (`PY_VERSION_HEX`) or names its files
//! (`libpython3.11.so.1.0`, `python3.13t`).
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    /// 0 when only major.minor is known (see [`super::build::VersionSource::FileName`]).
    pub micro: u8,
}

impl Version {
    pub const fn new(major: u8, minor: u8, micro: u8) -> Self {
        Version { major, minor, micro }
    }

    /// Decode `PY_VERSION_HEX`: major<<24 | minor<<16 | micro<<8 | level<<4 | serial.
    pub fn from_hex(hex: u64) -> Self {
        Version::new((hex >> 24) as u8, (hex >> 16) as u8, (hex >> 8) as u8)
    }

    /// Ignores micro: layouts change between minor releases, not micro ones.
    pub fn at_least(&self, major: u8, minor: u8) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// `libpython3.11.so.1.0`, `libpython3.6m.so`, `python3.13`, `python3.13t` → major.minor.
pub fn from_file_name(path: &Path) -> Option<Version> {
    let name = path.file_name()?.to_str()?;
    let after = &name[name.find("python")? + "python".len()..];
    let (major, rest) = after.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Version::new(major.parse().ok()?, minor.parse().ok()?, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hex() {
        let v = |s: &str| from_file_name(Path::new(s));
        assert_eq!(v("/usr/lib/libpython3.11.so.1.0"), Some(Version::new(3, 11, 0)));
        assert_eq!(v("libpython3.6m.so.1.0"), Some(Version::new(3, 6, 0)));
        assert_eq!(v("/usr/bin/python3.13t"), Some(Version::new(3, 13, 0)));
        assert_eq!(v("/usr/bin/uwsgi"), None);
        assert_eq!(Version::from_hex(0x030d_05f0), Version::new(3, 13, 5));
    }
}
