//! Expansion snapshots: each `derive/snapshots/<name>.rs` holds one `#[grad]` function;
//! its expansion, formatted by prettyplease, must equal `<name>.expanded.rs`. A change
//! to the emitter shows up as a readable diff in review. Re-bless with `BLESS=1`.

use std::path::Path;

fn expand_file(src: &str) -> String {
    let item: syn::ItemFn = syn::parse_str(src).expect("snapshot input is one function");
    let attr = item
        .attrs
        .iter()
        .find(|a| a.path().is_ident("grad"))
        .expect("snapshot input has #[grad]");
    let args = match &attr.meta {
        syn::Meta::List(l) => l.tokens.clone(),
        _ => proc_macro2::TokenStream::new(),
    };
    let mut plain = item.clone();
    plain.attrs.retain(|a| !a.path().is_ident("grad"));
    let out = crate::entry::grad(args, quote::ToTokens::to_token_stream(&plain));
    let file: syn::File = syn::parse2(out).expect("expansion parses as a file");
    prettyplease::unparse(&file)
}

#[test]
fn expansions_match_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots");
    let bless = std::env::var_os("BLESS").is_some();
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("snapshots dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.ends_with(".rs") || name.ends_with(".expanded.rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("read snapshot input");
        let got = expand_file(&src);
        let expected_path = path.with_extension("expanded.rs");
        if bless {
            std::fs::write(&expected_path, &got).expect("write snapshot");
        } else {
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
            assert!(
                got == expected,
                "expansion of {name} changed (BLESS=1 to accept):\n{got}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected snapshot inputs in {}",
        dir.display()
    );
}

#[test]
fn expansion_is_deterministic() {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots/worked_example.rs"),
    )
    .expect("read");
    assert_eq!(expand_file(&src), expand_file(&src));
}

/// Prints the expansion of `EXPAND_SRC` (one `#[grad]` function): a tool for reading
/// what the macro makes of a function, not a check.
#[test]
#[ignore = "a tool: EXPAND_SRC='#[grad] fn f(..) ..' cargo test -p backprop-derive print_expansion -- --ignored --nocapture"]
fn print_expansion() {
    let src = std::env::var("EXPAND_SRC").expect("EXPAND_SRC");
    println!("{}", expand_file(&src));
}
