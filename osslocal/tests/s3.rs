//! The S3 dialect end to end: requests signed with AWS Signature V4 and V2 by an independent
//! test-side signer, against the real binary, on the same port and store as OSS.

mod common;

use base64::Engine as _;
use common::*;
use hmac::Mac as _;
use sha2::Digest as _;

const AK: &str = "AKIDs3test";
const SK: &str = "s3-secret/0123456789+abc";
const NS: &str = "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"";

#[derive(Clone, Copy, PartialEq)]
enum Sig {
    V4,
    V2,
}

fn server() -> Server {
    Server::start(&["--bucket", BUCKET, "--access-key", &format!("{AK}:{SK}")])
}

fn hmac256(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// `path` is already percent-encoded; `query` is `k=v&…` already encoded (or empty).
struct S3Req<'a> {
    srv: &'a Server,
    sig: Sig,
    method: &'a str,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    ak: &'a str,
    secret: &'a str,
    payload_hash: Option<String>,
}

fn s3<'a>(srv: &'a Server, sig: Sig, method: &'a str, path: &str) -> S3Req<'a> {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    S3Req {
        srv,
        sig,
        method,
        path: p.to_string(),
        query: q.to_string(),
        headers: vec![],
        body: vec![],
        ak: AK,
        secret: SK,
        payload_hash: None,
    }
}

impl<'a> S3Req<'a> {
    fn h(mut self, n: &str, v: &str) -> Self {
        self.headers.push((n.to_ascii_lowercase(), v.to_string()));
        self
    }
    fn body(mut self, b: &[u8]) -> Self {
        self.body = b.to_vec();
        self
    }
    fn md5(self) -> Self {
        let v = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&self.body));
        self.h("content-md5", &v)
    }
    fn secret(mut self, s: &'a str) -> Self {
        self.secret = s;
        self
    }
    fn creds(mut self, ak: &'a str, sk: &'a str) -> Self {
        self.ak = ak;
        self.secret = sk;
        self
    }
    fn payload(mut self, p: &str) -> Self {
        self.payload_hash = Some(p.to_string());
        self
    }

    fn signed_headers(&self) -> Vec<(String, String)> {
        let mut hs = self.headers.clone();
        let now = chrono::Utc::now();
        match self.sig {
            Sig::V4 => {
                hs.push(("host".into(), self.srv.addr.clone()));
                hs.push(("x-amz-date".into(), now.format("%Y%m%dT%H%M%SZ").to_string()));
                let payload = self.payload_hash.clone().unwrap_or_else(|| sha256_hex(&self.body));
                hs.push(("x-amz-content-sha256".into(), payload.clone()));
                hs.sort();
                let names: Vec<&str> = hs.iter().map(|(n, _)| n.as_str()).collect();
                let signed = names.join(";");
                let canon_headers: String = hs.iter().map(|(n, v)| format!("{n}:{}\n", v.trim())).collect();
                let mut q: Vec<(String, String)> = self
                    .query
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                q.sort();
                let canon_query = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
                let canonical = format!(
                    "{}\n{}\n{canon_query}\n{canon_headers}\n{signed}\n{payload}",
                    self.method, self.path
                );
                let date = now.format("%Y%m%d").to_string();
                let scope = format!("{date}/us-west-2/s3/aws4_request");
                let sts = format!(
                    "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
                    now.format("%Y%m%dT%H%M%SZ"),
                    sha256_hex(canonical.as_bytes())
                );
                let k = hmac256(format!("AWS4{}", self.secret).as_bytes(), &date);
                let k = hmac256(&k, "us-west-2");
                let k = hmac256(&k, "s3");
                let k = hmac256(&k, "aws4_request");
                let sig = hex::encode(hmac256(&k, &sts));
                hs.push((
                    "authorization".into(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
                        self.ak
                    ),
                ));
            }
            Sig::V2 => {
                let date = http_date_now();
                hs.push(("date".into(), date.clone()));
                let get = |n: &str| {
                    hs.iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let mut amz: Vec<(String, String)> =
                    hs.iter().filter(|(n, _)| n.starts_with("x-amz-")).cloned().collect();
                amz.sort();
                let mut sts = format!(
                    "{}\n{}\n{}\n{date}\n",
                    self.method,
                    get("content-md5"),
                    get("content-type")
                );
                for (n, v) in amz {
                    sts.push_str(&format!("{n}:{v}\n"));
                }
                sts.push_str(&self.path);
                let mut subs: Vec<&str> = self
                    .query
                    .split('&')
                    .filter(|p| {
                        let k = p.split('=').next().unwrap_or("");
                        [
                            "uploads",
                            "uploadId",
                            "partNumber",
                            "delete",
                            "location",
                            "acl",
                            "versioning",
                        ]
                        .contains(&k)
                    })
                    .collect();
                subs.sort();
                if !subs.is_empty() {
                    sts.push('?');
                    sts.push_str(&subs.join("&"));
                }
                let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(self.secret.as_bytes()).unwrap();
                m.update(sts.as_bytes());
                let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
                hs.push(("authorization".into(), format!("AWS {}:{sig}", self.ak)));
            }
        }
        hs
    }

    fn send(self) -> Resp {
        let hs = self.signed_headers();
        let target = if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        };
        let mut r = self.srv.req(self.method, &target).body(&self.body);
        for (n, v) in hs.iter().filter(|(n, _)| n != "host") {
            r = r.header(n, v);
        }
        r.send()
    }
}

