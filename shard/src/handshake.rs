//! The server's answer to a Hello, as a pure function: protocol version
//! negotiation, then authentication. The shard applies the outcome (Welcome,
//! or an Error frame and a close); the fuzz target (`shard/fuzz`) drives it
//! with arbitrary bytes decoded as frames.

use std::sync::Arc;

use flit_wire::{ErrorCode, Hello, PROTOCOL_VERSION};

use crate::auth::{AuthError, Identities, Identity};

/// A refused Hello: the code and a message for the client.
pub type Refusal = (ErrorCode, String);

/// The identity the Hello proves (None: authentication is off), or why not.
/// With mutual TLS, `certificate` is the verified client certificate's
/// SHA-256: when it maps to an identity that identity is the client's, and a
/// token in the Hello, if any, must prove the same one.
pub fn answer_hello(
    hello: &Hello,
    identities: &Identities,
    certificate: Option<&[u8; 32]>,
) -> Result<Option<Arc<Identity>>, Refusal> {
    if flit_wire::negotiate_version(hello.version_min, hello.version_max).is_none() {
        let message = format!(
            "client speaks versions {}..={}, server speaks {}..={PROTOCOL_VERSION}",
            hello.version_min,
            hello.version_max,
            flit_wire::PROTOCOL_VERSION_MIN
        );
        return Err((ErrorCode::UnsupportedVersion, message));
    }
    if identities.required {
        if let Some(by_certificate) = certificate.and_then(|fingerprint| identities.by_certificate(fingerprint)) {
            return match hello.auth_token.as_deref().filter(|token| !token.is_empty()) {
                None => Ok(Some(by_certificate)),
                Some(token) => match identities.authenticate(Some(token)) {
                    Ok(Some(by_token)) if by_token.name == by_certificate.name => Ok(Some(by_certificate)),
                    _ => Err((
                        ErrorCode::AuthenticationFailed,
                        "the token and the client certificate name different identities".to_string(),
                    )),
                },
            };
        }
    }
    identities.authenticate(hello.auth_token.as_deref()).map_err(|error| {
        let message = match error {
            AuthError::MissingToken => "authentication required: send a token in Hello".to_string(),
            AuthError::UnknownToken => "authentication failed: unknown token".to_string(),
        };
        (ErrorCode::AuthenticationFailed, message)
    })
}
