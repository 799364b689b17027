//! Signed JWT grants (RS256 with `ring`): Okta's `private_key_jwt` client
//! assertions and Google's service-account JWT bearer grant, as
//! [`TokenSource`]s with the token cached until shortly before it expires.

use crate::error::DriverError;
use crate::http::{HttpKit, TokenSource};
use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// An RSA private key that signs RS256 JWTs.
pub struct RsaSigner {
    key: ring::signature::RsaKeyPair,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner(**redacted**)")
    }
}

impl RsaSigner {
    /// From a PEM `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1).
    pub fn from_pem(pem: &Secret, key_name: &str) -> Result<Self, DriverError> {
        let text = pem.expose();
        let body: String = text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        let der = STANDARD
            .decode(body.trim())
            .map_err(|_| DriverError::config(key_name, "not a PEM private key"))?;
        let key = if text.contains("BEGIN RSA PRIVATE KEY") {
            ring::signature::RsaKeyPair::from_der(&der)
        } else {
            ring::signature::RsaKeyPair::from_pkcs8(&der)
        }
        .map_err(|error| {
            DriverError::config(key_name, format!("not a usable RSA private key: {error}"))
        })?;
        Ok(RsaSigner { key })
    }

    /// `header.claims.signature`, RS256.
    pub fn sign(&self, claims: &Value, key_id: Option<&str>) -> Result<String, DriverError> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = key_id {
            header["kid"] = kid.into();
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| DriverError::protocol("RSA signing failed"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// Checks an RS256 JWT against a PKCS#1 DER public key; returns its claims.
/// For fakes and tests.
pub fn verify_rs256(token: &str, public_key_pkcs1_der: &[u8]) -> Result<Value, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "bad signature encoding")?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_pkcs1_der,
    )
    .verify(format!("{header}.{claims}").as_bytes(), &signature)
    .map_err(|_| "signature does not verify")?;
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| "bad claims encoding")?;
    serde_json::from_slice(&claims).map_err(|e| e.to_string())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Which signed grant to make.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Google service account with domain-wide delegation: RFC 7523 JWT bearer
    /// grant, `iss` the service account, `sub` the admin impersonated.
    JwtBearer {
        issuer: String,
        subject: String,
        scopes: Vec<String>,
    },
    /// RFC 7523 JWT bearer grant with a JWT profile (ZITADEL service users):
    /// `iss` and `sub` the user, `aud` the issuer (not the token URL), the
    /// key's id in the header, the scopes in the form.
    JwtProfile {
        user_id: String,
        key_id: String,
        audience: String,
        scopes: Vec<String>,
    },
    /// OAuth 2.0 client credentials authenticated by a signed client assertion
    /// (`private_key_jwt`, Okta service apps).
    ClientAssertion {
        client_id: String,
        key_id: Option<String>,
        scopes: Vec<String>,
    },
}

/// A token obtained with a signed JWT, cached.
pub struct SignedGrant {
    token_url: String,
    grant: Grant,
    signer: RsaSigner,
    http: HttpKit,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl std::fmt::Debug for SignedGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedGrant")
            .field("token_url", &self.token_url)
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

impl SignedGrant {
    /// Token requests go through `http`, with its retries.
    pub fn new(
        token_url: &str,
        grant: Grant,
        signer: RsaSigner,
        http: HttpKit,
    ) -> Result<Self, DriverError> {
        Ok(SignedGrant {
            token_url: token_url.into(),
            grant,
            signer,
            http,
            cached: Mutex::new(None),
        })
    }

    fn form(&self) -> Result<Vec<(&'static str, String)>, DriverError> {
        let now = now_secs();
        Ok(match &self.grant {
            Grant::JwtBearer {
                issuer,
                subject,
                scopes,
            } => {
                let claims = json!({"iss": issuer, "sub": subject, "scope": scopes.join(" "), "aud": self.token_url, "iat": now, "exp": now + 3600});
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                    ),
                    ("assertion", self.signer.sign(&claims, None)?),
                ]
            }
            Grant::JwtProfile {
                user_id,
                key_id,
                audience,
                scopes,
            } => {
                let claims = json!({"iss": user_id, "sub": user_id, "aud": audience, "iat": now, "exp": now + 3600});
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                    ),
                    ("scope", scopes.join(" ")),
                    ("assertion", self.signer.sign(&claims, Some(key_id))?),
                ]
            }
            Grant::ClientAssertion {
                client_id,
                key_id,
                scopes,
            } => {
                let claims = json!({
                    "iss": client_id, "sub": client_id, "aud": self.token_url, "iat": now, "exp": now + 300,
                    "jti": format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
                });
                vec![
                    ("grant_type", "client_credentials".into()),
                    ("scope", scopes.join(" ")),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                    ),
                    (
                        "client_assertion",
                        self.signer.sign(&claims, key_id.as_deref())?,
                    ),
                ]
            }
        })
    }
}

#[async_trait::async_trait]
impl TokenSource for SignedGrant {
    async fn token(&self) -> Result<Secret, DriverError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && *until > Instant::now()
        {
            return Ok(token.clone());
        }
        // A fresh assertion per attempt (an IdP may refuse a jti it saw):
        // signed once here to surface an error, then on every attempt.
        self.form()?;
        let answer = self
            .http
            .send_token_request(&|client| {
                client
                    .post(&self.token_url)
                    .form(&self.form().unwrap_or_default())
            })
            .await?;
        let status = answer.status;
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if !status.is_success() {
            let reason = body
                .get("error_description")
                .or_else(|| body.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
                .to_string();
            return Err(DriverError::Unauthorized(format!(
                "the token endpoint refused the signed grant ({status}): {reason}"
            )));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| DriverError::protocol("token response without access_token"))?;
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        let until =
            Instant::now() + lifetime.saturating_sub(Duration::from_secs(30).min(lifetime / 2));
        let token = Secret::new(token);
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_jwts_verify_with_the_public_key() {
        let pem = Secret::new(include_str!("../tests/data/test-rsa-key.pem"));
        let signer = RsaSigner::from_pem(&pem, "private_key").unwrap();
        let token = signer
            .sign(&json!({"iss": "me", "n": 1}), Some("kid-1"))
            .unwrap();
        let claims =
            verify_rs256(&token, include_bytes!("../tests/data/test-rsa-public.der")).unwrap();
        assert_eq!(claims["iss"], "me");
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 2, 'x');
        assert!(
            verify_rs256(
                &tampered,
                include_bytes!("../tests/data/test-rsa-public.der")
            )
            .is_err()
        );
        assert!(!format!("{signer:?}").contains("PRIVATE"));
        assert!(
            matches!(RsaSigner::from_pem(&Secret::new("nope"), "private_key"), Err(DriverError::InvalidConfig { key, .. }) if key == "private_key")
        );
    }
}
