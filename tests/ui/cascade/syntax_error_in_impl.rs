use backprop::{grad, Differentiable};

#[derive(Clone, Debug, Differentiable)]
struct M { w: Vec<f64>, c: f64 }

#[grad]
impl M {
    #[grad]
    fn a(&self, x: f64) -> f64 { self.c * x }
    #[grad]
    fn b(&self, x: f64) -> f64 {
        { let y = x * 2.0; y } + self.c
    }
}

fn main() { println!("{}", M { w: vec![], c: 1.0 }.a_grad(2.0).0); }
