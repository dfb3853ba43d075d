//! The route handshake's proof: each end shows it holds the cluster secret
//! by an HMAC-SHA256 over both Hello frames, with its role in the message so
//! that one end's proof can never be replayed as the other's, and both
//! nonces inside the Hellos so that no proof can be replayed on another
//! connection. Verification compares in constant time (`subtle`).

use ring::hmac;
use subtle::ConstantTimeEq;

/// Which end of a route a proof is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Acceptor,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Dialer => b"flit-route/1 dialer",
            Role::Acceptor => b"flit-route/1 acceptor",
        }
    }
}

/// The proof `role` sends, over the two Hello frames as sent.
pub fn proof(secret: &[u8], role: Role, dialer_hello: &[u8], acceptor_hello: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(role.label());
    // Lengths first, so the boundary between the two Hellos is unambiguous.
    context.update(&(dialer_hello.len() as u64).to_le_bytes());
    context.update(dialer_hello);
    context.update(&(acceptor_hello.len() as u64).to_le_bytes());
    context.update(acceptor_hello);
    let mut proof = [0u8; 32];
    proof.copy_from_slice(context.sign().as_ref());
    proof
}

/// Whether `mac` is `role`'s proof over the two Hellos.
pub fn verify(secret: &[u8], role: Role, dialer_hello: &[u8], acceptor_hello: &[u8], mac: &[u8; 32]) -> bool {
    bool::from(proof(secret, role, dialer_hello, acceptor_hello).ct_eq(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_proof_verifies_only_for_its_role_secret_and_hellos() {
        let mac = proof(SECRET, Role::Dialer, b"hello d", b"hello a");
        assert!(verify(SECRET, Role::Dialer, b"hello d", b"hello a", &mac));
        assert!(!verify(SECRET, Role::Acceptor, b"hello d", b"hello a", &mac), "not the other role's");
        assert!(!verify(b"another secret of thirty-two byte", Role::Dialer, b"hello d", b"hello a", &mac));
        assert!(!verify(SECRET, Role::Dialer, b"hello x", b"hello a", &mac), "bound to the dialer's hello");
        assert!(!verify(SECRET, Role::Dialer, b"hello d", b"hello b", &mac), "bound to the acceptor's hello");
        assert!(!verify(SECRET, Role::Dialer, b"hello ", b"dhello a", &mac), "the boundary between the two counts");
    }
}
