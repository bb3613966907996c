//! Credential sources against local fakes: ECS metadata (IMDSv2, IMDSv1 fallback, IMDSv1
//! disabled, Code != Success), credentials URI, credential process (ok, garbage, non-zero exit
//! with stderr, hang → timeout), and the builder: ini and CLI profiles, the default chain
//! order, and up-front validation errors.

mod creds_support;

use std::path::Path;
use std::time::{Duration, Instant};

use creds_support::{FakeServer, Resp, session_json, sts_success};
use ossmount::auth::cache::CredentialSource;
use ossmount::auth::ecs::EcsSource;
use ossmount::auth::process::ProcessSource;
use ossmount::auth::uri::UriSource;
use ossmount::auth::{AuthError, CredentialProvider, Env, build_credentials_with_env};
use ossmount::config::CredentialsConfig;

const CREDS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

async fn ecs_server(v2: bool, code: &'static str) -> FakeServer {
    FakeServer::start(move |req| match (req.method.as_str(), req.path.as_str()) {
        ("PUT", "/latest/api/token") if v2 => {
            if req.header("X-aliyun-ecs-metadata-token-ttl-seconds") == Some("21600") {
                Resp::new(200, "imds-token-1")
            } else {
                Resp::new(400, "no ttl")
            }
        }
        ("PUT", _) => Resp::new(403, "forbidden"),
        ("GET", p) => {
            if v2 && req.header("X-aliyun-ecs-metadata-token") != Some("imds-token-1") {
                return Resp::new(401, "token required");
            }
            if p == CREDS_PATH {
                Resp::new(200, "EcsRole\n")
            } else if p == format!("{CREDS_PATH}EcsRole") {
                Resp::new(
                    200,
                    session_json("STS.ecs", "ecs-secret", "ecs-token", 3600).replace("Success", code),
                )
            } else {
                Resp::new(404, "")
            }
        }
        _ => Resp::new(405, ""),
    })
    .await
}

#[tokio::test]
async fn ecs_imdsv2_discovers_role() {
    let s = ecs_server(true, "Success").await;
    let src = EcsSource::new(&s.url(), None, false).unwrap();
    let c = src.fetch().await.unwrap();
    assert_eq!(c.access_key_id, "STS.ecs");
    assert_eq!(c.security_token.as_deref(), Some("ecs-token"));
    let paths: Vec<String> = s
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        vec![
            "PUT /latest/api/token".to_string(),
            format!("GET {CREDS_PATH}"),
            format!("GET {CREDS_PATH}EcsRole")
        ]
    );
}

#[tokio::test]
async fn ecs_falls_back_to_imdsv1_unless_disabled() {
    let s = ecs_server(false, "Success").await;
    let src = EcsSource::new(&s.url(), Some("EcsRole".into()), false).unwrap();
    assert_eq!(src.describe(), "ECS RAM role EcsRole");
    assert_eq!(src.fetch().await.unwrap().access_key_id, "STS.ecs");
    assert!(
        s.requests()
            .iter()
            .all(|r| r.header("X-aliyun-ecs-metadata-token").is_none())
    );

    let src = EcsSource::new(&s.url(), Some("EcsRole".into()), true).unwrap();
    let e = src.fetch().await.unwrap_err().to_string();
    assert!(e.contains("IMDSv1 is disabled"), "{e}");
}

