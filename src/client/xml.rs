//! The XML bodies OSS sends and receives (PROTOCOL.md §4–§5): response documents parsed with
//! quick-xml's serde support into plain structs, and the two request bodies we send
//! (CompleteMultipartUpload, DeleteMultipleObjects) written by hand with escaping.
//!
//! Parsing never panics: malformed input is an [`XmlError`], which the client turns into
//! `ClientError::InvalidResponse`. Fields with `encoding-type=url` are returned as sent
//! (still percent-encoded); decoding is the caller's job ([`url_decode`]).

use percent_encoding::percent_decode_str;
use quick_xml::escape::escape;
use serde::Deserialize;

/// Why an XML document could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed {document} XML: {message}")]
    Malformed { document: &'static str, message: String },
    #[error("{document}: field {field} is not valid: {message}")]
    BadField {
        document: &'static str,
        field: &'static str,
        message: String,
    },
}

fn parse<'de, T: Deserialize<'de>>(document: &'static str, body: &'de str) -> Result<T, XmlError> {
    quick_xml::de::from_str(body).map_err(|e| XmlError::Malformed {
        document,
        message: e.to_string(),
    })
}

fn body_str<'a>(document: &'static str, body: &'a [u8]) -> Result<&'a str, XmlError> {
    std::str::from_utf8(body).map_err(|e| XmlError::Malformed {
        document,
        message: format!("not UTF-8: {e}"),
    })
}

/// Percent-decode a field of an `encoding-type=url` answer (`+` stays `+`).
pub fn url_decode(document: &'static str, field: &'static str, s: &str) -> Result<String, XmlError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|e| XmlError::BadField {
            document,
            field,
            message: e.to_string(),
        })
}

/// `<Error>`: the body of every OSS error answer.
#[derive(Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub host_id: Option<String>,
    #[serde(rename = "EC", default)]
    pub ec: Option<String>,
}

/// Parse an `<Error>` document; a document without `<Code>` is malformed.
pub fn parse_error(body: &[u8]) -> Result<ErrorBody, XmlError> {
    let text = body_str("Error", body)?;
    let parsed: ErrorBody = parse("Error", text)?;
    if parsed.code.is_empty() {
        return Err(XmlError::Malformed {
            document: "Error",
            message: "no <Code>".into(),
        });
    }
    Ok(parsed)
}

/// One `<Contents>` of a listing.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Contents {
    pub key: String,
    #[serde(default)]
    pub last_modified: String,
    #[serde(rename = "ETag", default)]
    pub etag: String,
    #[serde(rename = "Type", default)]
    pub object_type: String,
    #[serde(default)]
    pub size: u64,
}

/// `<CommonPrefixes>`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CommonPrefix {
    pub prefix: String,
}

/// `<ListBucketResult>` of ListObjectsV2.
#[derive(Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListBucketResult {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub encoding_type: Option<String>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub next_continuation_token: Option<String>,
    #[serde(default)]
    pub contents: Vec<Contents>,
    #[serde(default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

pub fn parse_list_bucket_result(body: &[u8]) -> Result<ListBucketResult, XmlError> {
    parse("ListBucketResult", body_str("ListBucketResult", body)?)
}

/// `<InitiateMultipartUploadResult>`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InitiateMultipartUploadResult {
    #[serde(default)]
    pub bucket: String,
    #[serde(default)]
    pub key: String,
    pub upload_id: String,
}

pub fn parse_initiate_result(body: &[u8]) -> Result<InitiateMultipartUploadResult, XmlError> {
    let r: InitiateMultipartUploadResult = parse(
        "InitiateMultipartUploadResult",
        body_str("InitiateMultipartUploadResult", body)?,
    )?;
    if r.upload_id.is_empty() {
        return Err(XmlError::BadField {
            document: "InitiateMultipartUploadResult",
            field: "UploadId",
            message: "empty".into(),
        });
    }
    Ok(r)
}

/// `<CompleteMultipartUploadResult>`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CompleteMultipartUploadResult {
    #[serde(default)]
    pub bucket: String,
    #[serde(default)]
    pub key: String,
    #[serde(rename = "ETag")]
    pub etag: String,
}

pub fn parse_complete_result(body: &[u8]) -> Result<CompleteMultipartUploadResult, XmlError> {
    parse(
        "CompleteMultipartUploadResult",
        body_str("CompleteMultipartUploadResult", body)?,
    )
}

/// `<CopyObjectResult>` / `<CopyPartResult>` (same fields).
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CopyResult {
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(default)]
    pub last_modified: String,
}

pub fn parse_copy_result(body: &[u8]) -> Result<CopyResult, XmlError> {
    parse("CopyResult", body_str("CopyResult", body)?)
}

