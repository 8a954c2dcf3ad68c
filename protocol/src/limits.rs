//! Protocol constants and the hard ceilings every decoder enforces.
//!
//! The server announces its own (smaller or equal) limits in `HelloOk`; these ceilings bound
//! what any peer may ever send, so that a decoder can refuse hostile input before allocating.

/// The eight bytes a client sends before its first frame. The high first byte catches
/// 7-bit channels, the CR LF catches line-ending conversion (the PNG trick).
pub const PREFACE: [u8; 8] = [0x89, b'C', b'H', b'U', b'T', b'E', b'\r', b'\n'];

/// Protocol versions this crate speaks. `Hello` carries a range; the server picks the highest
/// version inside both ranges. Version 2 is version 1 plus the authentication exchange
/// (`AuthRequired` … `AuthOk`) and the `Blocked` / `Unblocked` notifications (§5.8, §5.9).
pub const PROTOCOL_VERSION_MIN: u16 = 1;
pub const PROTOCOL_VERSION_MAX: u16 = 2;

/// Frame header: body length (u32, big-endian), kind (u8), flags (u8).
pub const FRAME_HEADER_LEN: usize = 6;

/// The largest body length any v1 peer may send, whatever it announced.
pub const FRAME_SIZE_CEILING: u32 = 16 * 1024 * 1024;
/// The default frame body limit a server announces.
pub const FRAME_SIZE_MAX_DEFAULT: u32 = 4 * 1024 * 1024;

/// Messages in one `Publish` frame.
pub const PUBLISH_BATCH_MAX: usize = 4096;
/// Deliveries in one `Deliver` frame.
pub const DELIVER_BATCH_MAX: usize = 4096;
/// Not a limit: the size at which this implementation closes a batching frame (`Publish`,
/// `Deliver`) and starts the next, when more messages follow. Receivers read the socket in
/// chunks of 64 KiB; a frame inside one chunk is sliced out of it without a copy, while a
/// frame spread over several is copied into a buffer of its own, so frames well under a chunk
/// are copied only when they happen to straddle two.
pub const BATCH_FRAME_BYTES_TARGET: usize = 32 * 1024;
/// Ranges in one `Ack`, `Nack`, `Reject`, `Touch` or `Confirm` frame.
pub const RANGES_MAX: usize = 4096;
/// Failures in one `PublishRejected` frame.
pub const PUBLISH_FAILURES_MAX: usize = 4096;
/// Headers on one message.
pub const HEADERS_MAX: usize = 32;
/// Attempt records carried with one dead letter.
pub const ATTEMPT_HISTORY_MAX: usize = 64;
/// Entries in one `QueueListOk`, `DlqListOk` or consumer list.
pub const LIST_PAGE_MAX: usize = 1024;
/// Ids in one `DlqRedrive` request.
pub const REDRIVE_IDS_MAX: usize = 4096;

/// Longest queue name, topic, or binding pattern, in bytes.
pub const NAME_LEN_MAX: usize = 255;
/// Longest message id (the dedup key), in bytes.
pub const MESSAGE_ID_LEN_MAX: usize = 128;
/// Longest group key, in bytes.
pub const GROUP_KEY_LEN_MAX: usize = 128;
/// Longest reason text a consumer may attach to a nack or reject, in bytes.
pub const REASON_LEN_MAX: usize = 1024;
/// Mechanisms one `AuthRequired` may list.
pub const AUTH_MECHANISMS_MAX: usize = 16;
/// Longest opaque message of an authentication exchange (`AuthStart.data`, ...), in bytes.
pub const AUTH_DATA_LEN_MAX: usize = 4096;

/// Highest message priority; 0 is the lowest.
pub const PRIORITY_MAX: u8 = 9;
