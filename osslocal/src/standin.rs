//! TEMPORARY stand-in for the osslocal-auth engineer's `auth`, `sts` and `policy` modules,
//! with the same signatures as the interface document, so the server can be built and tested
//! before their branch lands. Every signed request is accepted as the user it names; STS
//! answers 501. Removed when the real modules are merged.
#![allow(dead_code)]

pub mod policy {
    #[derive(Clone, Debug)]
    pub struct Policy;

    impl Policy {
        pub fn parse(json: &str) -> Result<Policy, String> {
            serde_json::from_str::<serde_json::Value>(json).map(|_| Policy).map_err(|e| e.to_string())
        }
    }

    pub fn authorize(_policies: &[Policy], _action: &str, _resource: &str) -> bool {
        true
    }
}

pub mod sts {
    use chrono::{DateTime, Utc};
    use std::collections::HashMap;

    pub struct Role {
        pub arn: String,
        pub policy: Option<super::policy::Policy>,
        pub max_session_duration: u64,
    }
    pub struct OidcProvider {
        pub arn: String,
        pub issuer: Option<String>,
    }
    pub struct StsState {
        pub keys: HashMap<String, String>,
        pub roles: HashMap<String, Role>,
        pub oidc_providers: Vec<OidcProvider>,
        pub min_duration: u64,
        pub token_key: [u8; 32],
        pub account_id: String,
    }
    pub struct SessionClaims {
        pub policies: Vec<super::policy::Policy>,
    }
    pub struct StsAnswer {
        pub status: u16,
        pub content_type: &'static str,
        pub body: String,
    }
    pub fn handle(_method: &str, _params: &[(String, String)], _state: &StsState, _now: DateTime<Utc>) -> StsAnswer {
        StsAnswer {
            status: 501,
            content_type: "application/json",
            body: r#"{"Code":"NotImplemented","Message":"STS is not available in this build"}"#.into(),
        }
    }
}

pub mod auth {
    use std::collections::HashMap;
    use std::sync::Arc;

    use chrono::{DateTime, Utc};

    use crate::error::OssError;

    pub struct AuthConfig {
        pub keys: HashMap<String, String>,
        pub anonymous: bool,
        pub region: String,
        pub sts: Arc<super::sts::StsState>,
    }
    pub struct RequestParts<'a> {
        pub method: &'a str,
        pub bucket: Option<&'a str>,
        pub key: Option<&'a str>,
        pub raw_query: &'a str,
        pub headers: &'a http::HeaderMap,
    }
    pub enum Principal {
        Anonymous,
        User { access_key_id: String },
        Session(Arc<super::sts::SessionClaims>),
    }
    pub fn authenticate(
        req: &RequestParts<'_>,
        cfg: &AuthConfig,
        _now: DateTime<Utc>,
        _tokens_expired_before: Option<DateTime<Utc>>,
    ) -> Result<Principal, OssError> {
        if let Some(a) = req.headers.get(http::header::AUTHORIZATION) {
            let ak = a.to_str().unwrap_or("").trim_start_matches("OSS ").split(':').next().unwrap_or("").to_string();
            return Ok(Principal::User { access_key_id: ak });
        }
        if cfg.anonymous {
            Ok(Principal::Anonymous)
        } else {
            Err(OssError::access_denied("You have no right to access this object because of bucket acl."))
        }
    }
}