/// One `<Part>` of ListParts.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Part {
    pub part_number: u32,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub hash_crc64ecma: Option<u64>,
}

/// `<ListPartsResult>`.
#[derive(Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListPartsResult {
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub next_part_number_marker: Option<u32>,
    #[serde(default, rename = "Part")]
    pub parts: Vec<Part>,
}

pub fn parse_list_parts(body: &[u8]) -> Result<ListPartsResult, XmlError> {
    parse("ListPartsResult", body_str("ListPartsResult", body)?)
}

/// `<Deleted>` / `<Error>` entries of a `<DeleteResult>`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DeletedEntry {
    pub key: String,
}

/// A key that could not be deleted (S3-style `<Error>` inside `<DeleteResult>`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteErrorEntry {
    pub key: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// `<DeleteResult>`.
#[derive(Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteResult {
    #[serde(default)]
    pub encoding_type: Option<String>,
    #[serde(default)]
    pub deleted: Vec<DeletedEntry>,
    #[serde(default, rename = "Error")]
    pub errors: Vec<DeleteErrorEntry>,
}

/// An empty body (quiet mode, everything deleted) is an empty result.
pub fn parse_delete_result(body: &[u8]) -> Result<DeleteResult, XmlError> {
    let text = body_str("DeleteResult", body)?;
    if text.trim().is_empty() {
        return Ok(DeleteResult::default());
    }
    parse("DeleteResult", text)
}

/// `<BucketInfo><Bucket>…</Bucket></BucketInfo>`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BucketInfoDoc {
    pub bucket: BucketInfoBucket,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BucketInfoBucket {
    pub name: String,
    #[serde(default)]
    pub location: String,
}

pub fn parse_bucket_info(body: &[u8]) -> Result<BucketInfoDoc, XmlError> {
    parse("BucketInfo", body_str("BucketInfo", body)?)
}

/// Body of CompleteMultipartUpload: `(part number, ETag)` in ascending order.
pub fn complete_multipart_body(parts: &[(u32, &str)]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload>");
    for (n, etag) in parts {
        s.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            escape(*etag)
        ));
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

