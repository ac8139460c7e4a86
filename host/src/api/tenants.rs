//! Tenants and their bearer tokens. The config holds only each token's sha256; a request's
//! token is hashed and compared with every digest of every tenant in constant time, so neither
//! a match's position nor a near miss shows in the time taken.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::ApiError;
use crate::config::WardenConfig;
use crate::host::WardenHost;

/// The prefix of every token Warden makes, so a leaked one is recognisable in a scan.
pub const TOKEN_PREFIX: &str = "wdn_";

/// The tenant a request's bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

/// A new random token: [`TOKEN_PREFIX`] and 32 bytes from the kernel's CSPRNG, in hex.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The digest the config stores for `token`, in hex.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The tenant whose tokens include `token`, if any. Every digest is compared, whatever
/// matched earlier.
pub fn tenant_for_token(config: &WardenConfig, token: &str) -> Option<String> {
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for (name, tenant) in &config.tenants {
        for digest in &tenant.token_sha256.0 {
            let mut stored = [0u8; 32];
            // The config check guarantees 64 hex digits; a digest that is not still compares,
            // against zeros, so it can match nothing real.
            let _ = hex::decode_to_slice(digest, &mut stored);
            if equal_in_constant_time(&presented, &stored) && found.is_none() {
                found = Some(name.clone());
            }
        }
    }
    found
}

fn equal_in_constant_time(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

impl FromRequestParts<std::sync::Arc<ApiState>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &std::sync::Arc<ApiState>,
    ) -> Result<Tenant, ApiError> {
        tenant_for_request(&state.host, &parts.headers).map(Tenant)
    }
}

/// The tenant a request's `Authorization: Bearer TOKEN` header authenticates, or the 401 that
/// says what is wrong with it.
pub fn tenant_for_request(
    host: &WardenHost,
    headers: &axum::http::HeaderMap,
) -> Result<String, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "this endpoint needs `Authorization: Bearer TOKEN`; an operator makes a tenant's \
             token with `warden tenant token NAME`",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    let generation = host.generation();
    let config = generation
        .config()
        .ok_or_else(|| ApiError::unauthorized("this host has no tenants"))?;
    tenant_for_token(config, token).ok_or_else(|| {
        ApiError::unauthorized(
            "the bearer token is not one of any tenant's tokens (`[tenants.NAME] token_sha256` \
             in the config)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> WardenConfig {
        WardenConfig::parse(text, Path::new(".")).unwrap()
    }

    #[test]
    fn a_token_finds_its_tenant_and_no_other() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        let old = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        let config = config(&format!(
            "[tenants.acme]\ntoken_sha256 = \"{}\"\n[tenants.globex]\ntoken_sha256 = [\"{}\", \"{}\"]\n",
            token_digest(&a),
            token_digest(&old),
            token_digest(&b)
        ));
        assert_eq!(tenant_for_token(&config, &a).as_deref(), Some("acme"));
        assert_eq!(tenant_for_token(&config, &b).as_deref(), Some("globex"));
        assert_eq!(tenant_for_token(&config, &old).as_deref(), Some("globex"));
        assert_eq!(tenant_for_token(&config, "wdn_guess"), None);
        assert_eq!(tenant_for_token(&config, ""), None);
        // The digest itself is not a token.
        assert_eq!(tenant_for_token(&config, &token_digest(&a)), None);
    }
}
