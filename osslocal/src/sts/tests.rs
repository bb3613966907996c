//! Unit tests of `sts`: every case of `testdata/vectors/sts_rpc.json` verifies (and fails once
//! tampered), AssumeRole success and each error, role chaining, OIDC, nonces, the token key file.

use super::*;

const STS_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors/sts_rpc.json"));
const EXAMPLE_ASSUME_ROLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/vectors/sts_assume_role_success.json"
));
const VECTOR_EPOCH: i64 = 1_736_929_800;
const USER_AK: &str = "LTAI5tFuseVectorsAccessKey";
const USER_SK: &str = "FuseVectorsAccessKeySecret0123456789";
const ROLE_ARN: &str = "acs:ram::1234567890123456:role/oss-fuse-role";
const OIDC_ARN: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1234567890";
const ISSUER: &str = "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c1234567890";
const ROLE_POLICY: &str =
    r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"acs:oss:*:*:examplebucket/*"}]}"#;

type Params = Vec<(String, String)>;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(VECTOR_EPOCH, 0).unwrap()
}

fn state() -> StsState {
    let mut st = StsState::new([(USER_AK.to_string(), USER_SK.to_string())].into(), [9u8; 32]);
    let mut role = Role::new(ROLE_ARN);
    role.policy = Some(Policy::parse(ROLE_POLICY).unwrap());
    st.roles.insert(ROLE_ARN.into(), role);
    st.oidc_providers.push(OidcProvider {
        arn: OIDC_ARN.into(),
        issuer: Some(ISSUER.into()),
    });
    st
}

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn json_params(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// Common signed-call parameters for `action` by `ak`, with a fresh nonce.
fn common(action: &str, ak: &str) -> Vec<(String, String)> {
    owned(&[
        ("Format", "JSON"),
        ("Version", "2015-04-01"),
        ("AccessKeyId", ak),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", &uuid::Uuid::new_v4().to_string()),
        ("Timestamp", "2025-01-15T08:30:00Z"),
        ("Action", action),
    ])
}

fn sign(method: &str, mut params: Vec<(String, String)>, secret: &str) -> Vec<(String, String)> {
    let sig = rpc_signature(secret, &rpc_string_to_sign(method, &params));
    params.push(("Signature".into(), sig));
    params
}

fn with(mut params: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    params.extend(owned(extra));
    params
}

fn assume_params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    sign(
        "GET",
        with(with(common("AssumeRole", USER_AK), &[("RoleArn", ROLE_ARN)]), extra),
        USER_SK,
    )
}

fn body(answer: &StsAnswer) -> Value {
    assert_eq!(answer.content_type, CONTENT_TYPE_JSON);
    serde_json::from_str(&answer.body).unwrap()
}