fn obj(key: &str) -> String {
    format!("/{BUCKET}/{}", key.split('/').map(pe).collect::<Vec<_>>().join("/"))
}

fn assert_s3_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.code().as_deref(), Some(code), "{}", r.text());
    assert!(r.h("x-amz-request-id").is_some());
    assert!(!r.text().contains("<EC>"), "S3 errors carry no OSS EC: {}", r.text());
}

fn object_basics(sig: Sig) {
    let s = server();
    let data = pattern(300_000, 3);
    let key = "dir/a b+c.bin";
    let r = s3(&s, sig, "PUT", &obj(key))
        .h("x-amz-meta-mode", "33188")
        .h("content-type", "application/x-test")
        .body(&data)
        .md5()
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = format!("\"{}\"", md5_hex(&data).to_ascii_lowercase());
    assert_eq!(r.h("etag"), Some(etag.as_str()));
    assert!(r.h("x-amz-request-id").is_some());

    let r = s3(&s, sig, "GET", &obj(key)).send();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.h("x-amz-meta-mode"), Some("33188"));
    assert!(r.h("x-oss-meta-mode").is_none());
    assert_eq!(r.h("content-type"), Some("application/x-test"));
    assert!(r.h("last-modified").is_some());

    // Ranges, including S3's clipping of a range past the end.
    let r = s3(&s, sig, "GET", &obj(key)).h("range", "bytes=10-19").send();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..20]);
    let r = s3(&s, sig, "GET", &obj(key)).h("range", "bytes=299990-400000").send();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[299_990..]);
    let r = s3(&s, sig, "GET", &obj(key)).h("range", "bytes=400000-").send();
    assert_s3_error(&r, 416, "InvalidRange");

    let r = s3(&s, sig, "HEAD", &obj(key)).send();
    assert_eq!(r.status, 200);
    assert_eq!(r.h("content-length"), Some("300000"));
    assert_eq!(r.h("etag"), Some(etag.as_str()));
    let r = s3(&s, sig, "HEAD", &obj("missing")).send();
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    let r = s3(&s, sig, "GET", &obj("missing")).send();
    assert_s3_error(&r, 404, "NoSuchKey");

    // Copy (chmod-style REPLACE onto itself, then a COPY to another key).
    let r = s3(&s, sig, "PUT", &obj(key))
        .h("x-amz-copy-source", &obj(key))
        .h("x-amz-metadata-directive", "REPLACE")
        .h("x-amz-meta-mode", "33152")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("<CopyObjectResult {NS}>")), "{}", r.text());
    assert_eq!(r.xml("ETag").as_deref(), Some(etag.as_str()));
    let r = s3(&s, sig, "PUT", &obj("copy"))
        .h("x-amz-copy-source", &obj(key))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s3(&s, sig, "HEAD", &obj("copy")).send();
    assert_eq!(r.h("x-amz-meta-mode"), Some("33152"));
    let r = s3(&s, sig, "PUT", &obj("copy2"))
        .h("x-amz-copy-source", &obj(key))
        .h("x-amz-copy-source-if-match", "\"0000\"")
        .send();
    assert_s3_error(&r, 412, "PreconditionFailed");

    // Delete one, then the batch.
    let r = s3(&s, sig, "DELETE", &obj("copy")).send();
    assert_eq!(r.status, 204);
    assert_eq!(s3(&s, sig, "HEAD", &obj("copy")).send().status, 404);
    s3(&s, sig, "PUT", &obj("x1")).body(b"1").send();
    s3(&s, sig, "PUT", &obj("x2")).body(b"2").send();
    let del = b"<Delete><Object><Key>x1</Key></Object><Object><Key>x2</Key></Object></Delete>";
    let r = s3(&s, sig, "POST", &format!("/{BUCKET}/?delete"))
        .body(del)
        .md5()
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("<DeleteResult {NS}>")));
    assert_eq!(r.xml_all("Key"), vec!["x1", "x2"]);
    assert_eq!(s3(&s, sig, "HEAD", &obj("x1")).send().status, 404);
    assert_eq!(s3(&s, sig, "HEAD", &obj("x2")).send().status, 404);
    // Without Content-MD5 (S3 allows a signed payload hash instead); a wrong one is refused.
    s3(&s, sig, "PUT", &obj("x3")).body(b"3").send();
    let del = b"<Delete><Quiet>true</Quiet><Object><Key>x3</Key></Object></Delete>";
    let r = s3(&s, sig, "POST", &format!("/{BUCKET}/?delete"))
        .body(del)
        .h("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")
        .send();
    assert_s3_error(&r, 400, "BadDigest");
    assert_eq!(s3(&s, sig, "HEAD", &obj("x3")).send().status, 200);
    let r = s3(&s, sig, "POST", &format!("/{BUCKET}/?delete")).body(del).send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s3(&s, sig, "HEAD", &obj("x3")).send().status, 404);

    // The same object through the OSS protocol: one store, OSS names for OSS clients.
    let r = s
        .req("GET", &obj(key))
        .sign_v1(AK, SK, None, &format!("/{BUCKET}/{key}"))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, data);
    assert_eq!(r.h("x-oss-meta-mode"), Some("33152"));
    assert!(r.h("x-amz-request-id").is_none());
}

