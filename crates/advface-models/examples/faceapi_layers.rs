//! Where the time of the face-api.js network goes on burn's flex backend: each convolution
//! shape of the network timed alone (random values), plus the other operations.
//!
//! `cargo run --release -p advface-models --example faceapi_layers`
//!
//! Prints ms per image, the number of such layers in the network and the achieved
//! multiply-add rate, at batch 1 and 32.

use std::time::Instant;

use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};

/// (input channels, output channels, input side, kernel, stride, padding, count in the net)
const CONVS: [(usize, usize, usize, usize, usize, usize, usize); 11] = [
    (3, 32, 150, 7, 2, 0, 1),
    (32, 32, 35, 3, 1, 1, 6),
    (32, 64, 35, 3, 2, 0, 1),
    (64, 64, 17, 3, 1, 1, 7),
    (64, 128, 17, 3, 2, 0, 1),
    (128, 128, 8, 3, 1, 1, 5),
    (128, 256, 8, 3, 2, 0, 1),
    (256, 256, 4, 3, 1, 1, 4),
    (256, 256, 3, 3, 1, 1, 1),
    (256, 256, 4, 3, 2, 0, 1),
    // conv256_down_out/conv2 sees a 1 x 1 map: run as its centre tap, a 1 x 1 conv.
    (256, 256, 1, 1, 1, 0, 1),
];

/// Mean ms per image of `f` over `iters` runs after one warm-up.
fn time(n: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / iters as f64 / n as f64
}

fn main() {
    let dev = Device::flex();
    for n in [1usize, 32] {
        let iters = if n == 1 { 50 } else { 5 };
        let mut total = 0.0;
        for (ci, co, side, k, stride, pad, count) in CONVS {
            let x = Tensor::<4>::random([n, ci, side, side], Distribution::Default, &dev);
            let w = Tensor::<4>::random([co, ci, k, k], Distribution::Default, &dev);
            let b = Tensor::<1>::random([co], Distribution::Default, &dev);
            let opts = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
            let out_side = (side + 2 * pad - k) / stride + 1;
            let ms = time(n, iters, || {
                conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone()).into_data();
            });
            let macs = (out_side * out_side * co * k * k * ci) as f64;
            println!(
                "batch {n:2} conv {ci:3}->{co:3} {side:3}x{side:<3} k{k} s{stride}: {ms:6.3} ms/image \
                 x{count}  {:5.1} GMAC/s",
                macs / ms / 1e6
            );
            total += ms * count as f64;
        }
        println!("batch {n:2} all convolutions: {total:.2} ms/image");
        let a = Tensor::<4>::random([n, 32, 72, 72], Distribution::Default, &dev);
        let ms = time(n, iters, || {
            max_pool2d(a.clone(), MaxPoolOptions::new([3, 3]).with_stride([2, 2])).into_data();
        });
        println!("batch {n:2} max pool 3x3/2 on 32x72x72: {ms:.3} ms/image");
        let ms = time(n, iters, || {
            relu(a.clone()).into_data();
        });
        println!("batch {n:2} relu on 32x72x72: {ms:.3} ms/image");
        let p = Tensor::<4>::random([n, 32, 35, 35], Distribution::Default, &dev);
        let ms = time(n, iters, || {
            avg_pool2d(p.clone(), AvgPoolOptions::new([2, 2])).into_data();
        });
        println!("batch {n:2} avg pool 2x2/2 on 32x35x35: {ms:.3} ms/image");
        let img = Tensor::<2>::random([n * 3 * 112, 112], Distribution::Default, &dev);
        let cols = Tensor::<2>::random([112, 150], Distribution::Default, &dev);
        let rows = Tensor::<3>::random([1, 150, 112], Distribution::Default, &dev);
        let ms = time(n, iters, || {
            let x = img.clone().matmul(cols.clone()).reshape([n * 3, 112, 150]);
            rows.clone().matmul(x).into_data();
        });
        println!("batch {n:2} resize 112 -> 150 (two matmuls): {ms:.3} ms/image");
    }
}
