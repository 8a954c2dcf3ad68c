//! Frame kinds, their wire numbers and which side may send them; and the `Frame` enum.

use bytes::Bytes;

use crate::frame::*;
use crate::message::ShareBytes;

/// Who may send a frame kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
    Both,
}

impl FrameKind {
    /// The first protocol version that has this kind. A receiver treats a kind newer than the
    /// connection's negotiated version as `unexpected-frame` (PROTOCOL.md §3.4).
    pub fn since_version(self) -> u16 {
        match self {
            FrameKind::AuthRequired
            | FrameKind::AuthStart
            | FrameKind::AuthChallenge
            | FrameKind::AuthResponse
            | FrameKind::AuthOk
            | FrameKind::Blocked
            | FrameKind::Unblocked => 2,
            _ => 1,
        }
    }
}

/// The empty body of a `Heartbeat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat;

macro_rules! frames {
    ($( $code:literal $variant:ident($body:ty) $dir:ident $(shared $borrowed:ty)?; )*) => {
        /// The kind byte of a frame header.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum FrameKind { $( $variant = $code, )* }

        impl FrameKind {
            /// Every kind defined by protocol v1.
            pub const ALL: &'static [FrameKind] = &[$( FrameKind::$variant ),*];

            pub fn from_u8(value: u8) -> Option<FrameKind> {
                match value {
                    $( $code => Some(FrameKind::$variant), )*
                    _ => None,
                }
            }

            pub fn direction(self) -> Direction {
                match self { $( FrameKind::$variant => Direction::$dir, )* }
            }
        }

        /// One decoded frame, payloads sharing the received buffer.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Frame { $( $variant($body), )* }

        impl Frame {
            pub fn kind(&self) -> FrameKind {
                match self { $( Frame::$variant(_) => FrameKind::$variant, )* }
            }

            /// Appends the encoded frame to `out`. Fails, leaving `out` as it was, when the
            /// body would exceed `frame_size_max`.
            pub fn encode(
                &self,
                out: &mut bytes::BytesMut,
                frame_size_max: u32,
            ) -> Result<(), crate::codec::EncodeError> {
                match self {
                    $( Frame::$variant(body) => {
                        crate::codec::encode_body(FrameKind::$variant, body, out, frame_size_max)
                    } )*
                }
            }
        }

        pub(crate) fn decode_body(kind: FrameKind, body: Bytes) -> Result<Frame, crate::codec::DecodeError> {
            match kind {
                $( FrameKind::$variant => frames!(@decode kind, body, $variant, $body $(, $borrowed)?), )*
            }
        }
    };
    (@decode $kind:ident, $bytes:ident, $variant:ident, $body:ty) => {
        crate::codec::decode_postcard::<$body>($kind, &$bytes).map(Frame::$variant)
    };
    (@decode $kind:ident, $bytes:ident, $variant:ident, $body:ty, $borrowed:ty) => {
        crate::codec::decode_postcard::<$borrowed>($kind, &$bytes)
            .map(|borrowed| Frame::$variant(borrowed.share(&$bytes)))
    };
}

frames! {
    0x01 Hello(Hello) ClientToServer;
    0x02 HelloOk(HelloOk) ServerToClient;
    0x03 Heartbeat(Heartbeat) Both;
    0x04 GoingAway(GoingAway) ServerToClient;
    0x05 Close(Close) Both;
    0x06 Error(ErrorFrame) ServerToClient;
    0x07 Done(Done) ServerToClient;
    0x08 AuthRequired(AuthRequired) ServerToClient;
    0x09 AuthStart(AuthStart) ClientToServer;
    0x0a AuthChallenge(AuthChallenge) ServerToClient;
    0x0b AuthResponse(AuthResponse) ClientToServer;
    0x0c AuthOk(AuthOk) ServerToClient;
    0x0d Blocked(Blocked) ServerToClient;
    0x0e Unblocked(Unblocked) ServerToClient;

    0x10 QueueDeclare(QueueDeclare) ClientToServer;
    0x11 QueueDeclareOk(QueueDeclareOk) ServerToClient;
    0x12 QueueDelete(QueueDelete) ClientToServer;
    0x13 QueuePurge(QueuePurge) ClientToServer;
    0x14 Bind(Binding) ClientToServer;
    0x15 Unbind(Binding) ClientToServer;
    0x16 QueueList(QueueList) ClientToServer;
    0x17 QueueListOk(QueueListOk) ServerToClient;
    0x18 QueueStats(QueueStatsRequest) ClientToServer;
    0x19 QueueStatsOk(QueueStatsOk) ServerToClient;

    0x20 Publish(Publish) ClientToServer shared Publish<&[u8]>;
    0x21 Confirm(Confirm) ServerToClient;
    0x22 PublishRejected(PublishRejected) ServerToClient;

    0x30 Subscribe(Subscribe) ClientToServer;
    0x31 Credit(Credit) ClientToServer;
    0x32 Unsubscribe(Unsubscribe) ClientToServer;
    0x33 Deliver(Deliver) ServerToClient shared Deliver<&[u8]>;
    0x34 SubscriptionCancelled(SubscriptionCancelled) ServerToClient;

    0x40 Ack(Ack) ClientToServer;
    0x41 Nack(Nack) ClientToServer;
    0x42 Reject(Reject) ClientToServer;
    0x43 Touch(Touch) ClientToServer;

    0x50 DlqList(DlqList) ClientToServer;
    0x51 DlqListOk(DlqListOk) ServerToClient;
    0x52 DlqInspect(DlqInspect) ClientToServer;
    0x53 DlqInspectOk(DlqInspectOk) ServerToClient shared DlqInspectOk<&[u8]>;
    0x54 DlqRedrive(DlqRedrive) ClientToServer;
}