fn assert_error(answer: &StsAnswer, status: u16, code: &str) -> Value {
    let v = body(answer);
    assert_eq!(
        (answer.status, v["Code"].as_str()),
        (status, Some(code)),
        "{}",
        answer.body
    );
    assert_eq!(v["HostId"], "sts.aliyuncs.com");
    assert!(v["RequestId"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(v["Recommend"].as_str().unwrap().contains(code));
    v
}

fn assert_ok(answer: &StsAnswer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    body(answer)
}

fn credentials(v: &Value) -> (String, String, String) {
    let c = &v["Credentials"];
    (
        c["AccessKeyId"].as_str().unwrap().to_string(),
        c["AccessKeySecret"].as_str().unwrap().to_string(),
        c["SecurityToken"].as_str().unwrap().to_string(),
    )
}

#[test]
fn vector_cases_sign_exactly_and_verify() {
    let root: Value = serde_json::from_str(STS_JSON).unwrap();
    let cases = root["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let i = &case["inputs"];
        let e = &case["expected"];
        let method = i["http_method"].as_str().unwrap();
        let secret = i["access_key_secret"].as_str().unwrap();
        let params = json_params(&i["params"]);
        let sts = rpc_string_to_sign(method, &params);
        assert_eq!(sts, e["string_to_sign"].as_str().unwrap(), "{id}");
        assert_eq!(rpc_signature(secret, &sts), e["signature"].as_str().unwrap(), "{id}");
        let mut signed = params.clone();
        signed.push(("Signature".into(), e["signature"].as_str().unwrap().into()));

        if params.iter().any(|(k, _)| k == "SecurityToken") {
            // The vector's token is not ours: the call is refused as malformed, not as a bad signature.
            assert_error(
                &handle(method, &signed, &state(), now()),
                400,
                "InvalidSecurityToken.Malformed",
            );
            continue;
        }
        let answer = handle(method, &signed, &state(), now());
        let v = assert_ok(&answer);
        if id == "get_caller_identity" {
            assert_eq!(v["IdentityType"], "RAMUser");
            assert_eq!(v["AccountId"], "1234567890123456");
        } else {
            let (ak, _, _) = credentials(&v);
            assert!(ak.starts_with("STS."), "{id}");
        }

        // Tampering: signature, a parameter, the method, the secret.
        let mut bad = signed.clone();
        let last = bad.len() - 1;
        bad[last].1 = bad[last].1.replacen(|c: char| c.is_ascii_alphanumeric(), "0", 1);
        if bad[last].1 == signed[last].1 {
            bad[last].1 = bad[last].1.replacen('0', "1", 1);
        }
        let err = assert_error(&handle(method, &bad, &state(), now()), 400, "SignatureDoesNotMatch");
        let message = err["Message"].as_str().unwrap();
        assert_eq!(
            message,
            format!("Specified signature is not matched with our calculation. server string to sign is:{sts}")
        );
        let mut bad = signed.clone();
        for (k, v) in bad.iter_mut() {
            if k == "Timestamp" {
                *v = "2025-01-15T08:30:01Z".into();
            }
        }
        assert_error(&handle(method, &bad, &state(), now()), 400, "SignatureDoesNotMatch");
        let other_method = if method == "GET" { "POST" } else { "GET" };
        assert_error(
            &handle(other_method, &signed, &state(), now()),
            400,
            "SignatureDoesNotMatch",
        );
        let mut wrong = state();
        wrong.keys.insert(USER_AK.into(), format!("{USER_SK}x"));
        assert_error(&handle(method, &signed, &wrong, now()), 400, "SignatureDoesNotMatch");
        let extra = with(signed.clone(), &[("RegionId", "cn-hangzhou")]);
        assert_error(&handle(method, &extra, &state(), now()), 400, "SignatureDoesNotMatch");
    }
}

#[test]
fn python_credentials_quote_plus_variant_is_accepted() {
    let root: Value = serde_json::from_str(STS_JSON).unwrap();
    let case = &root["cases"][1];
    let quirk = &case["cross_check"]["alibabacloud-credentials parameter_helper.compose_string_to_sign"];
    let params = json_params(&case["inputs"]["params"]);
    assert_eq!(
        rpc_string_to_sign_quote_plus("GET", &params),
        quirk["string_to_sign"].as_str().unwrap()
    );
    let mut signed = params.clone();
    signed.push(("Signature".into(), quirk["signature"].as_str().unwrap().into()));
    assert_ok(&handle("GET", &signed, &state(), now()));
    // An unencoded `+` in the Signature arrives as a space.
    assert!(quirk["signature"].as_str().unwrap().contains('+'));
    let mut spaced = params.clone();
    spaced.push((
        "Signature".into(),
        quirk["signature"].as_str().unwrap().replace('+', " "),
    ));
    assert_ok(&handle("GET", &spaced, &state(), now()));
    // Without a space in any parameter the variant is identical and nothing else is accepted.
    let plain = json_params(&root["cases"][0]["inputs"]["params"]);
    assert_eq!(
        rpc_string_to_sign_quote_plus("GET", &plain),
        rpc_string_to_sign("GET", &plain)
    );
}

#[test]
fn sdk_core_full_request_and_node_union_verify() {
    let root: Value = serde_json::from_str(STS_JSON).unwrap();
    let full = &root["full_requests"][0];
    let query = full["expected"]["url_path_and_query"]
        .as_str()
        .unwrap()
        .trim_start_matches("/?");
    let params = crate::auth::parse_query(query).unwrap();
    assert_eq!(
        rpc_string_to_sign("POST", &params),
        full["expected"]["string_to_sign"].as_str().unwrap(),
        "empty SignatureType= and RegionId are signed"
    );
    let v = assert_ok(&handle("POST", &params, &state(), now()));
    assert!(v["Credentials"]["AccessKeyId"].as_str().unwrap().starts_with("STS."));

    for case in root["node_cross_check"]["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let mut params = json_params(&case["query"]);
        params.extend(json_params(&case["body_form"]));
        assert_eq!(
            rpc_string_to_sign("POST", &params),
            case["string_to_sign"].as_str().unwrap(),
            "{id}"
        );
        if params.iter().any(|(k, _)| k == "SecurityToken") {
            assert_error(
                &handle("POST", &params, &state(), now()),
                400,
                "InvalidSecurityToken.Malformed",
            );
        } else {
            assert_ok(&handle("POST", &params, &state(), now()));
        }
    }
}

#[test]
fn assume_role_issues_verifiable_credentials() {
    let st = state();
    let session_policy =
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:GetObject","Resource":"acs:oss:*:*:*"}]}"#;
    let params = assume_params(&[
        ("RoleSessionName", "fuse.mount@host-01"),
        ("DurationSeconds", "900"),
        ("Policy", session_policy),
        ("ExternalId", "ext-id_1.0~x"),
    ]);
    let v = assert_ok(&handle("GET", &params, &st, now()));
    // Same shape as the documented example.
    let example: Value = serde_json::from_str(EXAMPLE_ASSUME_ROLE).unwrap();
    for (section, fields) in example.as_object().unwrap() {
        assert!(v.get(section).is_some(), "missing {section}");
        if let Some(fields) = fields.as_object() {
            for field in fields.keys() {
                assert!(v[section].get(field).is_some(), "missing {section}.{field}");
            }
        }
    }
    assert_eq!(v["Credentials"]["Expiration"], "2025-01-15T08:45:00Z");
    assert_eq!(v["AssumedRoleUser"]["Arn"], format!("{ROLE_ARN}/fuse.mount@host-01"));
    assert!(
        v["AssumedRoleUser"]["AssumedRoleId"]
            .as_str()
            .unwrap()
            .ends_with(":fuse.mount@host-01")
    );
    let (ak, sk, token) = credentials(&v);
    assert!(ak.starts_with("STS.") && ak.len() > 20);
    let claims = verify_token(&token, &st, now()).unwrap();
    assert_eq!(
        (claims.access_key_id.as_str(), claims.access_key_secret.as_str()),
        (ak.as_str(), sk.as_str())
    );
    assert_eq!(claims.role_arn, ROLE_ARN);
    assert_eq!(claims.session_name, "fuse.mount@host-01");
    assert_eq!(claims.source, USER_AK);
    assert_eq!(claims.expiration, now() + Duration::seconds(900));
    assert_eq!(claims.policies.len(), 2, "role policy + session policy");
    assert_eq!(claims.policies[0].source(), ROLE_POLICY);
    assert_eq!(claims.policies[1].source(), session_policy);
    assert!(crate::policy::authorize(
        &claims.policies,
        "oss:GetObject",
        "acs:oss:*:1234567890123456:examplebucket/a"
    ));
    assert!(!crate::policy::authorize(
        &claims.policies,
        "oss:PutObject",
        "acs:oss:*:1234567890123456:examplebucket/a"
    ));
    assert!(matches!(
        verify_token(&token, &st, now() + Duration::seconds(900)),
        Err(TokenError::Expired(_))
    ));

    // Default duration 3600; no session policy → only the role policy.
    let v = assert_ok(&handle("GET", &assume_params(&[("RoleSessionName", "s1")]), &st, now()));
    assert_eq!(v["Credentials"]["Expiration"], "2025-01-15T09:30:00Z");
    let claims = verify_token(&credentials(&v).2, &st, now()).unwrap();
    assert_eq!(claims.policies.len(), 1);
    // Two sessions never share keys.
    let v2 = assert_ok(&handle("GET", &assume_params(&[("RoleSessionName", "s1")]), &st, now()));
    assert_ne!(credentials(&v).0, credentials(&v2).0);
    assert_ne!(credentials(&v).1, credentials(&v2).1);
}

#[test]
fn assume_role_xml_answers() {
    let st = state();
    let mut params = with(
        common("AssumeRole", USER_AK),
        &[("RoleArn", ROLE_ARN), ("RoleSessionName", "x-session")],
    );
    params.retain(|(k, _)| k != "Format");
    params.push(("Format".into(), "XML".into()));
    let answer = handle("GET", &sign("GET", params, USER_SK), &st, now());
    assert_eq!((answer.status, answer.content_type), (200, CONTENT_TYPE_XML));
    assert!(answer.body.starts_with("<?xml"));
    assert!(answer.body.contains("<AssumeRoleResponse>"), "{}", answer.body);
    assert!(answer.body.contains("<Expiration>2025-01-15T09:30:00Z</Expiration>"));
    assert!(answer.body.contains("<AccessKeyId>STS."));
    let mut bad = with(
        common("AssumeRole", USER_AK),
        &[("RoleArn", "nope"), ("RoleSessionName", "x-session")],
    );
    bad.retain(|(k, _)| k != "Format");
    bad.push(("Format".into(), "XML".into()));
    let answer = handle("GET", &sign("GET", bad, USER_SK), &st, now());
    assert_eq!((answer.status, answer.content_type), (400, CONTENT_TYPE_XML));
    assert!(answer.body.contains("<Error>") && answer.body.contains("<Code>InvalidParameter.RoleArn</Code>"));
}

#[test]
fn error_answers_and_codes() {
    let json_params = owned(&[("Format", "JSON")]);
    let answer = error_answer(
        &json_params,
        503,
        "ServiceUnavailable",
        "The request has failed due to a temporary failure.",
    );
    assert_error(&answer, 503, "ServiceUnavailable");
    assert_eq!(answer.error_code().as_deref(), Some("ServiceUnavailable"));
    let xml = error_answer(&owned(&[("Format", "xml")]), 503, "ServiceUnavailable", "a < b");
    assert_eq!((xml.status, xml.content_type), (503, CONTENT_TYPE_XML));
    assert!(xml.body.contains("<Message>a &lt; b</Message>"), "{}", xml.body);
    assert_eq!(xml.error_code().as_deref(), Some("ServiceUnavailable"));
    let st = state();
    let bad = handle("GET", &assume_params(&[("RoleSessionName", "x")]), &st, now());
    assert_eq!(bad.error_code().as_deref(), Some("InvalidParameter.RoleSessionName"));
    let ok = handle("GET", &assume_params(&[("RoleSessionName", "xy")]), &st, now());
    assert_eq!((ok.status, ok.error_code()), (200, None));
    // No Format: JSON.
    assert_eq!(error_answer(&[], 400, "X", "y").content_type, CONTENT_TYPE_JSON);
}

#[test]
fn assume_role_parameter_errors() {
    let mut st = state();
    let long_policy = format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":"oss:*","Resource":"{}"}}]}}"#,
        "x".repeat(2048)
    );
    let cases: Vec<(Params, u16, &str)> = vec![
        (
            sign(
                "GET",
                with(
                    common("AssumeRole", USER_AK),
                    &[
                        ("RoleArn", "acs:ram::1234567890123456:role/unknown"),
                        ("RoleSessionName", "ok-name"),
                    ],
                ),
                USER_SK,
            ),
            404,
            "EntityNotExist.Role",
        ),
        (
            sign(
                "GET",
                with(
                    common("AssumeRole", USER_AK),
                    &[("RoleArn", "arn:aws:iam::1:role/x"), ("RoleSessionName", "ok")],
                ),
                USER_SK,
            ),
            400,
            "InvalidParameter.RoleArn",
        ),
        (
            sign(
                "GET",
                with(common("AssumeRole", USER_AK), &[("RoleSessionName", "ok")]),
                USER_SK,
            ),
            400,
            "MissingParameter",
        ),
        (assume_params(&[]), 400, "MissingParameter"),
        (
            assume_params(&[("RoleSessionName", "a")]),
            400,
            "InvalidParameter.RoleSessionName",
        ),
        (
            assume_params(&[("RoleSessionName", &"a".repeat(65))]),
            400,
            "InvalidParameter.RoleSessionName",
        ),
        (
            assume_params(&[("RoleSessionName", "has space")]),
            400,
            "InvalidParameter.RoleSessionName",
        ),
        (
            assume_params(&[("RoleSessionName", "ok"), ("DurationSeconds", "899")]),
            400,
            "InvalidParameter.DurationSeconds",
        ),
        (
            assume_params(&[("RoleSessionName", "ok"), ("DurationSeconds", "43201")]),
            400,
            "InvalidParameter.DurationSeconds",
        ),
        (
            assume_params(&[("RoleSessionName", "ok"), ("DurationSeconds", "1h")]),
            400,
            "InvalidParameter.DurationSeconds",
        ),
        (
            assume_params(&[("RoleSessionName", "ok"), ("Policy", "{")]),
            400,
            "InvalidParameter.PolicyGrammar",
        ),
        (
            assume_params(&[
                ("RoleSessionName", "ok"),
                ("Policy", r#"{"Version":"1","Statement":[{"Effect":"Allow"}]}"#),
            ]),
            400,
            "InvalidParameter.PolicyGrammar",
        ),
        (
            assume_params(&[("RoleSessionName", "ok"), ("Policy", &long_policy)]),
            400,
            "InvalidParameter.PolicyGrammar",
        ),
        (
            assume_params(&[("RoleSessionName", "ok"), ("ExternalId", "x")]),
            400,
            "InvalidParameter.ExternalId",
        ),
        (
            assume_params(&[("RoleSessionName", "ok"), ("ExternalId", "bad id")]),
            400,
            "InvalidParameter.ExternalId",
        ),
        (
            sign(
                "GET",
                with(
                    common("AssumeRole", "LTAIunknown"),
                    &[("RoleArn", ROLE_ARN), ("RoleSessionName", "ok")],
                ),
                "x",
            ),
            404,
            "InvalidAccessKeyId.NotFound",
        ),
        (
            sign("GET", common("DescribeRegions", USER_AK), USER_SK),
            404,
            "InvalidAction.NotFound",
        ),
    ];
    for (params, status, code) in &cases {
        assert_error(&handle("GET", params, &st, now()), *status, code);
    }
    // Bounds: 900 and 43200 are accepted; --min-duration lowers the floor; role max caps.
    for secs in ["900", "43200"] {
        assert_ok(&handle(
            "GET",
            &assume_params(&[("RoleSessionName", "ok"), ("DurationSeconds", secs)]),
            &st,
            now(),
        ));
    }
    st.min_duration = 5;
    let v = assert_ok(&handle(
        "GET",
        &assume_params(&[("RoleSessionName", "ok"), ("DurationSeconds", "5")]),
        &st,
        now(),
    ));
    assert_eq!(v["Credentials"]["Expiration"], "2025-01-15T08:30:05Z");
    if let Some(role) = st.roles.get_mut(ROLE_ARN) {
        role.max_session_duration = 3600;
    }
    let too_long = assume_params(&[("RoleSessionName", "ok"), ("DurationSeconds", "3601")]);
    assert_error(
        &handle("GET", &too_long, &st, now()),
        400,
        "InvalidParameter.DurationSeconds",
    );
    // An absurd configured maximum does not overflow the clock.
    if let Some(role) = st.roles.get_mut(ROLE_ARN) {
        role.max_session_duration = u64::MAX;
    }
    for secs in [
        u64::MAX.to_string(),
        (i64::MAX / 1000).to_string(),
        "9223372036854775".to_string(),
    ] {
        let huge = assume_params(&[("RoleSessionName", "ok"), ("DurationSeconds", &secs)]);
        assert_error(
            &handle("GET", &huge, &st, now()),
            400,
            "InvalidParameter.DurationSeconds",
        );
    }
}

#[test]
fn request_level_errors() {
    let st = state();
    let replay = assume_params(&[("RoleSessionName", "ok")]);
    assert_ok(&handle("GET", &replay, &st, now()));
    assert_error(&handle("GET", &replay, &st, now()), 400, "SignatureNonceUsed");
    // The same nonce from another AccessKeyId is fine (nonces are per key).
    let set = |params: &[(String, String)], name: &str, value: &str| -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != name && k != "Signature")
            .cloned()
            .collect();
        p.push((name.into(), value.into()));
        p
    };
    let skewed = sign("GET", set(&replay, "Timestamp", "2025-01-15T08:45:01Z"), USER_SK);
    assert_error(&handle("GET", &skewed, &st, now()), 400, "InvalidTimeStamp.Expired");
    let within = sign(
        "GET",
        set(
            &set(&replay, "Timestamp", "2025-01-15T08:15:00Z"),
            "SignatureNonce",
            "n2",
        ),
        USER_SK,
    );
    assert_ok(&handle("GET", &within, &st, now()));
    let bad_format = sign("GET", set(&replay, "Timestamp", "2025/01/15 08:30:00"), USER_SK);
    assert_error(&handle("GET", &bad_format, &st, now()), 400, "InvalidTimeStamp.Format");
    let no_nonce: Vec<(String, String)> = replay.iter().filter(|(k, _)| k != "SignatureNonce").cloned().collect();
    assert_error(&handle("GET", &no_nonce, &st, now()), 400, "MissingParameter");
    let no_sig: Vec<(String, String)> = replay.iter().filter(|(k, _)| k != "Signature").cloned().collect();
    assert_error(&handle("GET", &no_sig, &st, now()), 400, "MissingParameter");
    let sha256 = sign("GET", set(&replay, "SignatureMethod", "HMAC-SHA256"), USER_SK);
    assert_error(&handle("GET", &sha256, &st, now()), 400, "InvalidSignatureMethod");
    let version = sign(
        "GET",
        set(&set(&replay, "Version", "2019-01-01"), "SignatureNonce", "n3"),
        USER_SK,
    );
    assert_error(&handle("GET", &version, &st, now()), 400, "InvalidVersion");
}

