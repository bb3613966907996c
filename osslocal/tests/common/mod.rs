//! Test harness: starts the real `osslocal` binary on port 0 with a temp data dir and
//! talks raw HTTP/1.1 to it over std sockets (full control over paths, headers and
//! truncated bodies). The child is killed on drop, also when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BUCKET: &str = "bkt";

pub struct Server {
    pub addr: String,
    pub dir: tempfile::TempDir,
    child: Child,
    args: Vec<String>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn(dir.path(), &args);
        Server { addr, dir, child, args }
    }

    /// Anonymous server with bucket `bkt`.
    pub fn anon() -> Server {
        Server::start(&["--anonymous", "--bucket", BUCKET])
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr) = spawn(self.dir.path(), &self.args);
        self.child = child;
        self.addr = addr;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("osslocal did not exit within 5 s of SIGTERM");
    }

    pub fn req(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            server: self,
            method: method.to_string(),
            path: path.to_string(),
            headers: vec![],
            body: vec![],
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path).send()
    }

    pub fn put(&self, path: &str, body: &[u8]) -> Resp {
        self.req("PUT", path).body(body).send()
    }

    pub fn admin_json(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let r = self.req(method, path).body(body.as_bytes()).send();
        assert_eq!(r.status, 200, "admin {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    pub fn stats(&self) -> serde_json::Value {
        self.admin_json("GET", "/_osslocal/stats", "")
    }

    /// Every regular file below the temp dir (data dir + anything else).
    pub fn files_outside_data_dir(&self) -> Vec<PathBuf> {
        let mut out = vec![];
        walk(self.dir.path(), &mut out);
        out.into_iter().filter(|p| !p.starts_with(self.data_dir())).collect()
    }
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
}

fn spawn(dir: &Path, extra: &[String]) -> (Child, String) {
    let data = dir.join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_osslocal"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "first stdout line is the address, got {addr:?}"
    );
    (child, addr)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Req<'a> {
    server: &'a Server,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
    pub fn content_md5(self) -> Self {
        use base64::Engine as _;
        use md5::Digest as _;
        let v = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&self.body));
        self.header("Content-MD5", &v)
    }
    /// Raw request bytes (always with Content-Length, Connection: close).
    pub fn raw(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}\r\n", self.server.addr));
        }
        for (n, v) in &self.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
    pub fn send(self) -> Resp {
        let mut s = TcpStream::connect(&self.server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&self.raw()).unwrap();
        read_response(&mut s, self.method == "HEAD")
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The connection ended before Content-Length bytes arrived.
    pub short: bool,
}

impl Resp {
    pub fn h(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Text of the first `<name>` element of an XML body.
    pub fn xml(&self, name: &str) -> Option<String> {
        xml_all(&self.text(), name).into_iter().next()
    }
    pub fn xml_all(&self, name: &str) -> Vec<String> {
        xml_all(&self.text(), name)
    }
    pub fn code(&self) -> Option<String> {
        self.xml("Code")
    }
}

pub fn xml_all(text: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = vec![];
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(
            after[..j]
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\""),
        );
        rest = &after[j + close.len()..];
    }
    out
}

pub fn read_response(s: &mut TcpStream, head: bool) -> Resp {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw); // a reset connection still returns what arrived
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block");
    let head_text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let body = raw[split + 4..].to_vec();
    let cl = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let short = !head && cl.is_some_and(|n| body.len() < n);
    Resp {
        status,
        headers,
        body,
        short,
    }
}

/// CRC-64/XZ as OSS computes it.
pub fn crc64(data: &[u8]) -> u64 {
    crc::Crc::<u64>::new(&crc::CRC_64_XZ).checksum(data)
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode_upper(md5::Md5::digest(data))
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

pub fn http_date_now() -> String {
    chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

impl Req<'_> {
    /// Sign with OSS V1 (PROTOCOL.md §2). `resource` is the canonicalized resource
    /// (`/bucket/key[?subresources]`, raw key). Adds `Date` and, for STS, the token header.
    pub fn sign_v1(mut self, ak: &str, sk: &str, token: Option<&str>, resource: &str) -> Self {
        use base64::Engine as _;
        use hmac::Mac as _;
        if !self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("date")) {
            self = self.header("Date", &http_date_now());
        }
        if let Some(t) = token {
            self = self.header("x-oss-security-token", t);
        }
        let get = |name: &str| {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut oss: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-oss-"))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        oss.sort();
        let mut sts = format!(
            "{}\n{}\n{}\n{}\n",
            self.method,
            get("content-md5"),
            get("content-type"),
            get("date")
        );
        for (n, v) in oss {
            sts.push_str(&format!("{n}:{v}\n"));
        }
        sts.push_str(resource);
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(sk.as_bytes()).unwrap();
        mac.update(sts.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        self.header("Authorization", &format!("OSS {ak}:{sig}"))
    }
}

/// RFC 3986 percent-encoding (unreserved kept).
pub fn pe(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// A signed STS RPC query string (PROTOCOL.md §7.3) for a GET.
pub fn sts_query(ak: &str, sk: &str, action_params: &[(&str, &str)]) -> String {
    sts_query_for("GET", ak, sk, action_params)
}

/// Signed STS RPC parameters for `method` (query string or form body).
pub fn sts_query_for(method: &str, ak: &str, sk: &str, action_params: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut params: Vec<(String, String)> = vec![
        ("Format".into(), "JSON".into()),
        ("Version".into(), "2015-04-01".into()),
        ("AccessKeyId".into(), ak.into()),
        ("SignatureMethod".into(), "HMAC-SHA1".into()),
        ("SignatureVersion".into(), "1.0".into()),
        ("SignatureNonce".into(), nonce),
        ("Timestamp".into(), ts),
    ];
    params.extend(action_params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    params.sort();
    let canonical = params
        .iter()
        .map(|(k, v)| format!("{}={}", pe(k), pe(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sts = format!("{method}&%2F&{}", pe(&canonical));
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(format!("{sk}&").as_bytes()).unwrap();
    mac.update(sts.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("{canonical}&Signature={}", pe(&sig))
}
