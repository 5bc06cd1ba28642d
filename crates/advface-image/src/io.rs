//! Decoding, encoding and the protocol's crop.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};

use advface_core::{RgbImage, CROP_SIZE};
use thiserror::Error;

/// Side of an LFW deep-funneled image.
pub const LFW_SIZE: u32 = 250;
/// First row and column of the protocol's crop (rows and columns 69..181, half-open).
pub const LFW_CROP_START: u32 = 69;

/// Errors of image input and output. Each names the file and, where there is one, the fix.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable {format} image: {reason}")]
    Decode {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("{path}: unknown image format (expected PNG or JPEG by content)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: image is {width}x{height}, expected {expected} ({hint})")]
    WrongSize {
        path: PathBuf,
        width: u32,
        height: u32,
        expected: String,
        hint: String,
    },
    #[error("{path}: image of {width}x{height} is over the limit of {max} pixels a side")]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        max: u32,
    },
    #[error("cannot write {path}: {source} (check that the folder exists, is writable and the disk has room)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode PNG for {path}: {reason}")]
    Encode { path: PathBuf, reason: String },
    #[error("refusing to overwrite {path}: {reason}")]
    Overwrite { path: PathBuf, reason: String },
}

/// Limits on decoded images, so that a hostile file cannot exhaust memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest width or height accepted.
    pub max_side: u32,
}

impl Default for Limits {
    /// 4096 pixels a side: far above any face crop, far below a memory problem.
    fn default() -> Self {
        Self { max_side: 4096 }
    }
}

thread_local! {
    static JPEG_WARNINGS: Cell<u32> = const { Cell::new(0) };
}

extern "C-unwind" fn count_warning(_cinfo: &mut mozjpeg_sys::jpeg_common_struct, level: i32) {
    if level < 0 {
        JPEG_WARNINGS.with(|w| w.set(w.get() + 1));
    }
}

extern "C-unwind" fn unwind_on_error(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    let code = unsafe { cinfo.err.as_ref().map(|e| e.msg_code).unwrap_or(-1) };
    std::panic::resume_unwind(Box::new(format!("libjpeg error code {code}")));
}

/// Decodes a JPEG to 8-bit RGB with libjpeg-turbo's defaults (islow IDCT, fancy
/// upsampling), which is what Pillow and most tools give, pixel for pixel.
///
/// A truncated or corrupt file (one for which libjpeg emits a warning, such as premature
/// end of data) is an error rather than an image with grey blocks.
pub fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<RgbImage, ImageError> {
    let err = |reason: String| ImageError::Decode {
        path: path.to_path_buf(),
        format: "JPEG",
        reason,
    };
    JPEG_WARNINGS.with(|w| w.set(0));
    let result = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<u8>)> {
        let mut mgr: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
        unsafe {
            mozjpeg_sys::jpeg_std_error(&mut mgr);
        }
        mgr.error_exit = Some(unwind_on_error);
        mgr.emit_message = Some(count_warning);
        let mut d = mozjpeg::Decompress::with_err(mgr).from_mem(bytes)?;
        d.dct_method(mozjpeg::DctMethod::IntegerSlow);
        d.do_fancy_upsampling(true);
        let mut started = d.rgb()?;
        let (w, h) = (started.width(), started.height());
        let data = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok((w, h, data))
    });
    let (w, h, data) = match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(err(e.to_string())),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".into());
            return Err(err(msg));
        }
    };
    let warnings = JPEG_WARNINGS.with(|w| w.get());
    if warnings > 0 {
        return Err(err(format!(
            "corrupt or truncated data ({warnings} libjpeg warning(s)); re-export the file"
        )));
    }
    if data.len() != w * h * 3 {
        return Err(err(format!(
            "decoder returned {} bytes for {w}x{h}",
            data.len()
        )));
    }
    RgbImage::new(w as u32, h as u32, data).map_err(|e| err(e.to_string()))
}

/// Decodes a PNG (any bit depth or colour type; converted to 8-bit RGB, alpha dropped).
pub fn decode_png(bytes: &[u8], path: &Path, limits: Limits) -> Result<RgbImage, ImageError> {
    let err = |reason: String| ImageError::Decode {
        path: path.to_path_buf(),
        format: "PNG",
        reason,
    };
    // The header alone gives the size: refuse huge images before allocating anything.
    let reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
    let (w, h) = reader.into_dimensions().map_err(|e| err(e.to_string()))?;
    if w > limits.max_side || h > limits.max_side {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            width: w,
            height: h,
            max: limits.max_side,
        });
    }
    let mut reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    reader.limits(l);
    let img = reader.decode().map_err(|e| err(e.to_string()))?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    RgbImage::new(w, h, rgb.into_raw()).map_err(|e| err(e.to_string()))
}

/// Decodes PNG or JPEG bytes, by content (not by file name).
pub fn decode_image(bytes: &[u8], path: &Path, limits: Limits) -> Result<RgbImage, ImageError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes, path, limits)
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        let im = decode_jpeg(bytes, path)?;
        if im.width() > limits.max_side || im.height() > limits.max_side {
            return Err(ImageError::TooLarge {
                path: path.to_path_buf(),
                width: im.width(),
                height: im.height(),
                max: limits.max_side,
            });
        }
        Ok(im)
    } else {
        Err(ImageError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }
}

