//! Rules for queue names, topics and binding patterns.

use chute_protocol::NAME_LEN_MAX;

/// Why a name was refused; shown to the client in an `invalid-argument` error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes, longer than {NAME_LEN_MAX}")]
    TooLong { what: &'static str, len: usize },
    #[error("{what} {name:?} contains {ch:?}; allowed are letters, digits and - _ . : /")]
    BadChar { what: &'static str, name: String, ch: char },
}

/// Queue names and topics: 1 to 255 bytes of ASCII letters, digits and `-_.:/`.
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > NAME_LEN_MAX {
        return Err(NameError::TooLong { what, len: name.len() });
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.:/".contains(*c))) {
        Some(ch) => Err(NameError::BadChar { what, name: name.to_string(), ch }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_names() {
        for name in ["orders", "orders.eu-west", "a:b/c_d", "x"] {
            check_name("queue name", name).unwrap();
        }
    }

    #[test]
    fn refuses_empty_long_and_odd_names() {
        assert_eq!(check_name("queue name", ""), Err(NameError::Empty { what: "queue name" }));
        assert!(matches!(
            check_name("queue name", &"a".repeat(256)),
            Err(NameError::TooLong { .. })
        ));
        assert!(matches!(check_name("queue name", "a b"), Err(NameError::BadChar { ch: ' ', .. })));
        assert!(matches!(check_name("queue name", "ä"), Err(NameError::BadChar { .. })));
    }
}