/// Body of DeleteMultipleObjects in quiet mode.
pub fn delete_objects_body(keys: &[String]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete><Quiet>true</Quiet>");
    for k in keys {
        s.push_str(&format!("<Object><Key>{}</Key></Object>", escape(k.as_str())));
    }
    s.push_str("</Delete>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_document() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>NoSuchKey</Code>
  <Message>The specified key does not exist.</Message>
  <RequestId>6557176CD11E5535303C****</RequestId>
  <HostId>bucket.oss-cn-hangzhou.aliyuncs.com</HostId>
  <Key>a/b.txt</Key>
  <EC>0026-00000001</EC>
  <RecommendDoc>https://api.aliyun.com/troubleshoot?q=0026-00000001</RecommendDoc>
</Error>"#;
        let e = parse_error(body).unwrap();
        assert_eq!(e.code, "NoSuchKey");
        assert_eq!(e.message, "The specified key does not exist.");
        assert_eq!(e.request_id.as_deref(), Some("6557176CD11E5535303C****"));
        assert_eq!(e.ec.as_deref(), Some("0026-00000001"));
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        for body in [
            &b"<Error><Code>Oops"[..],
            b"not xml at all",
            b"<Error></Error>",
            b"\xff\xfe<Error/>",
            b"",
            b"<Error><Code>A</Code><Code>B</Code></Error>",
        ] {
            assert!(parse_error(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        assert!(
            parse_list_bucket_result(b"<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents>").is_err()
        );
        assert!(parse_initiate_result(b"<InitiateMultipartUploadResult></InitiateMultipartUploadResult>").is_err());
        assert!(
            parse_list_parts(b"<ListPartsResult><Part><PartNumber>-1</PartNumber></Part></ListPartsResult>").is_err()
        );
        assert!(parse_bucket_info(b"<BucketInfo></BucketInfo>").is_err());
    }

    #[test]
    fn parses_list_objects_v2_example() {
        let body = include_bytes!("../../tests/data/oss_list_objects_v2_response.xml");
        let r = parse_list_bucket_result(body).unwrap();
        assert_eq!(r.name, "examplebucket");
        assert_eq!(r.encoding_type.as_deref(), Some("url"));
        assert!(r.is_truncated);
        assert_eq!(r.next_continuation_token.as_deref(), Some("CgJiYw--"));
        assert_eq!(r.contents.len(), 1);
        assert_eq!(r.contents[0].key, "a%2Fhello%20world.txt");
        assert_eq!(url_decode("t", "Key", &r.contents[0].key).unwrap(), "a/hello world.txt");
        assert_eq!(r.contents[0].size, 12);
        assert_eq!(r.contents[0].etag, "\"6F5902AC237024BDD0C176CB93063DC4\"");
        assert_eq!(r.contents[0].object_type, "Normal");
        assert_eq!(r.common_prefixes.len(), 1);
        assert_eq!(
            url_decode("t", "Prefix", &r.common_prefixes[0].prefix).unwrap(),
            "a/sub/"
        );
    }

    #[test]
    fn parses_multiple_contents_and_empty_listing() {
        let body = b"<ListBucketResult><IsTruncated>false</IsTruncated>\
            <Contents><Key>a</Key><Size>1</Size><ETag>\"X\"</ETag></Contents>\
            <CommonPrefixes><Prefix>p%2F</Prefix></CommonPrefixes>\
            <Contents><Key>b%2Bc</Key><Size>2</Size><ETag>\"Y\"</ETag></Contents></ListBucketResult>";
        let r = parse_list_bucket_result(body).unwrap();
        assert_eq!(
            r.contents.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["a", "b%2Bc"]
        );
        assert_eq!(url_decode("t", "Key", "b%2Bc+d").unwrap(), "b+c+d");
        let empty =
            parse_list_bucket_result(b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>").unwrap();
        assert!(empty.contents.is_empty() && empty.common_prefixes.is_empty() && !empty.is_truncated);
    }

    #[test]
    fn parses_multipart_documents() {
        let init = parse_initiate_result(
            b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>0004B9</UploadId></InitiateMultipartUploadResult>",
        )
        .unwrap();
        assert_eq!(init.upload_id, "0004B9");
        let parts = parse_list_parts(
            b"<ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>2</NextPartNumberMarker>\
              <Part><PartNumber>1</PartNumber><ETag>\"A\"</ETag><Size>5</Size><HashCrc64ecma>123</HashCrc64ecma></Part>\
              <Part><PartNumber>2</PartNumber><ETag>\"B\"</ETag><Size>6</Size></Part></ListPartsResult>",
        )
        .unwrap();
        assert!(parts.is_truncated);
        assert_eq!(parts.next_part_number_marker, Some(2));
        assert_eq!(parts.parts.len(), 2);
        assert_eq!(parts.parts[0].hash_crc64ecma, Some(123));
        assert_eq!(parts.parts[1].hash_crc64ecma, None);
        let done = parse_complete_result(
            b"<CompleteMultipartUploadResult><Location>x</Location><Bucket>b</Bucket><Key>k</Key><ETag>\"E-2\"</ETag></CompleteMultipartUploadResult>",
        )
        .unwrap();
        assert_eq!(done.etag, "\"E-2\"");
    }

    #[test]
    fn parses_delete_result_and_bucket_info() {
        assert_eq!(parse_delete_result(b"").unwrap(), DeleteResult::default());
        let r = parse_delete_result(
            b"<DeleteResult><EncodingType>url</EncodingType><Deleted><Key>a%20b</Key></Deleted>\
              <Error><Key>c</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>",
        )
        .unwrap();
        assert_eq!(r.deleted.len(), 1);
        assert_eq!(
            r.errors,
            vec![DeleteErrorEntry {
                key: "c".into(),
                code: "AccessDenied".into(),
                message: "no".into()
            }]
        );
        let info = parse_bucket_info(
            b"<BucketInfo><Bucket><Name>bk</Name><Location>oss-cn-hangzhou</Location><Owner><ID>1</ID></Owner></Bucket></BucketInfo>",
        )
        .unwrap();
        assert_eq!(info.bucket.name, "bk");
        assert_eq!(info.bucket.location, "oss-cn-hangzhou");
        let copy =
            parse_copy_result(b"<CopyObjectResult><ETag>\"C\"</ETag><LastModified>t</LastModified></CopyObjectResult>")
                .unwrap();
        assert_eq!(copy.etag, "\"C\"");
    }

    #[test]
    fn request_bodies_are_escaped() {
        let b = delete_objects_body(&["a<b>&c".to_owned(), "d".to_owned()]);
        assert!(b.contains("<Quiet>true</Quiet>"));
        assert!(b.contains("<Object><Key>a&lt;b&gt;&amp;c</Key></Object><Object><Key>d</Key></Object>"));
        let c = complete_multipart_body(&[(1, "\"A\""), (2, "\"B\"")]);
        assert!(c.contains(
            "<Part><PartNumber>1</PartNumber><ETag>&quot;A&quot;</ETag></Part><Part><PartNumber>2</PartNumber>"
        ));
    }
}
