//! Secret-bearing string types.
//!
//! Every value that would let someone act as the app or the user (app secret,
//! session_key, access token, login and phone codes) lives in one of these
//! types. Their `Debug` and `Display` never print the value, so `?value` or
//! `{value}` in a log line or an error message leaks nothing; reading the value
//! takes an explicit `expose()` that is easy to grep for. They deserialize
//! (from WeChat's answers and from configuration) but do not serialize:
//! putting one on the wire takes `expose()` too, so no derived `Serialize`
//! of a bigger type can write one out by accident.

use std::fmt;

macro_rules! secret_string {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value itself. Call this only to put it on the wire or into a
            /// cryptographic function, never to log or display it.
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// The value, consumed.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted, {} chars>)"), self.0.chars().count())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

secret_string!(
    /// An app's AppSecret, which authenticates the backend to WeChat.
    AppSecret
);
secret_string!(
    /// A user's session_key (base64 of 16 bytes). It decrypts that user's
    /// `encryptedData` and signs their login state, so it must stay on the server.
    SessionKey
);
secret_string!(
    /// An app's access token for WeChat's business APIs.
    AccessToken
);
secret_string!(
    /// A one-time `wx.login` code.
    LoginCode
);
secret_string!(
    /// A one-time code from the phone-number button.
    PhoneCode
);
secret_string!(
    /// Any other secret text (session tokens, keys in configuration): the
    /// one redacting type for secrets that have no type of their own.
    SecretText
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let key = SessionKey::new("tiihtNczf5v6AKRyjwEUhQ==");
        let shown = format!("{key:?} {key} {:?}", Some(&key));
        assert!(!shown.contains("tiiht"), "{shown}");
        assert!(
            shown.contains("SessionKey(<redacted, 24 chars>)"),
            "{shown}"
        );
        assert_eq!(key.expose(), "tiihtNczf5v6AKRyjwEUhQ==");
    }

    #[test]
    fn serde_is_transparent() {
        let code: LoginCode =
            serde_json::from_str("\"abc\"").unwrap_or_else(|_| LoginCode::new(""));
        assert_eq!(code.expose(), "abc");
    }
}
