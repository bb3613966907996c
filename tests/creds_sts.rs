//! STS: the RPC v1 signer against the SDK-made vectors (byte for byte), and AssumeRole /
//! AssumeRoleWithOIDC / GetCallerIdentity against a scripted loopback STS.

mod creds_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use creds_support::{FakeServer, Req, Resp, sts_success};
use ossmount::auth::cache::CredentialSource;
use ossmount::auth::sts::{
    AssumeRoleSource, OidcSource, RoleSessionParams, StsClient, canonicalized_query_string, rpc_signature,
    rpc_string_to_sign,
};
use ossmount::auth::{AuthError, CredentialProvider, Credentials, StaticProvider};
use serde_json::Value;

fn vectors() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors/sts_rpc.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn params_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn rpc_vectors_byte_for_byte() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let method = case["inputs"]["http_method"].as_str().unwrap();
        let secret = case["inputs"]["access_key_secret"].as_str().unwrap();
        let params = params_of(&case["inputs"]["params"]);
        let exp = &case["expected"];
        assert_eq!(
            canonicalized_query_string(&params),
            exp["canonicalized_query_string"].as_str().unwrap(),
            "{id}"
        );
        let sts = rpc_string_to_sign(method, &params);
        assert_eq!(sts, exp["string_to_sign"].as_str().unwrap(), "{id}");
        assert_eq!(rpc_signature(secret, &sts), exp["signature"].as_str().unwrap(), "{id}");
        // The wire form of the example query: canonical string + Signature appended (encoded).
        let wire = format!(
            "{}&Signature={}",
            canonicalized_query_string(&params),
            ossmount::auth::sts::rpc_percent_encode(exp["signature"].as_str().unwrap())
        );
        assert_eq!(wire, exp["example_wire_query"].as_str().unwrap(), "{id}");
    }
}

