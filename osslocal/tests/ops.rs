//! Happy paths and rules of every OSS operation, against the real binary.

mod common;

use common::*;

#[test]
fn put_get_head_delete_roundtrip() {
    let s = Server::anon();
    let data = pattern(300_000, 1);
    let r = s
        .req("PUT", "/bkt/dir/obj.bin")
        .header("Content-Type", "application/x-test")
        .header("x-oss-meta-Color", "Blue")
        .header("Cache-Control", "no-cache")
        .body(&data)
        .content_md5()
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = format!("\"{}\"", md5_hex(&data));
    assert_eq!(r.h("ETag"), Some(etag.as_str()));
    assert_eq!(r.h("x-oss-hash-crc64ecma"), Some(crc64(&data).to_string().as_str()));
    assert_eq!(r.h("Server"), Some("AliyunOSS"));
    let rid = r.h("x-oss-request-id").unwrap();
    assert_eq!(rid.len(), 24);
    assert!(rid.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    assert!(r.h("Date").is_some());

    // oss2 sends '/' as %2F
    let g = s.get("/bkt/dir%2Fobj.bin");
    assert_eq!(g.status, 200);
    assert_eq!(g.body, data);
    assert_eq!(g.h("Content-Type"), Some("application/x-test"));
    assert_eq!(g.h("x-oss-meta-color"), Some("Blue"));
    assert_eq!(g.h("Cache-Control"), Some("no-cache"));
    assert_eq!(g.h("x-oss-object-type"), Some("Normal"));
    assert_eq!(g.h("ETag"), Some(etag.as_str()));
    assert_eq!(g.h("x-oss-hash-crc64ecma"), Some(crc64(&data).to_string().as_str()));
    assert!(g.h("Last-Modified").unwrap().ends_with(" GMT"));

    let h = s.req("HEAD", "/bkt/dir/obj.bin").send();
    assert_eq!(h.status, 200);
    assert_eq!(h.h("Content-Length"), Some("300000"));
    assert!(h.body.is_empty());

    let m = s.req("HEAD", "/bkt/dir/obj.bin?objectMeta").send();
    assert_eq!(m.status, 200);
    assert_eq!(m.h("ETag"), Some(etag.as_str()));
    assert!(
        m.h("x-oss-meta-color").is_none(),
        "GetObjectMeta returns only the basic headers"
    );

    // virtual-hosted style, as SDKs send it to an IP endpoint
    let v = s
        .req("GET", "/dir/obj.bin")
        .header("Host", &format!("bkt.{}", s.addr))
        .send();
    assert_eq!(v.status, 200);
    assert_eq!(v.body, data);

    // response-* overrides
    let o = s.get(
        "/bkt/dir/obj.bin?response-content-type=text%2Fplain&response-content-disposition=attachment%3B%20filename%3Dx",
    );
    assert_eq!(o.h("Content-Type"), Some("text/plain"));
    assert_eq!(o.h("Content-Disposition"), Some("attachment; filename=x"));

    assert_eq!(s.req("DELETE", "/bkt/dir/obj.bin").send().status, 204);
    assert_eq!(
        s.req("DELETE", "/bkt/dir/obj.bin").send().status,
        204,
        "deleting a missing key is 204"
    );
    let g = s.get("/bkt/dir/obj.bin");
    assert_eq!(g.status, 404);
    assert_eq!(g.code().as_deref(), Some("NoSuchKey"));
    assert_eq!(g.h("x-oss-ec"), Some("0026-00000001"));
    assert_eq!(g.xml("Key").as_deref(), Some("dir/obj.bin"));
    assert!(g.xml("RequestId").is_some() && g.xml("HostId").is_some() && g.xml("EC").is_some());

    // HEAD errors: no body, base64 XML in x-oss-err
    let h = s.req("HEAD", "/bkt/dir/obj.bin").send();
    assert_eq!(h.status, 404);
    assert!(h.body.is_empty());
    use base64::Engine as _;
    let xml = base64::engine::general_purpose::STANDARD
        .decode(h.h("x-oss-err").unwrap())
        .unwrap();
    assert!(String::from_utf8(xml).unwrap().contains("<Code>NoSuchKey</Code>"));
}

#[test]
fn put_rules() {
    let s = Server::anon();
    let r = s
        .req("PUT", "/bkt/k")
        .body(b"abc")
        .header("Content-MD5", "bm90LW1kNQ==")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidDigest")));
    let r = s
        .req("PUT", "/bkt/k")
        .body(b"abc")
        .header("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg==")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("BadDigest")));
    assert_eq!(s.get("/bkt/k").status, 404, "a bad digest stores nothing");
    let r = s.req("PUT", "/bkt/k").header("Content-Length", "6000000000").send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("EntityTooLarge")));
    let r = s.req("PUT", "/nobucket/k").body(b"x").send();
    assert_eq!((r.status, r.code().as_deref()), (404, Some("NoSuchBucket")));
    assert_eq!(r.xml("BucketName").as_deref(), Some("nobucket"));

    assert_eq!(s.put("/bkt/k", b"one").status, 200);
    let r = s
        .req("PUT", "/bkt/k")
        .header("x-oss-forbid-overwrite", "true")
        .body(b"two")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (409, Some("FileAlreadyExists")));
    assert_eq!(s.get("/bkt/k").body, b"one");
    assert_eq!(s.put("/bkt/k", b"two").status, 200);
    assert_eq!(s.get("/bkt/k").body, b"two");
    let r = s
        .req("PUT", "/bkt/new")
        .header("x-oss-forbid-overwrite", "true")
        .body(b"n")
        .send();
    assert_eq!(r.status, 200);
    // zero-length object
    assert_eq!(s.put("/bkt/empty", b"").status, 200);
    let g = s.get("/bkt/empty");
    assert_eq!((g.status, g.body.len()), (200, 0));
    assert_eq!(g.h("ETag"), Some("\"D41D8CD98F00B204E9800998ECF8427E\""));
}

