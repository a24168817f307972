//! An import's uploaded file, as CSV or XLSX: any bytes.
#![no_main]

use dfr_api::routes::transfer::table::{Format, read};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &[u8])| {
    let (xlsx, bytes) = input;
    let format = if xlsx { Format::Xlsx } else { Format::Csv };
    let _ = read(format, bytes);
});
