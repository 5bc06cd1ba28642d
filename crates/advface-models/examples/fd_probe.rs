use advface_core::{Embedder, PixelBatch};
use advface_models::faceapi::FaceApi;
fn main() {
    let m = FaceApi::embedded().unwrap();
    let rd = |i: usize| {
        PixelBatch::from_images(&[advface_image::read_image(std::path::Path::new(&format!(
            "fixtures/faceapi/inputs/lfw_{i}.png"
        )))
        .unwrap()])
        .unwrap()
    };
    let x = rd(0);
    let t = m.embed(&rd(1)).unwrap().remove(0);
    let r = m
        .descriptors_and_input_grad(&x, std::slice::from_ref(&t))
        .unwrap();
    let f = |v: Vec<f32>| m.embed(&PixelBatch::new(1, 112, 112, v).unwrap()).unwrap()[0].l2(&t);
    let mut idx: Vec<usize> = (0..r.grad.len()).collect();
    idx.sort_by(|&a, &b| r.grad[b].abs().total_cmp(&r.grad[a].abs()));
    for &i in &[idx[0], idx[1], idx[100], idx[1000], idx[5000]] {
        print!("pixel {i} ad {:.5e}:", r.grad[i]);
        for h in [1e-2f32, 3e-3, 1e-3, 3e-4, 1e-4] {
            let mut p = x.as_slice().to_vec();
            p[i] += h;
            let mut q = x.as_slice().to_vec();
            q[i] -= h;
            print!(" h={h:e} {:.5e}", (f(p) - f(q)) / (2.0 * h as f64));
        }
        println!();
    }
    // directional
    let mut s = 12345u32;
    for k in 0..4 {
        let v: Vec<f32> = (0..r.grad.len())
            .map(|j| {
                if k == 3 {
                    r.grad[j]
                } else {
                    s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                    if s >> 31 == 1 {
                        1.0
                    } else {
                        -1.0
                    }
                }
            })
            .collect();
        let ad: f64 = v
            .iter()
            .zip(&r.grad)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        print!("dir {k} ad {ad:.5e}:");
        for h in [1e-3f32, 3e-4, 1e-4, 3e-5, 1e-5] {
            let p: Vec<f32> = x
                .as_slice()
                .iter()
                .zip(&v)
                .map(|(a, b)| a + h * b)
                .collect();
            let q: Vec<f32> = x
                .as_slice()
                .iter()
                .zip(&v)
                .map(|(a, b)| a - h * b)
                .collect();
            print!(" h={h:e} {:.5e}", (f(p) - f(q)) / (2.0 * h as f64));
        }
        println!();
    }
}
