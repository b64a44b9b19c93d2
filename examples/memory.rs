//! Where training memory goes, against inference: the digits MLP's weights, gradients,
//! AdamW state and saved activations (the `#[grad]` tape's own byte count) at a few
//! batch sizes, and the lesson's 7B-parameter model (112 GB training in f32 with AdamW
//! against 14 GB bf16 inference).
//!
//! Run: `cargo run --example memory`; the figure goes to `out/memory/memory.png`.

use backprop::params::{Dtype, Params};
use backprop_tests::exercises::{
    digits_split, format_memory_table, memory_table, plot_memory, seven_billion,
};
use backprop_tests::mlp::Mlp;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;

fn main() {
    let (train, _) = digits_split();
    let model = Mlp::new(64, [128, 64], 10, &mut StdRng::seed_from_u64(0));
    println!(
        "digits MLP 64-128-64-10: {} parameters (f32); bytes per component:",
        model.num_scalars()
    );
    let rows = memory_table(&model, &train, &[1, 16, 64, 256, 1024]);
    print!("{}", format_memory_table(&rows));
    println!(
        "(training keeps every layer's activations for the backward pass; inference holds the input and output of one layer at a time)\n"
    );
    let (r, bf16) = seven_billion();
    println!(
        "7B parameters, AdamW, f32 training (weights, gradients, m and v; activations not counted):"
    );
    println!("{r}");
    println!(
        "training {:.0} GB against bf16 inference {:.0} GB: {:.0}×; f32 inference {:.0} GB",
        r.training_bytes() as f64 / 1e9,
        bf16 as f64 / 1e9,
        r.training_bytes() as f64 / bf16 as f64,
        r.inference_bytes(Dtype::F32) as f64 / 1e9
    );
    match plot_memory(&rows, Path::new("out/memory")) {
        Ok(p) => println!("figure: {}", p.display()),
        Err(e) => eprintln!("plot: {e}"),
    }
}
