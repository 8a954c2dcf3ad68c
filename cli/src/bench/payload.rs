//! The benchmark payload: `[send time ns, u64 LE][sequence number, u64 LE][filler]`, the
//! peer harness's format. The send time is read from one monotonic clock shared by the
//! process's producers and consumers, so end-to-end latency needs no clock sync.

use std::sync::OnceLock;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// Send time and sequence number.
pub const HEADER_BYTES: usize = 16;
const FILLER: u8 = 0xAB;

static CLOCK_BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds on the process's benchmark clock.
pub fn now_ns() -> u64 {
    CLOCK_BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Microseconds from `then_ns` to `now_ns`, both read from [`now_ns`] (0 if `now_ns` is the
/// earlier, which one monotonic clock cannot give).
pub fn micros_between(then_ns: u64, now_ns: u64) -> u64 {
    now_ns.saturating_sub(then_ns) / 1000
}

/// A payload of `size_bytes` carrying `seq` and the time it was made; returns that time too.
pub fn stamp(seq: u64, size_bytes: usize) -> (Bytes, u64) {
    assert!(size_bytes >= HEADER_BYTES, "payload of {size_bytes} bytes has no room for its header");
    let sent_ns = now_ns();
    let mut payload = BytesMut::with_capacity(size_bytes);
    payload.put_u64_le(sent_ns);
    payload.put_u64_le(seq);
    payload.resize(size_bytes, FILLER);
    (payload.freeze(), sent_ns)
}

/// `(send time ns, sequence number)` of a payload made by [`stamp`].
pub fn parse(payload: &[u8]) -> Result<(u64, u64), String> {
    let header: &[u8; HEADER_BYTES] =
        payload
            .get(..HEADER_BYTES)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| format!("a {}-byte payload is not a bench message", payload.len()))?;
    let (sent, seq) = header.split_at(8);
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    Ok((word(sent), word(seq)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_payload_reads_back() {
        let (payload, sent_ns) = stamp(42, 256);
        assert_eq!(payload.len(), 256);
        assert_eq!(parse(&payload), Ok((sent_ns, 42)));
        assert!(payload[HEADER_BYTES..].iter().all(|&b| b == FILLER));
    }

    #[test]
    fn a_short_payload_is_not_a_bench_message() {
        assert!(parse(b"hello").is_err());
    }
}