#[test]
fn range_semantics() {
    let s = Server::anon();
    let data = pattern(1000, 7);
    s.put("/bkt/r", &data);
    let r = s.req("GET", "/bkt/r").header("Range", "bytes=10-19").send();
    assert_eq!(r.status, 206);
    assert_eq!(r.h("Content-Range"), Some("bytes 10-19/1000"));
    assert_eq!(r.body, &data[10..20]);
    let r = s.req("GET", "/bkt/r").header("Range", "bytes=-5").send();
    assert_eq!((r.status, r.body.as_slice()), (206, &data[995..]));
    let r = s.req("GET", "/bkt/r").header("Range", "bytes=990-").send();
    assert_eq!((r.status, r.body.as_slice()), (206, &data[990..]));
    let r = s.req("GET", "/bkt/r").header("Range", "bytes=0-1,5-6").send();
    assert_eq!((r.status, r.body.as_slice()), (206, &data[0..2]));
    // legacy behaviour: invalid ranges give the whole object
    for bad in ["bytes=1000-2000", "bytes=500-2000", "byte=0-1", "bytes=9-1"] {
        let r = s.req("GET", "/bkt/r").header("Range", bad).send();
        assert_eq!((r.status, r.body.len()), (200, 1000), "{bad}");
    }
    // standard behaviour: clamp, or 416 InvalidRange
    let r = s
        .req("GET", "/bkt/r")
        .header("Range", "bytes=500-2000")
        .header("x-oss-range-behavior", "standard")
        .send();
    assert_eq!((r.status, r.body.as_slice()), (206, &data[500..]));
    assert_eq!(r.h("Content-Range"), Some("bytes 500-999/1000"));
    let r = s
        .req("GET", "/bkt/r")
        .header("Range", "bytes=1000-2000")
        .header("x-oss-range-behavior", "standard")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (416, Some("InvalidRange")));
}

#[test]
fn conditional_get() {
    let s = Server::anon();
    let put = s.put("/bkt/c", b"cond");
    let etag = put.h("ETag").unwrap().to_string();
    let r = s.req("GET", "/bkt/c").header("If-Match", &etag).send();
    assert_eq!(r.status, 200);
    let r = s.req("GET", "/bkt/c").header("If-Match", "\"0000\"").send();
    assert_eq!((r.status, r.code().as_deref()), (412, Some("PreconditionFailed")));
    let r = s.req("GET", "/bkt/c").header("If-None-Match", &etag).send();
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = s.req("GET", "/bkt/c").header("If-None-Match", "\"0000\"").send();
    assert_eq!(r.status, 200);
    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    let past = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(
        s.req("GET", "/bkt/c").header("If-Modified-Since", future).send().status,
        304
    );
    assert_eq!(
        s.req("GET", "/bkt/c").header("If-Modified-Since", past).send().status,
        200
    );
    assert_eq!(
        s.req("GET", "/bkt/c").header("If-Unmodified-Since", past).send().status,
        412
    );
    assert_eq!(
        s.req("GET", "/bkt/c")
            .header("If-Unmodified-Since", future)
            .send()
            .status,
        200
    );
}

