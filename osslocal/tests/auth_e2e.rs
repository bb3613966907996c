//! Signed requests end to end: V1 users, STS AssumeRole, session policies enforced by the
//! server, unsigned requests refused without `--anonymous`.

mod common;

use common::*;

const AK: &str = "LTAI5tTestUser";
const SK: &str = "test-secret-0123456789";
const ROLE: &str = "acs:ram::1234567890123456:role/reader";

fn signed_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:GetObject","oss:ListObjects"],"Resource":["acs:oss:*:*:bkt/ro/*","acs:oss:*:*:bkt"]}]}"#,
    )
    .unwrap();
    let role = format!("{ROLE}=@{}", policy.display());
    let s = Server::start(&[
        "--bucket",
        "bkt",
        "--access-key",
        &format!("{AK}:{SK}"),
        "--role",
        &role,
    ]);
    (s, dir)
}

#[test]
fn v1_signed_user_requests() {
    let (s, _policy_dir) = signed_server();
    let r = s
        .req("PUT", "/bkt/ro/a.txt")
        .header("Content-Type", "text/plain")
        .body(b"data")
        .sign_v1(AK, SK, None, "/bkt/ro/a.txt")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s
        .req("GET", "/bkt/ro/a.txt")
        .sign_v1(AK, SK, None, "/bkt/ro/a.txt")
        .send();
    assert_eq!((r.status, r.body.as_slice()), (200, b"data".as_slice()));
    let r = s
        .req("GET", "/bkt/ro/a.txt")
        .sign_v1(AK, "wrong", None, "/bkt/ro/a.txt")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (403, Some("SignatureDoesNotMatch")));
    let r = s.get("/bkt/ro/a.txt");
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("AccessDenied")),
        "unsigned without --anonymous"
    );
    let r = s.req("GET", "/bkt/?list-type=2").sign_v1(AK, SK, None, "/bkt/").send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.xml_all("Key"), ["ro/a.txt"]);
    let stats = s.stats();
    assert_eq!(stats["errors"]["SignatureDoesNotMatch"], 1);
    assert_eq!(stats["errors"]["AccessDenied"], 1);
}

#[test]
fn sts_session_policy_is_enforced() {
    let (s, _policy_dir) = signed_server();
    s.req("PUT", "/bkt/ro/x")
        .body(b"readable")
        .sign_v1(AK, SK, None, "/bkt/ro/x")
        .send();
    s.req("PUT", "/bkt/secret")
        .body(b"hidden")
        .sign_v1(AK, SK, None, "/bkt/secret")
        .send();
    let q = sts_query(
        AK,
        SK,
        &[
            ("Action", "AssumeRole"),
            ("RoleArn", ROLE),
            ("RoleSessionName", "e2e"),
            ("DurationSeconds", "900"),
        ],
    );
    let r = s.get(&format!("/?{q}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let c = &j["Credentials"];
    let (ak, sk, tok) = (
        c["AccessKeyId"].as_str().unwrap(),
        c["AccessKeySecret"].as_str().unwrap(),
        c["SecurityToken"].as_str().unwrap(),
    );
    assert!(ak.starts_with("STS."));

    let r = s.req("GET", "/bkt/ro/x").sign_v1(ak, sk, Some(tok), "/bkt/ro/x").send();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"readable".as_slice()),
        "{}",
        r.text()
    );
    let r = s
        .req("GET", "/bkt/secret")
        .sign_v1(ak, sk, Some(tok), "/bkt/secret")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (403, Some("AccessDenied")));
    assert_eq!(
        r.xml("Message").as_deref(),
        Some("Access denied by authorizer's policy.")
    );
    assert_eq!(r.h("x-oss-ec"), Some("0003-00000001"));
    let r = s
        .req("PUT", "/bkt/ro/y")
        .body(b"no")
        .sign_v1(ak, sk, Some(tok), "/bkt/ro/y")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (403, Some("AccessDenied")));
    let r = s
        .req("GET", "/bkt/?list-type=2&prefix=ro%2F")
        .sign_v1(ak, sk, Some(tok), "/bkt/")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    // copy needs GetObject on the source as well as PutObject on the destination
    let r = s
        .req("PUT", "/bkt/ro/copy")
        .header("x-oss-copy-source", "/bkt/secret")
        .sign_v1(ak, sk, Some(tok), "/bkt/ro/copy")
        .send();
    assert_eq!(r.status, 403);

    // "expire every token now" fault
    s.admin_json("POST", "/_osslocal/faults", r#"{"expire_tokens": true}"#);
    let r = s.req("GET", "/bkt/ro/x").sign_v1(ak, sk, Some(tok), "/bkt/ro/x").send();
    assert_eq!((r.status, r.code().as_deref()), (403, Some("SecurityTokenExpired")));
    s.admin_json("POST", "/_osslocal/faults/clear", "");
    let r = s.req("GET", "/bkt/ro/x").sign_v1(ak, sk, Some(tok), "/bkt/ro/x").send();
    assert_eq!(r.status, 200);

    // STS outage fault, and stats
    s.admin_json("POST", "/_osslocal/faults", r#"{"sts_outage": true}"#);
    let q = sts_query(
        AK,
        SK,
        &[
            ("Action", "AssumeRole"),
            ("RoleArn", ROLE),
            ("RoleSessionName", "e2e"),
            ("DurationSeconds", "900"),
        ],
    );
    let r = s.get(&format!("/?{q}"));
    assert_eq!(r.status, 503);
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["Code"], "ServiceUnavailable");
    let stats = s.stats();
    assert_eq!(stats["sts"]["AssumeRole"], 2);
    assert_eq!(stats["errors"]["ServiceUnavailable"], 1);
    assert_eq!(stats["errors"]["SecurityTokenExpired"], 1);
}

#[test]
fn sts_over_post_form() {
    let (s, _policy_dir) = signed_server();
    // POST with every parameter in the form body (Go/Node style); the signature covers the method.
    let q = sts_query_for("POST", AK, SK, &[("Action", "GetCallerIdentity")]);
    let r = s
        .req("POST", "/")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(q.as_bytes())
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["AccountId"], "1234567890123456");
    // signed for GET, sent as POST: the RPC signature includes the method, so this must fail
    let q = sts_query(AK, SK, &[("Action", "GetCallerIdentity")]);
    let r = s
        .req("POST", "/")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(q.as_bytes())
        .send();
    assert_eq!(r.status, 400, "{}", r.text());
    let stats = s.stats();
    assert_eq!(stats["sts"]["GetCallerIdentity"], 2);
    assert_eq!(stats["errors"]["SignatureDoesNotMatch"], 1);
}

#[test]
fn clock_offset_fault_causes_skew() {
    let (s, _policy_dir) = signed_server();
    s.admin_json("POST", "/_osslocal/faults", r#"{"time_offset_secs": 3600}"#);
    let r = s.req("GET", "/bkt/?list-type=2").sign_v1(AK, SK, None, "/bkt/").send();
    assert_eq!((r.status, r.code().as_deref()), (403, Some("RequestTimeTooSkewed")));
    let date = r.h("Date").unwrap();
    let server_time = chrono::DateTime::parse_from_rfc2822(date).unwrap();
    let skew = server_time.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!(
        (3500..3700).contains(&skew),
        "response Date carries the offset, skew {skew}"
    );
    s.admin_json("POST", "/_osslocal/faults/clear", "");
    let r = s.req("GET", "/bkt/?list-type=2").sign_v1(AK, SK, None, "/bkt/").send();
    assert_eq!(r.status, 200);
}
