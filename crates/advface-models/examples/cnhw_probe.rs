use burn::tensor::ops::PadMode;
use burn::tensor::{s, Device, Distribution, Tensor};
use std::time::Instant;

/// conv on CNHW activations: x [c, n, h, w], w_flat [co, k*k*c] (order ky, kx, c), bias [co, 1]
fn conv_cnhw(
    x: Tensor<4>,
    w_flat: &Tensor<2>,
    bias: &Tensor<2>,
    k: usize,
    st: usize,
    p: usize,
) -> Tensor<4> {
    let x = if p > 0 {
        x.pad([(p, p), (p, p)], PadMode::Constant(0.0))
    } else {
        x
    };
    let [c, n, h, w] = x.dims();
    let oh = (h - k) / st + 1;
    let ow = (w - k) / st + 1;
    let mut parts = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            parts.push(if st == 1 {
                x.clone().slice(s![.., .., ky..ky + oh, kx..kx + ow])
            } else {
                x.clone()
                    .slice(s![.., .., ky..ky + st * (oh - 1) + 1;st, kx..kx + st * (ow - 1) + 1;st])
            });
        }
    }
    let cols = Tensor::cat(parts, 0).reshape([k * k * c, n * oh * ow]);
    let co = w_flat.dims()[0];
    (w_flat.clone().matmul(cols) + bias.clone()).reshape([co, n, oh, ow])
}

fn main() {
    let dev = Device::flex();
    let cases: [(usize, usize, usize, usize, usize, usize, usize); 9] = [
        (3, 32, 150, 7, 2, 0, 1),
        (32, 32, 35, 3, 1, 1, 6),
        (32, 64, 35, 3, 2, 0, 1),
        (64, 64, 17, 3, 1, 1, 7),
        (64, 128, 17, 3, 2, 0, 1),
        (128, 128, 8, 3, 1, 1, 5),
        (128, 256, 8, 3, 2, 0, 1),
        (256, 256, 4, 3, 1, 1, 4),
        (256, 256, 1, 3, 1, 1, 1),
    ];
    for n in [1usize, 32] {
        let mut tb = 0.0;
        for (ci, co, sd, k, st, p, cnt) in cases {
            let x = Tensor::<4>::random([ci, n, sd, sd], Distribution::Default, &dev);
            let wf = Tensor::<2>::random([co, k * k * ci], Distribution::Default, &dev);
            let bf = Tensor::<2>::random([co, 1], Distribution::Default, &dev);
            conv_cnhw(x.clone(), &wf, &bf, k, st, p).into_data();
            let it = 20;
            let t0 = Instant::now();
            for _ in 0..it {
                conv_cnhw(x.clone(), &wf, &bf, k, st, p).into_data();
            }
            let bb = t0.elapsed().as_secs_f64() * 1e3 / it as f64 / n as f64;
            println!("n={n:2} {ci:3}->{co:3} {sd:3} k{k} s{st}: cnhw im2col+gemm {bb:.3} ms/img (x{cnt})");
            tb += bb * cnt as f64;
        }
        println!("n={n}: cnhw total {tb:.2} ms/img");
    }
}
