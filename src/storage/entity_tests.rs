use super::*;
use chrono::TimeZone as _;
use serde_json::json;

fn round_trip(entity: &Entity) -> Entity {
    let wire = entity.to_wire().unwrap();
    // The service echoes the same JSON back, plus metadata that from_wire drops.
    let mut echoed = wire.clone();
    echoed.insert("odata.etag".into(), json!("W/\"datetime'1'\""));
    echoed.insert("Timestamp".into(), json!("2024-01-01T00:00:00Z"));
    echoed.insert("Timestamp@odata.type".into(), json!("Edm.DateTime"));
    Entity::from_wire(echoed, None).unwrap()
}

#[test]
fn int64_travels_as_annotated_string() {
    let mut entity = Entity::new("p", "r");
    entity.set_i64("big", (1 << 53) + 1);
    let wire = entity.to_wire().unwrap();
    assert_eq!(wire["big"], json!("9007199254740993"));
    assert_eq!(wire["big@odata.type"], json!("Edm.Int64"));

    let back = round_trip(&entity);
    assert_eq!(back.get_i64("big"), Some((1 << 53) + 1));
    assert!(!back.properties.contains_key("big@odata.type"));
}

#[test]
fn int64_extremes_round_trip() {
    let mut entity = Entity::new("p", "r");
    entity.set_i64("max", i64::MAX).set_i64("min", i64::MIN);
    let back = round_trip(&entity);
    assert_eq!(back.get_i64("max"), Some(i64::MAX));
    assert_eq!(back.get_i64("min"), Some(i64::MIN));
}

#[test]
fn double_stays_double() {
    let mut entity = Entity::new("p", "r");
    entity
        .set_f64("whole", 3.0)
        .set_f64("nan", f64::NAN)
        .set_f64("inf", f64::NEG_INFINITY);
    let wire = entity.to_wire().unwrap();
    assert_eq!(wire["whole@odata.type"], json!("Edm.Double"));
    assert_eq!(wire["nan"], json!("NaN"));

    let back = round_trip(&entity);
    assert_eq!(back.get_f64("whole"), Some(3.0));
    assert!(back.properties["whole"].is_f64());
    assert!(back.get_f64("nan").unwrap().is_nan());
    assert_eq!(back.get_f64("inf"), Some(f64::NEG_INFINITY));
}

#[test]
fn datetime_and_binary_keep_their_type() {
    let when = Utc.with_ymd_and_hms(2024, 2, 29, 12, 30, 45).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    let mut entity = Entity::new("p", "r");
    entity
        .set_datetime("when", when)
        .set_binary("token", &[0, 1, 2, 255]);

    let back = round_trip(&entity);
    assert_eq!(back.get_str("when"), Some("2024-02-29T12:30:45.1234567Z"));
    assert_eq!(
        back.get_datetime("when"),
        Some(when - chrono::Duration::nanoseconds(89))
    );
    assert_eq!(back.get_binary("token"), Some(vec![0, 1, 2, 255]));

    // A second write of the entity as read keeps the annotations.
    let rewritten = back.to_wire().unwrap();
    assert_eq!(rewritten["when@odata.type"], json!("Edm.DateTime"));
    assert_eq!(rewritten["token@odata.type"], json!("Edm.Binary"));
}

#[test]
fn setting_a_new_type_drops_the_old_annotation() {
    let mut entity = Entity::new("p", "r");
    entity.set_binary("x", b"abc").set_str("x", "plain");
    let wire = entity.to_wire().unwrap();
    assert_eq!(wire["x"], json!("plain"));
    assert!(!wire.contains_key("x@odata.type"));

    entity.remove("x");
    assert!(entity.properties.is_empty());
}

#[test]
fn nulls_are_not_sent_and_arrays_rejected() {
    let mut entity = Entity::new("p", "r");
    entity.properties.insert("gone".into(), Value::Null);
    assert!(!entity.to_wire().unwrap().contains_key("gone"));

    entity.properties.insert("list".into(), json!([1, 2]));
    let error = entity.validate().unwrap_err();
    assert!(error.to_string().contains("\"list\""), "{error}");
}