/// Reads a PNG or JPEG file.
pub fn read_image(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image(&bytes, path, Limits::default())
}

/// The protocol's crop of a 250 x 250 LFW image: rows and columns 69..181.
pub fn crop_lfw(image: &RgbImage, path: &Path) -> Result<RgbImage, ImageError> {
    if image.width() != LFW_SIZE || image.height() != LFW_SIZE {
        return Err(ImageError::WrongSize {
            path: path.to_path_buf(),
            width: image.width(),
            height: image.height(),
            expected: format!("{LFW_SIZE}x{LFW_SIZE}"),
            hint: "LFW deep-funneled images are 250x250; use the images_deepfunneled folder".into(),
        });
    }
    Ok(image
        .crop(LFW_CROP_START, LFW_CROP_START, CROP_SIZE, CROP_SIZE)
        .expect("the crop window lies inside a 250x250 image"))
}

/// Encodes an 8-bit RGB PNG. Deterministic: the same pixels give the same bytes.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Default,
        image::codecs::png::FilterType::Adaptive,
    );
    image::ImageEncoder::write_image(
        enc,
        image.as_bytes(),
        image.width(),
        image.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| ImageError::Encode {
        path: PathBuf::from("<memory>"),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed and
/// synced, then renamed over `path`. Creates the parent folders. The file gets the
/// permissions `File::create` would give it (0o666 less the umask), not the temporary
/// file's private 0o600, so results can be shared like any other output.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let werr = |source: std::io::Error| ImageError::Write {
        path: path.to_path_buf(),
        source,
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(werr)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".advface-tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Passed to open(2), which applies the umask, as File::create does.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(parent).map_err(werr)?;
    tmp.write_all(bytes).map_err(werr)?;
    tmp.as_file().sync_data().map_err(werr)?;
    tmp.persist(path).map_err(|e| werr(e.error))?;
    Ok(())
}

/// Encodes `image` as PNG and writes it atomically to `path`.
pub fn write_png_atomic(path: &Path, image: &RgbImage) -> Result<(), ImageError> {
    let bytes = encode_png(image).map_err(|e| match e {
        ImageError::Encode { reason, .. } => ImageError::Encode {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn atomic_writes_get_the_permissions_file_create_gives() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::File::create(&plain).unwrap();
        let atomic = dir.path().join("sub/atomic.txt");
        write_atomic(&atomic, b"x").unwrap();
        // Replacing an existing file too.
        write_atomic(&atomic, b"y").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
        assert_eq!(std::fs::read(&atomic).unwrap(), b"y");
    }

    #[test]
    fn png_round_trip_is_lossless_and_deterministic() {
        let data: Vec<u8> = (0..7 * 5 * 3).map(|v| (v * 37 % 256) as u8).collect();
        let im = RgbImage::new(7, 5, data).unwrap();
        let a = encode_png(&im).unwrap();
        let b = encode_png(&im).unwrap();
        assert_eq!(a, b);
        let back = decode_png(&a, Path::new("x.png"), Limits::default()).unwrap();
        assert_eq!(back, im);
    }

    #[test]
    fn truncated_png_is_a_decode_error_naming_the_file() {
        let im = RgbImage::filled(20, 20, [1, 2, 3]);
        let bytes = encode_png(&im).unwrap();
        let err = decode_image(
            &bytes[..bytes.len() / 2],
            Path::new("half.png"),
            Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("half.png"), "{err}");
    }

    #[test]
    fn huge_png_dimensions_are_refused_before_decoding() {
        let im = RgbImage::filled(64, 8, [1, 2, 3]);
        let bytes = encode_png(&im).unwrap();
        let err = decode_image(&bytes, Path::new("wide.png"), Limits { max_side: 32 }).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn not_an_image_is_unknown_format() {
        let err = decode_image(b"hello", Path::new("a.txt"), Limits::default()).unwrap_err();
        assert!(matches!(err, ImageError::UnknownFormat { .. }), "{err}");
    }

    #[test]
    fn garbage_after_jpeg_magic_is_an_error_not_a_panic() {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
        bytes.extend(std::iter::repeat_n(0x42, 100));
        let err = decode_image(&bytes, Path::new("bad.jpg"), Limits::default()).unwrap_err();
        assert!(err.to_string().contains("bad.jpg"), "{err}");
    }

    #[test]
    fn crop_of_a_wrong_size_image_names_the_file() {
        let im = RgbImage::filled(100, 100, [0, 0, 0]);
        let err = crop_lfw(&im, Path::new("small.jpg")).unwrap_err();
        assert!(err.to_string().contains("small.jpg") && err.to_string().contains("250x250"));
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.png");
        write_png_atomic(&p, &RgbImage::filled(3, 3, [9, 9, 9])).unwrap();
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.png")]);
    }
}
