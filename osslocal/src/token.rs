//! Security tokens issued by the local STS.
//!
//! A token is self-contained and tamper-proof, so the server keeps no session table and tokens
//! survive a restart (the MAC key is persisted, see `StsState::load_or_create_token_key`):
//!
//! ```text
//! token = base64url(claims JSON) "." base64url(HMAC-SHA256(token_key, base64url(claims JSON)))
//! ```
//!
//! The claims carry the temporary AccessKeyId *and secret* (so the OSS side can verify request
//! signatures without state), role, session name, issue and expiry instants (milliseconds since
//! the epoch) and the session's policies as their source JSON. [`verify`] checks the MAC first
//! (constant time), then decodes, then checks expiry; an expired but authentic token yields its
//! claims in [`TokenError::Expired`] so callers can tell "expired" from "forged".

// `TokenError::Expired` carries the claims by value: its shape is fixed by the osslocal interface doc.
#![allow(clippy::result_large_err)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::policy::Policy;
use crate::sts::SessionClaims;

/// Format version written into every token.
const TOKEN_FORMAT_VERSION: u8 = 1;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Authentic, but past its expiration.
    #[error("security token of {} expired at {}", .0.access_key_id, .0.expiration)]
    Expired(SessionClaims),
    /// Malformed, forged, or signed with another server's key. The text never contains the token.
    #[error("invalid security token: {0}")]
    Invalid(String),
}

#[derive(Serialize, Deserialize)]
struct WireClaims {
    v: u8,
    ak: String,
    sk: String,
    role: String,
    session: String,
    iat_ms: i64,
    exp_ms: i64,
    policies: Vec<String>,
    src: String,
}

fn mac(key: &[u8; 32], payload: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(payload);
    mac
}

/// Encode and MAC `claims` into a token.
pub fn issue(claims: &SessionClaims, key: &[u8; 32]) -> String {
    let wire = WireClaims {
        v: TOKEN_FORMAT_VERSION,
        ak: claims.access_key_id.clone(),
        sk: claims.access_key_secret.clone(),
        role: claims.role_arn.clone(),
        session: claims.session_name.clone(),
        iat_ms: claims.issued_at.timestamp_millis(),
        exp_ms: claims.expiration.timestamp_millis(),
        policies: claims.policies.iter().map(|p| p.source().to_string()).collect(),
        src: claims.source.clone(),
    };
    // Serialising plain strings and integers cannot fail.
    let json = serde_json::to_vec(&wire).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = mac(key, payload.as_bytes()).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Check the MAC, decode, then check expiry against `now`.
pub fn verify(token: &str, key: &[u8; 32], now: DateTime<Utc>) -> Result<SessionClaims, TokenError> {
    let invalid = |why: &str| TokenError::Invalid(why.to_string());
    let (payload, tag) = token.split_once('.').ok_or_else(|| invalid("not an osslocal token"))?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| invalid("MAC is not base64url"))?;
    mac(key, payload.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| invalid("MAC does not match"))?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| invalid("claims are not base64url"))?;
    let wire: WireClaims = serde_json::from_slice(&json).map_err(|_| invalid("claims are not valid JSON"))?;
    if wire.v != TOKEN_FORMAT_VERSION {
        return Err(invalid("unknown token format version"));
    }
    let instant = |ms: i64| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .ok_or_else(|| invalid("bad timestamp"))
    };
    let policies = wire
        .policies
        .iter()
        .map(|p| Policy::parse(p).map_err(|e| TokenError::Invalid(format!("embedded policy: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let claims = SessionClaims {
        access_key_id: wire.ak,
        access_key_secret: wire.sk,
        role_arn: wire.role,
        session_name: wire.session,
        issued_at: instant(wire.iat_ms)?,
        expiration: instant(wire.exp_ms)?,
        policies,
        source: wire.src,
    };
    if now >= claims.expiration {
        return Err(TokenError::Expired(claims));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn claims(now: DateTime<Utc>) -> SessionClaims {
        SessionClaims {
            access_key_id: "STS.abc".into(),
            access_key_secret: "secret".into(),
            role_arn: "acs:ram::1234567890123456:role/r".into(),
            session_name: "s".into(),
            issued_at: now,
            expiration: now + Duration::seconds(900),
            policies: vec![
                Policy::parse(r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
                    .unwrap(),
            ],
            source: "LTAIuser".into(),
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let key = [7u8; 32];
        let now = Utc.timestamp_millis_opt(1_736_929_800_123).unwrap();
        let c = claims(now);
        let token = issue(&c, &key);
        let back = verify(&token, &key, now + Duration::seconds(899)).unwrap();
        assert_eq!(back.access_key_id, "STS.abc");
        assert_eq!(back.access_key_secret, "secret");
        assert_eq!(back.issued_at, now, "millisecond precision is kept");
        assert_eq!(back.expiration, c.expiration);
        assert_eq!(back.policies, c.policies);
        assert_eq!(back.source, "LTAIuser");
        match verify(&token, &key, now + Duration::seconds(900)) {
            Err(TokenError::Expired(e)) => assert_eq!(e.access_key_id, "STS.abc"),
            other => panic!("expected Expired, got {other:?}"),
        }
    }

    #[test]
    fn tampering_and_wrong_key_are_invalid() {
        let key = [7u8; 32];
        let now = Utc::now();
        let token = issue(&claims(now), &key);
        assert!(matches!(verify(&token, &[8u8; 32], now), Err(TokenError::Invalid(_))));
        // Flip one character of the payload and of the MAC.
        for pos in [3, token.len() - 3] {
            let mut bytes = token.clone().into_bytes();
            bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(bytes).unwrap();
            assert!(
                matches!(verify(&forged, &key, now), Err(TokenError::Invalid(_))),
                "pos {pos}"
            );
        }
        // A re-encoded payload with a longer expiry, keeping the old MAC.
        let (payload, tag) = token.split_once('.').unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        json["exp_ms"] = serde_json::json!(i64::MAX / 2);
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap()));
        assert!(matches!(verify(&forged, &key, now), Err(TokenError::Invalid(_))));
        for junk in [
            "",
            ".",
            "abc",
            "CAIS8gF1q6Ft5B2yfSjIr5bSEsvbnI5w0q+4cHf/t2VB7rhlqY==",
            "a.b.c",
        ] {
            assert!(
                matches!(verify(junk, &key, now), Err(TokenError::Invalid(_))),
                "{junk:?}"
            );
        }
    }
}