#[test]
fn keys_with_forbidden_characters_rejected() {
    for key in [
        "a/b",
        "a\\b",
        "a#b",
        "a?b",
        "a\u{0}b",
        "tab\there",
        "a\u{7f}b",
        "a\u{85}b",
    ] {
        let error = validate_key("RowKey", key).unwrap_err();
        assert!(matches!(error, StorageError::InvalidInput(_)), "{key:?}");
        assert!(error.to_string().contains("forbidden character"), "{error}");
    }
    for key in ["", "job:1", "o'brien", "ünïcödé ключ", "a+b%c&d=e", "(x),y"] {
        assert!(validate_key("RowKey", key).is_ok(), "{key:?}");
    }
}

#[test]
fn key_size_counted_as_utf16() {
    assert!(validate_key("PartitionKey", &"a".repeat(512)).is_ok());
    let error = validate_key("PartitionKey", &"a".repeat(513)).unwrap_err();
    assert!(error.to_string().contains("1026 bytes"), "{error}");
    // Characters outside the Basic Multilingual Plane are two UTF-16 code units.
    assert!(validate_key("PartitionKey", &"😀".repeat(257)).is_err());
}

#[test]
fn oversized_string_property_named() {
    let mut entity = Entity::new("p", "r");
    entity.set_str("fits", "x".repeat(MAX_PROPERTY_BYTES / 2));
    assert!(entity.validate().is_ok());

    entity.set_str("payload", "é".repeat(MAX_PROPERTY_BYTES / 2 + 1));
    let error = entity.validate().unwrap_err();
    let text = error.to_string();
    assert!(text.contains("\"payload\""), "{text}");
    assert!(text.contains("65538 bytes as UTF-16"), "{text}");
}

#[test]
fn oversized_binary_property_named() {
    let mut entity = Entity::new("p", "r");
    entity.set_binary("blob", &vec![7u8; MAX_PROPERTY_BYTES + 1]);
    let text = entity.validate().unwrap_err().to_string();
    assert!(text.contains("\"blob\""), "{text}");
    assert!(text.contains("65537 bytes"), "{text}");
}

#[test]
fn oversized_entity_rejected() {
    let mut entity = Entity::new("p", "r");
    for index in 0..17 {
        entity.set_str(&format!("part{index}"), "x".repeat(32 * 1024));
    }
    let text = entity.validate().unwrap_err().to_string();
    assert!(text.contains("entity limit"), "{text}");
}

#[test]
fn too_many_properties_rejected() {
    let mut entity = Entity::new("p", "r");
    for index in 0..=MAX_CUSTOM_PROPERTIES {
        entity.set_bool(&format!("p{index}"), true);
    }
    let text = entity.validate().unwrap_err().to_string();
    assert!(text.contains("253 properties"), "{text}");
}

#[test]
fn reserved_property_names_rejected() {
    for name in ["PartitionKey", "Timestamp", "odata.etag", ""] {
        let mut entity = Entity::new("p", "r");
        entity.set_str(name, "x");
        assert!(entity.validate().is_err(), "{name:?}");
    }
}

#[test]
fn unsigned_beyond_i64_rejected() {
    let mut entity = Entity::new("p", "r");
    entity.properties.insert("huge".into(), json!(u64::MAX));
    let text = entity.to_wire().unwrap_err().to_string();
    assert!(text.contains("\"huge\""), "{text}");
}

#[test]
fn odata_literal_doubles_quotes() {
    assert_eq!(odata_string_literal("o'brien"), "'o''brien'");
    assert_eq!(odata_string_literal("''"), "''''''");
    assert_eq!(odata_string_literal("plain"), "'plain'");
}

#[test]
fn header_etag_used_when_body_has_none() {
    let wire = json!({"PartitionKey": "p", "RowKey": "r", "n": 1});
    let entity = Entity::from_wire(wire.as_object().unwrap().clone(), Some("W/\"x\"")).unwrap();
    assert_eq!(entity.etag.as_deref(), Some("W/\"x\""));
    assert_eq!(entity.get_i64("n"), Some(1));
}