fn list(s: &Server, query: &str) -> Resp {
    let r = s.get(&format!("/bkt/?{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r
}

#[test]
fn listing_pagination_delimiter_encoding() {
    let s = Server::anon();
    for i in 0..1500 {
        s.put(&format!("/bkt/many/{i:05}"), b"x");
    }
    for k in ["a/1", "a/2", "a/sub/x", "a/sub/y", "a b/c", "b"] {
        s.put(&format!("/bkt/{}", k.replace(' ', "%20")), b"y");
    }
    // V2, 3 pages of 500/500/500
    let mut token = String::new();
    let mut keys = vec![];
    let mut pages = 0;
    loop {
        let r = list(
            s_ref(&s),
            &format!("list-type=2&prefix=many%2F&max-keys=600&continuation-token={token}"),
        );
        pages += 1;
        keys.extend(r.xml_all("Key"));
        assert_eq!(
            r.xml("KeyCount").unwrap().parse::<usize>().unwrap(),
            r.xml_all("Key").len()
        );
        if r.xml("IsTruncated").as_deref() == Some("true") {
            token = r.xml("NextContinuationToken").unwrap();
        } else {
            assert!(r.xml("NextContinuationToken").is_none());
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(keys.len(), 1500);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");

    // default max-keys 100; > 1000 rejected
    let r = list(&s, "list-type=2&prefix=many%2F");
    assert_eq!(r.xml_all("Key").len(), 100);
    assert_eq!(r.xml("MaxKeys").as_deref(), Some("100"));
    let r = s.get("/bkt/?list-type=2&max-keys=1001");
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidArgument")));

    // delimiter with common prefixes, url encoding
    let r = list(
        &s,
        "list-type=2&prefix=a&delimiter=%2F&encoding-type=url&fetch-owner=true",
    );
    assert_eq!(r.xml_all("Prefix")[0], "a");
    let cps: Vec<String> = r
        .xml_all("CommonPrefixes")
        .iter()
        .flat_map(|c| xml_all(c, "Prefix"))
        .collect();
    assert_eq!(cps, ["a%20b%2F", "a%2F"]);
    assert_eq!(r.xml("Delimiter").as_deref(), Some("%2F"));
    assert_eq!(r.xml("EncodingType").as_deref(), Some("url"));
    let r = list(
        &s,
        "list-type=2&prefix=a%2F&delimiter=%2F&encoding-type=url&fetch-owner=true",
    );
    assert_eq!(r.xml_all("Key"), ["a%2F1", "a%2F2"]);
    assert!(r.text().contains("<Owner><ID>"));
    assert_eq!(r.xml("Type").as_deref(), Some("Normal"));
    assert_eq!(r.xml("StorageClass").as_deref(), Some("Standard"));
    assert_eq!(r.xml("Size").as_deref(), Some("1"));
    assert!(r.xml("LastModified").unwrap().ends_with(".000Z"));
    // pagination across common prefixes with delimiter
    let r = list(&s, "list-type=2&prefix=a%2F&delimiter=%2F&max-keys=2");
    assert_eq!(r.xml("IsTruncated").as_deref(), Some("true"));
    let t = r.xml("NextContinuationToken").unwrap();
    let r2 = list(
        &s,
        &format!("list-type=2&prefix=a%2F&delimiter=%2F&max-keys=2&continuation-token={t}"),
    );
    assert_eq!(r2.xml_all("Prefix"), ["a/", "a/sub/"]);
    assert!(r2.xml_all("Key").is_empty());
    assert_eq!(r2.xml("IsTruncated").as_deref(), Some("false"));
    // start-after
    let r = list(&s, "list-type=2&start-after=many%2F01497");
    assert_eq!(r.xml_all("Key"), ["many/01498", "many/01499"]);
    // fetch-owner absent: no Owner in V2
    assert!(!list(&s, "list-type=2&prefix=b").text().contains("<Owner>"));

    // V1 with marker / NextMarker
    let r = list(&s, "prefix=many%2F&max-keys=1000");
    assert_eq!(r.xml_all("Key").len(), 1000);
    let next = r.xml("NextMarker").unwrap();
    assert_eq!(next, "many/00999");
    let r = list(&s, &format!("prefix=many%2F&marker={}", next.replace('/', "%2F")));
    assert_eq!(r.xml_all("Key").len(), 100);
    assert_eq!(r.xml_all("Key")[0], "many/01000");
    assert!(r.text().contains("<Owner>"), "V1 always has Owner");
}

fn s_ref(s: &Server) -> &Server {
    s
}

#[test]
fn delete_multiple() {
    let s = Server::anon();
    for k in ["d1", "d2", "d 3"] {
        s.put(&format!("/bkt/{}", k.replace(' ', "%20")), b"z");
    }
    let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>false</Quiet><Object><Key>d1</Key></Object><Object><Key>d%203</Key></Object><Object><Key>missing</Key></Object></Delete>";
    let r = s.req("POST", "/bkt/?delete").body(body).send();
    assert_eq!(r.status, 400, "Content-MD5 is required");
    let r = s
        .req("POST", "/bkt/?delete&encoding-type=url")
        .body(body)
        .content_md5()
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.xml_all("Key"), ["d1", "d%203", "missing"]);
    assert_eq!(s.get("/bkt/d1").status, 404);
    assert_eq!(s.get("/bkt/d%203").status, 404);
    assert_eq!(s.get("/bkt/d2").status, 200);
    let quiet = b"<Delete><Quiet>true</Quiet><Object><Key>d2</Key></Object></Delete>";
    let r = s.req("POST", "/bkt/?delete").body(quiet).content_md5().send();
    assert_eq!(r.status, 200);
    assert!(r.xml_all("Key").is_empty());
    assert_eq!(s.get("/bkt/d2").status, 404);
    let mut big = String::from("<Delete>");
    for i in 0..1001 {
        big.push_str(&format!("<Object><Key>k{i}</Key></Object>"));
    }
    big.push_str("</Delete>");
    let r = s.req("POST", "/bkt/?delete").body(big.as_bytes()).content_md5().send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("MalformedXML")));
    let r = s
        .req("POST", "/bkt/?delete")
        .body(b"<Delete><Object>")
        .content_md5()
        .send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("MalformedXML")));
}