#[test]
fn nonce_cache_forgets_old_and_excess_entries() {
    let cache = NonceCache::default();
    assert!(cache.check_and_insert("ak", "n", now()));
    assert!(!cache.check_and_insert("ak", "n", now() + Duration::seconds(NONCE_RETENTION_SECS)));
    assert!(cache.check_and_insert("other", "n", now()));
    assert!(cache.check_and_insert("ak", "n", now() + Duration::seconds(NONCE_RETENTION_SECS + 1)));
    let cache = NonceCache::default();
    for i in 0..MAX_RECENT_NONCES + 1 {
        assert!(cache.check_and_insert("ak", &i.to_string(), now()));
    }
    assert!(
        cache.check_and_insert("ak", "0", now()),
        "the oldest nonce was evicted at the bound"
    );
    assert!(!cache.check_and_insert("ak", &MAX_RECENT_NONCES.to_string(), now()));
}

#[test]
fn role_chaining_and_caller_identity() {
    let st = state();
    let v = assert_ok(&handle(
        "GET",
        &assume_params(&[("RoleSessionName", "first")]),
        &st,
        now(),
    ));
    let (ak, sk, token) = credentials(&v);

    // POST with common params in the query and action params in the form (the union is signed).
    let chained = sign(
        "POST",
        with(
            common("AssumeRole", &ak),
            &[
                ("SecurityToken", &token),
                ("RoleArn", ROLE_ARN),
                ("RoleSessionName", "chained-1"),
            ],
        ),
        &sk,
    );
    let v2 = assert_ok(&handle("POST", &chained, &st, now()));
    let claims = verify_token(&credentials(&v2).2, &st, now()).unwrap();
    assert_eq!(claims.source, ak, "the chained session records the caller's STS key");
    assert_eq!(claims.session_name, "chained-1");

    let who = assert_ok(&handle(
        "GET",
        &sign(
            "GET",
            with(common("GetCallerIdentity", &ak), &[("SecurityToken", &token)]),
            &sk,
        ),
        &st,
        now(),
    ));
    assert_eq!(who["IdentityType"], "AssumedRoleUser");
    assert_eq!(who["Arn"], "acs:ram::1234567890123456:assumed-role/oss-fuse-role/first");
    assert!(who["PrincipalId"].as_str().unwrap().ends_with(":first"));
    let user = assert_ok(&handle(
        "GET",
        &sign("GET", common("GetCallerIdentity", USER_AK), USER_SK),
        &st,
        now(),
    ));
    assert_eq!(user["IdentityType"], "RAMUser");
    assert_eq!(user["Arn"], format!("acs:ram::1234567890123456:user/{USER_AK}"));

    // Token problems of the caller.
    let no_token = sign("GET", with(common("GetCallerIdentity", &ak), &[]), &sk);
    assert_error(&handle("GET", &no_token, &st, now()), 400, "MissingSecurityToken");
    let later = now() + Duration::seconds(3600);
    let mut expired_call = with(common("GetCallerIdentity", &ak), &[("SecurityToken", &token)]);
    for (k, v) in expired_call.iter_mut() {
        if k == "Timestamp" {
            *v = "2025-01-15T09:30:00Z".into();
        }
    }
    assert_error(
        &handle("GET", &sign("GET", expired_call, &sk), &st, later),
        400,
        "InvalidSecurityToken.Expired",
    );
    let v3 = assert_ok(&handle(
        "GET",
        &assume_params(&[("RoleSessionName", "second")]),
        &st,
        now(),
    ));
    let other_token = credentials(&v3).2;
    let mismatch = sign(
        "GET",
        with(common("GetCallerIdentity", &ak), &[("SecurityToken", &other_token)]),
        &sk,
    );
    assert_error(
        &handle("GET", &mismatch, &st, now()),
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
    );
    let forged = format!("{}x", token);
    let forged_call = sign(
        "GET",
        with(common("GetCallerIdentity", &ak), &[("SecurityToken", &forged)]),
        &sk,
    );
    assert_error(
        &handle("GET", &forged_call, &st, now()),
        400,
        "InvalidSecurityToken.Malformed",
    );

    // A bad signature of a session caller echoes the string to sign without the token.
    let mut bad = with(common("GetCallerIdentity", &ak), &[("SecurityToken", &token)]);
    bad.push(("Signature".into(), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()));
    let err = assert_error(&handle("GET", &bad, &st, now()), 400, "SignatureDoesNotMatch");
    let message = err["Message"].as_str().unwrap();
    assert!(!message.contains(&percent_encode_rfc3986(&percent_encode_rfc3986(&token))));
    assert!(message.contains(&percent_encode_rfc3986(&percent_encode_rfc3986(&redact_token(&token)))));
}

