//! Hostile input, truncated uploads, restarts and concurrent writers.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::*;

#[test]
fn hostile_keys_stay_inside_the_data_dir() {
    let s = Server::anon();
    let before = s.files_outside_data_dir();
    // '/' encoded so no client-side path normalisation can happen, and raw dot segments too
    let r = s.put("/bkt/..%2F..%2F..%2Fescape.txt", b"evil1");
    assert_eq!(r.status, 200, "'../' is just bytes of a key: {}", r.text());
    let r = s.put("/bkt/../../../escape2.txt", b"evil2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/bkt/..%2F..%2F..%2Fescape.txt").body, b"evil1");
    assert_eq!(s.get("/bkt/../../../escape2.txt").body, b"evil2");
    let r = s.put("/bkt/nul%00byte", b"nul");
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/bkt/nul%00byte").body, b"nul");
    let r = s.put("/bkt//abs", b"x");
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidObjectName")));
    let r = s.put("/bkt/%5Cwin", b"x");
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidObjectName")));
    let r = s.put("/bkt/%FF%FE", b"x");
    assert_eq!(
        (r.status, r.code().as_deref()),
        (400, Some("InvalidObjectName")),
        "keys are UTF-8"
    );
    let k1023 = "k".repeat(1023);
    assert_eq!(s.put(&format!("/bkt/{k1023}"), b"ok").status, 200);
    let r = s.put(&format!("/bkt/{}", "k".repeat(1024)), b"no");
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidObjectName")));
    let r = s.put(&format!("/bkt/{}", "%E4%B8%AD".repeat(400)), b"multibyte, 1200 bytes");
    assert_eq!(r.status, 400);
    // a copy source and symlink target are keys too
    let r = s.req("PUT", "/bkt/c").header("x-oss-copy-source", "/bkt/%2Fabs").send();
    assert_eq!(r.status, 400);
    let r = s
        .req("PUT", "/bkt/l?symlink")
        .header("x-oss-symlink-target", "%2Fabs")
        .send();
    assert_eq!(r.status, 400);

    assert_eq!(
        s.files_outside_data_dir(),
        before,
        "nothing written outside the data dir"
    );
    let listed = s.get("/bkt/?list-type=2&encoding-type=url").xml_all("Key");
    assert_eq!(listed.len(), 4);
    assert!(listed.contains(&"..%2F..%2F..%2Fescape.txt".to_string()));
    assert!(listed.contains(&"nul%00byte".to_string()));
    // every file in the data dir has a name we chose, never the key
    let mut names = vec![];
    fn walk(p: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out)
            } else {
                out.push(e.file_name().to_string_lossy().into_owned())
            }
        }
    }
    walk(&s.data_dir(), &mut names);
    assert!(names.iter().all(|n| !n.contains("escape")), "{names:?}");
}

fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(bytes);
    let _ = c.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn tmp_files(s: &Server) -> usize {
    std::fs::read_dir(s.data_dir().join(".osslocal/tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn truncated_upload_leaves_no_object() {
    let s = Server::anon();
    s.put("/bkt/keep", b"original");
    for key in ["fresh", "keep"] {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        let head = format!(
            "PUT /bkt/{key} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\n\r\n",
            s.addr
        );
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(&pattern(300_000, 5)).unwrap();
        c.shutdown(Shutdown::Both).unwrap();
    }
    // The server notices the disconnect asynchronously.
    for _ in 0..100 {
        if tmp_files(&s) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.get("/bkt/fresh").status, 404, "no partial object");
    assert_eq!(s.get("/bkt/keep").body, b"original", "old version untouched");
    assert_eq!(tmp_files(&s), 0, "temp file removed");
    let stats = s.stats();
    assert_eq!(stats["ops"]["PutObject"], 3);
}

#[test]
fn broken_requests_get_clean_answers() {
    let s = Server::anon();
    let out = raw_exchange(&s.addr, b"\x00\x01garbage\r\n\r\n");
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 4"), "{out}");
    let huge_header = format!(
        "GET /bkt/x HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2 * 1024 * 1024)
    );
    let out = raw_exchange(&s.addr, huge_header.as_bytes());
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 4"),
        "{}",
        &out[..out.len().min(200)]
    );
    // chunked PUT (oss2 sends empty bodies this way) is accepted; no length at all is not
    let out = raw_exchange(
        &s.addr,
        b"PUT /bkt/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(s.get("/bkt/chunked").body, b"abc");
    let out = raw_exchange(
        &s.addr,
        b"PUT /bkt/nolength HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 411"), "{out}");
    assert!(out.contains("<Code>MissingContentLength</Code>"));
    // a chunked body cut short leaves nothing
    let out = raw_exchange(
        &s.addr,
        b"PUT /bkt/cut HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc",
    );
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(s.get("/bkt/cut").status, 404);
    // oversized XML body
    let id = s.req("POST", "/bkt/m?uploads").send().xml("UploadId").unwrap();
    let big = vec![b' '; 2 * 1024 * 1024];
    let r = s.req("POST", &format!("/bkt/m?uploadId={id}")).body(&big).send();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("EntityTooLarge")));
    // unsupported method on an object
    let r = s.req("PATCH", "/bkt/x").send();
    assert_eq!((r.status, r.code().as_deref()), (405, Some("MethodNotAllowed")));
    // the server is still fine
    assert_eq!(s.put("/bkt/after", b"alive").status, 200);
    assert_eq!(s.get("/bkt/after").body, b"alive");
}

