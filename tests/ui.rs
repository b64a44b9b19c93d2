//! Compile-fail tests: every message `#[grad]` can give, pinned with its span, one
//! mistake per file (`tests/ui/<category>/*.rs` + `.stderr`). Must-compile programs in
//! `tests/pass/`. Re-bless with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
    t.pass("tests/pass/*.rs");
}
