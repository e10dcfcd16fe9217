//! Text inputs: `parse_state_update`, `parse_nonces`, `parse_felt_list`, `Blob::from_hex`.
//! Nothing may panic; a felt list that parses must survive `format_felt_list` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orch_blob::{format_felt_list, parse_felt_list, parse_nonces, parse_state_update, Blob};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_state_update(&text);
    let _ = parse_nonces(&text);
    if let Ok(felts) = parse_felt_list(&text) {
        let again = parse_felt_list(&format_felt_list(&felts)).expect("formatted felt list parses");
        assert_eq!(again, felts, "parse_felt_list(format_felt_list(x)) != x");
    }
    if let Ok(blob) = Blob::from_hex(&text) {
        assert_eq!(Blob::from_hex(&blob.to_hex()).expect("to_hex parses"), blob, "hex round trip");
    }
});
