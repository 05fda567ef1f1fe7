//! `BinlogFileName::parse`: names arrive in ROTATE events and API input and become paths under
//! the data directory.
//!
//! Checks: an accepted name is a single, normal path component that stays under the directory
//! it is joined to (no '/', no '\\', no NUL or other control character, not "." or "..", not
//! empty, at most 255 bytes); `as_str` gives it back unchanged; the ordering agrees with
//! equality and is antisymmetric; `split` never panics and finds the numeric extension.
#![no_main]

use std::cmp::Ordering;
use std::path::{Component, Path};

use binlog_server::binlog::name::BinlogFileName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Two candidates: the whole input, and the input split at the first 0xFF byte (for ordering).
    let (a, b) = match data.iter().position(|&c| c == 0xFF) {
        Some(i) => (String::from_utf8_lossy(&data[..i]), String::from_utf8_lossy(&data[i + 1..])),
        None => (text.clone(), text.clone()),
    };
    for s in [&*text, &*a, &*b] {
        check(s);
    }
    if let (Ok(x), Ok(y)) = (BinlogFileName::parse(&a), BinlogFileName::parse(&b)) {
        assert_eq!(x.cmp(&y) == Ordering::Equal, x == y, "ordering disagrees with equality: {a:?} {b:?}");
        assert_eq!(x.cmp(&y), y.cmp(&x).reverse(), "ordering not antisymmetric: {a:?} {b:?}");
    }
});

fn check(s: &str) {
    let Ok(name) = BinlogFileName::parse(s) else { return };
    assert_eq!(name.as_str(), s);
    assert!(!s.is_empty() && s.len() <= BinlogFileName::MAX_LEN);
    assert!(s != "." && s != "..", "{s:?} accepted");
    assert!(!s.contains('/') && !s.contains('\\') && !s.chars().any(char::is_control), "{s:?} accepted");
    let comps: Vec<Component> = Path::new(s).components().collect();
    assert!(matches!(comps.as_slice(), [Component::Normal(c)] if *c == s), "{s:?} is not one plain component: {comps:?}");
    let base = Path::new("/data/task/source");
    let joined = base.join(s);
    assert!(joined.starts_with(base) && joined.parent() == Some(base), "{s:?} escapes the directory");
    let (stem, num) = name.split();
    assert!(s.starts_with(stem));
    if let Some(n) = num {
        assert_eq!(s.rsplit_once('.').map(|(_, e)| e.parse::<u64>().ok()), Some(Some(n)));
    }
    assert_eq!(name.to_string(), s);
    assert_eq!(name.cmp(&name), Ordering::Equal);
}