#[test]
fn restart_keeps_objects_and_uploads() {
    let mut s = Server::anon();
    let data = pattern(200_000, 9);
    s.put("/bkt/a/one", &data);
    s.req("POST", "/bkt/log?append&position=0").body(b"abc").send();
    s.req("PUT", "/bkt/link?symlink")
        .header("x-oss-symlink-target", "a/one")
        .send();
    let id = s.req("POST", "/bkt/mp?uploads").send().xml("UploadId").unwrap();
    let part = pattern(1000, 1);
    let etag = s
        .put(&format!("/bkt/mp?partNumber=1&uploadId={id}"), &part)
        .h("ETag")
        .unwrap()
        .to_string();
    s.restart();
    let g = s.get("/bkt/a/one");
    assert_eq!(g.body, data);
    assert_eq!(g.h("ETag").unwrap(), format!("\"{}\"", md5_hex(&data)));
    assert_eq!(s.get("/bkt/link").body, data);
    let r = s.req("POST", "/bkt/log?append&position=3").body(b"def").send();
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/bkt/log").body, b"abcdef");
    assert_eq!(s.get("/bkt/?list-type=2").xml_all("Key"), ["a/one", "link", "log"]);
    let body = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let r = s
        .req("POST", &format!("/bkt/mp?uploadId={id}"))
        .body(body.as_bytes())
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/bkt/mp").body, part);
}

#[test]
fn concurrent_writers_and_readers_never_see_a_torn_object() {
    let s = Server::anon();
    const SIZE: usize = 512 * 1024;
    let versions: Vec<Vec<u8>> = (0..4).map(|i| vec![b'a' + i as u8; SIZE]).collect();
    s.put("/bkt/hot", &versions[0]);
    std::thread::scope(|scope| {
        for v in &versions {
            let s = &s;
            scope.spawn(move || {
                for _ in 0..5 {
                    assert_eq!(s.put("/bkt/hot", v).status, 200);
                }
            });
        }
        for _ in 0..2 {
            let s = &s;
            let versions = &versions;
            scope.spawn(move || {
                for _ in 0..15 {
                    let g = s.get("/bkt/hot");
                    assert_eq!(g.status, 200);
                    assert!(versions.contains(&g.body), "torn read of {} bytes", g.body.len());
                    assert_eq!(
                        g.h("ETag").unwrap(),
                        format!("\"{}\"", md5_hex(&g.body)),
                        "metadata matches data"
                    );
                }
            });
        }
    });
    let g = s.get("/bkt/hot");
    assert!(versions.contains(&g.body));
    // only the current version's data file remains
    let data_files = std::fs::read_dir(s.data_dir().join("buckets/bkt/data"))
        .unwrap()
        .count();
    assert_eq!(data_files, 1);
}

#[test]
fn large_object_streams() {
    let s = Server::anon();
    let data = pattern(20 * 1024 * 1024 + 3, 11);
    let r = s.put("/bkt/big", &data);
    assert_eq!(r.status, 200);
    assert_eq!(r.h("x-oss-hash-crc64ecma"), Some(crc64(&data).to_string().as_str()));
    let g = s.get("/bkt/big");
    assert_eq!(g.body.len(), data.len());
    assert!(g.body == data);
    let r = s
        .req("GET", "/bkt/big")
        .header("Range", "bytes=10485760-10485769")
        .send();
    assert_eq!(r.body, &data[10485760..10485770]);
}

#[test]
fn ready_file_and_clean_sigterm_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut s = Server::start(&[
        "--anonymous",
        "--bucket",
        "bkt",
        "--ready-file",
        ready.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&ready).unwrap().trim(), s.addr);
    assert_eq!(s.put("/bkt/x", b"1").status, 200);
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(TcpStream::connect(&s.addr).is_err(), "no longer listening");
}

#[test]
fn bad_command_lines_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--bucket", "Bad_Name"],
        vec!["--access-key", "no-colon"],
        vec!["--role", "not-an-arn"],
        vec!["--role", "acs:ram::1234567890123456:role/r=@/nonexistent/policy.json"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_osslocal"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(out.stdout.is_empty(), "no address printed for {args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("osslocal:"), "{args:?}");
    }
}

#[test]
fn no_fsync_mode_still_survives_a_restart() {
    let mut s = Server::start(&["--anonymous", "--bucket", "bkt", "--no-fsync"]);
    let data = pattern(70_000, 2);
    assert_eq!(s.put("/bkt/k", &data).status, 200);
    let id = s.req("POST", "/bkt/m?uploads").send().xml("UploadId").unwrap();
    assert_eq!(s.put(&format!("/bkt/m?partNumber=1&uploadId={id}"), b"p").status, 200);
    s.restart();
    assert_eq!(s.get("/bkt/k").body, data);
    assert_eq!(s.get(&format!("/bkt/m?uploadId={id}")).xml_all("PartNumber"), ["1"]);
}

#[test]
fn early_error_answers_close_the_connection_explicitly() {
    let s = Server::start(&["--bucket", "bkt", "--access-key", "AK:SK"]);
    // Unsigned append: refused before the body is read. The answer must say Connection: close
    // (or the connection must stay usable), never close silently.
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /bkt/k?append&position=0 HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\n\r\n",
        s.addr
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 403"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    // keep-alive is kept for ordinary bodiless errors
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(format!("GET /bkt/k HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
        .unwrap();
    let n = c.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(
        text.starts_with("http/1.1 403") && !text.contains("connection: close"),
        "{text}"
    );
}