#[test]
fn copy_object_copy_and_replace() {
    let s = Server::anon();
    s.req("PUT", "/bkt/src%20dir/ü.txt")
        .header("Content-Type", "text/plain")
        .header("x-oss-meta-a", "1")
        .body(b"copy me")
        .send();
    // oss2 form: key encoded with safe=''
    let r = s
        .req("PUT", "/bkt/dst1")
        .header("x-oss-copy-source", "/bkt/src%20dir%2F%C3%BC.txt")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.xml("ETag").unwrap(), format!("\"{}\"", md5_hex(b"copy me")));
    assert_eq!(
        r.h("x-oss-hash-crc64ecma"),
        Some(crc64(b"copy me").to_string().as_str())
    );
    let g = s.get("/bkt/dst1");
    assert_eq!(g.body, b"copy me");
    assert_eq!(g.h("x-oss-meta-a"), Some("1"));
    assert_eq!(g.h("Content-Type"), Some("text/plain"));
    // v2 form: '/' kept; REPLACE
    let r = s
        .req("PUT", "/bkt/dst2")
        .header("x-oss-copy-source", "/bkt/src%20dir/%C3%BC.txt")
        .header("x-oss-metadata-directive", "REPLACE")
        .header("x-oss-meta-b", "2")
        .send();
    assert_eq!(r.status, 200);
    let g = s.get("/bkt/dst2");
    assert_eq!(g.body, b"copy me");
    assert_eq!(g.h("x-oss-meta-b"), Some("2"));
    assert!(g.h("x-oss-meta-a").is_none());
    // onto itself with REPLACE updates metadata
    let r = s
        .req("PUT", "/bkt/dst2")
        .header("x-oss-copy-source", "/bkt/dst2")
        .header("x-oss-metadata-directive", "REPLACE")
        .header("x-oss-meta-c", "3")
        .send();
    assert_eq!(r.status, 200);
    let g = s.get("/bkt/dst2");
    assert_eq!(
        (g.body.as_slice(), g.h("x-oss-meta-c")),
        (b"copy me".as_slice(), Some("3"))
    );
    // conditions and errors
    let r = s
        .req("PUT", "/bkt/dst3")
        .header("x-oss-copy-source", "/bkt/dst1")
        .header("x-oss-copy-source-if-match", "\"00\"")
        .send();
    assert_eq!(r.status, 412);
    let r = s
        .req("PUT", "/bkt/dst3")
        .header("x-oss-copy-source", "/bkt/nothing")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (404, Some("NoSuchKey")));
    let r = s
        .req("PUT", "/bkt/dst1")
        .header("x-oss-copy-source", "/bkt/dst2")
        .header("x-oss-forbid-overwrite", "true")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (409, Some("FileAlreadyExists")));
    let r = s.req("PUT", "/bkt/dst3").header("x-oss-copy-source", "/nob/x").send();
    assert_eq!((r.status, r.code().as_deref()), (404, Some("NoSuchBucket")));
}

