use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::sts::StsState;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn config() -> AuthConfig {
    let keys: HashMap<String, String> = [(AK.to_string(), SK.to_string())].into();
    AuthConfig {
        keys: keys.clone(),
        anonymous: false,
        region: "cn-hangzhou".into(),
        sts: Arc::new(StsState::new(keys, [7u8; 32])),
    }
}

fn at(s: &str) -> DateTime<Utc> {
    auth::parse_v4_date(s).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn run(
    method: &str,
    path: &str,
    query: &str,
    h: &HeaderMap,
    vb: Option<&str>,
    now: &str,
) -> Result<Principal, OssError> {
    authenticate(
        &S3Parts {
            method,
            raw_path: path,
            raw_query: query,
            headers: h,
            virtual_bucket: vb,
        },
        &config(),
        at(now),
        None,
    )
}

/// The "GET Object" example of the AWS SigV4 documentation (header-based auth, S3).
fn aws_example(signature: &str) -> HeaderMap {
    headers(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
        (
            "authorization",
            &format!(
                "AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={signature}"
            ),
        ),
    ])
}

const AWS_EXAMPLE_SIG: &str = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

#[test]
fn v4_official_get_object_example_verifies() {
    let h = aws_example(AWS_EXAMPLE_SIG);
    let p = run("GET", "/test.txt", "", &h, Some("examplebucket"), "20130524T000500Z").unwrap();
    assert!(matches!(p, Principal::User { access_key_id } if access_key_id == AK));
}

#[test]
fn v4_official_example_string_to_sign() {
    let canonical = format!(
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}"
    );
    let scope = Scope {
        ak: AK,
        date: "20130524",
        region: "us-east-1",
    };
    let sts = v4_string_to_sign("20130524T000000Z", &scope, &canonical);
    // Documented StringToSign hash of the example.
    assert!(sts.ends_with("7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"));
    let sig = hex::encode(auth::hmac_sha256(
        &v4_signing_key(SK, "20130524", "us-east-1"),
        sts.as_bytes(),
    ));
    assert_eq!(sig, AWS_EXAMPLE_SIG);
}

#[test]
fn v4_mismatches_fail() {
    let mut bad_sig = AWS_EXAMPLE_SIG.to_string();
    bad_sig.replace_range(0..1, "0");
    let e = run(
        "GET",
        "/test.txt",
        "",
        &aws_example(&bad_sig),
        Some("examplebucket"),
        "20130524T000500Z",
    )
    .unwrap_err();
    assert_eq!(e.code, "SignatureDoesNotMatch");
    assert_eq!(e.status, 403);
    assert!(
        e.extra
            .iter()
            .any(|(n, v)| *n == "CanonicalRequest" && v.contains("/test.txt"))
    );
    // Another key, another range value, another path.
    let e = run(
        "GET",
        "/test2.txt",
        "",
        &aws_example(AWS_EXAMPLE_SIG),
        Some("examplebucket"),
        "20130524T000500Z",
    )
    .unwrap_err();
    assert_eq!(e.code, "SignatureDoesNotMatch");
    let mut h = aws_example(AWS_EXAMPLE_SIG);
    h.insert("range", HeaderValue::from_static("bytes=0-10"));
    let e = run("GET", "/test.txt", "", &h, Some("examplebucket"), "20130524T000500Z").unwrap_err();
    assert_eq!(e.code, "SignatureDoesNotMatch");
    // Too far from the request time.
    let e = run(
        "GET",
        "/test.txt",
        "",
        &aws_example(AWS_EXAMPLE_SIG),
        Some("examplebucket"),
        "20130524T010000Z",
    )
    .unwrap_err();
    assert_eq!(e.code, "RequestTimeTooSkewed");
    // Unknown key.
    let h = aws_example(AWS_EXAMPLE_SIG);
    let text = h["authorization"].to_str().unwrap().replace(AK, "NOPE");
    let mut h2 = h.clone();
    h2.insert("authorization", HeaderValue::from_str(&text).unwrap());
    let e = run("GET", "/test.txt", "", &h2, Some("examplebucket"), "20130524T000500Z").unwrap_err();
    assert_eq!(e.code, "InvalidAccessKeyId");
}

/// The documented presigned GET example (`X-Amz-Expires=86400`).
#[test]
fn v4_official_presigned_example() {
    let query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AK}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
    let h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
    run(
        "GET",
        "/test.txt",
        &query,
        &h,
        Some("examplebucket"),
        "20130524T120000Z",
    )
    .unwrap();
    let e = run(
        "GET",
        "/test.txt",
        &query,
        &h,
        Some("examplebucket"),
        "20130525T000001Z",
    )
    .unwrap_err();
    assert_eq!(e.code, "AccessDenied");
    let tampered = query.replace("86400", "86401");
    let e = run(
        "GET",
        "/test.txt",
        &tampered,
        &h,
        Some("examplebucket"),
        "20130524T120000Z",
    )
    .unwrap_err();
    assert_eq!(e.code, "SignatureDoesNotMatch");
}

/// The documented V2 example (`GET /photos/puppy.jpg` on `awsexamplebucket1`).
#[test]
fn v2_documented_example() {
    let h = headers(&[("date", "Tue, 27 Mar 2007 19:36:42 +0000")]);
    let sts = v2_string_to_sign(
        "GET",
        &h,
        "Tue, 27 Mar 2007 19:36:42 +0000",
        "/awsexamplebucket1/photos/puppy.jpg",
        &[],
    );
    assert_eq!(
        sts,
        "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
    );
    assert_eq!(v2_signature(SK, &sts), "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=");
    let mut h = h;
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("AWS {AK}:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")).unwrap(),
    );
    let now = "20070327T193700Z";
    run("GET", "/photos/puppy.jpg", "", &h, Some("awsexamplebucket1"), now).unwrap();
    run("GET", "/awsexamplebucket1/photos/puppy.jpg", "", &h, None, now).unwrap();
    let e = run("GET", "/awsexamplebucket1/photos/kitten.jpg", "", &h, None, now).unwrap_err();
    assert_eq!(e.code, "SignatureDoesNotMatch");
    assert!(
        e.extra
            .iter()
            .any(|(n, v)| *n == "StringToSign" && v.ends_with("kitten.jpg"))
    );
}

