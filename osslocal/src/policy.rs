//! RAM access policies: parsing and evaluation.
//!
//! osslocal understands the subset of the RAM policy language that STS session and role
//! policies use for OSS: `{"Version": "1", "Statement": [{"Effect": "Allow"|"Deny",
//! "Action": str|[str], "Resource": str|[str]}]}`. Everything else (`NotAction`, `NotResource`,
//! `Principal`, `Condition`, unknown keys) is **rejected** by [`Policy::parse`] rather than ignored:
//! ignoring a `Condition` would silently widen an `Allow`, and a test instrument must not grant
//! more than the policy author wrote.
//!
//! Evaluation ([`authorize`]) follows RAM: a request is allowed only if *every* policy in the list
//! allows it (the effective permission of an STS session is the intersection of the role policy and
//! the session policy); an explicit `Deny` in any policy wins; no matching statement means deny.
//! Patterns may use `*` (any sequence, including `/` and `:`) and `?` (one character) anywhere.
//! Actions compare case-insensitively, resources case-sensitively.

use serde_json::Value;

/// Length limit of one policy document, in characters (the STS `Policy` parameter limit).
pub const MAX_POLICY_CHARS: usize = 2048;

/// `Allow` or `Deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement: effect, action patterns (lower-cased) and resource patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A parsed RAM policy. Keeps its source text so it can travel inside a security token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
    source: String,
}

impl Policy {
    /// Parse and grammar-check a policy document. The error text says what is wrong.
    pub fn parse(json: &str) -> Result<Policy, String> {
        let root: Value = serde_json::from_str(json).map_err(|e| format!("policy is not valid JSON: {e}"))?;
        let obj = root.as_object().ok_or("policy must be a JSON object")?;
        for key in obj.keys() {
            if key != "Version" && key != "Statement" {
                return Err(format!("unsupported top-level policy element {key:?}"));
            }
        }
        match obj.get("Version") {
            Some(Value::String(v)) if v == "1" => {}
            Some(other) => return Err(format!("policy Version must be \"1\", got {other}")),
            None => return Err("policy has no Version".to_string()),
        }
        let statements = match obj.get("Statement") {
            Some(Value::Array(list)) if !list.is_empty() => list,
            Some(Value::Array(_)) => return Err("policy Statement list is empty".to_string()),
            Some(_) => return Err("policy Statement must be a list".to_string()),
            None => return Err("policy has no Statement".to_string()),
        };
        let statements = statements
            .iter()
            .enumerate()
            .map(|(i, s)| parse_statement(s).map_err(|e| format!("Statement[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            statements,
            source: json.to_string(),
        })
    }

    /// The document as it was parsed.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed statements (tests inspect them; evaluation goes through [`authorize`]).
    #[cfg(test)]
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Whether any statement with `effect` matches `action` (lower-cased) and `resource`.
    fn matches(&self, effect: Effect, action_lower: &str, resource: &str) -> bool {
        self.statements.iter().any(|s| {
            s.effect == effect
                && s.actions.iter().any(|a| glob_match(a, action_lower))
                && s.resources.iter().any(|r| resource_match(r, resource))
        })
    }
}

fn parse_statement(value: &Value) -> Result<Statement, String> {
    let obj = value.as_object().ok_or("statement must be a JSON object")?;
    for key in obj.keys() {
        match key.as_str() {
            "Effect" | "Action" | "Resource" => {}
            "NotAction" | "NotResource" | "Principal" | "Condition" => {
                return Err(format!("{key} is not supported by osslocal"));
            }
            other => return Err(format!("unknown statement element {other:?}")),
        }
    }
    let effect = match obj.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => return Err(format!("Effect must be \"Allow\" or \"Deny\", got {other}")),
        None => return Err("statement has no Effect".to_string()),
    };
    let actions = string_list(obj.get("Action"), "Action")?
        .into_iter()
        .map(|a| a.to_ascii_lowercase())
        .collect();
    let resources = string_list(obj.get("Resource"), "Resource")?;
    Ok(Statement {
        effect,
        actions,
        resources,
    })
}

/// `"x"` or `["x", ...]` (non-empty, non-empty strings).
fn string_list(value: Option<&Value>, name: &str) -> Result<Vec<String>, String> {
    let list = match value {
        None => return Err(format!("statement has no {name}")),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{name} entries must be strings"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(format!("{name} must be a string or a list of strings")),
    };
    if list.is_empty() {
        return Err(format!("{name} list is empty"));
    }
    if list.iter().any(String::is_empty) {
        return Err(format!("{name} entries must not be empty"));
    }
    Ok(list)
}