#[tokio::test]
async fn ecs_code_not_success_and_unreachable() {
    let s = ecs_server(true, "Failed").await;
    let e = EcsSource::new(&s.url(), None, false)
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AuthError::Service { code, .. } if code == "Failed"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("ecs-secret"));

    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let t = Instant::now();
    let e = EcsSource::new(&url, None, false).unwrap().fetch().await.unwrap_err();
    assert!(matches!(e, AuthError::Unreachable { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn ecs_hanging_metadata_times_out_in_about_a_second() {
    let s = FakeServer::start(|_| Resp::new(200, "x").delayed(Duration::from_secs(30))).await;
    let t = Instant::now();
    let e = EcsSource::new(&s.url(), Some("r".into()), false)
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(matches!(e, AuthError::Unreachable { .. }), "{e:?}");
}

#[tokio::test]
async fn credentials_uri_ok_and_errors() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vectors/examples/credentials_uri_response.json"
    ))
    .unwrap();
    let s = FakeServer::start(move |req| match req.path.as_str() {
        "/creds?secret=q" => Resp::new(200, example.clone()),
        "/fail" => Resp::new(200, r#"{"Code":"Denied","AccessKeyId":"x"}"#),
        "/partial" => Resp::new(200, r#"{"Code":"Success","AccessKeyId":"x","AccessKeySecret":"y"}"#),
        _ => Resp::new(500, "boom"),
    })
    .await;
    let src = UriSource::new(&format!("{}/creds?secret=q", s.url())).unwrap();
    assert!(!src.describe().contains("secret=q"), "{}", src.describe());
    let c = src.fetch().await.unwrap();
    assert_eq!(c.access_key_id, "STS.NUgYrLnoC37mZZCNnAbez2Ech");
    assert_eq!(c.expiration.unwrap().to_rfc3339(), "2025-01-15T09:30:00+00:00");
    let e = UriSource::new(&format!("{}/fail", s.url()))
        .unwrap()
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Denied"), "{e}");
    let e = UriSource::new(&format!("{}/partial", s.url()))
        .unwrap()
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing SecurityToken"), "{e}");
    let e = UriSource::new(&format!("{}/other", s.url()))
        .unwrap()
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("500"), "{e}");
    assert!(UriSource::new("ftp://x/y").is_err());
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn credential_process_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let ok = script(
        dir.path(),
        "ok.sh",
        r#"echo '{"AccessKeyId":"STS.proc","AccessKeySecret":"proc-secret","SecurityToken":"proc-token","Expiration":"2030-01-01T00:00:00Z"}'"#,
    );
    let c = ProcessSource::new(format!("{ok} --arg"))
        .unwrap()
        .fetch()
        .await
        .unwrap();
    assert_eq!(c.access_key_id, "STS.proc");
    assert_eq!(c.expiration.unwrap().to_rfc3339(), "2030-01-01T00:00:00+00:00");

    let cli = script(
        dir.path(),
        "cli.sh",
        r#"echo '{"mode":"StsToken","access_key_id":"STS.cli","access_key_secret":"s","sts_token":"t"}'"#,
    );
    assert_eq!(
        ProcessSource::new(cli).unwrap().fetch().await.unwrap().access_key_id,
        "STS.cli"
    );

    let garbage = script(
        dir.path(),
        "garbage.sh",
        "echo 'AccessKeySecret=leaked-secret'; echo 'warn: x' >&2",
    );
    let e = ProcessSource::new(garbage)
        .unwrap()
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not JSON") && e.contains("warn: x"), "{e}");
    assert!(!e.contains("leaked-secret"), "{e}");

    let fails = script(
        dir.path(),
        "fails.sh",
        "echo '{\"AccessKeySecret\":\"stdout-secret\"}'; echo 'login expired' >&2; exit 3",
    );
    let e = ProcessSource::new(fails)
        .unwrap()
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("exit status: 3") && e.contains("login expired"), "{e}");
    assert!(!e.contains("stdout-secret"), "{e}");

    let long_err = script(
        dir.path(),
        "long.sh",
        "head -c 5000 /dev/zero | tr '\\0' 'e' >&2; exit 1",
    );
    let e = ProcessSource::new(long_err)
        .unwrap()
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.len() < 700, "stderr must be truncated: {} chars", e.len());
}

#[tokio::test]
async fn credential_process_hang_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("still-running");
    let hang = script(dir.path(), "hang.sh", &format!("sleep 3; touch {}", marker.display()));
    let t = Instant::now();
    let e = ProcessSource::new(hang)
        .unwrap()
        .with_timeout(Duration::from_millis(500))
        .fetch()
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(e.to_string().contains("did not finish"), "{e}");
    // The whole process group was killed: the script never reaches `touch`.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!marker.exists(), "the hung script kept running");
}

// ---------- builder ----------