fn initiate(s: &Server, key: &str) -> String {
    let r = s
        .req("POST", &format!("/bkt/{key}?uploads"))
        .header("Content-Type", "text/x-mpu")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.xml("Key").as_deref(), Some(key));
    r.xml("UploadId").unwrap()
}

fn complete_body(parts: &[(u32, &str)]) -> Vec<u8> {
    let mut b = String::from("<CompleteMultipartUpload>");
    for (n, e) in parts {
        b.push_str(&format!("<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"));
    }
    b.push_str("</CompleteMultipartUpload>");
    b.into_bytes()
}

#[test]
fn multipart_upload() {
    let s = Server::anon();
    let p1 = pattern(150 * 1024, 1);
    let p2 = pattern(120 * 1024, 2);
    let p3 = pattern(10, 3);
    let id = initiate(&s, "mp");
    let mut etags = vec![];
    for (n, p) in [(1, &p1), (2, &p2), (3, &p3)] {
        let r = s.put(&format!("/bkt/mp?partNumber={n}&uploadId={id}"), p);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.h("ETag").unwrap(), format!("\"{}\"", md5_hex(p)));
        assert_eq!(r.h("x-oss-hash-crc64ecma"), Some(crc64(p).to_string().as_str()));
        etags.push(r.h("ETag").unwrap().to_string());
    }
    for bad in ["0", "10001", "x"] {
        let r = s.put(&format!("/bkt/mp?partNumber={bad}&uploadId={id}"), b"x");
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some("InvalidArgument")),
            "part {bad}"
        );
    }
    let r = s.put("/bkt/mp?partNumber=1&uploadId=NOPE", b"x");
    assert_eq!((r.status, r.code().as_deref()), (404, Some("NoSuchUpload")));

    let lp = s.get(&format!("/bkt/mp?uploadId={id}&max-parts=2"));
    assert_eq!(lp.status, 200);
    assert_eq!(lp.xml_all("PartNumber"), ["1", "2"]);
    assert_eq!(lp.xml("IsTruncated").as_deref(), Some("true"));
    assert_eq!(lp.xml("NextPartNumberMarker").as_deref(), Some("2"));
    let lp = s.get(&format!("/bkt/mp?uploadId={id}&part-number-marker=2"));
    assert_eq!(lp.xml_all("PartNumber"), ["3"]);
    assert_eq!(lp.xml("HashCrc64ecma").unwrap(), crc64(&p3).to_string());
    let other = initiate(&s, "dir/sub/a");
    initiate(&s, "dir/sub/b");
    initiate(&s, "dir/top");
    let lu = s.get("/bkt/?uploads&prefix=dir%2F&delimiter=%2F");
    assert_eq!(lu.xml_all("Key"), ["dir/top"]);
    assert_eq!(
        lu.xml_all("Prefix"),
        ["dir/", "dir/sub/"],
        "Prefix element, then one CommonPrefixes"
    );
    let lu = s.get("/bkt/?uploads&prefix=dir%2F&max-uploads=1");
    assert_eq!(lu.xml("IsTruncated").as_deref(), Some("true"));
    assert_eq!(lu.xml_all("UploadId"), vec![other]);
    assert_eq!(lu.xml("NextKeyMarker").as_deref(), Some("dir/sub/a"));
    let lu = s.get("/bkt/?uploads&prefix=mp");
    assert_eq!(lu.xml_all("UploadId"), vec![id.clone()]);

    let uri = format!("/bkt/mp?uploadId={id}");
    let r = s
        .req("POST", &uri)
        .body(&complete_body(&[(2, &etags[1]), (1, &etags[0])]))
        .send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidPartOrder")));
    let r = s
        .req("POST", &uri)
        .body(&complete_body(&[(1, &etags[0]), (2, "\"BAD\"")]))
        .send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidPart")));
    let r = s
        .req("POST", &uri)
        .body(&complete_body(&[(1, &etags[0]), (3, &etags[2]), (4, &etags[2])]))
        .send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidPart")));
    let r = s.req("POST", &uri).body(b"<CompleteMultipartUpload><Part>").send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("MalformedXML")));
    // part 3 (10 bytes) in the middle is too small
    let small = pattern(10, 9);
    s.put(&format!("/bkt/mp?partNumber=4&uploadId={id}"), &small);
    let r = s
        .req("POST", &uri)
        .body(&complete_body(&[
            (1, &etags[0]),
            (3, &etags[2]),
            (4, &format!("\"{}\"", md5_hex(&small))),
        ]))
        .send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("EntityTooSmall")));
    assert_eq!(r.h("x-oss-ec"), Some("0042-00000213"));

    let r = s
        .req("POST", &uri)
        .body(&complete_body(&[(1, &etags[0]), (2, &etags[1]), (3, &etags[2])]))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let whole: Vec<u8> = [p1.clone(), p2.clone(), p3.clone()].concat();
    let mut cat = vec![];
    for p in [&p1, &p2, &p3] {
        use md5::Digest as _;
        cat.extend_from_slice(&md5::Md5::digest(p));
    }
    let expect = format!("\"{}-3\"", md5_hex(&cat));
    assert_eq!(r.xml("ETag").unwrap(), expect);
    assert_eq!(r.h("x-oss-hash-crc64ecma"), Some(crc64(&whole).to_string().as_str()));
    let g = s.get("/bkt/mp");
    assert_eq!(g.body, whole);
    assert_eq!(g.h("x-oss-object-type"), Some("Multipart"));
    assert_eq!(g.h("Content-Type"), Some("text/x-mpu"));
    assert_eq!(g.h("ETag"), Some(expect.as_str()));
    // the upload is gone
    let r = s.req("POST", &uri).body(&complete_body(&[(1, &etags[0])])).send();
    assert_eq!((r.status, r.code().as_deref()), (404, Some("NoSuchUpload")));
    assert!(s.get("/bkt/?uploads&prefix=mp").xml_all("UploadId").is_empty());
}

