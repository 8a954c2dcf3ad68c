//! Ids for messages published without one: a 128-bit prefix drawn once per session, then a
//! counter. Two sessions share an id only if they drew the same prefix (one chance in 2^64
//! among four billion sessions), so a republished message is recognised by a queue's dedup
//! window and nothing else is.

use std::fmt::Write;

use crate::rng::Rng;

/// URL-safe base 64: ids stay short and printable.
const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[derive(Clone, Debug)]
pub struct MessageIds {
    /// 22 digits of base 64 (128 bits, the last digit's top bits unused) and a `.`.
    prefix: String,
    next: u64,
}

impl MessageIds {
    pub fn new(rng: &mut Rng) -> MessageIds {
        let bits = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        let mut prefix = String::with_capacity(23);
        for digit in 0..22 {
            prefix.push(char::from(DIGITS[((bits >> (6 * digit)) & 63) as usize]));
        }
        prefix.push('.');
        MessageIds { prefix, next: 1 }
    }

    /// The next id: the prefix and the counter in hex (one allocation, at most 39 bytes).
    pub fn next_id(&mut self) -> String {
        let mut id = String::with_capacity(self.prefix.len() + 16);
        id.push_str(&self.prefix);
        write!(id, "{:x}", self.next).expect("writing to a String cannot fail");
        self.next += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_within_and_across_sessions() {
        let mut rng = Rng::new(1);
        let mut first = MessageIds::new(&mut rng);
        let mut second = MessageIds::new(&mut rng);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(first.next_id()));
            assert!(seen.insert(second.next_id()));
        }
        let id = first.next_id();
        assert!(id.len() <= chute_protocol::MESSAGE_ID_LEN_MAX);
        assert!(id.is_ascii());
    }
}
