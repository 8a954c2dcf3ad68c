//! The user a verified client certificate names (`tls.client_identity`, RabbitMQ's
//! `ssl_cert_login_from`): its subject's common name, or its first e-mail, DNS or URI subject
//! alternative name. rustls has verified the certificate before this reads it.

use x509_parser::extensions::GeneralName;

use crate::config::ClientIdentity;

/// The user `certificate` (DER) names by `identity`, or `None` when it has no such field (or
/// does not parse, which a verified certificate always does).
pub fn certificate_user(certificate: &[u8], identity: ClientIdentity) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    if identity == ClientIdentity::CommonName {
        let common_name = parsed.subject().iter_common_name().next()?;
        return common_name.as_str().ok().map(str::to_string);
    }
    let names = parsed.subject_alternative_name().ok()??;
    names.value.general_names.iter().find_map(|name| match (identity, name) {
        (ClientIdentity::SanEmail, GeneralName::RFC822Name(email)) => Some(email.to_string()),
        (ClientIdentity::SanDns, GeneralName::DNSName(dns)) => Some(dns.to_string()),
        (ClientIdentity::SanUri, GeneralName::URI(uri)) => Some(uri.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    /// A self-signed certificate with `common_name` (if any) and `names` as SANs, as DER.
    fn certificate(common_name: Option<&str>, names: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(name) = common_name {
            params.distinguished_name.push(DnType::CommonName, name);
        }
        params.subject_alt_names = names;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn sans() -> Vec<SanType> {
        vec![
            SanType::DnsName("worker-1.example.com".try_into().unwrap()),
            SanType::Rfc822Name("alice@example.com".try_into().unwrap()),
            SanType::URI("spiffe://example.com/billing".try_into().unwrap()),
            SanType::Rfc822Name("second@example.com".try_into().unwrap()),
            SanType::DnsName("worker-2.example.com".try_into().unwrap()),
        ]
    }

    #[test]
    fn each_choice_reads_its_field() {
        let der = certificate(Some("billing-service"), sans());
        let user = |identity| certificate_user(&der, identity);
        assert_eq!(user(ClientIdentity::CommonName).as_deref(), Some("billing-service"));
        assert_eq!(user(ClientIdentity::SanEmail).as_deref(), Some("alice@example.com"));
        assert_eq!(user(ClientIdentity::SanDns).as_deref(), Some("worker-1.example.com"));
        assert_eq!(user(ClientIdentity::SanUri).as_deref(), Some("spiffe://example.com/billing"));
    }

    /// A certificate without the field names nobody, rather than falling back to another
    /// field (which could name another user).
    #[test]
    fn a_missing_field_names_nobody() {
        let no_cn = certificate(None, sans());
        assert_eq!(certificate_user(&no_cn, ClientIdentity::CommonName), None);
        let no_sans = certificate(Some("billing-service"), Vec::new());
        for identity in [ClientIdentity::SanEmail, ClientIdentity::SanDns, ClientIdentity::SanUri] {
            assert_eq!(certificate_user(&no_sans, identity), None, "{identity:?}");
        }
        let only_dns =
            certificate(None, vec![SanType::DnsName("a.example.com".try_into().unwrap())]);
        assert_eq!(certificate_user(&only_dns, ClientIdentity::SanEmail), None);
    }

    #[test]
    fn garbage_names_nobody() {
        assert_eq!(certificate_user(b"not a certificate", ClientIdentity::CommonName), None);
    }
}