#[test]
fn multipart_complete_all_copy_and_abort() {
    let s = Server::anon();
    let src = pattern(300 * 1024, 4);
    s.put("/bkt/source", &src);
    let id = initiate(&s, "copied");
    let r = s
        .req("PUT", &format!("/bkt/copied?partNumber=1&uploadId={id}"))
        .header("x-oss-copy-source", "/bkt/source")
        .header("x-oss-copy-source-range", "bytes=0-204799")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.xml("ETag").unwrap(), format!("\"{}\"", md5_hex(&src[..204800])));
    assert_eq!(r.h("ETag").unwrap(), format!("\"{}\"", md5_hex(&src[..204800])));
    let r = s
        .req("PUT", &format!("/bkt/copied?partNumber=2&uploadId={id}"))
        .header("x-oss-copy-source", "/bkt/source")
        .header("x-oss-copy-source-range", "bytes=204800-307199")
        .send();
    assert_eq!(r.status, 200);
    let r = s
        .req("POST", &format!("/bkt/copied?uploadId={id}"))
        .header("x-oss-complete-all", "yes")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/bkt/copied").body, src);

    let id = initiate(&s, "aborted");
    s.put(&format!("/bkt/aborted?partNumber=1&uploadId={id}"), b"x");
    assert_eq!(
        s.req("DELETE", &format!("/bkt/aborted?uploadId={id}")).send().status,
        204
    );
    let r = s.req("DELETE", &format!("/bkt/aborted?uploadId={id}")).send();
    assert_eq!((r.status, r.code().as_deref()), (404, Some("NoSuchUpload")));
    assert_eq!(s.get("/bkt/aborted").status, 404);
    let uploads_dir = s.data_dir().join(".osslocal/uploads");
    assert_eq!(
        std::fs::read_dir(uploads_dir).unwrap().count(),
        0,
        "no part files left behind"
    );
}

