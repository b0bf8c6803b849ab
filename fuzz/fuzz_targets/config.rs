//! The config file (config.rs): any text as `/etc/migward/config.toml`.
//! Root-owned, but a typo in it must be refused naming the line, and the
//! shim reads it on every container start.
//! Properties: no panic (`toml_error` slices the text at the error's span);
//! an error is one line; a config that parses survives a round trip through
//! its own serialization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migward::config::Config;
use migward_fuzz::assert_one_line;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/migward/config.toml");
    match Config::parse(text, path) {
        Ok(config) => {
            let written = toml::to_string(&config).expect("a config serializes");
            let back = Config::parse(&written, path).expect("a written config parses");
            assert_eq!(back, config, "config does not round-trip:\n{written}");
        }
        Err(e) => assert_one_line("Config::parse", &migward::joined(&e)),
    }
});