#[test]
fn v4_objects() {
    object_basics(Sig::V4);
}

#[test]
fn v2_objects() {
    object_basics(Sig::V2);
}

fn listing(sig: Sig) {
    let s = server();
    for k in ["a/1", "a/2", "a/3", "b/x", "top"] {
        assert_eq!(s3(&s, sig, "PUT", &obj(k)).body(k.as_bytes()).send().status, 200);
    }
    let root = format!("/{BUCKET}/");
    // V1 with a delimiter and pagination by marker.
    let r = s3(&s, sig, "GET", &format!("{root}?delimiter=%2F&max-keys=2")).send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("<ListBucketResult {NS}>")), "{}", r.text());
    assert_eq!(r.xml("IsTruncated").as_deref(), Some("true"));
    assert_eq!(r.xml_all("Prefix"), vec!["", "a/", "b/"]);
    let next = r.xml("NextMarker").unwrap();
    let r = s3(&s, sig, "GET", &format!("{root}?delimiter=%2F&marker={}", pe(&next))).send();
    assert_eq!(r.xml_all("Key"), vec!["top"]);
    assert_eq!(r.xml("IsTruncated").as_deref(), Some("false"));
    // V2: KeyCount, continuation, start-after, fetch-owner.
    let r = s3(&s, sig, "GET", &format!("{root}?list-type=2&prefix=a%2F&max-keys=2")).send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.xml_all("Key"), vec!["a/1", "a/2"]);
    assert_eq!(r.xml("KeyCount").as_deref(), Some("2"));
    assert!(r.xml("Owner").is_none());
    let tok = r.xml("NextContinuationToken").unwrap();
    let r = s3(
        &s,
        sig,
        "GET",
        &format!(
            "{root}?continuation-token={}&fetch-owner=true&list-type=2&prefix=a%2F",
            pe(&tok)
        ),
    )
    .send();
    assert_eq!(r.xml_all("Key"), vec!["a/3"]);
    assert_eq!(r.xml("ContinuationToken").as_deref(), Some(tok.as_str()));
    assert!(r.xml("Owner").is_some());
    let r = s3(&s, sig, "GET", &format!("{root}?list-type=2&start-after=b%2Fx")).send();
    assert_eq!(r.xml_all("Key"), vec!["top"]);
    assert_eq!(r.xml("StartAfter").as_deref(), Some("b/x"));
    // ETags in listings are lower-case and quoted.
    let etag = format!("\"{}\"", md5_hex(b"top").to_ascii_lowercase());
    assert_eq!(r.xml("ETag").as_deref(), Some(etag.as_str()));
    // Bucket-level calls.
    let r = s3(&s, sig, "GET", &format!("{root}?location")).send();
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .contains(&format!("<LocationConstraint {NS}>cn-hangzhou</LocationConstraint>"))
    );
    assert_eq!(s3(&s, sig, "HEAD", &root).send().status, 200);
    assert_eq!(s3(&s, sig, "HEAD", "/nobucket/").send().status, 404);
    let r = s3(&s, sig, "GET", "/").send();
    assert!(r.text().contains(&format!("<ListAllMyBucketsResult {NS}>")));
    assert_eq!(r.xml("Name").as_deref(), Some(BUCKET));
    let r = s3(&s, sig, "PUT", &root).send();
    assert_s3_error(&r, 409, "BucketAlreadyOwnedByYou");
    // Unimplemented sub-resources are refused, not served as a listing or an object.
    let r = s3(&s, sig, "GET", &format!("{root}?versioning")).send();
    assert_s3_error(&r, 501, "NotImplemented");
    let r = s3(&s, sig, "GET", &format!("{}?acl", obj("top"))).send();
    assert_s3_error(&r, 501, "NotImplemented");
}