#[test]
fn rpc_full_request_and_node_cross_check() {
    let v = vectors();
    let full = &v["full_requests"][0];
    let i = &full["inputs"];
    let mut params = params_of(&i["action_params"]);
    for (k, val) in [
        ("Action", "AssumeRole"),
        ("Format", "JSON"),
        ("Version", "2015-04-01"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureType", ""),
    ] {
        params.insert(k.into(), val.into());
    }
    params.insert("AccessKeyId".into(), i["access_key_id"].as_str().unwrap().into());
    params.insert("RegionId".into(), i["region_id"].as_str().unwrap().into());
    params.insert("Timestamp".into(), i["timestamp"].as_str().unwrap().into());
    params.insert("SignatureNonce".into(), i["nonce"].as_str().unwrap().into());
    let sts = rpc_string_to_sign("POST", &params);
    assert_eq!(sts, full["expected"]["string_to_sign"].as_str().unwrap());
    assert_eq!(
        rpc_signature(i["access_key_secret"].as_str().unwrap(), &sts),
        full["expected"]["signature"].as_str().unwrap()
    );

    // Node: query + form body, signature over the union.
    let secrets = [
        "FuseVectorsAccessKeySecret0123456789",
        "TempSecret+Vectors/0123456789abcdefGHIJ=",
    ];
    for (case, secret) in v["node_cross_check"]["cases"].as_array().unwrap().iter().zip(secrets) {
        let mut union = params_of(&case["query"]);
        union.extend(params_of(&case["body_form"]));
        let sts = rpc_string_to_sign("POST", &union);
        assert_eq!(sts, case["string_to_sign"].as_str().unwrap());
        assert_eq!(rpc_signature(secret, &sts), case["signature"].as_str().unwrap());
    }
}

#[test]
fn sign_params_matches_vector_with_injected_time_and_nonce() {
    let v = vectors();
    let case = &v["cases"][2]; // POST chained with SecurityToken
    let p = params_of(&case["inputs"]["params"]);
    let caller = Credentials::new(&p["AccessKeyId"], case["inputs"]["access_key_secret"].as_str().unwrap())
        .with_token(&p["SecurityToken"]);
    let mut params = BTreeMap::new();
    for k in ["Action", "RoleArn", "RoleSessionName", "DurationSeconds", "Policy"] {
        params.insert(k.to_string(), p[k].clone());
    }
    let ts = chrono::DateTime::parse_from_rfc3339("2025-01-15T08:30:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    ossmount::auth::sts::sign_params("POST", &mut params, &caller, ts, &p["SignatureNonce"]);
    assert_eq!(params["Signature"], case["expected"]["signature"].as_str().unwrap());
}

/// Verifies an incoming form exactly as STS would (signature over all params but Signature).
fn verify_signature(req: &Req, secret: &str) -> bool {
    let form = req.form();
    let Some(sig) = form.get("Signature") else { return false };
    rpc_signature(secret, &rpc_string_to_sign(&req.method, &form)) == *sig
}

fn params(role: &str) -> RoleSessionParams {
    let mut p = RoleSessionParams::new(role);
    p.session_name = "test-session".into();
    p
}

const ROLE: &str = "acs:ram::1234567890123456:role/oss-fuse-role";

#[tokio::test]
async fn assume_role_posts_signed_form_and_parses_credentials() {
    let server = FakeServer::start(|req| {
        if req.method == "POST" && req.path == "/" && verify_signature(req, "base-secret") {
            Resp::new(200, sts_success("STS.new", "new-secret", "new-token", 3600))
        } else {
            Resp::new(
                400,
                r#"{"RequestId":"R","Code":"SignatureDoesNotMatch","Message":"bad"}"#,
            )
        }
    })
    .await;
    let base = Arc::new(StaticProvider::new(
        Credentials::new("LTAIbase", "base-secret"),
        "environment",
    ));
    let mut p = params(ROLE);
    p.policy = Some(r#"{"Version": "1", "Statement": []}"#.into());
    p.external_id = Some("ext-1".into());
    p.duration_secs = 900;
    let src = AssumeRoleSource::new(base, p, StsClient::new(&server.url()).unwrap(), false).unwrap();
    assert_eq!(src.describe(), format!("AssumeRole {ROLE} (base: environment)"));
    let c = src.fetch().await.unwrap();
    assert_eq!(c.access_key_id, "STS.new");
    assert_eq!(c.security_token.as_deref(), Some("new-token"));
    assert!(c.expiration.unwrap() > chrono::Utc::now() + chrono::Duration::seconds(3500));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let f = reqs[0].form();
    assert_eq!(
        reqs[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(f["Action"], "AssumeRole");
    assert_eq!(f["RoleArn"], ROLE);
    assert_eq!(f["RoleSessionName"], "test-session");
    assert_eq!(f["DurationSeconds"], "900");
    assert_eq!(f["ExternalId"], "ext-1");
    assert_eq!(f["Policy"], r#"{"Version": "1", "Statement": []}"#);
    assert_eq!(f["Format"], "JSON");
    assert!(!f.contains_key("SecurityToken"));
    // Space is sent as %20, never '+'.
    assert!(
        reqs[0].body.contains("%20") && !reqs[0].body.contains('+'),
        "{}",
        reqs[0].body
    );
}

#[tokio::test]
async fn chained_base_sends_security_token() {
    let server = FakeServer::start(|req| {
        let f = req.form();
        if f.get("SecurityToken").map(String::as_str) == Some("base-token") && verify_signature(req, "sts-secret") {
            Resp::new(200, sts_success("STS.chained", "s2", "t2", 3600))
        } else {
            Resp::new(
                400,
                r#"{"Code":"MissingSecurityToken","Message":"SecurityToken is mandatory for this action."}"#,
            )
        }
    })
    .await;
    let base = Arc::new(StaticProvider::new(
        Credentials::new("STS.base", "sts-secret").with_token("base-token"),
        "b",
    ));
    let src = AssumeRoleSource::new(base, params(ROLE), StsClient::new(&server.url()).unwrap(), false).unwrap();
    assert_eq!(src.fetch().await.unwrap().access_key_id, "STS.chained");
}

#[tokio::test]
async fn error_json_becomes_service_error_without_secrets() {
    let server = FakeServer::start(|_| {
        Resp::new(
            400,
            r#"{"RequestId":"8C3A","HostId":"sts.aliyuncs.com","Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3DLTAIbase%26SecurityToken%3Dbase-token","Recommend":"x"}"#,
        )
    })
    .await;
    let base = Arc::new(StaticProvider::new(Credentials::new("LTAIbase", "base-secret"), "b"));
    let src = AssumeRoleSource::new(base, params(ROLE), StsClient::new(&server.url()).unwrap(), false).unwrap();
    let e = src.fetch().await.unwrap_err();
    match &e {
        AuthError::Service {
            code,
            request_id,
            message,
            ..
        } => {
            assert_eq!(code, "SignatureDoesNotMatch");
            assert_eq!(request_id.as_deref(), Some("8C3A"));
            assert!(message.contains("not matched"));
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("(RequestId 8C3A)"), "{text}");
    assert!(
        !text.contains("base-token") && !text.contains("base-secret") && !text.contains("LTAIbase"),
        "{text}"
    );
    assert_eq!(server.requests().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn session_name_error_is_not_retried_and_5xx_is() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let server = FakeServer::start(move |_| {
        if c2.fetch_add(1, Ordering::SeqCst) < 2 {
            Resp::new(503, r#"{"Code":"ServiceUnavailable","Message":"busy","RequestId":"R"}"#)
        } else {
            Resp::new(200, sts_success("STS.ok", "s", "t", 3600))
        }
    })
    .await;
    let base = Arc::new(StaticProvider::new(Credentials::new("a", "b"), "b"));
    let src = AssumeRoleSource::new(base, params(ROLE), StsClient::new(&server.url()).unwrap(), false).unwrap();
    assert_eq!(src.fetch().await.unwrap().access_key_id, "STS.ok");
    assert_eq!(server.requests().len(), 3);

    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vectors/examples/sts_error_invalid_role_session_name.json"
    ))
    .unwrap();
    let server = FakeServer::start(move |_| Resp::new(400, example.clone())).await;
    let base = Arc::new(StaticProvider::new(Credentials::new("a", "b"), "b"));
    let src = AssumeRoleSource::new(base, params(ROLE), StsClient::new(&server.url()).unwrap(), false).unwrap();
    let e = src.fetch().await.unwrap_err().to_string();
    assert!(
        e.contains("InvalidParameter.RoleSessionName") && e.contains("wrongly formed"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn unreachable_sts_is_reported_after_retries() {
    // A port with nothing listening.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let base = Arc::new(StaticProvider::new(Credentials::new("a", "b"), "b"));
    let src = AssumeRoleSource::new(base, params(ROLE), StsClient::new(&url).unwrap(), false).unwrap();
    let t = std::time::Instant::now();
    let e = src.fetch().await.unwrap_err();
    assert!(matches!(e, AuthError::Unreachable { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn expired_base_token_is_refreshed_once() {
    // Base = a caching provider over a counting STS-like source; STS rejects the first base token.
    struct BaseSource(AtomicUsize);
    #[async_trait::async_trait]
    impl CredentialSource for BaseSource {
        async fn fetch(&self) -> Result<Credentials, AuthError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Credentials::new(format!("STS.base{n}"), "bs")
                .with_token(format!("btok{n}"))
                .with_expiration(chrono::Utc::now() + chrono::Duration::seconds(3600)))
        }
        fn describe(&self) -> String {
            "base".into()
        }
    }
    let server = FakeServer::start(|req| {
        if req.form().get("SecurityToken").map(String::as_str) == Some("btok0") {
            Resp::new(400, r#"{"Code":"InvalidSecurityToken.Expired","Message":"expired"}"#)
        } else {
            Resp::new(200, sts_success("STS.top", "s", "t", 3600))
        }
    })
    .await;
    let base = Arc::new(ossmount::auth::CachingProvider::new(BaseSource(AtomicUsize::new(0))));
    let src = AssumeRoleSource::new(
        base.clone(),
        params(ROLE),
        StsClient::new(&server.url()).unwrap(),
        false,
    )
    .unwrap();
    assert_eq!(src.fetch().await.unwrap().access_key_id, "STS.top");
    assert_eq!(base.fetch_attempts(), 2);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn oidc_rereads_token_file_and_is_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "token-one\n").unwrap();
    let server = FakeServer::start(|req| {
        let f = req.form();
        if f["Action"] == "AssumeRoleWithOIDC" && !f.contains_key("Signature") && !f.contains_key("AccessKeyId") {
            Resp::new(
                200,
                sts_success("STS.oidc", "s", &format!("for-{}", f["OIDCToken"]), 3600),
            )
        } else {
            Resp::new(400, r#"{"Code":"Bad","Message":"unexpected"}"#)
        }
    })
    .await;
    let provider_arn = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1";
    let src = OidcSource::new(
        params(ROLE),
        provider_arn,
        &token_file,
        StsClient::new(&server.url()).unwrap(),
        false,
    )
    .unwrap();
    assert_eq!(
        src.fetch().await.unwrap().security_token.as_deref(),
        Some("for-token-one")
    );
    std::fs::write(&token_file, "token-two").unwrap();
    assert_eq!(
        src.fetch().await.unwrap().security_token.as_deref(),
        Some("for-token-two")
    );
    let f = server.requests()[1].form();
    assert_eq!(f["OIDCProviderArn"], provider_arn);
    assert_eq!(f["RoleArn"], ROLE);
    assert_eq!(f["RoleSessionName"], "test-session");

    // The file disappearing later gives a clear error naming it.
    std::fs::remove_file(&token_file).unwrap();
    let e = src.fetch().await.unwrap_err().to_string();
    assert!(e.contains("OIDC token file") && e.contains("token"), "{e}");
    // ... and a missing file is refused at construction.
    let e = OidcSource::new(
        params(ROLE),
        provider_arn,
        &token_file,
        StsClient::new(&server.url()).unwrap(),
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("OIDC token file"), "{e}");
}

#[tokio::test]
async fn get_caller_identity_parses_example() {
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vectors/examples/sts_get_caller_identity_success.json"
    ))
    .unwrap();
    let server = FakeServer::start(move |req| {
        if verify_signature(req, "sec") && req.form()["Action"] == "GetCallerIdentity" {
            Resp::new(200, body.clone())
        } else {
            Resp::new(400, r#"{"Code":"SignatureDoesNotMatch","Message":"x"}"#)
        }
    })
    .await;
    let id = StsClient::new(&server.url())
        .unwrap()
        .get_caller_identity(&Credentials::new("LTAI", "sec"))
        .await
        .unwrap();
    assert_eq!(id.account_id.as_deref(), Some("1234567890123456"));
    assert_eq!(id.identity_type.as_deref(), Some("RAMUser"));
}

#[test]
fn invalid_parameters_are_refused_before_any_call() {
    let base: Arc<dyn CredentialProvider> = Arc::new(StaticProvider::new(Credentials::new("a", "b"), "b"));
    let client = StsClient::new("http://127.0.0.1:9").unwrap();
    let cases: Vec<(RoleSessionParams, &str)> = vec![
        (params("acs:ram::abc:role/x"), "invalid role ARN"),
        (
            RoleSessionParams {
                session_name: "a b".into(),
                ..params(ROLE)
            },
            "invalid role session name",
        ),
        (
            RoleSessionParams {
                policy: Some("{\"Version\":".into()),
                ..params(ROLE)
            },
            "not valid JSON",
        ),
        (
            RoleSessionParams {
                duration_secs: 60,
                ..params(ROLE)
            },
            "out of range",
        ),
        (
            RoleSessionParams {
                duration_secs: 50_000,
                ..params(ROLE)
            },
            "out of range",
        ),
    ];
    for (p, want) in cases {
        let e = AssumeRoleSource::new(base.clone(), p, client.clone(), false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(want), "want {want:?} in {e}");
    }
    // Short durations are fine with the test override.
    assert!(
        AssumeRoleSource::new(
            base,
            RoleSessionParams {
                duration_secs: 5,
                ..params(ROLE)
            },
            client,
            true
        )
        .is_ok()
    );
}
