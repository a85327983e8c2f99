//! Fuzzes the msgpack `DynamicValue` decoder with arbitrary bytes against arbitrary types.
//!
//! Input layout: `<type JSON> 0x00 <msgpack>`. When the part before the first NUL is not a
//! valid type, a fixed type covering every kind is used, so plain msgpack corpora work too.
//! Whatever decodes must re-encode, and the re-encoding must decode to the same value.
#![no_main]

use artifortress_provider::protocol::msgpack;
use artifortress_provider::protocol::types::Type;
use libfuzzer_sys::fuzz_target;

const FALLBACK_TYPE: &str = r#"["object",{"b":"bool","d":"dynamic","l":["list","string"],"m":["map","number"],"s":["set",["object",{"x":"string"}]],"t":["tuple",["number","dynamic"]]}]"#;

fuzz_target!(|data: &[u8]| {
    let (ty, bytes) = match data.iter().position(|b| *b == 0) {
        Some(i) => match Type::from_json_bytes(&data[..i]) {
            Ok(t) => (t, &data[i + 1..]),
            Err(_) => (fallback(), data),
        },
        None => (fallback(), data),
    };
    if let Ok(value) = msgpack::decode(bytes, &ty) {
        let again = msgpack::encode(&value, &ty).expect("a decoded value re-encodes");
        let back = msgpack::decode(&again, &ty).expect("a re-encoded value decodes");
        assert!(back.same(&value), "round trip changed the value");
    }
});

fn fallback() -> Type {
    Type::from_json_bytes(FALLBACK_TYPE.as_bytes()).expect("the fallback type is valid")
}
