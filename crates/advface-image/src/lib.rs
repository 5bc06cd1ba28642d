//! Pixels in and out: JPEG decoding exactly as libjpeg-turbo's defaults (what Pillow gives),
//! the protocol's centre crop, lossless PNG written atomically, and SSIM exactly as
//! scikit-image computes it (with its gradient, for attacks that steer by it).

pub mod io;
pub mod ssim;

pub use io::{
    crop_lfw, decode_image, decode_jpeg, decode_png, encode_png, read_image, write_atomic,
    write_png_atomic, ImageError, Limits, LFW_CROP_START, LFW_SIZE,
};
pub use ssim::{ssim, ssim_with_grad, Ssim, SsimConfig, SsimError, SsimReference};