#[test]
fn append_rules() {
    let s = Server::anon();
    let r = s.req("POST", "/bkt/log?append&position=5").body(b"x").send();
    assert_eq!((r.status, r.code().as_deref()), (409, Some("PositionNotEqualToLength")));
    assert_eq!(r.h("x-oss-next-append-position"), Some("0"));
    let r = s
        .req("POST", "/bkt/log?append&position=0")
        .header("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(b"hello ")
        .send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("BadDigest")));
    assert_eq!(s.get("/bkt/log").status, 404, "a bad digest creates nothing");
    let r = s
        .req("POST", "/bkt/log?append&position=0")
        .header("Content-Type", "text/plain")
        .body(b"hello ")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.h("x-oss-next-append-position"), Some("6"));
    assert_eq!(r.h("x-oss-hash-crc64ecma"), Some(crc64(b"hello ").to_string().as_str()));
    let r = s.req("POST", "/bkt/log?append&position=6").body(b"world").send();
    assert_eq!(r.status, 200);
    assert_eq!(r.h("x-oss-next-append-position"), Some("11"));
    assert_eq!(
        r.h("x-oss-hash-crc64ecma"),
        Some(crc64(b"hello world").to_string().as_str())
    );
    assert_eq!(r.h("ETag").unwrap(), format!("\"{}\"", md5_hex(b"hello world")));
    let r = s.req("POST", "/bkt/log?append&position=3").body(b"!").send();
    assert_eq!((r.status, r.code().as_deref()), (409, Some("PositionNotEqualToLength")));
    assert_eq!(r.h("x-oss-next-append-position"), Some("11"));
    assert_eq!(r.xml("RequestId").as_deref(), r.h("x-oss-request-id"));
    assert_eq!(r.h("x-oss-ec"), Some("0026-00000016"));
    let g = s.get("/bkt/log");
    assert_eq!(g.body, b"hello world");
    assert_eq!(g.h("x-oss-object-type"), Some("Appendable"));
    assert_eq!(g.h("x-oss-next-append-position"), Some("11"));
    assert_eq!(g.h("Content-Type"), Some("text/plain"));
    s.put("/bkt/normal", b"n");
    let r = s.req("POST", "/bkt/normal?append&position=1").body(b"x").send();
    assert_eq!((r.status, r.code().as_deref()), (409, Some("ObjectNotAppendable")));
    let r = s.req("POST", "/bkt/log?append").body(b"x").send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidArgument")));
}

#[test]
fn symlinks_follow() {
    let s = Server::anon();
    s.put("/bkt/dir/target%20file.txt", b"target data");
    // oss2 percent-encodes the target
    let r = s
        .req("PUT", "/bkt/link?symlink")
        .header("x-oss-symlink-target", "dir%2Ftarget%20file.txt")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.get("/bkt/link?symlink");
    assert_eq!(r.status, 200);
    assert_eq!(r.h("x-oss-symlink-target"), Some("dir%2Ftarget%20file.txt"));
    let g = s.get("/bkt/link");
    assert_eq!((g.status, g.body.as_slice()), (200, b"target data".as_slice()));
    assert_eq!(g.h("x-oss-object-type"), Some("Symlink"));
    let h = s.req("HEAD", "/bkt/link").send();
    assert_eq!(h.h("Content-Length"), Some("11"));
    assert_eq!(h.h("x-oss-object-type"), Some("Symlink"));
    let r = s.get("/bkt/?list-type=2&prefix=link");
    assert_eq!(r.xml("Type").as_deref(), Some("Symlink"));
    // dangling
    s.req("PUT", "/bkt/dangling?symlink")
        .header("x-oss-symlink-target", "nowhere")
        .send();
    assert_eq!(s.get("/bkt/dangling").status, 404);
    assert_eq!(
        s.get("/bkt/dir/target%20file.txt?symlink").status,
        400,
        "GetSymlink on a normal object"
    );
}

