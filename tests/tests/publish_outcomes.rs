//! Publishes tracked by sequence number, their outcomes on one stream.

use std::time::Duration;

use chute_client::{
    Connection, Destination, ErrorCode, PublishError, PublishMessage, PublishOutcome, QueueOptions,
};
use chute_tests::{within, Server, ServerBinary};
use futures::executor::block_on;
use futures::StreamExt;

/// Every tracked publish is reported once: confirmed in ranges that cover exactly the
/// sequence numbers handed out, or refused with its own number and the reason.
#[test]
fn outcomes_cover_every_tracked_publish() {
    let server = Server::start(ServerBinary::Tokio);
    let url = server.url();
    within("tracked publishes", Duration::from_secs(30), move || {
        block_on(async {
            let connection = Connection::connect(&url).await.unwrap();
            connection.declare_queue("tracked", QueueOptions::default()).await.unwrap();
            let mut outcomes = connection.publish_outcomes().unwrap();
            let queue = Destination::Queue("tracked".into());
            let mut seqs = Vec::new();
            for k in 0..500 {
                let message = PublishMessage::new(format!("m{k}").into());
                seqs.push(connection.publish_tracked(&queue, false, message).await.unwrap());
            }
            let missing = Destination::Queue("no-such-queue".into());
            let refused_seq = connection
                .publish_tracked(
                    &missing,
                    false,
                    PublishMessage::new(bytes::Bytes::from_static(b"lost")),
                )
                .await
                .unwrap();
            assert!(seqs.windows(2).all(|w| w[1] > w[0]) && refused_seq > seqs[499]);

            let mut confirmed = Vec::new();
            let mut refused = None;
            while confirmed.len() < seqs.len() || refused.is_none() {
                match outcomes.next().await.expect("the connection is open") {
                    PublishOutcome::Confirmed(range) => confirmed.extend(range.iter()),
                    PublishOutcome::Refused { seq, error } => refused = Some((seq, error)),
                }
            }
            assert_eq!(confirmed, seqs);
            let (seq, error) = refused.unwrap();
            assert_eq!(seq, refused_seq);
            assert!(
                matches!(error, PublishError::Refused { code, .. } if code == ErrorCode::NO_SUCH_QUEUE),
                "{error:?}"
            );
            connection.close().await;
            assert!(outcomes.next().await.is_none(), "the stream ends with the connection");
        })
    });
    assert!(server.stop().success());
}
