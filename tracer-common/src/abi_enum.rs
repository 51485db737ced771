//! One declaration for the enums whose numbers cross the kernel boundary: the variants, their
//! numbers and their names are written once, and the conversion from the raw `u32`, the name and
//! the list of every variant follow from it. Works in `no_std` (the kernel side uses it too).

/// Declares a `#[repr(u32)]` enum with, for each variant, its number and its name:
///
/// ```
/// tracer_common::abi_enum! {
///     /// What happened.
///     pub enum Thing {
///         /// The first thing.
///         First = 1 => "first",
///         Second = 2 => "second",
///     }
/// }
/// assert_eq!(Thing::try_from(2), Ok(Thing::Second));
/// assert_eq!(Thing::try_from(3), Err(3));
/// assert_eq!(Thing::First.name(), "first");
/// assert_eq!(Thing::ALL, [Thing::First, Thing::Second]);
/// ```
#[macro_export]
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// How many variants there are.
            pub const COUNT: usize = <[&str]>::len(&[$(stringify!($variant)),+]);
            /// Every variant, in declaration order.
            pub const ALL: [Self; Self::COUNT] = [$(Self::$variant),+];

            /// The variant's name in logs and metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl ::core::convert::TryFrom<u32> for $name {
            /// The number that names no variant.
            type Error = u32;

            fn try_from(v: u32) -> ::core::result::Result<Self, u32> {
                match v {
                    $($value => Ok(Self::$variant),)+
                    other => Err(other),
                }
            }
        }
    };
}
