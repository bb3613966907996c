//! Secrets never reach the logs: a refresher through successes and failures, STS calls (success,
//! retried 5xx, signature error echoing the string to sign) and a failing credential process
//! all run with a capturing subscriber at DEBUG level; the captured text must show the events
//! but none of the keys, secrets, tokens or signatures. One test per binary, because tracing's
//! per-callsite interest cache makes thread-local subscribers unreliable with parallel tests.

mod creds_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use creds_support::{FakeServer, Resp, sts_success};
use ossmount::auth::cache::{CredentialSource, spawn_refresher};
use ossmount::auth::sts::{AssumeRoleSource, RoleSessionParams, StsClient};
use ossmount::auth::{AuthError, CachingProvider, CredentialProvider, Credentials, StaticProvider};

struct Flaky {
    n: AtomicUsize,
    failing: AtomicBool,
}

#[async_trait]
impl CredentialSource for Flaky {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuthError::Unreachable {
                source_name: "flaky source".into(),
                message: "outage number 7".into(),
            });
        }
        Ok(Credentials::new(format!("STS.AK{n}"), format!("SECRET-{n}-xyz"))
            .with_token(format!("TOKEN-{n}-abc"))
            .with_expiration(Utc::now() + chrono::Duration::milliseconds(1500)))
    }
    fn describe(&self) -> String {
        "flaky source".into()
    }
}

#[test]
fn no_secrets_in_logs() {
    let cap = creds_support::LogCapture::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(cap.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Refresher: successes, then an outage.
        let p = Arc::new(CachingProvider::new(Flaky { n: AtomicUsize::new(0), failing: AtomicBool::new(false) }));
        let refresher = spawn_refresher(p.clone(), &tokio::runtime::Handle::current());
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        p.source().failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(p.credentials().await.is_err());
        refresher.shutdown().await;

        // STS: a retried 503, then a signature error that echoes the string to sign.
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let server = FakeServer::start(move |_| match c2.fetch_add(1, Ordering::SeqCst) {
            0 => Resp::new(503, r#"{"Code":"ServiceUnavailable","Message":"busy"}"#),
            1 => Resp::new(200, sts_success("STS.fromsts", "STSSECRET-1", "STSTOKEN-1", 3600)),
            _ => Resp::new(
                400,
                r#"{"Code":"SignatureDoesNotMatch","Message":"server string to sign is:POST&%2F&AccessKeyId%3DLTAIbasekey%26SecurityToken%3DBASETOKEN-9"}"#,
            ),
        })
        .await;
        let base = Arc::new(StaticProvider::new(
            Credentials::new("LTAIbasekey", "BASESECRET-9").with_token("BASETOKEN-9"),
            "static keys",
        ));
        let mut params = RoleSessionParams::new("acs:ram::1234567890123456:role/r");
        params.policy = Some(r#"{"Version":"1","Statement":[]}"#.into());
        let src = Arc::new(CachingProvider::new(
            AssumeRoleSource::new(base, params, StsClient::new(&server.url()).unwrap(), false).unwrap(),
        ));
        let c = src.credentials().await.unwrap();
        let e = src.refresh_after_rejection(&c).await.unwrap_err();
        tracing::warn!(error = %e, "reported by the test like the client would");

        // Credential process failing with stderr, and printing secrets on stdout.
        let proc = ossmount::auth::process::ProcessSource::new(
            "echo '{\"AccessKeyId\":\"PROCAK\",\"AccessKeySecret\":\"PROCSECRET-3\"' ; echo oops >&2",
        )
        .unwrap();
        let e = proc.fetch().await.unwrap_err();
        tracing::warn!(error = %e, "process failure");
        assert!(e.to_string().contains("oops"));

        // A group-readable credentials file is accepted with a warning naming the fix.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("shared.ini");
        std::fs::write(&ini, "[default]\ntype = access_key\naccess_key_id = LTAIini\naccess_key_secret = INISECRET-4\n").unwrap();
        std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o640)).unwrap();
        let cfg = ossmount::config::CredentialsConfig { credentials_file: Some(ini), ..Default::default() };
        let b = ossmount::auth::build_credentials_with_env(&cfg, &ossmount::auth::Env::default()).unwrap();
        assert_eq!(b.provider().credentials().await.unwrap().access_key_id, "LTAIini");
        // Plain-http STS to a non-loopback host is flagged.
        StsClient::new("http://sts.example.com").unwrap();
    });
    let logs = cap.text();
    assert!(logs.contains("credentials refreshed"), "{logs}");
    assert!(
        logs.contains("credential refresh failed") && logs.contains("outage number 7"),
        "{logs}"
    );
    assert!(logs.contains("retrying STS call"), "{logs}");
    assert!(logs.contains("SignatureDoesNotMatch"), "{logs}");
    assert!(
        logs.contains("chmod 600") && logs.contains("shared.ini") && logs.contains("640"),
        "{logs}"
    );
    assert!(logs.contains("plain http"), "{logs}");
    for secret in [
        "SECRET-",
        "TOKEN-",
        "STSSECRET",
        "STSTOKEN",
        "BASESECRET",
        "BASETOKEN",
        "LTAIbasekey",
        "PROCSECRET",
        "Signature=",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked:\n{logs}");
    }
}
