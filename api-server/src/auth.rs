//! Identity: argon2id password hashes, ES256 access tokens signed with the key the operator
//! puts in the namespace, their JWKS, and the `Actor` every handler receives.

use std::path::Path;
use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

pub const ISSUER: &str = "dfr-api";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    NationalAdmin,
    Supervisor,
    Enumerator,
    Farmer,
    ApiClient,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::NationalAdmin => "national_admin",
            Role::Supervisor => "supervisor",
            Role::Enumerator => "enumerator",
            Role::Farmer => "farmer",
            Role::ApiClient => "api_client",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [
            Role::NationalAdmin,
            Role::Supervisor,
            Role::Enumerator,
            Role::Farmer,
            Role::ApiClient,
        ]
        .into_iter()
        .find(|role| role.as_str() == text)
    }

    /// Who may read national IDs, phones and e-mails unmasked.
    pub fn sees_pii(self) -> bool {
        matches!(self, Role::NationalAdmin | Role::Supervisor | Role::Farmer)
    }
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    #[serde(default)]
    pub areas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<Uuid>,
    #[serde(default)]
    pub scope: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Uuid,
    pub role: Role,
    pub areas: Vec<String>,
    pub person: Option<Uuid>,
    pub scopes: Vec<String>,
}

impl Actor {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.role != Role::ApiClient || self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the JWT signing key {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the JWT signing key is not a PKCS#8 PEM ECDSA P-256 key: {0}")]
    Invalid(String),
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: JwkSet,
}

impl TokenKeys {
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|e| KeyError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_pem(&pem)
    }

    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let encoding =
            EncodingKey::from_ec_pem(pem).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let kid = jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(Self {
            encoding,
            decoding,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
        })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| ApiError::Unauthenticated(format!("the access token is not valid: {e}")))
    }
}

/// The token part of the service's state: the key that signs and verifies access tokens, and
/// how long a token lives.
#[derive(Clone)]
pub struct AccessTokens {
    pub keys: Arc<TokenKeys>,
    pub lifetime_seconds: i64,
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

impl<S> FromRequestParts<S> for Actor
where
    S: Send + Sync,
    AccessTokens: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "send an Authorization: Bearer <access token> header".into(),
                )
            })?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::Unauthenticated("the Authorization header must use the Bearer scheme".into())
        })?;
        let claims = AccessTokens::from_ref(state).keys.verify(token)?;
        Ok(Actor {
            user_id: claims.sub,
            role: claims.role,
            areas: claims.areas,
            person: claims.person,
            scopes: claims.scope.split_whitespace().map(String::from).collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_hashes_verify_and_differ_per_salt() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn roles_round_trip() {
        for role in [
            "national_admin",
            "supervisor",
            "enumerator",
            "farmer",
            "api_client",
        ] {
            assert_eq!(Role::parse(role).unwrap().as_str(), role);
        }
        assert!(Role::parse("root").is_none());
    }
}
