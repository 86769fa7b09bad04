//! JSON configs from untrusted bytes (ovpot's flat form and POT's nested form): parse and validate
//! without panicking; whatever parses must survive a round trip through ovpot's flat JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovpot::QuantConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = QuantConfig::from_json(text) else { return };
    let _ = config.effective_preset();
    let flat = serde_json::to_string(&config).expect("a parsed config serializes");
    let back = QuantConfig::from_json(&flat).expect("a serialized config parses back");
    assert_eq!(back, config, "round trip through {flat}");
});
