//! `string_enum!`: the enums stored and served as text (task states, modes, flavors), with
//! `as_str`, `FromStr`, `Display`, serde and an OpenAPI schema, in one definition. A leaf: it
//! depends on nothing in the crate, so both `binlog` and `domain` can use it.

/// Defines a string enum with `as_str`, `FromStr`, `Display` and serde under the given names.
macro_rules! string_enum {
    // `$text:tt`, not `:literal`: utoipa's derive only sees a `rename` written with a token tree.
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:tt),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown {} {:?} (expected one of: {})",
                        stringify!($name),
                        s.chars().take(64).collect::<String>(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;
