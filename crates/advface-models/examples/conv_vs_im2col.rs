use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{s, Device, Distribution, Tensor};
use std::time::Instant;

fn im2col_conv(
    x: Tensor<4>,
    w_flat: &Tensor<3>,
    bias: &Tensor<3>,
    k: usize,
    st: usize,
    p: usize,
) -> Tensor<4> {
    let x = if p > 0 {
        x.pad([(p, p), (p, p)], PadMode::Constant(0.0))
    } else {
        x
    };
    let [n, c, h, w] = x.dims();
    let oh = (h - k) / st + 1;
    let ow = (w - k) / st + 1;
    let mut parts = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            parts.push(
                x.clone().slice(
                    s![.., .., ky..ky + st * (oh - 1) + 1;st, kx..kx + st * (ow - 1) + 1;st],
                ),
            );
        }
    }
    let cols = Tensor::cat(parts, 1).reshape([n, k * k * c, oh * ow]);
    let co = w_flat.dims()[1];
    (w_flat.clone().matmul(cols) + bias.clone()).reshape([n, co, oh, ow])
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
        let (mut ta, mut tb) = (0.0, 0.0);
        for (ci, co, sd, k, st, p, cnt) in cases {
            let x = Tensor::<4>::random([n, ci, sd, sd], Distribution::Default, &dev);
            let w = Tensor::<4>::random([co, ci, k, k], Distribution::Default, &dev);
            let b = Tensor::<1>::random([co], Distribution::Default, &dev);
            // [co, ci, k, k] -> [co, k, k, ci] -> [1, co, K]
            let wf = w.clone().permute([0, 2, 3, 1]).reshape([1, co, k * k * ci]);
            let bf = b.clone().reshape([1, co, 1]);
            let ya = conv2d(
                x.clone(),
                w.clone(),
                Some(b.clone()),
                ConvOptions::new([st, st], [p, p], [1, 1], 1),
            );
            let yb = im2col_conv(x.clone(), &wf, &bf, k, st, p);
            let diff: f32 = (ya.clone() - yb).abs().max().into_scalar();
            let it = 20;
            let t0 = Instant::now();
            for _ in 0..it {
                conv2d(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    ConvOptions::new([st, st], [p, p], [1, 1], 1),
                )
                .into_data();
            }
            let a = t0.elapsed().as_secs_f64() * 1e3 / it as f64 / n as f64;
            let t0 = Instant::now();
            for _ in 0..it {
                im2col_conv(x.clone(), &wf, &bf, k, st, p).into_data();
            }
            let bb = t0.elapsed().as_secs_f64() * 1e3 / it as f64 / n as f64;
            println!("n={n:2} {ci:3}->{co:3} {sd:3} k{k} s{st}: conv2d {a:.3} ms/img  im2col+matmul {bb:.3} ms/img  (x{cnt}) maxdiff {diff:.1e}");
            ta += a * cnt as f64;
            tb += bb * cnt as f64;
        }
        println!("n={n}: conv2d total {ta:.2} ms/img, im2col total {tb:.2} ms/img");
    }
}
