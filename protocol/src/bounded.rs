//! Serde helpers that keep decoding bounded: a sequence longer than its named limit is refused
//! on its declared count, before its elements are read, and byte fields are written as one
//! slice, not byte by byte.
//!
//! postcard's error type has no room for text, so a refusal is also recorded in a thread-local
//! [`scope`], from which `codec::decode_postcard` turns it into a `DecodeError::SequenceTooLong`
//! naming the field and the limit.

use std::cell::Cell;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
use serde::Serializer;

use crate::limits::{
    ATTEMPT_HISTORY_MAX, AUTH_DATA_LEN_MAX, AUTH_MECHANISMS_MAX, DELIVER_BATCH_MAX, HEADERS_MAX,
    LIST_PAGE_MAX, PUBLISH_BATCH_MAX, PUBLISH_FAILURES_MAX, RANGES_MAX, REDRIVE_IDS_MAX,
};

/// A sequence whose declared count was above its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OverLimit {
    /// The field, as named in the frame tables of the spec.
    pub field: &'static str,
    /// The declared count (or, from a format that hides it, the limit plus one).
    pub count: u64,
    pub max: usize,
    /// The name of the limit constant.
    pub limit: &'static str,
}

/// What the bounded visitors of one decode share with its caller, on this thread.
#[derive(Clone, Copy)]
struct Scope {
    /// The body's length: no sequence in it can hold more elements (each takes a byte at
    /// least), so no visitor reserves for more, whatever count it declares.
    body_len: usize,
    /// The refusal that stopped the decode, if one did.
    refused: Option<OverLimit>,
}

thread_local! {
    static SCOPE: Cell<Scope> = const { Cell::new(Scope { body_len: usize::MAX, refused: None }) };
}

/// Runs `decode` over a body of `body_len` bytes. On failure, returns the refusal that caused
/// it, if a bounded sequence refused its count.
pub(crate) fn scope<T, E>(
    body_len: usize,
    decode: impl FnOnce() -> Result<T, E>,
) -> Result<T, (E, Option<OverLimit>)> {
    let outer = SCOPE.replace(Scope { body_len, refused: None });
    let result = decode();
    let inner = SCOPE.replace(outer);
    result.map_err(|error| (error, inner.refused))
}

/// One bounded sequence field: its name and its limit.
#[derive(Clone, Copy)]
struct Bound {
    field: &'static str,
    max: usize,
    limit: &'static str,
}

impl Bound {
    fn refuse<E: Error>(self, count: u64) -> E {
        let Bound { field, max, limit } = self;
        let body_len = SCOPE.get().body_len;
        SCOPE.set(Scope { body_len, refused: Some(OverLimit { field, count, max, limit }) });
        E::custom(format_args!("{field}: {count} elements, the limit is {max} ({limit})"))
    }
}

/// Declares one deserializer per bounded field, named after the field, for
/// `#[serde(deserialize_with = "crate::bounded::<field>")]`.
macro_rules! bounded_fields {
    ($( $field:ident: $limit:ident; )*) => {
        $(
            #[doc = concat!("Deserializes `", stringify!($field), "`, at most `",
                stringify!($limit), "` elements.")]
            pub(crate) fn $field<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
            where
                D: Deserializer<'de>,
                T: Deserialize<'de>,
            {
                let bound = Bound {
                    field: stringify!($field),
                    max: $limit,
                    limit: stringify!($limit),
                };
                deserializer.deserialize_seq(BoundedVec { bound, element: PhantomData })
            }
        )*
    };
}

bounded_fields! {
    messages: PUBLISH_BATCH_MAX;
    deliveries: DELIVER_BATCH_MAX;
    ranges: RANGES_MAX;
    failures: PUBLISH_FAILURES_MAX;
    headers: HEADERS_MAX;
    history: ATTEMPT_HISTORY_MAX;
    queues: LIST_PAGE_MAX;
    entries: LIST_PAGE_MAX;
    consumers: LIST_PAGE_MAX;
    bindings: LIST_PAGE_MAX;
    dead_ids: REDRIVE_IDS_MAX;
    mechanisms: AUTH_MECHANISMS_MAX;
}

/// Deserializes an authentication message (`data`), at most `AUTH_DATA_LEN_MAX` bytes.
pub(crate) fn auth_data<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    let bound = Bound { field: "data", max: AUTH_DATA_LEN_MAX, limit: "AUTH_DATA_LEN_MAX" };
    deserializer.deserialize_bytes(BoundedBytes { bound })
}

struct BoundedBytes {
    bound: Bound,
}

impl<'de> Visitor<'de> for BoundedBytes {
    type Value = Bytes;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "at most {} bytes", self.bound.max)
    }

    fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
        if bytes.len() > self.bound.max {
            return Err(self.bound.refuse(bytes.len() as u64));
        }
        Ok(Bytes::copy_from_slice(bytes))
    }
}

struct BoundedVec<T> {
    bound: Bound,
    element: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVec<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a sequence of at most {} elements", self.bound.max)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // The codec's postcard flavor always reports the declared count (see `decode_postcard`).
        let declared = seq.size_hint().unwrap_or(0);
        if declared > self.bound.max {
            return Err(self.bound.refuse(declared as u64));
        }
        // Reserving for the declared count saves a real batch its regrowth; a body that merely
        // claims a count makes this reserve no more than it could hold.
        let mut items = Vec::with_capacity(declared.min(SCOPE.get().body_len));
        while let Some(item) = seq.next_element()? {
            // Reached only through a format that hides the count.
            if items.len() == self.bound.max {
                return Err(self.bound.refuse(self.bound.max as u64 + 1));
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
