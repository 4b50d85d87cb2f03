//! Fuzzing of the parsers of what strangers send, on stable Rust with proptest: whole client
//! messages (`ClientMsg::parse`), signal data and its classification, and server messages as
//! the Redis backend reads them back (`ServerMsg::parse`). Random text and JSON built near the
//! protocol (known types with fields of any shape); nothing may panic, and what parses must
//! print back to the same message.
//!
//! The suite runs a small budget; `STRANGERS_FUZZ_CASES=1000000 cargo test -p
//! strangers-protocol --test fuzz` is the long run (docs/BENCHMARKS.md).

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use strangers_protocol::{ClientMsg, ServerMsg, SignalData};

/// Cases per target: a small budget unless `STRANGERS_FUZZ_CASES` asks for more.
fn config() -> Config {
    let cases = std::env::var("STRANGERS_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Any JSON value, small and nested a little.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~é\u{0}\u{fffd}]{0,20}".prop_map(Value::String),
        prop::sample::select(vec!["offer", "answer", "pranswer", "chess", "v=0\r\n", "true"]).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["sdp", "type", "candidate", "restart", "x", "sdpMLineIndex"])
                    .prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A message near the protocol: a known or unknown type, with known fields of any shape.
fn near_message() -> impl Strategy<Value = String> {
    let kind = prop::sample::select(vec![
        "hello",
        "find",
        "next",
        "stop",
        "signal",
        "report",
        "dance",
        "",
        "welcome",
        "queued",
        "matched",
        "partner_left",
        "error",
    ]);
    let fields = prop::collection::btree_map(
        prop::sample::select(vec![
            "version",
            "interests",
            "resume",
            "data",
            "reason",
            "type",
            "extra",
            "id",
            "ice_servers",
            "room",
            "initiator",
            "common_interests",
            "code",
            "message",
        ]),
        value(),
        0..4,
    );
    let version = prop_oneof![Just(json!(1)), value()];
    (kind, fields, version).prop_map(|(kind, fields, version)| {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), json!(kind));
        object.insert("version".into(), version);
        for (name, value) in fields {
            object.insert(name.into(), value);
        }
        Value::Object(object).to_string()
    })
}

/// Signal data near the three shapes the protocol names.
fn near_signal_data() -> impl Strategy<Value = String> {
    let shaped = prop_oneof![
        (prop::sample::select(vec!["offer", "answer", "rollback"]), value())
            .prop_map(|(kind, sdp)| json!({"sdp": {"type": kind, "sdp": sdp}})),
        value().prop_map(|candidate| json!({ "candidate": candidate })),
        value().prop_map(|restart| json!({ "restart": restart })),
        value(),
    ];
    shaped.prop_map(|v| v.to_string())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_client_messages_parse_or_are_refused(text in prop_oneof![near_message(), any::<String>()]) {
        if let Ok(msg) = ClientMsg::parse(&text) {
            let again = ClientMsg::parse(&msg.to_json());
            prop_assert_eq!(again.ok(), Some(msg), "what parses prints back to the same message");
        }
    }

    #[test]
    fn fuzz_signal_data_is_classified_or_refused(data in near_signal_data()) {
        let direct = SignalData::from_json(&data);
        let wrapped = ClientMsg::parse(&format!(r#"{{"type":"signal","data":{data}}}"#));
        match (direct, wrapped) {
            (Ok(data), Ok(ClientMsg::Signal(parsed))) => {
                prop_assert_eq!(parsed.kind(), data.kind());
                prop_assert_eq!(parsed.as_json(), data.as_json(), "kept verbatim");
            }
            (Err(_), Err(_)) => {}
            (direct, wrapped) => prop_assert!(false, "two paths disagree on {}: {:?} / {:?}", data, direct, wrapped),
        }
    }

    #[test]
    fn fuzz_server_messages_parse_or_are_refused(text in prop_oneof![near_message(), any::<String>()]) {
        if let Ok(msg) = ServerMsg::parse(&text) {
            prop_assert_eq!(ServerMsg::parse(&msg.to_json()).ok(), Some(msg));
        }
    }
}
