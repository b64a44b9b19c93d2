//! The macro never panics: arbitrary function bodies come back as tokens that parse,
//! with a `compile_error!` when they are not supported.

use proptest::prelude::*;

/// Random expressions over the arguments `a`, `b`, a local `v`, literals and a const,
/// mixing supported and unsupported syntax.
fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("v".to_string()),
        Just("2.5".to_string()),
        Just("K".to_string()),
        Just("T::one()".to_string()),
        Just("n".to_string()),
    ];
    leaf.prop_recursive(4, 32, 3, |inner| {
        let method = prop_oneof![
            Just("exp"),
            Just("ln"),
            Just("sqrt"),
            Just("tanh"),
            Just("abs"),
            Just("floor"),
            Just("to_degrees"),
            Just("unwrap"),
        ];
        let binop = prop_oneof![
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("<"),
            Just("&&"),
            Just("==")
        ];
        prop_oneof![
            (inner.clone(), binop, inner.clone()).prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            (inner.clone(), method).prop_map(|(e, m)| format!("({e}).{m}()")),
            (inner.clone(), inner.clone()).prop_map(|(e, f)| format!("({e}).max({f})")),
            inner.clone().prop_map(|e| format!("-{e}")),
            inner
                .clone()
                .prop_map(|e| format!("{{ let q = {e}; q * q }}")),
            inner
                .clone()
                .prop_map(|e| format!("backprop::sigmoid({e})")),
            (inner.clone(), inner.clone())
                .prop_map(|(c, e)| format!("if {c} > 0.0 {{ {e} }} else {{ 0.0 }}")),
            inner.clone().prop_map(|e| format!("[{e}, 1.0][0]")),
            inner.clone().prop_map(|e| format!("({e}) as f32")),
            inner.clone().prop_map(|e| format!("helper({e})")),
            inner.prop_map(|e| format!("&{e}")),
        ]
    })
}

fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        expr().prop_map(|e| format!("let v = {e};")),
        expr().prop_map(|e| format!("let mut v: T = {e};")),
        expr().prop_map(|e| format!("v += {e};")),
        expr().prop_map(|e| format!("v = {e};")),
        expr().prop_map(|e| format!("println!(\"{{}}\", {e});")),
        Just("const K: f64 = 1.0;".to_string()),
        Just("return v;".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn never_panics(
        attr in prop_oneof![Just(""), Just("a"), Just("a, b"), Just("a, a"), Just("z"), Just("n"), Just("= 1")],
        stmts in proptest::collection::vec(statement(), 0..6),
        tail in prop_oneof![expr(), Just(String::new())],
        ret in prop_oneof![Just("T"), Just("f64"), Just("(T, T)"), Just("Vec<T>")],
    ) {
        let src = format!(
            "fn f<T: Float>(a: T, b: T, n: usize) -> {ret} {{ let v = a; {} {tail} }}",
            stmts.join(" ")
        );
        let Ok(item) = syn::parse_str::<syn::ItemFn>(&src) else { return Ok(()); };
        let attr: proc_macro2::TokenStream = attr.parse().expect("attr tokens");
        let out = crate::entry::grad(attr, quote::ToTokens::to_token_stream(&item));
        prop_assert!(syn::parse2::<syn::File>(out).is_ok(), "expansion does not parse for {}", src);
    }
}

/// How long expanding a 200-line function takes. Not a timed test (it asserts nothing
/// about time); run it to measure:
/// `cargo test -p backprop-derive --release -- --ignored expansion_time --nocapture`
#[test]
#[ignore]
fn expansion_time() {
    let mut body = String::from("let mut acc = a * b;\n");
    for k in 0..99 {
        body.push_str(&format!("let v{k} = (acc * {k}.5 + b).tanh() * a.exp() - acc.max(b) / (1.0 + a * a);\nacc += v{k};\n"));
    }
    let src = format!("fn big(a: f64, b: f64) -> f64 {{\n{body}acc\n}}");
    let item: syn::ItemFn = syn::parse_str(&src).expect("parses");
    let tokens = quote::ToTokens::to_token_stream(&item);
    let runs = 20;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let out = crate::entry::grad(proc_macro2::TokenStream::new(), tokens.clone());
        times.push(t.elapsed());
        assert!(!out.to_string().contains("compile_error"));
    }
    times.sort();
    println!(
        "expanding a {}-line function: median {:?} over {runs} runs",
        src.lines().count(),
        times[runs / 2]
    );
}
