//! Standard Webhooks v1 signatures: secrets (`whsec_` + base64 of 24–64 random bytes), and
//! the `webhook-signature` value — `v1,` + base64(HMAC-SHA256 over `{id}.{timestamp}.{body}`)
//! keyed with the decoded secret bytes, one space-separated entry per valid secret so a
//! receiver keeps verifying through a rotation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::domain::{Invalid, Millis};

pub const SECRET_PREFIX: &str = "whsec_";
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

const GENERATED_SECRET_BYTES: usize = 32;

/// A new secret from the thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn generate_secret() -> String {
    let mut key = [0u8; GENERATED_SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key of a `whsec_…` secret: the decoded bytes, never the text.
pub fn secret_key(secret: &str, field: &str) -> Result<Vec<u8>, Invalid> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        Invalid::new(
            field,
            "must start with whsec_ followed by base64 of 24 to 64 bytes",
        )
    })?;
    let key = STANDARD
        .decode(b64)
        .map_err(|e| Invalid::new(field, format!("the part after whsec_ is not base64: {e}")))?;
    if !(24..=64).contains(&key.len()) {
        return Err(Invalid::new(
            field,
            format!("must decode to 24 to 64 bytes, not {}", key.len()),
        ));
    }
    Ok(key)
}

/// One `v1,<base64>` entry.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The secrets a subscription signs with at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSecrets {
    pub current: String,
    /// The secret replaced by the last rotation, and until when it still signs.
    pub previous: Option<(String, Millis)>,
}

impl SigningSecrets {
    /// The keys valid at `now`, newest first. A stored secret that does not decode (it was
    /// validated on the way in, so only a hand-edited row) is skipped rather than sent wrong.
    pub fn keys(&self, now: Millis) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(2);
        if let Ok(k) = secret_key(&self.current, "secret") {
            out.push(k);
        }
        if let Some((prev, until)) = &self.previous {
            if *until > now {
                if let Ok(k) = secret_key(prev, "secret") {
                    out.push(k);
                }
            }
        }
        out
    }
}

/// The three Standard Webhooks headers for one attempt made at `now`.
pub fn headers(
    secrets: &SigningSecrets,
    id: &str,
    now: Millis,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let timestamp = now.div_euclid(1000);
    let signature = secrets
        .keys(now)
        .iter()
        .map(|k| sign(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        (HEADER_ID, id.to_string()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, signature),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's test vector.
    #[test]
    fn spec_vector() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "s").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_are_valid_and_distinct() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert_eq!(secret_key(&a, "s").unwrap().len(), GENERATED_SECRET_BYTES);
    }

    #[test]
    fn bad_secrets_are_rejected() {
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "s").is_err());
        assert!(secret_key("whsec_!!!", "s").is_err());
        assert!(secret_key("whsec_AAAA", "s").is_err());
    }

    #[test]
    fn rotation_signs_with_both_until_the_grace_ends() {
        let s = SigningSecrets {
            current: generate_secret(),
            previous: Some((generate_secret(), 10_000)),
        };
        let sig = |now| headers(&s, "m", now, b"{}")[2].1.clone();
        assert_eq!(sig(9_999).split(' ').count(), 2);
        assert_eq!(sig(10_000).split(' ').count(), 1);
    }
}