/// An unsigned JWT-shaped token with the given payload.
fn jwt(payload: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"test"}"#);
    format!(
        "{header}.{}.{}",
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(b"signature")
    )
}

fn oidc_params(token: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    with(
        owned(&[
            ("Action", "AssumeRoleWithOIDC"),
            ("Format", "JSON"),
            ("Version", "2015-04-01"),
            ("Timestamp", "2025-01-15T08:30:00Z"),
            ("RoleArn", ROLE_ARN),
            ("OIDCProviderArn", OIDC_ARN),
            ("OIDCToken", token),
            ("RoleSessionName", "rrsa-fuse"),
        ]),
        extra,
    )
}

#[test]
fn assume_role_with_oidc() {
    let st = state();
    let sub = "system:serviceaccount:default:fuse";
    let good = jwt(
        &json!({"iss": ISSUER, "sub": sub, "aud": "sts.aliyuncs.com", "exp": VECTOR_EPOCH + 600, "iat": VECTOR_EPOCH - 60}),
    );
    let v = assert_ok(&handle(
        "POST",
        &oidc_params(&good, &[("DurationSeconds", "900")]),
        &st,
        now(),
    ));
    assert_eq!(v["OIDCTokenInfo"]["Subject"], sub);
    assert_eq!(v["OIDCTokenInfo"]["Issuer"], ISSUER);
    assert_eq!(v["OIDCTokenInfo"]["ClientIds"], "sts.aliyuncs.com");
    assert_eq!(v["OIDCTokenInfo"]["ExpirationTime"], "2025-01-15T08:40:00Z");
    assert_eq!(v["Credentials"]["Expiration"], "2025-01-15T08:45:00Z");
    let claims = verify_token(&credentials(&v).2, &st, now()).unwrap();
    assert_eq!(claims.source, sub);
    assert_eq!(claims.session_name, "rrsa-fuse");

    let expired = jwt(&json!({"iss": ISSUER, "sub": sub, "exp": VECTOR_EPOCH}));
    assert_error(
        &handle("GET", &oidc_params(&expired, &[]), &st, now()),
        401,
        "AuthenticationFail.OIDCToken.Expired",
    );
    let invalid = [
        jwt(&json!({"iss": "https://evil.example", "sub": sub, "exp": VECTOR_EPOCH + 600})),
        jwt(&json!({"iss": ISSUER, "exp": VECTOR_EPOCH + 600})),
        jwt(&json!({"iss": ISSUER, "sub": sub})),
        jwt(&json!({"iss": ISSUER, "sub": sub, "exp": "tomorrow"})),
        jwt(&json!({"iss": ISSUER, "sub": sub, "exp": VECTOR_EPOCH + 7200, "nbf": VECTOR_EPOCH + 3600})),
        "not-a-jwt".to_string(),
        "a.b.c".to_string(),
        "abc".to_string(),
    ];
    for token in &invalid {
        assert_error(
            &handle("GET", &oidc_params(token, &[]), &st, now()),
            401,
            "AuthenticationFail.OIDCToken.Invalid",
        );
    }
    // The vector's token has no `exp`: refused.
    let root: Value = serde_json::from_str(STS_JSON).unwrap();
    let vector = json_params(&root["assume_role_with_oidc_unsigned"]["params"]);
    assert_error(
        &handle("POST", &vector, &st, now()),
        401,
        "AuthenticationFail.OIDCToken.Invalid",
    );

    // Provider / role / parameters.
    let mut unknown = oidc_params(&good, &[]);
    unknown.retain(|(k, _)| k != "OIDCProviderArn");
    assert_error(&handle("GET", &unknown, &st, now()), 400, "MissingParameter");
    unknown.push((
        "OIDCProviderArn".into(),
        "acs:ram::1234567890123456:oidc-provider/other".into(),
    ));
    assert_error(&handle("GET", &unknown, &st, now()), 404, "EntityNotExist.OIDCProvider");
    let mut bad_role = oidc_params(&good, &[]);
    bad_role.retain(|(k, _)| k != "RoleArn");
    bad_role.push(("RoleArn".into(), "acs:ram::1234567890123456:role/other".into()));
    assert_error(&handle("GET", &bad_role, &st, now()), 404, "EntityNotExist.Role");
    let mut bad_name = oidc_params(&good, &[]);
    bad_name.retain(|(k, _)| k != "RoleSessionName");
    bad_name.push(("RoleSessionName".into(), "x".into()));
    assert_error(
        &handle("GET", &bad_name, &st, now()),
        400,
        "InvalidParameter.RoleSessionName",
    );
    let skewed = oidc_params(&good, &[]);
    assert_error(
        &handle("GET", &skewed, &st, now() + Duration::seconds(901)),
        400,
        "InvalidTimeStamp.Expired",
    );

    // A provider without a configured issuer accepts any issuer.
    let mut any_issuer = state();
    any_issuer.oidc_providers[0].issuer = None;
    let other_iss = jwt(&json!({"iss": "https://elsewhere", "sub": sub, "exp": VECTOR_EPOCH + 600}));
    assert_ok(&handle("GET", &oidc_params(&other_iss, &[]), &any_issuer, now()));
}

