//! Issue 12 (SECURITY.md "v2 §2. Header"): the header rules an independent reader had to
//! guess, each pinned to the verdict SECURITY.md states, through the parser every open,
//! verify, inspect and sweep uses (`ArchiveHeader::parse`; a refusal is *malformed*).
use vault::envelope::{ArchiveHeader, EnvelopeError};

const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

/// A valid system header with `fields` (raw JSON members) in place of the defaults.
fn header(fields: &[(&str, &str)]) -> String {
    let mut members: Vec<(String, String)> = [
        ("id", format!("\"{ID}\"")),
        ("scope", "\"system\"".into()),
        ("createdAt", "\"2026-01-01T00:00:00Z\"".into()),
        ("creatorAccount", "\"uid:0\"".into()),
        ("description", "\"d\"".into()),
        ("productVersion", "\"0.1.0\"".into()),
        ("chunkSize", "16384".into()),
        ("cipher", "\"cobblestone-256\"".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in fields {
        if let Some(m) = members.iter_mut().find(|(n, _)| n == k) {
            m.1 = v.to_string();
        } else {
            members.push((k.to_string(), v.to_string()));
        }
    }
    let body: Vec<String> = members
        .iter()
        .filter(|(_, v)| v != "<absent>")
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn verdict(json: &str) -> Result<ArchiveHeader, String> {
    ArchiveHeader::parse(json.as_bytes()).map_err(|e| match e {
        EnvelopeError::Malformed(m) => m,
        other => panic!("not malformed but {other:?} for {json}"),
    })
}

#[test]
fn uuid_spellings_are_those_of_the_uuid_crate_case_insensitive() {
    let raw = uuid::Uuid::parse_str(ID).unwrap();
    for spelling in [
        ID.to_string(),
        ID.to_uppercase(),
        ID.replace('-', ""),
        format!("{{{ID}}}"),
        format!("urn:uuid:{ID}"),
    ] {
        let h = verdict(&header(&[("id", &format!("\"{spelling}\""))]))
            .unwrap_or_else(|e| panic!("{spelling} refused: {e}"));
        assert_eq!(h.id, raw, "{spelling}");
    }
    for bad in [
        "0f8fad5b-d9cb-469f-a165-70867728950",
        "0f8fad5bd9cb-469f-a165-70867728950e-",
        "g f8fad5b-d9cb-469f-a165-70867728950e",
        "",
    ] {
        assert!(
            verdict(&header(&[("id", &format!("\"{bad}\""))])).is_err(),
            "{bad:?} accepted"
        );
    }
    assert!(verdict(&header(&[("id", "12345")])).is_err(), "a number id");
}

#[test]
fn duplicate_known_fields_are_malformed_duplicate_unknown_ones_ignored() {
    let base = header(&[]);
    let dup_known = base.replacen('{', "{\"scope\":\"system\",", 1);
    let e = verdict(&dup_known).unwrap_err();
    assert!(e.contains("duplicate"), "{e}");
    let dup_id = base.replacen('{', &format!("{{\"id\":\"{ID}\","), 1);
    assert!(verdict(&dup_id).is_err(), "a duplicated id accepted");
    let dup_unknown = base.replacen('{', "{\"x-note\":1,\"x-note\":2,", 1);
    verdict(&dup_unknown).expect("a duplicated unknown field is ignored");
}

#[test]
fn chunk_size_must_be_the_json_integer_16384() {
    verdict(&header(&[("chunkSize", "16384")])).unwrap();
    for bad in [
        "16384.0",
        "1.6384e4",
        "1e4",
        "016384",
        "-16384",
        "\"16384\"",
        "65536",
    ] {
        assert!(
            verdict(&header(&[("chunkSize", bad)])).is_err(),
            "chunkSize {bad} accepted"
        );
    }
}

#[test]
fn domain_id_rules_on_system_and_domain_archives() {
    // System: absent or null is absent; "" or any string is refused.
    verdict(&header(&[])).unwrap();
    assert_eq!(
        verdict(&header(&[("domainID", "null")])).unwrap().domain_id,
        None
    );
    for bad in ["\"\"", "\"A\""] {
        assert!(
            verdict(&header(&[("domainID", bad)])).is_err(),
            "system archive with domainID {bad} accepted"
        );
    }
    // Domain: a non-empty string is required.
    let d = |v: &str| header(&[("scope", "\"domain\""), ("domainID", v)]);
    assert_eq!(
        verdict(&d("\"A\"")).unwrap().domain_id.as_deref(),
        Some("A")
    );
    for bad in ["\"\"", "null", "<absent>", "7"] {
        assert!(
            verdict(&d(bad)).is_err(),
            "domain archive with domainID {bad} accepted"
        );
    }
}

#[test]
fn source_is_an_object_or_null_with_string_fields() {
    verdict(&header(&[("source", "null")])).unwrap();
    let h = verdict(&header(&[(
        "source",
        "{\"serialNumber\":\"S1\",\"unknownThing\":[1,2]}",
    )]))
    .unwrap();
    assert_eq!(h.source.unwrap().serial_number.as_deref(), Some("S1"));
    for bad in ["\"bmc\"", "[]", "1", "{\"serialNumber\":5}"] {
        assert!(
            verdict(&header(&[("source", bad)])).is_err(),
            "source {bad} accepted"
        );
    }
}

#[test]
fn every_required_field_is_required_and_created_at_is_not_checked() {
    for field in [
        "id",
        "scope",
        "createdAt",
        "creatorAccount",
        "description",
        "productVersion",
        "chunkSize",
        "cipher",
    ] {
        let e = verdict(&header(&[(field, "<absent>")])).unwrap_err();
        assert!(e.contains(field), "missing {field}: {e}");
    }
    // createdAt is shown as stored, whatever it says.
    let h = verdict(&header(&[("createdAt", "\"not a date\"")])).unwrap();
    assert_eq!(h.created_at, "not a date");
    // Unknown fields are ignored.
    verdict(&header(&[("futureField", "{\"a\":1}")])).unwrap();
    // The header is a JSON object, not the same values in an array.
    let e = verdict(&format!(
        "[\"{ID}\",\"system\",null,\"t\",\"uid:0\",\"d\",\"0.1.0\",16384,\"cobblestone-256\"]"
    ))
    .unwrap_err();
    assert!(e.contains("not an object"), "{e}");
}