#[test]
fn bucket_level_operations() {
    let s = Server::start(&[
        "--anonymous",
        "--bucket",
        "bkt",
        "--bucket",
        "other-1",
        "--region",
        "cn-shanghai",
    ]);
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.xml_all("Name"), ["bkt", "other-1"]);
    let r = s.get("/bkt/?location");
    assert!(
        r.text()
            .contains("<LocationConstraint>oss-cn-shanghai</LocationConstraint>"),
        "{}",
        r.text()
    );
    let r = s.get("/bkt/?bucketInfo");
    assert_eq!(r.xml("Name").as_deref(), Some("bkt"));
    assert_eq!(r.xml("Location").as_deref(), Some("oss-cn-shanghai"));
    let r = s.get("/nob/?bucketInfo");
    assert_eq!((r.status, r.code().as_deref()), (404, Some("NoSuchBucket")));
    let stats = s.stats();
    assert_eq!(stats["ops"]["ListBuckets"], 1);
    assert_eq!(stats["ops"]["GetBucketLocation"], 1);
    assert_eq!(stats["ops"]["GetBucketInfo"], 2);
    assert_eq!(stats["errors"]["NoSuchBucket"], 1);
}

/// A completed multipart object is kept as its parts' files (completing copies nothing): ranged
/// reads across part boundaries, copies from it, a restart, an overwrite and a delete all see
/// exactly the concatenation, and no data file outlives its object.
#[test]
fn multipart_objects_are_their_parts_without_a_copy() {
    let mut s = Server::anon();
    let parts = [pattern(100 * 1024, 5), pattern(100 * 1024, 6), pattern(7_000, 7)];
    let whole: Vec<u8> = parts.concat();
    let id = initiate(&s, "big");
    let mut etags = vec![];
    for (i, p) in parts.iter().enumerate() {
        let r = s.put(&format!("/bkt/big?partNumber={}&uploadId={id}", i + 1), p);
        assert_eq!(r.status, 200, "{}", r.text());
        etags.push(r.h("ETag").unwrap().to_string());
    }
    let list: Vec<(u32, &String)> = etags.iter().enumerate().map(|(i, e)| (i as u32 + 1, e)).collect();
    let body = complete_body(&list.iter().map(|(n, e)| (*n, e.as_str())).collect::<Vec<_>>());
    let r = s.req("POST", &format!("/bkt/big?uploadId={id}")).body(&body).send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.h("x-oss-hash-crc64ecma"), Some(crc64(&whole).to_string().as_str()));

    let data_files =
        |s: &Server| -> usize { std::fs::read_dir(s.data_dir().join("buckets/bkt/data")).map_or(0, |d| d.count()) };
    assert_eq!(data_files(&s), 3, "one file per part, no concatenated copy");
    let check = |s: &Server| {
        assert_eq!(s.get("/bkt/big").body, whole);
        for (from, to) in [
            (0usize, 10usize),
            (100 * 1024 - 5, 100 * 1024 + 5),
            (1000, 204_000),
            (whole.len() - 3, whole.len() - 1),
        ] {
            let r = s
                .req("GET", "/bkt/big")
                .header("Range", &format!("bytes={from}-{to}"))
                .send();
            assert_eq!(r.status, 206);
            assert_eq!(r.body, &whole[from..=to], "bytes {from}-{to}");
        }
    };
    check(&s);
    // Copies read through the parts too.
    let r = s.req("PUT", "/bkt/copy").header("x-oss-copy-source", "/bkt/big").send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/bkt/copy").body, whole);
    // The layout survives a restart.
    s.restart();
    check(&s);
    assert_eq!(data_files(&s), 4);
    // Overwritten: the part files go.
    assert_eq!(s.put("/bkt/big", b"small now").status, 200);
    assert_eq!(s.get("/bkt/big").body, b"small now");
    assert_eq!(data_files(&s), 2);
    assert_eq!(s.req("DELETE", "/bkt/big").send().status, 204);
    assert_eq!(s.req("DELETE", "/bkt/copy").send().status, 204);
    assert_eq!(data_files(&s), 0);
}
