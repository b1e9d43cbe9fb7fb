//! `#[derive(Emits)]` (placeholder until the derive lands).
use proc_macro::TokenStream;

/// Derives `Emits`.
#[proc_macro_derive(Emits, attributes(emits))]
pub fn derive_emits(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
