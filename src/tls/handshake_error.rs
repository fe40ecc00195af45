//! Failed handshakes in the words etcd (Go's crypto/tls) logs them with.

use std::io;

use rustls::{AlertDescription, CertificateError};

/// What etcd logs for a failed TLS handshake ("rejected connection from
/// ..."), from the error tokio-rustls returned: an alert the other side sent
/// is a "remote error", a refusal of our own allowed-name check is etcd's
/// "client certificate authentication failed". Anything else keeps rustls's
/// wording.
pub fn handshake_error_text(error: &io::Error) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return error.to_string();
    };
    match tls {
        rustls::Error::AlertReceived(alert) => format!("remote error: tls: {}", go_alert(*alert)),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            "client certificate authentication failed".to_string()
        }
        other => other.to_string(),
    }
}

/// Go's crypto/tls names of the alerts (alert.go).
fn go_alert(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let text = match alert {
        A::CloseNotify => "close notify",
        A::UnexpectedMessage => "unexpected message",
        A::BadRecordMac => "bad record MAC",
        A::RecordOverflow => "record overflow",
        A::HandshakeFailure => "handshake failure",
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "revoked certificate",
        A::CertificateExpired => "expired certificate",
        A::CertificateUnknown => "unknown certificate",
        A::IllegalParameter => "illegal parameter",
        A::UnknownCA => "unknown certificate authority",
        A::AccessDenied => "access denied",
        A::DecodeError => "error decoding message",
        A::DecryptError => "error decrypting message",
        A::ProtocolVersion => "protocol version not supported",
        A::InsufficientSecurity => "insufficient security level",
        A::InternalError => "internal error",
        A::UserCanceled => "user canceled",
        A::MissingExtension => "missing extension",
        A::UnsupportedExtension => "unsupported extension",
        A::UnrecognisedName => "unrecognized name",
        A::NoApplicationProtocol => "no application protocol",
        A::CertificateRequired => "certificate required",
        other => return format!("alert({})", u8::from(other)),
    };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsSettings;
    use crate::tls::test_pki::*;

    /// etcd's e2e TestEtcdPeerNameAuth waits for these words on the member
    /// whose allowed hostname the others' certificates do not have.
    #[tokio::test]
    async fn a_refused_peer_certificate_is_logged_in_etcds_words() {
        let p = pki();
        let settings = TlsSettings {
            allowed_hostname: Some("example.com".into()),
            ..mtls(&p)
        };
        let server = build(&settings, p.dir.path());
        let peer = client_config(&p.ca, Some((&p.client.0, &p.client.1)));
        assert_eq!(
            server_error(server, peer).await.as_deref(),
            Some("client certificate authentication failed")
        );
    }

    /// etcd checks the allowed CN / hostname on the members it dials too;
    /// TestEtcdPeerCNAuth waits for the refused member to log the alert.
    #[test]
    fn other_handshake_errors_keep_their_words() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        );
        assert_eq!(
            handshake_error_text(&e),
            "remote error: tls: unknown certificate authority"
        );
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(
            handshake_error_text(&e),
            rustls::Error::NoCertificatesPresented.to_string()
        );
        let e = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(handshake_error_text(&e), e.to_string());
    }
}
