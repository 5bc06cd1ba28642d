use crate::error::CoreError;

/// An 8-bit RGB image, row-major, interleaved (HWC): what is attacked, stored and queried.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    /// Wraps `data` (`height * width * 3` bytes, HWC).
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, CoreError> {
        let expected = width as usize * height as usize * 3;
        if data.len() != expected {
            return Err(CoreError::BufferSize {
                what: "RgbImage",
                shape: format!("{height}x{width}x3"),
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// An image filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Self {
        let data = rgb
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 3)
            .collect();
        Self {
            width,
            height,
            data,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The raw bytes, HWC.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Mutable raw bytes, HWC.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Consumes the image and returns its bytes, HWC.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// The value at row `y`, column `x`, channel `c`.
    pub fn get(&self, x: u32, y: u32, c: usize) -> u8 {
        self.data[(y as usize * self.width as usize + x as usize) * 3 + c]
    }

    /// The window of rows `y0..y0+h` and columns `x0..x0+w`.
    pub fn crop(&self, x0: u32, y0: u32, w: u32, h: u32) -> Result<Self, CoreError> {
        if x0 + w > self.width || y0 + h > self.height {
            return Err(CoreError::Mismatch {
                what: "crop window".into(),
                expected: format!("inside {}x{}", self.width, self.height),
                got: format!("columns {}..{}, rows {}..{}", x0, x0 + w, y0, y0 + h),
            });
        }
        let mut data = Vec::with_capacity(w as usize * h as usize * 3);
        for y in y0..y0 + h {
            let start = (y as usize * self.width as usize + x0 as usize) * 3;
            data.extend_from_slice(&self.data[start..start + w as usize * 3]);
        }
        Ok(Self {
            width: w,
            height: h,
            data,
        })
    }

    /// The image as f32 in `[0, 1]`, CHW (one item of a [`PixelBatch`]).
    pub fn to_chw_f32(&self) -> Vec<f32> {
        let plane = self.width as usize * self.height as usize;
        let mut out = vec![0f32; plane * 3];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = f32::from(px[c]) / 255.0;
            }
        }
        out
    }
}

/// A batch of RGB images as f32 in `[0, 1]`.
///
/// # Shapes
/// `[n, 3, height, width]` (NCHW), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelBatch {
    n: usize,
    height: usize,
    width: usize,
    data: Vec<f32>,
}

impl PixelBatch {
    /// Wraps `data` of shape `[n, 3, height, width]`.
    pub fn new(n: usize, height: usize, width: usize, data: Vec<f32>) -> Result<Self, CoreError> {
        let expected = n * 3 * height * width;
        if data.len() != expected {
            return Err(CoreError::BufferSize {
                what: "PixelBatch",
                shape: format!("[{n}, 3, {height}, {width}]"),
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            n,
            height,
            width,
            data,
        })
    }

    /// Stacks 8-bit images of one size into a batch (values / 255).
    pub fn from_images(images: &[RgbImage]) -> Result<Self, CoreError> {
        let Some(first) = images.first() else {
            return Ok(Self {
                n: 0,
                height: 0,
                width: 0,
                data: Vec::new(),
            });
        };
        let (w, h) = (first.width(), first.height());
        let mut data = Vec::with_capacity(images.len() * 3 * w as usize * h as usize);
        for (i, im) in images.iter().enumerate() {
            if im.width() != w || im.height() != h {
                return Err(CoreError::Mismatch {
                    what: format!("size of image {i} in a batch"),
                    expected: format!("{w}x{h}"),
                    got: format!("{}x{}", im.width(), im.height()),
                });
            }
            data.extend(im.to_chw_f32());
        }
        Ok(Self {
            n: images.len(),
            height: h as usize,
            width: w as usize,
            data,
        })
    }

    /// Batch size.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// `[n, 3, height, width]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n, 3, self.height, self.width]
    }

    /// The values, NCHW.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the batch and returns its values, NCHW.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Item `i` rounded to 8 bits (values clamped to `[0, 1]`, then `round(v * 255)`).
    pub fn to_image(&self, i: usize) -> RgbImage {
        let plane = self.height * self.width;
        let item = &self.data[i * 3 * plane..(i + 1) * 3 * plane];
        let mut out = Vec::with_capacity(plane * 3);
        for p in 0..plane {
            for c in 0..3 {
                out.push((item[c * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
        RgbImage {
            width: self.width as u32,
            height: self.height as u32,
            data: out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_buffer_size_is_an_error_naming_the_shape() {
        let err = RgbImage::new(2, 2, vec![0; 11]).unwrap_err();
        assert!(err.to_string().contains("2x2x3"), "{err}");
        assert!(PixelBatch::new(1, 2, 2, vec![0.0; 3]).is_err());
    }

    #[test]
    fn batch_round_trips_8_bit_images() {
        let data: Vec<u8> = (0..4 * 3 * 3).map(|v| (v * 7 % 256) as u8).collect();
        let im = RgbImage::new(4, 3, data).unwrap();
        let b = PixelBatch::from_images(&[im.clone(), im.clone()]).unwrap();
        assert_eq!(b.shape(), [2, 3, 3, 4]);
        assert_eq!(b.to_image(1), im);
        assert_eq!(b.as_slice()[0], 0.0);
        assert!((b.as_slice()[1] - 21.0 / 255.0).abs() < 1e-7);
    }

    #[test]
    fn crop_takes_the_window() {
        let data: Vec<u8> = (0..5 * 5 * 3).map(|v| v as u8).collect();
        let im = RgbImage::new(5, 5, data).unwrap();
        let c = im.crop(1, 2, 2, 3).unwrap();
        assert_eq!((c.width(), c.height()), (2, 3));
        assert_eq!(c.get(0, 0, 0), im.get(1, 2, 0));
        assert_eq!(c.get(1, 2, 2), im.get(2, 4, 2));
        assert!(im.crop(4, 0, 2, 1).is_err());
    }

    #[test]
    fn mixed_sizes_in_a_batch_are_an_error() {
        let a = RgbImage::filled(2, 2, [1, 2, 3]);
        let b = RgbImage::filled(3, 2, [1, 2, 3]);
        assert!(PixelBatch::from_images(&[a, b]).is_err());
    }
}
