//! `OssClient` against a real `osslocal` process: every `ObjectClient` operation with signature
//! V4 and V1, with permanent keys and with an STS token obtained by a signed AssumeRole call,
//! plus the fault cases driven through the admin API (503s, connection resets mid-GET, expired
//! tokens, a wrong secret, a policy deny), with request counts checked in `/_osslocal/stats`.
//!
//! Needs the osslocal binary next to this test's target dir (`cargo build -p osslocal`, same
//! profile). Without it every test fails with a message saying so; the `OSSLOCAL_BIN`
//! environment variable overrides the location.

mod osslocal_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use osslocal_support::Osslocal;
use ossmount::auth::signer::pe;
use ossmount::auth::{AuthError, CredentialProvider, Credentials, StaticProvider};
use ossmount::client::oss::{OssClient, OssClientConfig};
use ossmount::client::{
    AppendObjectParams, ClientError, CompleteMultipartUploadParams, CopyObjectParams, CreateMultipartUploadParams,
    GetObjectParams, ListObjectsParams, MetadataDirective, ObjectClient, PutObjectParams, PutSymlinkParams,
    UploadPartCopyParams, UploadPartParams,
};
use ossmount::config::SignatureVersion;
use ossmount::crc64;
use ossmount::object::{ETag, ObjectType, UserMeta};
use ossmount::retry::RetryConfig;
use serde_json::{Value, json};
use sha1::Sha1;

const BUCKET: &str = "test-bucket";
const REGION: &str = "cn-hangzhou";
const AK: &str = "LTAItestaccesskey";
const SK: &str = "testSecretKey0123456789abcdef";
const ROLE: &str = "acs:ram::1234567890123456:role/ossmount-test";
const DENY_PUT_ROLE: &str = "acs:ram::1234567890123456:role/no-put";

