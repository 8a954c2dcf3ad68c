//! The exchange end to end, starting from RFC 7677's example.

use proptest::prelude::*;

use super::*;

const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

fn rfc_keys() -> ScramKeys {
    ScramKeys::derive("pencil", &from_base64(SALT_B64).unwrap(), 4096)
}

/// RFC 7677 §3, byte for byte: the client's messages, the server's, the proof and signature.
#[test]
fn rfc7677_example_exchange() {
    let (client, client_first) = ScramClient::start("user", "pencil", CLIENT_NONCE);
    assert_eq!(client_first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let first = ClientFirst::parse(&client_first).unwrap();
    let (server, server_first) = ScramServer::start(first, Some(rfc_keys()), b"", SERVER_NONCE);
    assert_eq!(
        std::str::from_utf8(&server_first).unwrap(),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let (client, client_final) = client.answer(&server_first).unwrap();
    assert_eq!(
        std::str::from_utf8(&client_final).unwrap(),
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    let (user, server_final) = server.finish(&client_final).unwrap();
    assert_eq!(user, "user");
    assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    client.verify(&server_final).unwrap();
}

fn exchange(
    password: &str,
    keys: Option<ScramKeys>,
    server_nonce: &str,
) -> (ScramServer, ScramClientFinal, Vec<u8>) {
    let (client, client_first) = ScramClient::start("user", password, CLIENT_NONCE);
    let first = ClientFirst::parse(&client_first).unwrap();
    let (server, server_first) = ScramServer::start(first, keys, b"decoy-salt-16byt", server_nonce);
    let (client, client_final) = client.answer(&server_first).unwrap();
    (server, client, client_final)
}

#[test]
fn a_wrong_password_fails_the_proof() {
    let (server, _, client_final) = exchange("crayon", Some(rfc_keys()), SERVER_NONCE);
    assert_eq!(server.finish(&client_final).unwrap_err(), ScramError::BadProof);
}

/// An unknown user gets a server-first like anyone's and fails only at the end.
#[test]
fn an_unknown_user_fails_at_the_end_only() {
    let (server, _, client_final) = exchange("pencil", None, SERVER_NONCE);
    assert_eq!(server.finish(&client_final).unwrap_err(), ScramError::UnknownUser);
}

/// A final message recorded from one exchange proves nothing in another: the server's nonce
/// differs, and the proof signs it.
#[test]
fn a_replayed_final_message_is_refused() {
    let (old_server, _, old_final) = exchange("pencil", Some(rfc_keys()), SERVER_NONCE);
    old_server.finish(&old_final).unwrap();
    let (new_server, _, _) = exchange("pencil", Some(rfc_keys()), "another-server-nonce");
    assert_eq!(new_server.finish(&old_final).unwrap_err(), ScramError::NonceMismatch);
}

/// Even with the nonce rewritten to this exchange's, the old proof does not hold.
#[test]
fn a_final_message_with_a_transplanted_nonce_fails_the_proof() {
    let (_, _, old_final) = exchange("pencil", Some(rfc_keys()), SERVER_NONCE);
    let (server, _, _) = exchange("pencil", Some(rfc_keys()), "another-server-nonce");
    let text = String::from_utf8(old_final).unwrap();
    let forged = text.replace(SERVER_NONCE, "another-server-nonce");
    assert_eq!(server.finish(forged.as_bytes()).unwrap_err(), ScramError::BadProof);
}

#[test]
fn the_client_refuses_a_server_that_does_not_know_the_keys() {
    let impostor = ScramKeys::derive("not-pencil", &from_base64(SALT_B64).unwrap(), 4096);
    let (client, client_first) = ScramClient::start("user", "pencil", CLIENT_NONCE);
    let first = ClientFirst::parse(&client_first).unwrap();
    let (_, server_first) = ScramServer::start(first, Some(impostor.clone()), b"", SERVER_NONCE);
    let (client, _) = client.answer(&server_first).unwrap();
    let fake_signature = hmac(&impostor.server_key, b"whatever");
    let server_final = format!("v={}", to_base64(&fake_signature));
    assert_eq!(client.verify(server_final.as_bytes()), Err(ScramError::BadServerSignature));
}

#[test]
fn the_client_refuses_a_nonce_that_does_not_extend_its_own() {
    let (client, _) = ScramClient::start("user", "pencil", CLIENT_NONCE);
    let server_first = format!("r=someone-elses-nonce,s={SALT_B64},i=4096");
    let refused = client.answer(server_first.as_bytes()).unwrap_err();
    assert_eq!(refused, ScramError::NonceMismatch);
}

#[test]
fn the_client_refuses_an_unreasonable_iteration_count() {
    let (client, _) = ScramClient::start("user", "pencil", CLIENT_NONCE);
    let server_first = format!("r={CLIENT_NONCE}xyz,s={SALT_B64},i=4000000000");
    assert_eq!(
        client.answer(server_first.as_bytes()).unwrap_err(),
        ScramError::Iterations(4e9 as u64)
    );
}

#[test]
fn keys_read_back_from_their_text_form() {
    let keys = rfc_keys();
    let text = keys.to_text();
    assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"), "{text}");
    assert_eq!(ScramKeys::parse(&text).unwrap(), keys);
    assert_eq!(ScramKeys::parse("md5$abc"), Err(KeysError::Format));
    let few = text.replace("$4096:", "$100:");
    assert_eq!(ScramKeys::parse(&few), Err(KeysError::Iterations(100)));
    assert!(!format!("{keys:?}").contains(&to_base64(&keys.stored_key)), "keys stay out of logs");
}

#[test]
fn a_password_sent_in_clear_is_checked_against_the_keys() {
    assert!(rfc_keys().verify_password("pencil"));
    assert!(!rfc_keys().verify_password("Pencil"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Whatever the name and password, the right password succeeds both ways and any other
    /// fails the proof.
    #[test]
    fn any_user_and_password_round_trip(
        username in "[a-z=,]{1,12}",
        password in "\\PC{0,20}",
        other in "\\PC{0,20}",
    ) {
        let keys = ScramKeys::derive(&password, b"sixteen-byte-slt", 4096);
        let (client, client_first) = ScramClient::start(&username, &password, "cnonce");
        let first = ClientFirst::parse(&client_first).unwrap();
        prop_assert_eq!(&first.username, &username);
        let (server, server_first) = ScramServer::start(first, Some(keys.clone()), b"", "snonce");
        let (client, client_final) = client.answer(&server_first).unwrap();
        let (user, server_final) = server.finish(&client_final).unwrap();
        prop_assert_eq!(user, username.clone());
        prop_assert!(client.verify(&server_final).is_ok());

        let (client, client_first) = ScramClient::start(&username, &other, "cnonce");
        let first = ClientFirst::parse(&client_first).unwrap();
        let (server, server_first) = ScramServer::start(first, Some(keys), b"", "snonce");
        let (_, client_final) = client.answer(&server_first).unwrap();
        prop_assert_eq!(server.finish(&client_final).is_ok(), other == password);
    }
}