/// An environment with HOME in a temp dir and ECS metadata pointed at a closed port.
fn sandbox() -> (tempfile::TempDir, Env) {
    let home = tempfile::tempdir().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let env = Env::from_pairs([
        ("HOME", home.path().display().to_string()),
        ("OSSMOUNT_ECS_METADATA_ENDPOINT", closed),
    ]);
    (home, env)
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/data/vectors/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn build_err(cfg: &CredentialsConfig, env: &Env) -> String {
    match build_credentials_with_env(cfg, env) {
        Ok(b) => panic!("expected an error, built {}", b.describe()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn default_chain_prefers_environment_then_cli_then_ini() {
    let (home, mut env) = sandbox();
    // Nothing configured: a clear "not found" listing what was tried.
    let b = build_credentials_with_env(&CredentialsConfig::default(), &env).unwrap();
    let e = b.provider().credentials().await.unwrap_err().to_string();
    assert!(
        e.contains("no credentials found") && e.contains("ECS RAM role") && e.contains("not configured"),
        "{e}"
    );

    write_private(
        &home.path().join(".alibabacloud/credentials"),
        &example("alibabacloud_credentials.ini"),
    );
    let b = build_credentials_with_env(&CredentialsConfig::default(), &env).unwrap();
    assert_eq!(
        b.provider().credentials().await.unwrap().access_key_id,
        "LTAI5tFuseVectorsAccessKey"
    );
    assert!(b.describe().contains("profile default in"), "{}", b.describe());

    let cli = example("aliyun_cli_config.json").replace("\"current\": \"default\"", "\"current\": \"sts\"");
    write_private(&home.path().join(".aliyun/config.json"), &cli);
    let b = build_credentials_with_env(&CredentialsConfig::default(), &env).unwrap();
    assert_eq!(
        b.provider().credentials().await.unwrap().access_key_id,
        "STS.NUgYrLnoC37mZZCNnAbez2Ech"
    );
    assert!(b.describe().contains("aliyun CLI"), "{}", b.describe());

    env.set("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true");
    let b = build_credentials_with_env(&CredentialsConfig::default(), &env).unwrap();
    assert_eq!(
        b.provider().credentials().await.unwrap().access_key_id,
        "LTAI5tFuseVectorsAccessKey"
    );

    env.set("OSS_ACCESS_KEY_ID", "env-id");
    env.set("OSS_ACCESS_KEY_SECRET", "env-secret");
    let b = build_credentials_with_env(&CredentialsConfig::default(), &env).unwrap();
    let p = b.provider();
    assert_eq!(p.credentials().await.unwrap().access_key_id, "env-id");
    assert_eq!(p.describe(), "default chain: environment (OSS_ACCESS_KEY_ID)");
}

#[tokio::test]
async fn default_chain_uses_credentials_uri_last_and_remembers() {
    let (_home, mut env) = sandbox();
    let s = FakeServer::start(|_| Resp::new(200, session_json("STS.uri", "s", "t", 3600))).await;
    env.set("ALIBABA_CLOUD_CREDENTIALS_URI", format!("{}/c", s.url()));
    let b = build_credentials_with_env(&CredentialsConfig::default(), &env).unwrap();
    let p = b.provider();
    assert_eq!(p.credentials().await.unwrap().access_key_id, "STS.uri");
    let first = p.credentials().await.unwrap();
    p.refresh_after_rejection(&first).await.unwrap();
    // Remembered: the second fetch goes straight to the URI (no ECS attempt in between).
    assert_eq!(s.requests().len(), 2);
    assert!(p.describe().contains("credentials URI"), "{}", p.describe());
}

#[tokio::test]
async fn explicit_profile_from_ini_and_cli_config() {
    let (home, env) = sandbox();
    write_private(
        &home.path().join(".alibabacloud/credentials"),
        &example("alibabacloud_credentials.ini"),
    );
    write_private(
        &home.path().join(".aliyun/config.json"),
        &example("aliyun_cli_config.json"),
    );
    let cfg = |p: &str| CredentialsConfig {
        profile: Some(p.into()),
        ..Default::default()
    };
    // ini profile of type ram_role_arn → AssumeRole over the profile's keys.
    let b = build_credentials_with_env(&cfg("role"), &env).unwrap();
    assert!(
        b.describe()
            .starts_with("AssumeRole acs:ram::1234567890123456:role/oss-fuse-role (base: profile role"),
        "{}",
        b.describe()
    );
    // CLI-only profile.
    let b = build_credentials_with_env(&cfg("sts"), &env).unwrap();
    assert_eq!(
        b.provider().credentials().await.unwrap().security_token.as_deref(),
        Some("CAIS8gF1q6Ft5B2y...")
    );
    let b = build_credentials_with_env(&cfg("chained"), &env).unwrap();
    assert!(
        b.describe().contains("base: aliyun CLI profile default"),
        "{}",
        b.describe()
    );
    let b = build_credentials_with_env(&cfg("ext"), &env).unwrap();
    assert_eq!(b.describe(), "credential process /usr/local/bin/get-oss-creds");
    let e = build_err(&cfg("nosuch"), &env);
    assert!(
        e.contains("profile \"nosuch\" not found") && e.contains("credentials") && e.contains("config.json"),
        "{e}"
    );
    // OIDC profiles need their token file now.
    let e = build_err(&cfg("rrsa"), &env);
    assert!(e.contains("OIDC token file"), "{e}");
}

#[tokio::test]
async fn role_arn_over_ini_base_against_fake_sts() {
    let (home, mut env) = sandbox();
    let ini = home.path().join("creds.ini");
    write_private(
        &ini,
        "[base]\ntype = access_key\naccess_key_id = LTAIbase\naccess_key_secret = base-secret\n",
    );
    let s = FakeServer::start(|req| {
        let f = req.form();
        if f["AccessKeyId"] == "LTAIbase" && f["DurationSeconds"] == "20" && f["RoleSessionName"] == "my-session" {
            Resp::new(200, sts_success("STS.assumed", "s", "t", 20))
        } else {
            Resp::new(400, r#"{"Code":"InvalidParameter","Message":"unexpected"}"#)
        }
    })
    .await;
    let cfg = CredentialsConfig {
        credentials_file: Some(ini),
        profile: Some("base".into()),
        role_arn: Some("acs:ram::1234567890123456:role/r".into()),
        role_session_name: Some("my-session".into()),
        duration_secs: Some(20),
        sts_endpoint: Some(s.url()),
        ..Default::default()
    };
    let e = build_err(&cfg, &env);
    assert!(e.contains("duration 20 s out of range"), "{e}");
    env.set("OSSMOUNT_ALLOW_SHORT_DURATION", "1");
    let b = build_credentials_with_env(&cfg, &env).unwrap();
    assert_eq!(
        b.describe(),
        "AssumeRole acs:ram::1234567890123456:role/r (base: profile base in creds.ini)".replace(
            "creds.ini",
            &cfg.credentials_file.as_ref().unwrap().display().to_string()
        )
    );
    assert_eq!(b.provider().credentials().await.unwrap().access_key_id, "STS.assumed");
}

#[test]
fn validation_errors_are_one_line_and_name_the_problem() {
    let (home, mut env) = sandbox();
    env.set("ALIBABA_CLOUD_ACCESS_KEY_ID", "a");
    env.set("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "b");
    let role = |f: &dyn Fn(&mut CredentialsConfig)| {
        let mut c = CredentialsConfig {
            role_arn: Some("acs:ram::1234567890123456:role/r".into()),
            ..Default::default()
        };
        f(&mut c);
        c
    };
    let cases: Vec<(CredentialsConfig, &str)> = vec![
        (
            role(&|c| c.role_arn = Some("acs:ram::12x:role/r".into())),
            "invalid role ARN",
        ),
        (
            role(&|c| c.policy = Some("{\"Statement\": [".into())),
            "session policy is not valid JSON",
        ),
        (role(&|c| c.duration_secs = Some(100)), "out of range"),
        (role(&|c| c.duration_secs = Some(86400)), "out of range"),
        (
            role(&|c| c.role_session_name = Some("bad name!".into())),
            "invalid role session name",
        ),
        (role(&|c| c.external_id = Some("x".into())), "invalid external id"),
        (
            CredentialsConfig {
                policy: Some("{}".into()),
                ..Default::default()
            },
            "--policy requires --role-arn",
        ),
        (
            CredentialsConfig {
                access_key_id: Some("a".into()),
                ..Default::default()
            },
            "access key id given without an access key secret",
        ),
        (
            CredentialsConfig {
                credential_process: Some("x".into()),
                credentials_uri: Some("http://127.0.0.1/".into()),
                ..Default::default()
            },
            "conflicting credential sources",
        ),
        (
            CredentialsConfig {
                credentials_file: Some(home.path().join("missing.ini")),
                ..Default::default()
            },
            "cannot read",
        ),
        (
            CredentialsConfig {
                credentials_uri: Some("not a uri".into()),
                ..Default::default()
            },
            "invalid URI",
        ),
        (
            CredentialsConfig {
                sts_endpoint: Some("ftp://x".into()),
                ..role(&|_| {})
            },
            "invalid STS endpoint",
        ),
    ];
    for (cfg, want) in cases {
        let e = build_err(&cfg, &env);
        assert!(e.contains(want), "want {want:?} in {e}");
        assert!(!e.contains('\n'), "multi-line: {e}");
    }
    // Broken environment configuration fails the default chain up front.
    let (_h2, mut env2) = sandbox();
    env2.set("OSS_ACCESS_KEY_ID", "only-the-id");
    let e = build_err(&CredentialsConfig::default(), &env2);
    assert!(e.contains("OSS_ACCESS_KEY_SECRET is not"), "{e}");
    let (_h3, mut env3) = sandbox();
    env3.set("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1234567890123456:role/r");
    env3.set(
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "acs:ram::1234567890123456:oidc-provider/p",
    );
    env3.set(
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        home.path().join("no-token").display().to_string(),
    );
    let e = build_err(&CredentialsConfig::default(), &env3);
    assert!(e.contains("OIDC token file") && e.contains("no-token"), "{e}");
    // A valid explicit config describes itself.
    let b = build_credentials_with_env(&role(&|_| {}), &env).unwrap();
    assert!(
        b.describe()
            .starts_with("AssumeRole acs:ram::1234567890123456:role/r (base: default chain"),
        "{}",
        b.describe()
    );
}

#[tokio::test]
async fn group_readable_credential_file_is_accepted() {
    use std::os::unix::fs::PermissionsExt;
    let (home, env) = sandbox();
    let p = home.path().join("open.ini");
    std::fs::write(
        &p,
        "[default]\ntype = access_key\naccess_key_id = a\naccess_key_secret = b\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let b = build_credentials_with_env(
        &CredentialsConfig {
            credentials_file: Some(p),
            ..Default::default()
        },
        &env,
    )
    .unwrap();
    assert_eq!(b.provider().credentials().await.unwrap().access_key_id, "a");
}
