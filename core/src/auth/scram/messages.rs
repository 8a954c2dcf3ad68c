//! The four SCRAM messages' syntax (RFC 5802 §7), parsed strictly: an attribute out of place
//! or a character the grammar does not allow makes the message malformed.

use super::ScramError;

/// A `client-first-message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// `n,,` (or `y,,`): repeated verbatim, base64-encoded, in the client's final message.
    pub gs2_header: String,
    pub username: String,
    pub client_nonce: String,
    /// The message without the GS2 header: the start of the signed AuthMessage.
    pub bare: String,
}

impl ClientFirst {
    pub fn parse(message: &[u8]) -> Result<ClientFirst, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
        let (binding, rest) = text.split_once(',').ok_or(malformed("no GS2 header"))?;
        match binding {
            // "y": the client could bind but thinks we cannot; we indeed cannot.
            "n" | "y" => {}
            _ if binding.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(malformed("GS2 channel-binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(malformed("no GS2 header"))?;
        let mut attributes = bare.split(',');
        let username = attribute(attributes.next(), 'n')?;
        let username = decode_saslname(username)?;
        let client_nonce = attribute(attributes.next(), 'r')?;
        check_nonce(client_nonce)?;
        if attributes.next().is_some_and(|extension| extension.starts_with("m=")) {
            return Err(malformed("mandatory extension"));
        }
        if !authzid.is_empty() && authzid != format!("a={}", encode_saslname(&username)) {
            return Err(ScramError::AuthorizationIdentity);
        }
        Ok(ClientFirst {
            gs2_header: format!("{binding},{authzid},"),
            username,
            client_nonce: client_nonce.to_string(),
            bare: bare.to_string(),
        })
    }
}

/// A `server-first-message`, as the client reads it.
pub(super) struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u64,
}

impl<'a> ServerFirst<'a> {
    pub fn parse(text: &'a str) -> Result<ServerFirst<'a>, ScramError> {
        let mut attributes = text.split(',');
        if text.starts_with("m=") {
            return Err(malformed("mandatory extension"));
        }
        let nonce = attribute(attributes.next(), 'r')?;
        check_nonce(nonce)?;
        let salt = attribute(attributes.next(), 's')?;
        let salt = super::from_base64(salt).ok_or(malformed("salt is not base64"))?;
        let iterations = attribute(attributes.next(), 'i')?;
        let iterations = iterations.parse().map_err(|_| malformed("iteration count"))?;
        Ok(ServerFirst { nonce, salt, iterations })
    }
}

/// A `client-final-message`.
pub(super) struct ClientFinal<'a> {
    pub channel_binding: &'a str,
    pub nonce: &'a str,
    pub proof: [u8; 32],
    /// Everything before `,p=`: the end of the signed AuthMessage.
    pub without_proof: &'a str,
}

impl<'a> ClientFinal<'a> {
    pub fn parse(message: &'a [u8]) -> Result<ClientFinal<'a>, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(malformed("no proof"))?;
        let mut attributes = without_proof.split(',');
        let channel_binding = attribute(attributes.next(), 'c')?;
        let nonce = attribute(attributes.next(), 'r')?;
        let proof = super::from_base64(proof).ok_or(malformed("proof is not base64"))?;
        let proof = proof.try_into().map_err(|_| malformed("proof is not 32 bytes"))?;
        Ok(ClientFinal { channel_binding, nonce, proof, without_proof })
    }
}

/// A `server-final-message`: the server's signature, or its error.
pub(super) fn parse_server_final(message: &[u8]) -> Result<[u8; 32], ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
    if let Some(error) = text.strip_prefix("e=") {
        return Err(ScramError::ServerError(error.to_string()));
    }
    let signature = attribute(text.split(',').next(), 'v')?;
    let signature = super::from_base64(signature).ok_or(malformed("signature is not base64"))?;
    signature.try_into().map_err(|_| malformed("signature is not 32 bytes"))
}

fn malformed(what: &'static str) -> ScramError {
    ScramError::Malformed(what)
}

/// The value of `key=value`, which must be there and have that key.
fn attribute(attribute: Option<&str>, key: char) -> Result<&str, ScramError> {
    let attribute = attribute.ok_or(malformed("attribute missing"))?;
    let mut chars = attribute.chars();
    match (chars.next(), chars.next()) {
        (Some(k), Some('=')) if k == key => Ok(&attribute[2..]),
        _ => Err(malformed("attribute out of order")),
    }
}

/// Nonces are printable ASCII except `,` (RFC 5802 §7).
fn check_nonce(nonce: &str) -> Result<(), ScramError> {
    let printable = |b: u8| (0x21..=0x7e).contains(&b) && b != b',';
    if nonce.is_empty() || !nonce.bytes().all(printable) {
        return Err(malformed("nonce"));
    }
    Ok(())
}

/// `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        decoded.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => decoded.push(','),
            Some("=3D") => decoded.push('='),
            _ => return Err(malformed("username escape")),
        }
        rest = &rest[at + 3..];
    }
    decoded.push_str(rest);
    if decoded.is_empty() {
        return Err(malformed("empty username"));
    }
    Ok(decoded)
}

pub(super) fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_reads_user_and_nonce() {
        let first = ClientFirst::parse(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(first.username, "user");
        assert_eq!(first.client_nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(first.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    }

    #[test]
    fn usernames_are_unescaped() {
        let first = ClientFirst::parse(b"n,,n=a=2Cb=3Dc,r=x").unwrap();
        assert_eq!(first.username, "a,b=c");
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert!(ClientFirst::parse(b"n,,n=a=2Xb,r=x").is_err());
    }

    #[test]
    fn client_first_refuses_what_it_cannot_do() {
        let refused = |message: &[u8]| ClientFirst::parse(message).unwrap_err();
        assert_eq!(refused(b"p=tls-unique,,n=u,r=x"), ScramError::ChannelBinding);
        assert_eq!(refused(b"n,a=other,n=u,r=x"), ScramError::AuthorizationIdentity);
        assert!(ClientFirst::parse(b"n,a=u,n=u,r=x").is_ok());
        assert!(matches!(refused(b"n,,r=x,n=u"), ScramError::Malformed(_)));
        assert!(matches!(refused(b"n,,n=u,r="), ScramError::Malformed(_)));
        assert!(matches!(refused(b"n,,n=u,r=x,m=ext"), ScramError::Malformed(_)));
        assert!(matches!(refused(b"x,,n=u,r=x"), ScramError::Malformed(_)));
        assert!(matches!(refused(b"n,,n=,r=x"), ScramError::Malformed(_)));
        assert!(matches!(refused(&[0xff, 0xfe]), ScramError::Malformed(_)));
    }

    #[test]
    fn server_final_carries_a_signature_or_an_error() {
        assert!(
            matches!(parse_server_final(b"e=invalid-proof"), Err(ScramError::ServerError(e)) if e == "invalid-proof")
        );
        assert!(parse_server_final(b"v=AAAA").is_err());
    }
}