#[test]
fn v2_amz_headers_and_subresources() {
    let h = headers(&[
        ("x-amz-date", "Tue, 27 Mar 2007 19:36:42 +0000"),
        ("x-amz-meta-b", "2"),
        ("x-amz-meta-a", "1"),
        ("content-type", "text/plain"),
    ]);
    let q = vec![
        ("uploadId".to_string(), "U".to_string()),
        ("max-parts".to_string(), "5".to_string()),
        ("partNumber".to_string(), "3".to_string()),
    ];
    let s = v2_string_to_sign("PUT", &h, "", "/b/k", &q);
    assert_eq!(
        s,
        "PUT\n\ntext/plain\n\nx-amz-date:Tue, 27 Mar 2007 19:36:42 +0000\nx-amz-meta-a:1\nx-amz-meta-b:2\n/b/k?partNumber=3&uploadId=U"
    );
}

#[test]
fn unsigned_needs_anonymous() {
    let h = headers(&[("x-amz-date", "20130524T000000Z")]);
    let e = run("GET", "/b/k", "", &h, None, "20130524T000000Z").unwrap_err();
    assert_eq!(e.code, "AccessDenied");
}

#[test]
fn detection() {
    assert!(is_s3_request(&aws_example("x"), ""));
    assert!(is_s3_request(&headers(&[("authorization", "AWS a:b")]), ""));
    assert!(!is_s3_request(&headers(&[("authorization", "OSS a:b")]), ""));
    assert!(!is_s3_request(&HeaderMap::new(), "prefix=a"));
    assert!(is_s3_request(&HeaderMap::new(), "X-Amz-Algorithm=AWS4-HMAC-SHA256"));
    assert!(is_s3_request(
        &HeaderMap::new(),
        "AWSAccessKeyId=a&Expires=1&Signature=x"
    ));
}

#[test]
fn chunk_decoder_any_split() {
    let framed = b"5;chunk-signature=abc\r\nhello\r\n3;chunk-signature=def\r\n wo\r\n0;chunk-signature=0\r\n\r\n";
    for split in 1..framed.len() {
        let mut d = ChunkDecoder::default();
        let mut out = Vec::new();
        for piece in framed.chunks(split) {
            for b in d.feed(Bytes::copy_from_slice(piece)).unwrap() {
                out.extend_from_slice(&b);
            }
        }
        d.finish().unwrap();
        assert_eq!(out, b"hello wo", "split {split}");
    }
}

#[test]
fn chunk_decoder_errors() {
    let mut d = ChunkDecoder::default();
    d.feed(Bytes::from_static(b"5;chunk-signature=abc\r\nhel")).unwrap();
    assert_eq!(d.finish(), Err(ChunkError::Truncated));
    let mut d = ChunkDecoder::default();
    assert_eq!(d.feed(Bytes::from_static(b"zz\r\n")), Err(ChunkError::BadHeader));
    let mut d = ChunkDecoder::default();
    assert_eq!(d.feed(Bytes::from_static(b"2\r\nabXY")), Err(ChunkError::BadTerminator));
}

#[test]
fn header_mapping() {
    let mut h = headers(&[
        ("x-amz-meta-mode", "33188"),
        ("x-amz-copy-source", "/b/src"),
        ("x-amz-metadata-directive", "REPLACE"),
        ("x-oss-forbid-overwrite", "true"),
    ]);
    map_request_headers(&mut h);
    assert_eq!(h["x-oss-meta-mode"], "33188");
    assert_eq!(h["x-oss-copy-source"], "/b/src");
    assert_eq!(h["x-oss-metadata-directive"], "REPLACE");
    assert_eq!(h["x-oss-range-behavior"], "standard");
    assert!(!h.contains_key("x-oss-forbid-overwrite"));
    assert_eq!(h["x-amz-meta-mode"], "33188");

    let mut h = headers(&[
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked,gzip"),
        ("content-length", "300"),
        ("x-amz-decoded-content-length", "100"),
    ]);
    finish_request_headers(&mut h);
    assert_eq!(h["content-length"], "100");
    assert_eq!(h["content-encoding"], "gzip");
}

#[test]
fn xml_documents_get_namespace_and_lowercase_etags() {
    let x = xml_document(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Contents><ETag>\"ABCDEF-2\"</ETag></Contents><ETag>\"X\"</ETag></ListBucketResult>".into(),
    );
    assert_eq!(
        x,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"{S3_XMLNS}\"><Contents><ETag>\"abcdef-2\"</ETag></Contents><ETag>\"x\"</ETag></ListBucketResult>"
        )
    );
}

#[test]
fn unsupported_subresources_are_refused() {
    let q = |k: &str| vec![(k.to_string(), String::new())];
    assert_eq!(check_supported(&q("acl")).unwrap_err().status, 501);
    assert_eq!(check_supported(&q("versioning")).unwrap_err().code, "NotImplemented");
    assert!(check_supported(&q("uploads")).is_ok());
    assert!(check_supported(&q("list-type")).is_ok());
    assert!(check_supported(&[]).is_ok());
}
