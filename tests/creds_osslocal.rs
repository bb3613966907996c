//! Credentials against the real `osslocal` STS: AssumeRole refreshed in the background with
//! 10 s tokens for 40 s, an STS outage across expiry (prompt failure, then recovery), role
//! chaining, and AssumeRoleWithOIDC with a rotating token file. Every issued credential is
//! checked by calling `GetCallerIdentity` with it, which osslocal only answers for a valid,
//! unexpired session token.
//!
//! Needs the `osslocal` binary next to this test's target dir (`cargo build -p osslocal`);
//! fails loudly when it is missing.

mod creds_support;
mod osslocal_support;

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use osslocal_support::Osslocal;
use ossmount::auth::sts::StsClient;
use ossmount::auth::{AuthError, CredentialProvider, Credentials, Env, build_credentials_with_env};
use ossmount::config::CredentialsConfig;

const AK: &str = "LTAIosslocaltest";
const SK: &str = "osslocal-test-secret";
const ROLE: &str = "acs:ram::1234567890123456:role/r";
const ROLE2: &str = "acs:ram::1234567890123456:role/r2";
const OIDC_PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/test-idp";
const OIDC_ISSUER: &str = "https://issuer.test";

/// osslocal with the RAM user, two roles and the OIDC provider these tests use.
impl Osslocal {
    fn start() -> Osslocal {
        let args: Vec<std::ffi::OsString> = [
            "--bucket".to_string(),
            "bkt".to_string(),
            "--min-duration".to_string(),
            "5".to_string(),
            "--access-key".to_string(),
            format!("{AK}:{SK}"),
            "--role".to_string(),
            ROLE.to_string(),
            "--role".to_string(),
            ROLE2.to_string(),
            "--oidc-provider".to_string(),
            format!("{OIDC_PROVIDER}={OIDC_ISSUER}"),
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        Osslocal::spawn(tempfile::tempdir().unwrap(), &args)
    }

    async fn admin(&self, path: &str, body: &str) -> serde_json::Value {
        let c = reqwest::Client::new();
        let r = if body.is_empty() && path == "stats" {
            c.get(format!("{}/_osslocal/{path}", self.url())).send().await.unwrap()
        } else {
            c.post(format!("{}/_osslocal/{path}", self.url()))
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        };
        assert!(r.status().is_success(), "admin {path}: {}", r.status());
        let text = r.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    async fn sts_count(&self, action: &str) -> u64 {
        self.admin("stats", "").await["sts"][action].as_u64().unwrap_or(0)
    }

    /// An environment with the RAM user keys, short durations allowed, no ECS, empty HOME.
    fn env(&self, home: &std::path::Path) -> Env {
        Env::from_pairs([
            ("HOME", home.display().to_string()),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK.to_string()),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK.to_string()),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_string()),
            ("OSSMOUNT_ALLOW_SHORT_DURATION", "1".to_string()),
        ])
    }

    fn role_cfg(&self, role: &str, secs: u64) -> CredentialsConfig {
        CredentialsConfig {
            role_arn: Some(role.into()),
            duration_secs: Some(secs),
            sts_endpoint: Some(self.url()),
            role_session_name: Some("creds-test".into()),
            ..Default::default()
        }
    }

    /// Proves `creds` are accepted by osslocal right now; returns the caller ARN.
    async fn check(&self, creds: &Credentials) -> String {
        let id = StsClient::new(&self.url()).unwrap().get_caller_identity(creds).await;
        match id {
            Ok(id) => id.arn.unwrap_or_default(),
            Err(e) => panic!("osslocal rejected credentials {creds:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_refreshes_10s_tokens_for_40s() {
    let server = Osslocal::start();
    let home = tempfile::tempdir().unwrap();
    let built = build_credentials_with_env(&server.role_cfg(ROLE, 10), &server.env(home.path())).unwrap();
    assert!(
        built
            .describe()
            .starts_with(&format!("AssumeRole {ROLE} (base: default chain")),
        "{}",
        built.describe()
    );
    let provider = built.provider();
    let first = provider.credentials().await.unwrap();
    let _refresher = built.spawn_refresher(&tokio::runtime::Handle::current());
    let start = Instant::now();
    let mut keys = std::collections::HashSet::new();
    let mut last_check = Instant::now() - Duration::from_secs(10);
    while start.elapsed() < Duration::from_secs(40) {
        let t = Instant::now();
        let c = provider.credentials().await.unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "caller waited {:?}",
            t.elapsed()
        );
        assert!(c.expiration.unwrap() > Utc::now(), "handed out expired credentials");
        keys.insert(c.access_key_id.clone());
        if last_check.elapsed() >= Duration::from_secs(1) {
            let arn = server.check(&c).await;
            assert!(
                arn.contains("role/r/creds-test") || arn.contains(":assumed-role/r/"),
                "{arn}"
            );
            last_check = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = server.sts_count("AssumeRole").await;
    // One initial + a refresh about every 6.7 s (1/3 of the life left) over 40 s.
    assert!((6..=9).contains(&calls), "AssumeRole calls: {calls}");
    assert!(
        keys.len() as u64 >= calls - 1,
        "{} distinct keys for {calls} calls",
        keys.len()
    );
    assert!(keys.contains(&first.access_key_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_outage_across_expiry_fails_promptly_then_recovers() {
    let server = Osslocal::start();
    let home = tempfile::tempdir().unwrap();
    let built = build_credentials_with_env(&server.role_cfg(ROLE, 5), &server.env(home.path())).unwrap();
    let provider = built.provider();
    let c = provider.credentials().await.unwrap();
    server.check(&c).await;
    let _refresher = built.spawn_refresher(&tokio::runtime::Handle::current());
    server.admin("faults", r#"{"sts_outage":true}"#).await;
    // Valid credentials keep being served while they last (GetCallerIdentity is STS too, so
    // the outage hides it: check identity only).
    assert_eq!(provider.credentials().await.unwrap().access_key_id, c.access_key_id);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // ... then a prompt, explicit failure naming the cause.
    let t = Instant::now();
    match provider.credentials().await {
        Err(AuthError::Expired { last_error }) => assert!(last_error.contains("ServiceUnavailable"), "{last_error}"),
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    server.admin("faults/clear", "").await;
    let start = Instant::now();
    let c = loop {
        match provider.credentials().await {
            Ok(c) => break c,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    };
    server.check(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_chaining_over_a_profile_role() {
    let server = Osslocal::start();
    let home = tempfile::tempdir().unwrap();
    let ini = home.path().join("credentials");
    std::fs::write(
        &ini,
        format!(
            "[chain]\ntype = ram_role_arn\naccess_key_id = {AK}\naccess_key_secret = {SK}\nrole_arn = {ROLE}\nrole_session_name = first-hop\n"
        ),
    )
    .unwrap();
    let mut cfg = server.role_cfg(ROLE2, 900);
    cfg.credentials_file = Some(ini);
    cfg.profile = Some("chain".into());
    let built = build_credentials_with_env(&cfg, &server.env(home.path())).unwrap();
    assert!(
        built.describe().starts_with(&format!(
            "AssumeRole {ROLE2} (base: AssumeRole {ROLE} (base: profile chain"
        )),
        "{}",
        built.describe()
    );
    let c = built.provider().credentials().await.unwrap();
    assert!(c.access_key_id.starts_with("STS."), "{}", c.access_key_id);
    let arn = server.check(&c).await;
    assert!(arn.contains("r2"), "{arn}");
    assert_eq!(server.sts_count("AssumeRole").await, 2);
}

fn jwt(sub: &str, exp_in_secs: i64) -> String {
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = Utc::now().timestamp();
    format!(
        "{}.{}.{}",
        b64(serde_json::json!({"alg":"RS256","kid":"test"})),
        b64(
            serde_json::json!({"sub": sub, "iss": OIDC_ISSUER, "aud": "sts.aliyuncs.com", "iat": now, "exp": now + exp_in_secs})
        ),
        "c2lnbmF0dXJl"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_from_environment_with_rotating_token() {
    let server = Osslocal::start();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, jwt("system:serviceaccount:default:one", 3600)).unwrap();
    let mut env = Env::from_pairs([
        ("HOME", home.path().display().to_string()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_string()),
        ("ALIBABA_CLOUD_ROLE_ARN", ROLE.to_string()),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER.to_string()),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file.display().to_string()),
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "rrsa-test".to_string()),
    ]);
    let cfg = CredentialsConfig {
        sts_endpoint: Some(server.url()),
        ..Default::default()
    };
    let built = build_credentials_with_env(&cfg, &env).unwrap();
    let p = built.provider();
    let c1 = p.credentials().await.unwrap();
    server.check(&c1).await;
    assert!(p.describe().contains("AssumeRoleWithOIDC"), "{}", p.describe());
    // Rotated token file: the next refresh reads the new token.
    std::fs::write(&token_file, jwt("system:serviceaccount:default:two", 3600)).unwrap();
    let c2 = p.refresh_after_rejection(&c1).await.unwrap();
    assert_ne!(c1.access_key_id, c2.access_key_id);
    server.check(&c2).await;
    assert_eq!(server.sts_count("AssumeRoleWithOIDC").await, 2);
    // An expired OIDC token is reported with STS's code.
    std::fs::write(&token_file, jwt("x", -60)).unwrap();
    let e = p.refresh_after_rejection(&c2).await.unwrap_err().to_string();
    assert!(e.contains("AuthenticationFail.OIDCToken.Expired"), "{e}");
    // A missing token file is refused at build time.
    std::fs::remove_file(&token_file).unwrap();
    env.set("ALIBABA_CLOUD_ROLE_SESSION_NAME", "rrsa-test-2");
    let e = build_credentials_with_env(&cfg, &env).unwrap_err().to_string();
    assert!(e.contains("OIDC token file"), "{e}");
}
