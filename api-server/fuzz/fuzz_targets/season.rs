//! A holding's season, as any string a client can send.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|season: &str| {
    let valid = dfr_api::routes::holdings::record::valid_season(season);
    let expected = season.len() == 4 && season.bytes().all(|b| b.is_ascii_digit())
        || season.len() == 5
            && season.bytes().take(4).all(|b| b.is_ascii_digit())
            && season.as_bytes()[4].is_ascii_uppercase();
    assert_eq!(valid, expected, "{season:?}");
});