#[test]
fn v4_listing() {
    listing(Sig::V4);
}

#[test]
fn v2_listing() {
    listing(Sig::V2);
}

fn multipart(sig: Sig) {
    let s = server();
    let key = "big/file";
    let part1 = pattern(120 * 1024, 1);
    let part2 = pattern(7000, 2);
    let r = s3(&s, sig, "POST", &format!("{}?uploads", obj(key)))
        .h("x-amz-meta-uid", "1000")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("<InitiateMultipartUploadResult {NS}>")));
    let id = r.xml("UploadId").unwrap();
    let r = s3(
        &s,
        sig,
        "PUT",
        &format!("{}?partNumber=1&uploadId={}", obj(key), pe(&id)),
    )
    .body(&part1)
    .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let e1 = r.h("etag").unwrap().to_string();
    assert_eq!(e1, format!("\"{}\"", md5_hex(&part1).to_ascii_lowercase()));
    // Part 2 copied from a range of another object.
    let src = [vec![0u8; 100], part2.clone()].concat();
    s3(&s, sig, "PUT", &obj("src")).body(&src).send();
    let r = s3(
        &s,
        sig,
        "PUT",
        &format!("{}?partNumber=2&uploadId={}", obj(key), pe(&id)),
    )
    .h("x-amz-copy-source", &obj("src"))
    .h("x-amz-copy-source-range", &format!("bytes=100-{}", src.len() - 1))
    .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<CopyPartResult"));
    let e2 = r.xml("ETag").unwrap();
    let r = s3(&s, sig, "GET", &format!("{}?uploadId={}", obj(key), pe(&id))).send();
    assert!(r.text().contains(&format!("<ListPartsResult {NS}>")));
    assert_eq!(r.xml_all("PartNumber"), vec!["1", "2"]);
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{e1}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>{e2}</ETag></Part></CompleteMultipartUpload>"
    );
    let r = s3(&s, sig, "POST", &format!("{}?uploadId={}", obj(key), pe(&id)))
        .body(complete.as_bytes())
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("<CompleteMultipartUploadResult {NS}>")));
    let etag = r.xml("ETag").unwrap();
    assert!(etag.ends_with("-2\"") && etag == etag.to_ascii_lowercase(), "{etag}");
    let r = s3(&s, sig, "GET", &obj(key)).send();
    assert_eq!(r.body, [part1, part2].concat());
    assert_eq!(r.h("x-amz-meta-uid"), Some("1000"));
    // Abort of a second upload.
    let r = s3(&s, sig, "POST", &format!("{}?uploads", obj("other"))).send();
    let id = r.xml("UploadId").unwrap();
    let r = s3(&s, sig, "DELETE", &format!("{}?uploadId={}", obj("other"), pe(&id))).send();
    assert_eq!(r.status, 204);
    let r = s3(&s, sig, "GET", &format!("{}?uploadId={}", obj("other"), pe(&id))).send();
    assert_s3_error(&r, 404, "NoSuchUpload");
}

