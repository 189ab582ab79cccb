//! `locking::owner::Record::parse` never panics, and `judge` calls a holder
//! Dead only when its record parses and its process is really gone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "../oracle.rs"]
mod oracle;

static PH: OnceLock<oracle::Placeholders> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let ph = PH.get_or_init(oracle::Placeholders::new);
    if let Err(e) = oracle::check_owner_record(ph, data) {
        panic!("{e}");
    }
});
