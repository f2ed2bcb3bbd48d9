//! SCRAM-SHA-256 (RFC 5802 and RFC 7677), the server side of the exchange.
//!
//! Written here because the maintained SCRAM crates implement the client side only; the
//! primitives (HMAC, SHA-256, PBKDF2) come from the RustCrypto crates.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Iteration count for the salted password; 4096 is the minimum RFC 7677 allows.
const ITERATIONS: u32 = 4096;

/// The reason an exchange failed. Every variant becomes error 18 AuthenticationFailed.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramError {
    Malformed(&'static str),
    UnknownUser,
    BadProof,
}

/// The stored credential of the configured user.
#[derive(Clone)]
pub struct Credential {
    pub user: String,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

impl Credential {
    /// Derives the SCRAM keys from a password.
    // NOTE: the password is used as given; SASLprep normalisation is skipped, so passwords with
    // characters that SASLprep maps or forbids behave differently from mongod.
    pub fn new(user: &str, password: &str) -> Credential {
        let salt: [u8; 16] = rand::random();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, ITERATIONS, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Credential {
            user: user.to_string(),
            salt: salt.to_vec(),
            stored_key: Sha256::digest(&client_key).to_vec(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

/// A conversation after the server-first message.
#[derive(Clone)]
pub struct ScramConversation {
    pub user: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

/// Handles the client-first message and returns the conversation and the server-first message.
pub fn start(
    credential: &Credential,
    client_first: &[u8],
) -> Result<(ScramConversation, String), ScramError> {
    let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    // The GS2 header: "n,," (no channel binding) or "y,,"; an authzid is not supported.
    let bare = text
        .strip_prefix("n,,")
        .or_else(|| text.strip_prefix("y,,"))
        .ok_or(ScramError::Malformed("unsupported GS2 header"))?;
    let mut user = None;
    let mut client_nonce = None;
    for attribute in bare.split(',') {
        if let Some(value) = attribute.strip_prefix("n=") {
            user = Some(value.replace("=2C", ",").replace("=3D", "="));
        } else if let Some(value) = attribute.strip_prefix("r=") {
            client_nonce = Some(value.to_string());
        }
    }

    let user = user.ok_or(ScramError::Malformed("missing user name"))?;
    let client_nonce = client_nonce.ok_or(ScramError::Malformed("missing nonce"))?;
    if user != credential.user {
        return Err(ScramError::UnknownUser);
    }

    let server_nonce: [u8; 24] = rand::random();
    let nonce = format!("{client_nonce}{}", BASE64.encode(server_nonce));
    let server_first = format!(
        "r={nonce},s={},i={ITERATIONS}",
        BASE64.encode(&credential.salt)
    );
    Ok((
        ScramConversation {
            user,
            nonce,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
        },
        server_first,
    ))
}

/// Verifies the client-final message and returns the server-final message (`v=...`).
pub fn finish(
    credential: &Credential,
    conversation: &ScramConversation,
    client_final: &[u8],
) -> Result<String, ScramError> {
    let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("missing proof"))?;
    let nonce = without_proof
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Malformed("missing nonce"))?;
    if nonce != conversation.nonce {
        return Err(ScramError::Malformed("nonce mismatch"));
    }

    let proof = BASE64
        .decode(proof)
        .map_err(|_| ScramError::Malformed("proof is not base64"))?;

    let auth_message = format!(
        "{},{},{}",
        conversation.client_first_bare, conversation.server_first, without_proof
    );
    let client_signature = hmac(&credential.stored_key, auth_message.as_bytes());
    if proof.len() != client_signature.len() {
        return Err(ScramError::BadProof);
    }
    let client_key: Vec<u8> = proof
        .iter()
        .zip(&client_signature)
        .map(|(a, b)| a ^ b)
        .collect();
    if Sha256::digest(&client_key).as_slice() != credential.stored_key.as_slice() {
        return Err(ScramError::BadProof);
    }

    let server_signature = hmac(&credential.server_key, auth_message.as_bytes());
    Ok(format!("v={}", BASE64.encode(server_signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computes a client-final message the way a driver does.
    fn client_final(password: &str, conversation: &ScramConversation, salt_b64: &str) -> String {
        let salt = BASE64.decode(salt_b64).unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, ITERATIONS, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c=biws,r={}", conversation.nonce);
        let auth_message = format!(
            "{},{},{}",
            conversation.client_first_bare, conversation.server_first, without_proof
        );
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    #[test]
    fn scram_accepts_right_password_and_rejects_wrong() {
        let credential = Credential::new("alice", "secret");
        let (conversation, server_first) = start(&credential, b"n,,n=alice,r=abc").unwrap();
        let salt = server_first
            .split(',')
            .find_map(|a| a.strip_prefix("s="))
            .unwrap();
        let good = client_final("secret", &conversation, salt);
        assert!(finish(&credential, &conversation, good.as_bytes())
            .unwrap()
            .starts_with("v="));
        let bad = client_final("wrong", &conversation, salt);
        assert_eq!(
            finish(&credential, &conversation, bad.as_bytes()),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn scram_rejects_unknown_user() {
        let credential = Credential::new("alice", "secret");
        assert_eq!(
            start(&credential, b"n,,n=bob,r=abc").err(),
            Some(ScramError::UnknownUser)
        );
    }
}