#[test]
fn v4_multipart() {
    multipart(Sig::V4);
}

#[test]
fn v2_multipart() {
    multipart(Sig::V2);
}

#[test]
fn v4_streaming_aws_chunked_body() {
    let s = server();
    let data = pattern(70_000, 9);
    let mut framed = Vec::new();
    for chunk in data.chunks(65_536) {
        framed.extend_from_slice(format!("{:x};chunk-signature={}\r\n", chunk.len(), "0".repeat(64)).as_bytes());
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(format!("0;chunk-signature={}\r\n\r\n", "0".repeat(64)).as_bytes());
    let r = s3(&s, Sig::V4, "PUT", &obj("streamed"))
        .h("content-encoding", "aws-chunked")
        .h("x-amz-decoded-content-length", &data.len().to_string())
        .payload("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        .body(&framed)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s3(&s, Sig::V4, "GET", &obj("streamed")).send();
    assert_eq!(r.body, data);
    assert!(r.h("content-encoding").is_none(), "aws-chunked is not stored");
    // A framing cut short stores nothing.
    let r = s3(&s, Sig::V4, "PUT", &obj("cut"))
        .h("content-encoding", "aws-chunked")
        .h("x-amz-decoded-content-length", &data.len().to_string())
        .payload("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        .body(&framed[..1000])
        .send();
    assert!(r.status >= 400, "{}", r.status);
    assert_eq!(s3(&s, Sig::V4, "HEAD", &obj("cut")).send().status, 404);
}

#[test]
fn bad_signatures_and_unsigned() {
    let s = server();
    for sig in [Sig::V4, Sig::V2] {
        let r = s3(&s, sig, "PUT", &obj("k")).body(b"x").secret("wrong").send();
        assert_s3_error(&r, 403, "SignatureDoesNotMatch");
        assert!(r.xml("StringToSign").is_some());
        assert!(!r.text().contains(SK));
        assert_eq!(s3(&s, sig, "HEAD", &obj("k")).send().status, 404, "nothing stored");
        let r = s3(&s, sig, "HEAD", &obj("k")).secret("wrong").send();
        assert_eq!(r.status, 403);
    }
    // Unsigned S3 requests need --anonymous.
    let r = s.req("GET", &obj("k")).header("x-amz-date", "20200101T000000Z").send();
    assert_s3_error(&r, 403, "AccessDenied");
    let a = Server::start(&["--anonymous", "--bucket", BUCKET]);
    let r = a
        .req("PUT", &obj("k"))
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header("x-amz-meta-m", "1")
        .body(b"hi")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = a
        .req("GET", &obj("k"))
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .send();
    assert_eq!(r.h("x-amz-meta-m"), Some("1"));
}

#[test]
fn stats_count_s3_requests_under_operation_names() {
    let s = server();
    s3(&s, Sig::V4, "PUT", &obj("k")).body(b"abc").send();
    s3(&s, Sig::V2, "GET", &obj("k")).send();
    s3(&s, Sig::V4, "GET", &format!("/{BUCKET}/?list-type=2")).send();
    s.req("GET", &obj("k"))
        .sign_v1(AK, SK, None, &format!("/{BUCKET}/k"))
        .send();
    let st = s.stats();
    assert_eq!(st["s3_requests"], 3, "{st}");
    assert_eq!(st["requests"], 4, "{st}");
    assert_eq!(st["ops"]["PutObject"], 1);
    assert_eq!(st["ops"]["GetObject"], 2);
    assert_eq!(st["ops"]["ListObjectsV2"], 1);
}

#[test]
fn presigned_v4_and_v2() {
    let s = server();
    s3(&s, Sig::V4, "PUT", &obj("p/q r")).body(b"presigned").send();
    let path = obj("p/q r");
    let now = chrono::Utc::now();
    let date = now.format("%Y%m%d").to_string();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let presign_v4 = |expires: &str, secret: &str| {
        let cred = pe(&format!("{AK}/{date}/cn-hangzhou/s3/aws4_request"));
        let q = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={cred}&X-Amz-Date={amz_date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
        );
        let canonical = format!("GET\n{path}\n{q}\nhost:{}\n\nhost\nUNSIGNED-PAYLOAD", s.addr);
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{date}/cn-hangzhou/s3/aws4_request\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let k = hmac256(format!("AWS4{secret}").as_bytes(), &date);
        let k = hmac256(&hmac256(&hmac256(&k, "cn-hangzhou"), "s3"), "aws4_request");
        format!("{path}?{q}&X-Amz-Signature={}", hex::encode(hmac256(&k, &sts)))
    };
    let r = s.get(&presign_v4("300", SK));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"presigned".as_slice()),
        "{}",
        r.text()
    );
    assert_s3_error(&s.get(&presign_v4("300", "wrong")), 403, "SignatureDoesNotMatch");
    let r = s.get(&presign_v4("999999999", SK));
    assert_eq!(r.status, 400, "{}", r.text());

    let presign_v2 = |expires: i64| {
        let sts = format!("GET\n\n\n{expires}\n{path}");
        let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(SK.as_bytes()).unwrap();
        m.update(sts.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
        format!("{path}?AWSAccessKeyId={AK}&Expires={expires}&Signature={}", pe(&sig))
    };
    let r = s.get(&presign_v2(now.timestamp() + 300));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"presigned".as_slice()),
        "{}",
        r.text()
    );
    assert_s3_error(&s.get(&presign_v2(now.timestamp() - 10)), 403, "AccessDenied");
}

