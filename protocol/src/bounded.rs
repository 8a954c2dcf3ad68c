//! Serde helpers that keep decoding bounded: a sequence longer than its named limit is refused
//! before its elements are read, and byte fields are written as one slice, not byte by byte.

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
use serde::Serializer;
use std::marker::PhantomData;

/// Deserializes a `Vec<T>` of at most `MAX` elements.
pub(crate) fn vec<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(BoundedVec::<T, MAX>(PhantomData))
}

struct BoundedVec<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVec<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a sequence of at most {MAX} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let declared = seq.size_hint().unwrap_or(0);
        if declared > MAX {
            return Err(A::Error::invalid_length(declared, &self));
        }
        let mut items = Vec::with_capacity(declared);
        while let Some(item) = seq.next_element()? {
            if items.len() == MAX {
                return Err(A::Error::invalid_length(MAX + 1, &self));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// Serializes any byte container as a postcard byte string (length, then the bytes).
pub(crate) fn bytes<P: AsRef<[u8]>, S: Serializer>(value: &P, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(value.as_ref())
}
