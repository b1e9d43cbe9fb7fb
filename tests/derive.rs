//! `#[derive(Emits)]`: valid models compile and carry the right metadata; invalid ones
//! fail with an error at the user's own tokens.

#[test]
fn derive_emits_compiles_valid_models() {
    trybuild::TestCases::new().pass("tests/ui/pass/*.rs");
}

#[test]
fn derive_emits_rejects_invalid_models_at_the_users_span() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
}