#[test]
fn sts_credentials_and_session_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:GetObject"],"Resource":["acs:oss:*:*:bkt/ro/*"]}]}"#,
    )
    .unwrap();
    let role = "acs:ram::1234567890123456:role/reader";
    let s = Server::start(&[
        "--bucket",
        BUCKET,
        "--access-key",
        &format!("{AK}:{SK}"),
        "--role",
        &format!("{role}=@{}", policy.display()),
    ]);
    s3(&s, Sig::V4, "PUT", &obj("ro/x")).body(b"readable").send();
    s3(&s, Sig::V4, "PUT", &obj("secret")).body(b"hidden").send();
    let q = sts_query(
        AK,
        SK,
        &[
            ("Action", "AssumeRole"),
            ("RoleArn", role),
            ("RoleSessionName", "s3"),
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
    for sig in [Sig::V4, Sig::V2] {
        let r = s3(&s, sig, "GET", &obj("ro/x"))
            .creds(ak, sk)
            .h("x-amz-security-token", tok)
            .send();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, b"readable".as_slice()),
            "{}",
            r.text()
        );
        let r = s3(&s, sig, "GET", &obj("secret"))
            .creds(ak, sk)
            .h("x-amz-security-token", tok)
            .send();
        assert_s3_error(&r, 403, "AccessDenied");
        let r = s3(&s, sig, "GET", &obj("ro/x")).creds(ak, sk).send();
        assert_s3_error(&r, 403, "InvalidSecurityToken");
        // A bad signature echoes what was signed, but never the whole token.
        let r = s3(&s, sig, "GET", &obj("ro/x"))
            .creds(ak, "wrong")
            .h("x-amz-security-token", tok)
            .send();
        assert_s3_error(&r, 403, "SignatureDoesNotMatch");
        assert!(r.text().contains("x-amz-security-token:"), "{}", r.text());
        assert!(!r.text().contains(tok), "token echoed: {}", r.text());
    }
}