/// RAM evaluation over a set of policies that must all allow (see the module doc).
/// An empty list allows everything (a role without a policy, no session policy).
pub fn authorize(policies: &[Policy], action: &str, resource: &str) -> bool {
    let action = action.to_ascii_lowercase();
    if policies.iter().any(|p| p.matches(Effect::Deny, &action, resource)) {
        return false;
    }
    policies.iter().all(|p| p.matches(Effect::Allow, &action, resource))
}

/// Resource pattern match. ARNs (`acs:oss:<region>:<account>:<path>`) are compared field by
/// field so that a `*` region or account in the *resource* (the server does not know the
/// caller's region) matches any pattern field; other strings are globbed as a whole.
fn resource_match(pattern: &str, resource: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(5, ':').collect();
    let r: Vec<&str> = resource.splitn(5, ':').collect();
    if p.len() != 5 || r.len() != 5 {
        return glob_match(pattern, resource);
    }
    p.iter().zip(&r).enumerate().all(|(i, (pf, rf))| {
        let wildcard_field = (i == 2 || i == 3) && *rf == "*";
        wildcard_field || glob_match(pf, rf)
    })
}

/// Glob with `*` (any sequence) and `?` (exactly one character), on characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last `*` in the pattern and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "1234567890123456";

    fn obj(bucket_key: &str) -> String {
        format!("acs:oss:*:{ACCT}:{bucket_key}")
    }

    fn allow(actions: &str, resources: &str) -> Policy {
        Policy::parse(&format!(
            r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":{actions},"Resource":{resources}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn glob_basics() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything/at:all"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c*e", "abcd"));
        assert!(glob_match("dir/*", "dir/"));
        assert!(!glob_match("dir/*", "dir"));
        assert!(glob_match("中文/*", "中文/x"));
        assert!(glob_match("?", "中"));
        assert!(glob_match("**a", "a"));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn authorization_table() {
        let get_prefix = allow(r#""oss:Get*""#, r#""acs:oss:*:*:bucket/prefix*""#);
        let all = allow(r#""oss:*""#, r#"["acs:oss:*:*:bucket","acs:oss:*:*:bucket/*"]"#);
        let star = allow(r#""*""#, r#""*""#);
        let list_only = allow(r#"["oss:ListObjects"]"#, r#""acs:oss:*:*:bucket""#);
        let regional = allow(r#""oss:GetObject""#, r#""acs:oss:cn-hangzhou:*:bucket/*""#);
        let qmark = allow(r#""oss:?etObject""#, r#""acs:oss:*:*:bucket/f?.txt""#);
        let cases: &[(&Policy, &str, String, bool)] = &[
            (&get_prefix, "oss:GetObject", obj("bucket/prefix/a"), true),
            (&get_prefix, "oss:getobject", obj("bucket/prefix"), true),
            (&get_prefix, "oss:GetSymlink", obj("bucket/prefixed"), true),
            (&get_prefix, "oss:PutObject", obj("bucket/prefix/a"), false),
            (&get_prefix, "oss:GetObject", obj("bucket/other"), false),
            (&get_prefix, "oss:GetObject", obj("bucket2/prefix/a"), false),
            (&get_prefix, "oss:GetObject", obj("bucket"), false),
            (&all, "oss:PutObject", obj("bucket/x/y"), true),
            (&all, "oss:ListObjects", obj("bucket"), true),
            (&all, "oss:ListObjects", obj("bucketx"), false),
            (&all, "ram:ListUsers", obj("bucket"), false),
            (&star, "oss:DeleteObject", obj("any/key"), true),
            (
                &star,
                "oss:ListBuckets",
                "acs:oss:*:1234567890123456:*".to_string(),
                true,
            ),
            (&list_only, "oss:ListObjects", obj("bucket"), true),
            (&list_only, "oss:GetObject", obj("bucket"), false),
            // The server leaves the region as `*`: it matches a regional pattern.
            (&regional, "oss:GetObject", obj("bucket/k"), true),
            (
                &regional,
                "oss:GetObject",
                "acs:oss:cn-beijing:1234567890123456:bucket/k".to_string(),
                false,
            ),
            (&qmark, "oss:GetObject", obj("bucket/f1.txt"), true),
            (&qmark, "oss:GetObject", obj("bucket/f12.txt"), false),
        ];
        for (policy, action, resource, expected) in cases {
            assert_eq!(
                authorize(std::slice::from_ref(*policy), action, resource),
                *expected,
                "{action} on {resource} with {}",
                policy.source()
            );
        }
    }

    #[test]
    fn deny_overrides_allow() {
        let p = Policy::parse(
            r#"{"Version":"1","Statement":[
                {"Effect":"Allow","Action":"oss:*","Resource":"acs:oss:*:*:bucket/*"},
                {"Effect":"Deny","Action":["oss:DeleteObject","oss:Put*"],"Resource":"acs:oss:*:*:bucket/ro/*"}]}"#,
        )
        .unwrap();
        assert!(authorize(
            std::slice::from_ref(&p),
            "oss:GetObject",
            &obj("bucket/ro/a")
        ));
        assert!(!authorize(
            std::slice::from_ref(&p),
            "oss:DeleteObject",
            &obj("bucket/ro/a")
        ));
        assert!(!authorize(
            std::slice::from_ref(&p),
            "oss:PutObject",
            &obj("bucket/ro/a")
        ));
        assert!(authorize(
            std::slice::from_ref(&p),
            "oss:PutObject",
            &obj("bucket/rw/a")
        ));
        // A Deny in one policy beats an Allow in another.
        let deny_only = Policy::parse(
            r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":"*","Resource":"acs:oss:*:*:bucket/secret*"}]}"#,
        )
        .unwrap();
        let star = allow(r#""*""#, r#""*""#);
        assert!(!authorize(
            &[star.clone(), deny_only.clone()],
            "oss:GetObject",
            &obj("bucket/secret.txt")
        ));
        // A deny-only policy allows nothing (no Allow matches).
        assert!(!authorize(
            &[star, deny_only],
            "oss:GetObject",
            &obj("bucket/public.txt")
        ));
    }

    #[test]
    fn role_and_session_policies_intersect() {
        let role = allow(r#""oss:*""#, r#""acs:oss:*:*:bucket/*""#);
        let session = allow(r#"["oss:GetObject","oss:ListObjects"]"#, r#""acs:oss:*:*:*""#);
        let both = [role, session];
        assert!(authorize(&both, "oss:GetObject", &obj("bucket/a")));
        assert!(
            !authorize(&both, "oss:PutObject", &obj("bucket/a")),
            "session does not allow PutObject"
        );
        assert!(
            !authorize(&both, "oss:GetObject", &obj("other/a")),
            "role does not allow other buckets"
        );
        assert!(
            authorize(&[], "oss:PutObject", &obj("bucket/a")),
            "no policy = unrestricted"
        );
    }

    #[test]
    fn parse_rejects_bad_documents() {
        let bad = [
            ("", "not valid JSON"),
            ("[]", "JSON object"),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
                "no Version",
            ),
            (
                r#"{"Version":"2","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
                "Version",
            ),
            (r#"{"Version":"1"}"#, "no Statement"),
            (r#"{"Version":"1","Statement":[]}"#, "empty"),
            (
                r#"{"Version":"1","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
                "must be a list",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"allow","Action":"*","Resource":"*"}]}"#,
                "Effect",
            ),
            (
                r#"{"Version":"1","Statement":[{"Action":"*","Resource":"*"}]}"#,
                "no Effect",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
                "no Action",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*"}]}"#,
                "no Resource",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":[],"Resource":"*"}]}"#,
                "empty",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":[1],"Resource":"*"}]}"#,
                "strings",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":""}]}"#,
                "not be empty",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","NotAction":"*","Resource":"*"}]}"#,
                "NotAction is not supported",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{}}]}"#,
                "Condition is not supported",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","X":1}]}"#,
                "unknown",
            ),
            (
                r#"{"Version":"1","Id":"x","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
                "top-level",
            ),
        ];
        for (doc, want) in bad {
            let err = Policy::parse(doc).unwrap_err();
            assert!(err.contains(want), "{doc}: error {err:?} should mention {want:?}");
        }
    }

    #[test]
    fn parse_keeps_source_and_statements() {
        let src =
            r#"{"Version": "1", "Statement": [{"Effect": "Deny", "Action": ["OSS:GetObject"], "Resource": "*"}]}"#;
        let p = Policy::parse(src).unwrap();
        assert_eq!(p.source(), src);
        assert_eq!(
            p.statements(),
            &[Statement {
                effect: Effect::Deny,
                actions: vec!["oss:getobject".into()],
                resources: vec!["*".into()]
            }]
        );
    }
}
