//! Admin API: stats counters and every fault kind.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn stats_count_ops_errors_and_bytes() {
    let s = Server::anon();
    s.put("/bkt/a", b"12345");
    s.get("/bkt/a");
    s.get("/bkt/missing");
    s.req("HEAD", "/bkt/a").send();
    s.get("/bkt/?list-type=2");
    s.get("/bkt/");
    let st = s.stats();
    assert_eq!(st["ops"]["PutObject"], 1);
    assert_eq!(st["ops"]["GetObject"], 2);
    assert_eq!(st["ops"]["HeadObject"], 1);
    assert_eq!(st["ops"]["ListObjectsV2"], 1);
    assert_eq!(st["ops"]["ListObjects"], 1);
    assert_eq!(st["errors"]["NoSuchKey"], 1);
    assert_eq!(st["requests"], 6);
    assert_eq!(st["bytes_in"], 5);
    assert!(st["bytes_out"].as_u64().unwrap() >= 5);
    for a in ["AssumeRole", "AssumeRoleWithOIDC", "GetCallerIdentity"] {
        assert_eq!(st["sts"][a], 0);
    }
    s.admin_json("POST", "/_osslocal/stats/reset", "");
    let st = s.stats();
    assert_eq!(st["requests"], 0);
    assert_eq!(st["ops"], serde_json::json!({}));
    assert_eq!(st["bytes_in"], 0);
    let r = s.get("/_osslocal/nope");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.h("x-oss-request-id").map(str::len),
        Some(24),
        "every answer has a request id"
    );
    let r = s.req("POST", "/_osslocal/faults").body(b"{\"error_rate\": 5}").send();
    assert_eq!(r.status, 400);
}

#[test]
fn error_fault_with_ops_filter_and_budget() {
    let s = Server::anon();
    s.put("/bkt/a", b"x");
    s.admin_json(
        "POST",
        "/_osslocal/faults",
        r#"{"error_rate": 1.0, "error_status": 500, "error_code": "InternalError", "ops": ["GetObject"], "max_faults": 2}"#,
    );
    for _ in 0..2 {
        let r = s.get("/bkt/a");
        assert_eq!((r.status, r.code().as_deref()), (500, Some("InternalError")));
    }
    assert_eq!(s.get("/bkt/a").status, 200, "budget exhausted");
    assert_eq!(s.req("HEAD", "/bkt/a").send().status, 200, "HeadObject not selected");
    // faults never apply to admin requests; default status/code
    s.admin_json("POST", "/_osslocal/faults", r#"{"error_rate": 1.0}"#);
    assert_eq!(s.stats()["errors"]["InternalError"], 2);
    let r = s.put("/bkt/b", b"y");
    assert_eq!((r.status, r.code().as_deref()), (503, Some("ServiceUnavailable")));
    let st = s.stats();
    assert_eq!(
        st["ops"]["PutObject"], 2,
        "ops count requests answered with injected errors"
    );
    assert_eq!(st["errors"]["ServiceUnavailable"], 1);
    s.admin_json("POST", "/_osslocal/faults/clear", "");
    assert_eq!(s.put("/bkt/b", b"y").status, 200);
    // a rate strictly between 0 and 1 injects some but not all
    s.admin_json(
        "POST",
        "/_osslocal/faults",
        r#"{"error_rate": 0.5, "ops": ["GetObject"]}"#,
    );
    let fails = (0..60).filter(|_| s.get("/bkt/a").status == 503).count();
    assert!((5..55).contains(&fails), "{fails} of 60 failed at rate 0.5");
}

#[test]
fn latency_fault() {
    let s = Server::anon();
    s.put("/bkt/a", b"x");
    s.admin_json(
        "POST",
        "/_osslocal/faults",
        r#"{"latency_ms": 300, "ops": ["GetObject"]}"#,
    );
    let t = Instant::now();
    assert_eq!(s.get("/bkt/a").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    s.req("HEAD", "/bkt/a").send();
    assert!(t.elapsed() < Duration::from_millis(300), "other ops unaffected");
    let t = Instant::now();
    s.stats();
    assert!(t.elapsed() < Duration::from_millis(300), "admin unaffected");
}

#[test]
fn reset_fault_cuts_get_bodies() {
    let s = Server::anon();
    let data = pattern(1024 * 1024, 3);
    s.put("/bkt/big", &data);
    s.admin_json(
        "POST",
        "/_osslocal/faults",
        r#"{"reset_rate": 1.0, "reset_after_bytes": 65536, "max_faults": 1}"#,
    );
    let r = s.get("/bkt/big");
    assert_eq!(r.status, 200);
    assert!(r.short, "body cut before Content-Length");
    assert_eq!(r.body.len(), 65536);
    assert_eq!(r.body, &data[..65536]);
    let r = s.get("/bkt/big");
    assert!(!r.short && r.body == data, "max_faults = 1");
    // default cut point
    s.admin_json("POST", "/_osslocal/faults", r#"{"reset_rate": 1.0}"#);
    let r = s.get("/bkt/big");
    assert!(r.short);
    assert!(r.body.len() <= 64 * 1024);
    assert_eq!(s.req("HEAD", "/bkt/big").send().status, 200);
}

#[test]
fn sts_outage_and_time_offset_without_auth() {
    let s = Server::anon();
    s.admin_json(
        "POST",
        "/_osslocal/faults",
        r#"{"sts_outage": true, "time_offset_secs": -7200}"#,
    );
    let r = s.get("/?Action=AssumeRole&Format=JSON");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("ServiceUnavailable"));
    let date = chrono::DateTime::parse_from_rfc2822(r.h("Date").unwrap()).unwrap();
    let skew = date.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((-7300..-7100).contains(&skew), "{skew}");
    let st = s.stats();
    assert_eq!(st["sts"]["AssumeRole"], 1);
    assert_eq!(st["errors"]["ServiceUnavailable"], 1);
}