/// osslocal with the test bucket, keys and roles (one of them denied PutObject).
impl Osslocal {
    fn start() -> Osslocal {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("no-put.json");
        std::fs::write(
            &policy,
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"*"},{"Effect":"Deny","Action":"oss:PutObject","Resource":"*"}]}"#,
        )
        .unwrap();
        let args: Vec<std::ffi::OsString> = [
            "--bucket".to_string(),
            BUCKET.to_string(),
            "--region".to_string(),
            REGION.to_string(),
            "--access-key".to_string(),
            format!("{AK}:{SK}"),
            "--role".to_string(),
            ROLE.to_string(),
            "--role".to_string(),
            format!("{DENY_PUT_ROLE}=@{}", policy.display()),
            "--min-duration".to_string(),
            "5".to_string(),
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        Osslocal::spawn(dir, &args)
    }

    async fn admin_post(&self, path: &str, body: Value) {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/_osslocal/{path}", self.addr))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "admin {path}: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }

    async fn faults(&self, body: Value) {
        self.admin_post("faults", body).await;
    }

    async fn clear_faults(&self) {
        self.admin_post("faults/clear", json!({})).await;
    }

    async fn reset_stats(&self) {
        self.admin_post("stats/reset", json!({})).await;
    }

    async fn stats(&self) -> Value {
        reqwest::Client::new()
            .get(format!("http://{}/_osslocal/stats", self.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn count(stats: &Value, group: &str, name: &str) -> u64 {
    stats[group][name].as_u64().unwrap_or(0)
}

/// AssumeRole with a raw RPC-signed GET (PROTOCOL.md §7.3).
async fn assume_role(addr: &str, role: &str, session: &str) -> Credentials {
    let mut params: Vec<(String, String)> = vec![
        ("Action".into(), "AssumeRole".into()),
        ("Version".into(), "2015-04-01".into()),
        ("Format".into(), "JSON".into()),
        ("AccessKeyId".into(), AK.into()),
        ("SignatureMethod".into(), "HMAC-SHA1".into()),
        ("SignatureVersion".into(), "1.0".into()),
        ("SignatureNonce".into(), uuid::Uuid::new_v4().to_string()),
        (
            "Timestamp".into(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
        ("RoleArn".into(), role.into()),
        ("RoleSessionName".into(), session.into()),
        ("DurationSeconds".into(), "3600".into()),
    ];
    params.sort();
    let canonical = params
        .iter()
        .map(|(k, v)| format!("{}={}", pe(k), pe(v)))
        .collect::<Vec<_>>()
        .join("&");
    let string_to_sign = format!("GET&%2F&{}", pe(&canonical));
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(format!("{SK}&").as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let url = format!("http://{addr}/?{canonical}&Signature={}", pe(&signature));
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "AssumeRole failed: {status} {body}");
    let c = &body["Credentials"];
    Credentials::new(
        c["AccessKeyId"].as_str().unwrap(),
        c["AccessKeySecret"].as_str().unwrap(),
    )
    .with_token(c["SecurityToken"].as_str().unwrap())
}

/// STS credentials from osslocal; a rejection triggers a new AssumeRole (counted).
struct AssumeRoleProvider {
    addr: String,
    role: String,
    current: tokio::sync::Mutex<Arc<Credentials>>,
    refreshes: AtomicUsize,
}

impl AssumeRoleProvider {
    async fn new(addr: &str, role: &str) -> Arc<Self> {
        let creds = assume_role(addr, role, "ossmount-test").await;
        Arc::new(AssumeRoleProvider {
            addr: addr.to_owned(),
            role: role.to_owned(),
            current: tokio::sync::Mutex::new(Arc::new(creds)),
            refreshes: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl CredentialProvider for AssumeRoleProvider {
    async fn credentials(&self) -> Result<Arc<Credentials>, AuthError> {
        Ok(self.current.lock().await.clone())
    }
    async fn refresh_after_rejection(&self, rejected: &Credentials) -> Result<Arc<Credentials>, AuthError> {
        let mut cur = self.current.lock().await;
        if cur.access_key_id != rejected.access_key_id {
            return Ok(cur.clone());
        }
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let fresh = Arc::new(assume_role(&self.addr, &self.role, "ossmount-test-refreshed").await);
        *cur = fresh.clone();
        Ok(fresh)
    }
    fn describe(&self) -> String {
        format!("AssumeRole {}", self.role)
    }
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        max_attempts: 10,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(100),
        max_total: Duration::from_secs(60),
    }
}

fn client(server: &Osslocal, version: SignatureVersion, provider: Arc<dyn CredentialProvider>) -> OssClient {
    let mut cfg = OssClientConfig::new(server.url(), BUCKET);
    cfg.region = Some(REGION.into());
    cfg.signature_version = version;
    cfg.retry = retry_config();
    cfg.read_timeout = Duration::from_secs(20);
    OssClient::new(cfg, provider).unwrap()
}

fn keys_provider(secret: &str) -> Arc<dyn CredentialProvider> {
    Arc::new(StaticProvider::new(Credentials::new(AK, secret), "test access key"))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 11) as u8 ^ seed)
        .collect()
}

async fn list_all(c: &OssClient, prefix: &str, page: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let r = c
            .list_objects(
                ListObjectsParams::new(prefix)
                    .max_keys(page)
                    .continuation_token(token.clone()),
            )
            .await
            .unwrap();
        assert!(r.objects.len() <= page);
        keys.extend(r.objects.into_iter().map(|o| o.key));
        match r.next_continuation_token {
            Some(t) => token = Some(t),
            None => return keys,
        }
    }
}

/// Every `ObjectClient` operation, with its observable effects checked.
async fn exercise_all_operations(c: &OssClient, tag: &str) {
    let p = format!("{tag}/");
    // PutObject / HeadObject / GetObject (full, ranged, clamped, beyond the end).
    let data = pattern(300_000, 1);
    let key = format!("{p}dir/data.bin");
    let mut meta = UserMeta::new();
    meta.insert("mode".into(), "33188".into());
    meta.insert("mtime".into(), "1736929800".into());
    let put = c
        .put_object(
            PutObjectParams::new(&key, Bytes::from(data.clone()))
                .user_meta(meta.clone())
                .content_type("application/x-test"),
        )
        .await
        .unwrap();
    assert_eq!(put.crc64, crc64::checksum(&data));
    let head = c.head_object(&key).await.unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.etag, put.etag);
    assert_eq!(head.crc64, Some(put.crc64));
    assert_eq!(head.user_meta.get("mode").map(String::as_str), Some("33188"));
    assert_eq!(head.content_type.as_deref(), Some("application/x-test"));
    let full = c.get_object(GetObjectParams::new(&key)).await.unwrap();
    assert!(full.data[..] == data[..], "full GET differs");
    let part = c
        .get_object(
            GetObjectParams::new(&key)
                .range(1000..70_000)
                .if_match(put.etag.clone()),
        )
        .await
        .unwrap();
    assert_eq!(part.offset, 1000);
    assert!(part.data[..] == data[1000..70_000], "ranged GET differs");
    let tail = c
        .get_object(GetObjectParams::new(&key).range(299_990..400_000))
        .await
        .unwrap();
    assert!(tail.data[..] == data[299_990..], "clamped range differs");
    assert!(matches!(
        c.get_object(GetObjectParams::new(&key).range(300_000..300_010)).await,
        Err(ClientError::InvalidRange(_))
    ));
    assert!(matches!(
        c.get_object(GetObjectParams::new(&key).if_match(ETag::new("\"0000\"")))
            .await,
        Err(ClientError::PreconditionFailed(_))
    ));
    // Empty object, with and without a range.
    let empty = format!("{p}empty");
    c.put_object(PutObjectParams::new(&empty, Bytes::new())).await.unwrap();
    assert!(
        c.get_object(GetObjectParams::new(&empty))
            .await
            .unwrap()
            .data
            .is_empty()
    );
    assert!(
        c.get_object(GetObjectParams::new(&empty).range(0..4096))
            .await
            .unwrap()
            .data
            .is_empty()
    );
    // Missing keys.
    assert!(matches!(
        c.head_object(&format!("{p}missing")).await,
        Err(ClientError::NoSuchKey(_))
    ));
    assert!(matches!(
        c.get_object(GetObjectParams::new(format!("{p}missing"))).await,
        Err(ClientError::NoSuchKey(_))
    ));
    // forbid_overwrite.
    assert!(matches!(
        c.put_object(PutObjectParams::new(&empty, Bytes::from_static(b"x")).forbid_overwrite(true))
            .await,
        Err(ClientError::AlreadyExists(_))
    ));
    // A key with every awkward character.
    let odd = format!("{p}uni/目录/文件 名+&=?#~!*'().txt");
    c.put_object(PutObjectParams::new(&odd, Bytes::from_static(b"odd")))
        .await
        .unwrap();
    assert_eq!(
        &c.get_object(GetObjectParams::new(&odd)).await.unwrap().data[..],
        b"odd"
    );

    // ListObjectsV2: delimiter, pagination, decoding.
    for k in ["tree/a", "tree/sub/b", "tree/sub/c", "tree/z/d", "tree/z/e"] {
        c.put_object(PutObjectParams::new(format!("{p}{k}"), Bytes::from_static(b"t")))
            .await
            .unwrap();
    }
    let l = c
        .list_objects(ListObjectsParams::new(format!("{p}tree/")).delimiter("/"))
        .await
        .unwrap();
    assert_eq!(
        l.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        vec![format!("{p}tree/a")]
    );
    assert_eq!(l.common_prefixes, vec![format!("{p}tree/sub/"), format!("{p}tree/z/")]);
    assert!(l.next_continuation_token.is_none());
    let all = list_all(c, &format!("{p}tree/"), 2).await;
    assert_eq!(all.len(), 5, "{all:?}");
    let uni = c
        .list_objects(ListObjectsParams::new(format!("{p}uni/")))
        .await
        .unwrap();
    assert_eq!(uni.objects.len(), 1);
    assert_eq!(uni.objects[0].key, odd);
    assert_eq!(uni.objects[0].size, 3);

    // Multipart: upload, upload-copy, list parts, complete, read back.
    let mpu = format!("{p}mpu/big.bin");
    let id = c
        .create_multipart_upload(CreateMultipartUploadParams::new(&mpu).user_meta(meta.clone()))
        .await
        .unwrap();
    let part1 = pattern(150 * 1024, 7);
    let part3 = pattern(10_000, 9);
    let up1 = c
        .upload_part(UploadPartParams {
            key: mpu.clone(),
            upload_id: id.clone(),
            part_number: 1,
            body: Bytes::from(part1.clone()),
        })
        .await
        .unwrap();
    assert_eq!(up1.crc64, Some(crc64::checksum(&part1)));
    let up2 = c
        .upload_part_copy(UploadPartCopyParams {
            key: mpu.clone(),
            upload_id: id.clone(),
            part_number: 2,
            source_key: key.clone(),
            source_range: Some(100..130_000),
            source_if_match: Some(put.etag.clone()),
        })
        .await
        .unwrap();
    assert_eq!(up2.size, 129_900);
    let up3 = c
        .upload_part(UploadPartParams {
            key: mpu.clone(),
            upload_id: id.clone(),
            part_number: 3,
            body: Bytes::from(part3.clone()),
        })
        .await
        .unwrap();
    let listed = c.list_parts(&mpu, &id).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(listed[0].size, part1.len() as u64);
    assert_eq!(listed[0].etag, up1.etag);
    let done = c
        .complete_multipart_upload(CompleteMultipartUploadParams {
            key: mpu.clone(),
            upload_id: id.clone(),
            parts: vec![up1, up2, up3],
            forbid_overwrite: false,
        })
        .await
        .unwrap();
    let mut expected = part1.clone();
    expected.extend_from_slice(&data[100..130_000]);
    expected.extend_from_slice(&part3);
    assert_eq!(done.crc64, crc64::checksum(&expected));
    let got = c.get_object(GetObjectParams::new(&mpu)).await.unwrap();
    assert!(got.data[..] == expected[..], "multipart object differs");
    assert_eq!(got.meta.object_type, ObjectType::Multipart);
    assert_eq!(got.meta.user_meta.get("mode").map(String::as_str), Some("33188"));
    // Abort.
    let id2 = c
        .create_multipart_upload(CreateMultipartUploadParams::new(format!("{p}mpu/aborted")))
        .await
        .unwrap();
    c.upload_part(UploadPartParams {
        key: format!("{p}mpu/aborted"),
        upload_id: id2.clone(),
        part_number: 1,
        body: Bytes::from_static(b"abc"),
    })
    .await
    .unwrap();
    c.abort_multipart_upload(&format!("{p}mpu/aborted"), &id2)
        .await
        .unwrap();
    assert!(matches!(
        c.list_parts(&format!("{p}mpu/aborted"), &id2).await,
        Err(ClientError::NoSuchKey(_))
    ));
    assert!(matches!(
        c.head_object(&format!("{p}mpu/aborted")).await,
        Err(ClientError::NoSuchKey(_))
    ));

    // CopyObject: COPY keeps metadata, REPLACE sets new.
    let copy1 = format!("{p}copy/same meta.bin");
    let r = c
        .copy_object(CopyObjectParams {
            source_key: key.clone(),
            dest_key: copy1.clone(),
            metadata: MetadataDirective::Copy,
            source_if_match: Some(put.etag.clone()),
            forbid_overwrite: false,
        })
        .await
        .unwrap();
    if let Some(crc) = r.crc64 {
        assert_eq!(crc, put.crc64);
    }
    let h = c.head_object(&copy1).await.unwrap();
    assert_eq!(h.crc64, Some(put.crc64));
    assert_eq!(h.user_meta.get("mode").map(String::as_str), Some("33188"));
    let mut meta2 = UserMeta::new();
    meta2.insert("mode".into(), "33261".into());
    let copy2 = format!("{p}copy/new+meta.bin");
    c.copy_object(CopyObjectParams {
        source_key: key.clone(),
        dest_key: copy2.clone(),
        metadata: MetadataDirective::Replace {
            content_type: Some("text/plain".into()),
            user_meta: meta2,
        },
        source_if_match: None,
        forbid_overwrite: false,
    })
    .await
    .unwrap();
    let h = c.head_object(&copy2).await.unwrap();
    assert_eq!(h.user_meta.get("mode").map(String::as_str), Some("33261"));
    assert!(!h.user_meta.contains_key("mtime"));
    assert_eq!(h.content_type.as_deref(), Some("text/plain"));
    assert!(matches!(
        c.copy_object(CopyObjectParams {
            source_key: key.clone(),
            dest_key: format!("{p}copy/x"),
            metadata: MetadataDirective::Copy,
            source_if_match: Some(ETag::new("\"0000\"")),
            forbid_overwrite: false,
        })
        .await,
        Err(ClientError::PreconditionFailed(_))
    ));

    // AppendObject, CRC chained.
    let app = format!("{p}log/app.txt");
    let a1 = c
        .append_object(AppendObjectParams {
            key: app.clone(),
            position: 0,
            body: Bytes::from_static(b"hello "),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a1.next_position, 6);
    let a2 = c
        .append_object(AppendObjectParams {
            key: app.clone(),
            position: 6,
            body: Bytes::from_static(b"world\n"),
            init_crc64: a1.crc64,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a2.next_position, 12);
    assert_eq!(a2.crc64, Some(crc64::checksum(b"hello world\n")));
    match c
        .append_object(AppendObjectParams {
            key: app.clone(),
            position: 3,
            body: Bytes::from_static(b"x"),
            ..Default::default()
        })
        .await
    {
        Err(ClientError::AppendPositionMismatch { next_position, .. }) => assert_eq!(next_position, Some(12)),
        other => panic!("expected AppendPositionMismatch, got {other:?}"),
    }
    assert!(matches!(
        c.append_object(AppendObjectParams {
            key: key.clone(),
            position: 300_000,
            body: Bytes::from_static(b"x"),
            ..Default::default()
        })
        .await,
        Err(ClientError::NotAppendable(_))
    ));
    let h = c.head_object(&app).await.unwrap();
    assert_eq!(h.object_type, ObjectType::Appendable);
    assert_eq!(
        &c.get_object(GetObjectParams::new(&app)).await.unwrap().data[..],
        b"hello world\n"
    );

    // Symlinks: the target round-trips whatever its characters.
    let link = format!("{p}links/l1");
    let target = format!("{p}dir/data.bin");
    c.put_symlink(PutSymlinkParams {
        key: link.clone(),
        target: target.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let s = c.get_symlink(&link).await.unwrap();
    assert_eq!(s.target, target);
    let weird = "../other dir/ü+%20&x.txt".to_owned();
    c.put_symlink(PutSymlinkParams {
        key: format!("{p}links/l2"),
        target: weird.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(c.get_symlink(&format!("{p}links/l2")).await.unwrap().target, weird);

    // DeleteObject (also of a missing key) and DeleteMultipleObjects.
    c.delete_object(&copy1).await.unwrap();
    c.delete_object(&copy1).await.unwrap();
    assert!(matches!(c.head_object(&copy1).await, Err(ClientError::NoSuchKey(_))));
    let doomed: Vec<String> = [
        "tree/a",
        "tree/sub/b",
        "tree/sub/c",
        "tree/z/d",
        "tree/z/e",
        "tree/never-existed",
    ]
    .iter()
    .map(|k| format!("{p}{k}"))
    .collect();
    let ctl = format!("{p}tree/ctl\r\n\u{1}key");
    c.put_object(PutObjectParams::new(&ctl, Bytes::from_static(b"c")))
        .await
        .unwrap();
    let mut doomed = doomed;
    doomed.push(ctl.clone());
    let failed = c.delete_objects(&doomed).await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(list_all(c, &format!("{p}tree/"), 1000).await.is_empty());
    assert!(matches!(
        c.delete_objects(&vec!["x".to_owned(); 1001]).await,
        Err(ClientError::InvalidRequest(_))
    ));

    // GetBucketInfo.
    let info = c.get_bucket_info().await.unwrap();
    assert_eq!(info.name, BUCKET);
    assert_eq!(info.location, format!("oss-{REGION}"));
}

#[tokio::test]
async fn all_operations_v4_access_key() {
    let server = Osslocal::start();
    exercise_all_operations(&client(&server, SignatureVersion::V4, keys_provider(SK)), "v4ak").await;
}

#[tokio::test]
async fn all_operations_v1_access_key() {
    let server = Osslocal::start();
    exercise_all_operations(&client(&server, SignatureVersion::V1, keys_provider(SK)), "v1ak").await;
}

#[tokio::test]
async fn all_operations_v4_sts_token() {
    let server = Osslocal::start();
    let provider = AssumeRoleProvider::new(&server.addr, ROLE).await;
    exercise_all_operations(&client(&server, SignatureVersion::V4, provider.clone()), "v4sts").await;
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn all_operations_v1_sts_token() {
    let server = Osslocal::start();
    let provider = AssumeRoleProvider::new(&server.addr, ROLE).await;
    exercise_all_operations(&client(&server, SignatureVersion::V1, provider.clone()), "v1sts").await;
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn every_operation_survives_20_percent_503() {
    let server = Osslocal::start();
    server
        .faults(json!({"error_rate": 0.2, "error_status": 503, "error_code": "ServiceUnavailable"}))
        .await;
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        exercise_all_operations(
            &client(&server, version, keys_provider(SK)),
            &format!("faulty-{version:?}"),
        )
        .await;
    }
    let stats = server.stats().await;
    assert!(
        count(&stats, "errors", "ServiceUnavailable") > 0,
        "no fault was injected: {stats}"
    );
}

#[tokio::test]
async fn reset_mid_get_is_resumed_with_identical_bytes() {
    let server = Osslocal::start();
    let c = client(&server, SignatureVersion::V4, keys_provider(SK));
    let data = pattern(1024 * 1024, 3);
    c.put_object(PutObjectParams::new("big/object.bin", Bytes::from(data.clone())))
        .await
        .unwrap();
    server.reset_stats().await;
    server
        .faults(json!({"reset_rate": 1.0, "reset_after_bytes": 65536, "ops": ["GetObject"], "max_faults": 3}))
        .await;
    let got = c.get_object(GetObjectParams::new("big/object.bin")).await.unwrap();
    assert_eq!(got.data.len(), data.len());
    assert!(got.data[..] == data[..], "resumed GET differs");
    let stats = server.stats().await;
    assert_eq!(
        count(&stats, "ops", "GetObject"),
        4,
        "one GET plus three resumptions: {stats}"
    );
    // A ranged read through resets too.
    server.clear_faults().await;
    server
        .faults(json!({"reset_rate": 1.0, "reset_after_bytes": 10000, "ops": ["GetObject"], "max_faults": 2}))
        .await;
    let got = c
        .get_object(GetObjectParams::new("big/object.bin").range(5000..205_000))
        .await
        .unwrap();
    assert!(got.data[..] == data[5000..205_000], "resumed ranged GET differs");
}

#[tokio::test]
async fn expired_token_forces_exactly_one_refresh() {
    let server = Osslocal::start();
    let provider = AssumeRoleProvider::new(&server.addr, ROLE).await;
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let c = client(&server, version, provider.clone());
        let key = format!("exp/{version:?}");
        c.put_object(PutObjectParams::new(&key, Bytes::from_static(b"still here")))
            .await
            .unwrap();
        let before = provider.refreshes.load(Ordering::SeqCst);
        server.reset_stats().await;
        // Wait a moment so the refreshed token is issued strictly after the expiry instant.
        server.faults(json!({"expire_tokens": true})).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let got = c.get_object(GetObjectParams::new(&key)).await.unwrap();
        assert_eq!(&got.data[..], b"still here");
        assert_eq!(provider.refreshes.load(Ordering::SeqCst), before + 1, "{version:?}");
        let stats = server.stats().await;
        assert_eq!(
            count(&stats, "errors", "SecurityTokenExpired"),
            1,
            "{version:?}: {stats}"
        );
        assert_eq!(count(&stats, "ops", "GetObject"), 2, "{version:?}: {stats}");
        server.clear_faults().await;
    }
}

#[tokio::test]
async fn wrong_secret_is_not_retried() {
    let server = Osslocal::start();
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        server.reset_stats().await;
        let c = client(&server, version, keys_provider("not-the-secret"));
        match c.get_object(GetObjectParams::new("whatever")).await {
            Err(ClientError::AccessDenied(e)) => assert_eq!(e.code, "SignatureDoesNotMatch", "{version:?}"),
            other => panic!("{version:?}: expected AccessDenied, got {other:?}"),
        }
        let stats = server.stats().await;
        assert_eq!(stats["requests"].as_u64(), Some(1), "{version:?}: {stats}");
        assert_eq!(
            count(&stats, "errors", "SignatureDoesNotMatch"),
            1,
            "{version:?}: {stats}"
        );
    }
}

#[tokio::test]
async fn policy_deny_is_not_retried() {
    let server = Osslocal::start();
    let provider = AssumeRoleProvider::new(&server.addr, DENY_PUT_ROLE).await;
    let c = client(&server, SignatureVersion::V4, provider.clone());
    server.reset_stats().await;
    match c
        .put_object(PutObjectParams::new("denied.txt", Bytes::from_static(b"no")))
        .await
    {
        Err(ClientError::AccessDenied(e)) => assert_eq!(e.code, "AccessDenied"),
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    let stats = server.stats().await;
    assert_eq!(stats["requests"].as_u64(), Some(1), "{stats}");
    assert_eq!(count(&stats, "errors", "AccessDenied"), 1, "{stats}");
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 0);
    // Reads are still allowed by that policy.
    assert!(matches!(
        c.head_object("denied.txt").await,
        Err(ClientError::NoSuchKey(_))
    ));
}

#[tokio::test]
async fn presigned_urls_are_accepted_by_osslocal() {
    use ossmount::auth::signer::{KeyEncoding, SignableRequest, UrlBase, presign_v1, presign_v4};
    let server = Osslocal::start();
    let provider = AssumeRoleProvider::new(&server.addr, ROLE).await;
    let c = client(&server, SignatureVersion::V4, provider.clone());
    let key = "shared/a file+ü.txt";
    c.put_object(PutObjectParams::new(key, Bytes::from_static(b"presigned body")))
        .await
        .unwrap();
    let base = UrlBase {
        scheme: "http".into(),
        host: server.addr.clone(),
        path_style: true,
    };
    let req = SignableRequest::new("GET", Some(BUCKET), Some(key));
    let now = chrono::Utc::now();
    let sts_creds = provider.credentials().await.unwrap();
    let ak_creds = Credentials::new(AK, SK);
    let urls = vec![
        presign_v4(&req, &ak_creds, REGION, now, 600, &base).unwrap(),
        presign_v4(&req, &sts_creds, REGION, now, 600, &base).unwrap(),
        presign_v1(&req, &ak_creds, now.timestamp() + 600, &base, KeyEncoding::EncodeSlash),
        presign_v1(&req, &sts_creds, now.timestamp() + 600, &base, KeyEncoding::KeepSlash),
    ];
    for url in urls {
        let resp = reqwest::get(&url).await.unwrap();
        let status = resp.status();
        let body = resp.bytes().await.unwrap();
        assert!(
            status.is_success(),
            "presigned GET refused: {status} {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(&body[..], b"presigned body");
    }
    // A tampered signature is refused.
    let mut bad = presign_v4(&req, &ak_creds, REGION, now, 600, &base).unwrap();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    assert_eq!(reqwest::get(&bad).await.unwrap().status(), 403);
}

#[tokio::test]
async fn concurrent_reads_survive_errors_and_resets() {
    let server = Osslocal::start();
    let c = Arc::new(client(&server, SignatureVersion::V4, keys_provider(SK)));
    let mut objects = Vec::new();
    for i in 0..8u8 {
        let data = pattern(200_000 + i as usize * 1000, i);
        let key = format!("par/{i}.bin");
        c.put_object(PutObjectParams::new(&key, Bytes::from(data.clone())))
            .await
            .unwrap();
        objects.push((key, data));
    }
    server
        .faults(json!({"error_rate": 0.2, "error_status": 503, "reset_rate": 0.3, "reset_after_bytes": 30000}))
        .await;
    let objects = Arc::new(objects);
    let mut tasks = Vec::new();
    for t in 0..32usize {
        let c = c.clone();
        let objects = objects.clone();
        tasks.push(tokio::spawn(async move {
            let (key, data) = &objects[t % objects.len()];
            let start = (t * 4099) % 100_000;
            let end = start + 60_000 + t * 100;
            let got = c
                .get_object(GetObjectParams::new(key).range(start as u64..end as u64))
                .await
                .unwrap();
            assert!(got.data[..] == data[start..end], "task {t}: bytes differ");
            let full = c.get_object(GetObjectParams::new(key)).await.unwrap();
            assert!(full.data[..] == data[..], "task {t}: full bytes differ");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = server.stats().await;
    assert!(count(&stats, "errors", "ServiceUnavailable") > 0, "{stats}");
}

#[tokio::test]
async fn server_clock_offset_is_learnt_once() {
    let server = Osslocal::start();
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let c = client(&server, version, keys_provider(SK));
        let key = format!("skew/{version:?}");
        c.put_object(PutObjectParams::new(&key, Bytes::from_static(b"tick")))
            .await
            .unwrap();
        server.faults(json!({"time_offset_secs": 3600})).await;
        server.reset_stats().await;
        for _ in 0..3 {
            assert_eq!(
                &c.get_object(GetObjectParams::new(&key)).await.unwrap().data[..],
                b"tick"
            );
        }
        let stats = server.stats().await;
        assert_eq!(
            count(&stats, "errors", "RequestTimeTooSkewed"),
            1,
            "{version:?}: only the first request is rejected: {stats}"
        );
        assert_eq!(count(&stats, "ops", "GetObject"), 4, "{version:?}: {stats}");
        server.clear_faults().await;
    }
}