#[test]
fn token_key_is_created_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = StsState::load_or_create_token_key(dir.path()).unwrap();
    let path = dir.path().join(".osslocal/token.key");
    assert_eq!(std::fs::read(&path).unwrap(), key);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        StsState::load_or_create_token_key(dir.path()).unwrap(),
        key,
        "same key after a restart"
    );
    let other = tempfile::tempdir().unwrap();
    assert_ne!(StsState::load_or_create_token_key(other.path()).unwrap(), key);
    // No stray temp files.
    let entries: Vec<_> = std::fs::read_dir(dir.path().join(".osslocal")).unwrap().collect();
    assert_eq!(entries.len(), 1);
    std::fs::write(&path, b"short").unwrap();
    assert!(matches!(
        StsState::load_or_create_token_key(dir.path()),
        Err(StsError::TokenKeyLength { len: 5, .. })
    ));
    // Tokens survive a restart that reloads the key.
    let mut st = state();
    st.token_key = key;
    let v = assert_ok(&handle("GET", &assume_params(&[("RoleSessionName", "ok")]), &st, now()));
    let mut restarted = state();
    restarted.token_key = key;
    assert!(verify_token(&credentials(&v).2, &restarted, now()).is_ok());
    assert!(matches!(
        verify_token(&credentials(&v).2, &state(), now()),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn session_claims_debug_hides_the_secret() {
    let st = state();
    let v = assert_ok(&handle("GET", &assume_params(&[("RoleSessionName", "ok")]), &st, now()));
    let claims = verify_token(&credentials(&v).2, &st, now()).unwrap();
    let debug = format!("{claims:?}");
    assert!(!debug.contains(&claims.access_key_secret));
    assert!(debug.contains(&claims.access_key_id));
}
