//! One source for a config section's fields, defaults and documentation.
//!
//! [`section!`] declares a section struct whose every field carries its `///`
//! doc and its default on the same line. From that one declaration come the
//! serde struct (unknown keys denied, missing keys defaulted), its `Default`,
//! the rustdoc line stating each default, and the [`SectionDoc`] that
//! `verity train --help-config` and configs/README.md render.

/// Documentation of one config key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The key inside its section.
    pub name: &'static str,
    /// Its `///` doc, lines joined with `\n`.
    pub doc: &'static str,
}

/// Documentation of one config section.
#[derive(Debug, Clone, Copy)]
pub struct SectionDoc {
    /// The TOML table name (`run`, `grpo`, ...).
    pub name: &'static str,
    /// The section's `///` doc.
    pub doc: &'static str,
    /// Its keys, in declaration order.
    pub keys: &'static [KeyDoc],
}

/// Turns a default written as a literal (`"runs"`, `64`, `None`) into the
/// field's type, so defaults read as plain values in the declarations.
pub(crate) trait IntoDefault<T> {
    fn into_default(self) -> T;
}

impl<T> IntoDefault<T> for T {
    fn into_default(self) -> T {
        self
    }
}

impl IntoDefault<String> for &str {
    fn into_default(self) -> String {
        self.to_string()
    }
}

/// Declares a config section. Each field is written
/// `/// doc` then `name: Type = default,`.
macro_rules! section {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident in $key:literal {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("Default: `", stringify!($default), "`.")]
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                use $crate::config::schema::IntoDefault;
                Self { $($field: ($default).into_default(),)* }
            }
        }

        impl $name {
            /// The documentation of this section and its keys.
            pub const DOC: $crate::config::schema::SectionDoc = $crate::config::schema::SectionDoc {
                name: $key,
                doc: concat!($($sdoc, "\n",)*),
                keys: &[$(
                    $crate::config::schema::KeyDoc {
                        name: stringify!($field),
                        doc: concat!($($doc, "\n",)*),
                    },
                )*],
            };
        }
    };
}

pub(crate) use section;
