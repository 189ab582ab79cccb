//! `locking::name::entry_name`: every entry is a valid file name laid out as
//! docs/FORMAT.md documents, and distinct (ns, objname) pairs never share one.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = oracle::check_entry_name(data) {
        panic!("{e}");
    }
});
