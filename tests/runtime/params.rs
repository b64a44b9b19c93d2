//! The parameter-set walk: names, shapes and order are what optimizer state is keyed on.

use backprop::params::{BufferMut, BufferRef, Named, Params};

#[test]
fn names_shapes_and_order_of_nested_sets() {
    let set = (
        vec![("embed", ndarray::Array2::<f32>::zeros((10, 4)))],
        vec![vec![0.0f32; 3], vec![0.0; 2]],
        [1.0f32, 2.0],
    );
    let got: Vec<(String, Vec<usize>)> = set.shapes();
    let want = [
        ("0.embed", vec![10, 4]),
        ("1.0", vec![3]),
        ("1.1", vec![2]),
        ("2", vec![2]),
    ];
    assert_eq!(got, want.map(|(n, s)| (n.to_string(), s)));
    assert_eq!(set.num_scalars(), 40 + 5 + 2);
}

struct Mlp {
    w1: ndarray::Array2<f64>,
    b1: Vec<f64>,
}

impl Params<f64> for Mlp {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, f64>)) {
        Named("w1", &self.w1).visit(prefix, f);
        Named("b1", &self.b1).visit(prefix, f);
    }
    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, f64>)) {
        Named("w1", &mut self.w1).visit_mut(prefix, f);
        Named("b1", &mut self.b1).visit_mut(prefix, f);
    }
}

#[test]
fn hand_written_struct_impl_nests_under_a_prefix() {
    // The shape a derive will emit: fields in declaration order under their names.
    let mut model = vec![(
        "layer",
        Mlp {
            w1: ndarray::Array2::zeros((2, 3)),
            b1: vec![0.0; 3],
        },
    )];
    let names: Vec<String> = model.buffers().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["layer.w1", "layer.b1"]);
    // Mutation through the walk reaches the fields.
    for b in model.buffers_mut() {
        b.values.fill(1.5);
    }
    assert_eq!(model[0].1.b1, [1.5; 3]);
    assert!(model[0].1.w1.iter().all(|&x| x == 1.5));
}
