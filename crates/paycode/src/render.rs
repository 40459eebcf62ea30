//! Drawing and scanning payment codes (QR and Code 128).
//!
//! A payment code is shown two ways, as the SPEC asks: a QR code (ISO/IEC 18004) and a Code 128
//! barcode of the same digits. Both are drawn from one module matrix, either as terminal text
//! (half-block characters, two modules per character cell) or as a PNG that a POS can scan.
//!
//! Scanning ([`decode_image`]) accepts a photo or file with either symbol and returns the digits
//! it holds; the caller checks that they form a payment code.
//!
//! The terminal drawing is reversible ([`terminal_qr_modules`]): tests turn it back into an image
//! and decode it, which checks what a person sees without taking a screenshot.

use image::{DynamicImage, GrayImage, Luma};
use std::path::Path;

/// Quiet zone around a QR code, in modules, on screen. ISO/IEC 18004 asks for 4; scanners read
/// 2 on a white terminal background, and a smaller symbol fits more terminals.
const QR_QUIET_TERMINAL_MODULES: usize = 2;
/// Quiet zone around a QR code in a PNG, in modules (the standard's 4).
const QR_QUIET_PNG_MODULES: u32 = 4;
/// Pixels per QR module in a PNG.
const QR_MODULE_PX: u32 = 8;
/// Quiet zone either side of a Code 128 barcode, in modules (the standard's minimum is 10).
const BAR_QUIET_MODULES: usize = 10;
/// Pixels per Code 128 module in a PNG.
const BAR_MODULE_PX: u32 = 3;
/// Bar height in a PNG.
const BAR_HEIGHT_PX: u32 = 120;
/// Bar height on screen, in text lines.
const BAR_HEIGHT_LINES: usize = 4;
/// White space between the QR code and the barcode in a PNG.
const PNG_GAP_PX: u32 = 24;

const ANSI_INK_ON_PAPER: &str = "\x1b[30;47m";
const ANSI_RESET: &str = "\x1b[0m";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot draw {0:?} as a QR code: {1}")]
    Qr(String, String),
    #[error("cannot draw the code as a Code 128 barcode: {0}")]
    Barcode(String),
    #[error("cannot write the image {path}: {reason}")]
    WriteImage { path: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot open the image {path}: {reason} (give a PNG or JPEG file)")]
    Open { path: String, reason: String },
    #[error(
        "no QR code or Code 128 barcode found in {path} (use a sharper, closer, well-lit picture, or type the digits with --code)"
    )]
    NotFound { path: String },
}

/// A square matrix of modules, `true` = dark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrModules {
    width: usize,
    dark: Vec<bool>,
}

impl QrModules {
    pub fn width(&self) -> usize {
        self.width
    }

    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }
}

/// The QR modules of `text` (error correction level M, as phone screens are read at an angle).
pub fn qr_modules(text: &str) -> Result<QrModules, RenderError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| RenderError::Qr(paycode_core::code::mask(text), e.to_string()))?;
    let width = code.width();
    let dark = code
        .to_colors()
        .into_iter()
        .map(|c| c == qrcode::Color::Dark)
        .collect();
    Ok(QrModules { width, dark })
}

/// The Code 128 modules of `text`, left to right, `true` = bar, without quiet zone.
pub fn code128_modules(text: &str) -> Result<Vec<bool>, RenderError> {
    use rxing::oned::{Code128Writer, OneDimensionalCodeWriter};
    Code128Writer
        .encode_oned(text)
        .map_err(|e| RenderError::Barcode(e.to_string()))
}

/// Terminal text of a QR code: each character cell holds two modules stacked vertically. With
/// `color`, each line is drawn black on white (readable on dark and light terminals alike);
/// without, dark modules are the block characters (for a light background or a file).
pub fn terminal_qr(text: &str, color: bool) -> Result<String, RenderError> {
    let m = qr_modules(text)?;
    let q = QR_QUIET_TERMINAL_MODULES;
    let size = m.width() + 2 * q;
    let dark = |x: usize, y: usize| -> bool {
        x >= q && y >= q && x < q + m.width() && y < q + m.width() && m.is_dark(x - q, y - q)
    };
    let mut out = String::new();
    let mut y = 0;
    while y < size {
        if color {
            out.push_str(ANSI_INK_ON_PAPER);
        }
        for x in 0..size {
            let top = dark(x, y);
            let bottom = y + 1 < size && dark(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if color {
            out.push_str(ANSI_RESET);
        }
        out.push('\n');
        y += 2;
    }
    Ok(out)
}

/// Terminal text of a Code 128 barcode: each character cell holds two modules side by side.
pub fn terminal_barcode(text: &str, color: bool) -> Result<String, RenderError> {
    let bars = code128_modules(text)?;
    let mut modules = vec![false; BAR_QUIET_MODULES];
    modules.extend(bars);
    modules.extend(std::iter::repeat_n(false, BAR_QUIET_MODULES));
    let mut line = String::new();
    for pair in modules.chunks(2) {
        let left = pair[0];
        let right = pair.get(1).copied().unwrap_or(false);
        line.push(match (left, right) {
            (true, true) => '█',
            (true, false) => '▌',
            (false, true) => '▐',
            (false, false) => ' ',
        });
    }
    let mut out = String::new();
    for _ in 0..BAR_HEIGHT_LINES {
        if color {
            out.push_str(ANSI_INK_ON_PAPER);
        }
        out.push_str(&line);
        if color {
            out.push_str(ANSI_RESET);
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
/// Reads the modules back from [`terminal_qr`] text (with or without colour), quiet zone
/// included. Lines that are not part of the drawing (empty) are skipped.
pub fn terminal_qr_modules(text: &str) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let line = strip_ansi(line);
        if line.is_empty() {
            continue;
        }
        let mut top = Vec::new();
        let mut bottom = Vec::new();
        for c in line.chars() {
            let (t, b) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            top.push(t);
            bottom.push(b);
        }
        rows.push(top);
        rows.push(bottom);
    }
    rows
}

#[cfg(test)]
/// Removes ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Draws a module matrix (rows of `true` = dark) as a grey image with `module_px` pixels per
/// module and a white border of `quiet_modules`.
pub fn modules_to_image(rows: &[Vec<bool>], module_px: u32, quiet_modules: u32) -> GrayImage {
    let h = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    let w = u32::try_from(rows.iter().map(Vec::len).max().unwrap_or(0)).unwrap_or(u32::MAX);
    let width_px = (w + 2 * quiet_modules) * module_px;
    let height_px = (h + 2 * quiet_modules) * module_px;
    let mut img = GrayImage::from_pixel(width_px, height_px, Luma([255]));
    for (y, row) in rows.iter().enumerate() {
        for (x, &dark) in row.iter().enumerate() {
            if !dark {
                continue;
            }
            let (x, y) = (x as u32 + quiet_modules, y as u32 + quiet_modules);
            for dy in 0..module_px {
                for dx in 0..module_px {
                    img.put_pixel(x * module_px + dx, y * module_px + dy, Luma([0]));
                }
            }
        }
    }
    img
}

/// The QR code alone as an image.
pub fn qr_image(text: &str) -> Result<GrayImage, RenderError> {
    let m = qr_modules(text)?;
    let rows: Vec<Vec<bool>> = (0..m.width())
        .map(|y| (0..m.width()).map(|x| m.is_dark(x, y)).collect())
        .collect();
    Ok(modules_to_image(&rows, QR_MODULE_PX, QR_QUIET_PNG_MODULES))
}

/// The Code 128 barcode alone as an image (with its quiet zone).
pub fn barcode_image(text: &str) -> Result<GrayImage, RenderError> {
    let bars = code128_modules(text)?;
    let n_modules = u32::try_from(bars.len() + 2 * BAR_QUIET_MODULES).unwrap_or(u32::MAX);
    let quiet_px = BAR_QUIET_MODULES as u32 * BAR_MODULE_PX;
    let mut img = GrayImage::from_pixel(
        n_modules * BAR_MODULE_PX,
        BAR_HEIGHT_PX + 2 * quiet_px,
        Luma([255]),
    );
    for (i, &bar) in bars.iter().enumerate() {
        if !bar {
            continue;
        }
        let x0 = (i + BAR_QUIET_MODULES) as u32 * BAR_MODULE_PX;
        for x in x0..x0 + BAR_MODULE_PX {
            for y in quiet_px..quiet_px + BAR_HEIGHT_PX {
                img.put_pixel(x, y, Luma([0]));
            }
        }
    }
    Ok(img)
}

/// The image a phone would show: the QR code above the barcode, on white.
pub fn code_image(text: &str) -> Result<GrayImage, RenderError> {
    let qr = qr_image(text)?;
    let bar = barcode_image(text)?;
    let width = qr.width().max(bar.width());
    let height = qr.height() + PNG_GAP_PX + bar.height();
    let mut img = GrayImage::from_pixel(width, height, Luma([255]));
    let qr_x = (width - qr.width()) / 2;
    image::imageops::overlay(&mut img, &qr, i64::from(qr_x), 0);
    let bar_x = (width - bar.width()) / 2;
    image::imageops::overlay(
        &mut img,
        &bar,
        i64::from(bar_x),
        i64::from(qr.height() + PNG_GAP_PX),
    );
    Ok(img)
}

/// Writes [`code_image`] as a PNG file.
pub fn write_code_png(text: &str, path: &Path) -> Result<(), RenderError> {
    code_image(text)?
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| RenderError::WriteImage {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// Decodes the first QR code or Code 128 barcode in an image and returns its text.
pub fn decode_image(img: DynamicImage) -> Option<String> {
    use rxing::BarcodeFormat;
    // One symbology at a time: a picture holding both (the phone's screen) then reads either.
    for format in [BarcodeFormat::QR_CODE, BarcodeFormat::CODE_128] {
        if let Ok(found) = rxing::helpers::detect_in_image(img.clone(), Some(format)) {
            return Some(found.getText().to_string());
        }
    }
    None
}

/// Opens an image file and decodes it with [`decode_image`].
pub fn decode_image_file(path: &Path) -> Result<String, ScanError> {
    let img = image::open(path).map_err(|e| ScanError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    decode_image(img).ok_or_else(|| ScanError::NotFound {
        path: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: &str = "281012020000123487654321";

    fn check_decodes(img: GrayImage, expect: &str) {
        assert_eq!(
            decode_image(DynamicImage::ImageLuma8(img)).as_deref(),
            Some(expect)
        );
    }

    #[test]
    fn qr_image_decodes_to_the_digits() {
        check_decodes(qr_image(DIGITS).unwrap(), DIGITS);
    }

    #[test]
    fn barcode_image_decodes_to_the_digits() {
        check_decodes(barcode_image(DIGITS).unwrap(), DIGITS);
    }

    #[test]
    fn phone_image_with_both_symbols_decodes_to_the_digits() {
        check_decodes(code_image(DIGITS).unwrap(), DIGITS);
    }

    #[test]
    fn terminal_qr_drawn_back_as_an_image_decodes_to_the_digits() {
        for color in [true, false] {
            let text = terminal_qr(DIGITS, color).unwrap();
            let rows = terminal_qr_modules(&text);
            check_decodes(modules_to_image(&rows, 6, 4), DIGITS);
        }
    }

    #[test]
    fn terminal_qr_holds_the_same_modules_as_the_qr_code() {
        let m = qr_modules(DIGITS).unwrap();
        let rows = terminal_qr_modules(&terminal_qr(DIGITS, false).unwrap());
        let q = QR_QUIET_TERMINAL_MODULES;
        for y in 0..m.width() {
            for x in 0..m.width() {
                assert_eq!(rows[y + q][x + q], m.is_dark(x, y), "module ({x},{y})");
            }
        }
    }

    #[test]
    fn terminal_barcode_has_every_bar_at_two_modules_per_cell() {
        let bars = code128_modules(DIGITS).unwrap();
        let text = terminal_barcode(DIGITS, false).unwrap();
        let line = text.lines().next().unwrap();
        let mut modules = Vec::new();
        for c in line.chars() {
            let (l, r) = match c {
                '█' => (true, true),
                '▌' => (true, false),
                '▐' => (false, true),
                _ => (false, false),
            };
            modules.push(l);
            modules.push(r);
        }
        assert_eq!(
            &modules[BAR_QUIET_MODULES..BAR_QUIET_MODULES + bars.len()],
            &bars[..]
        );
        assert!(modules[..BAR_QUIET_MODULES].iter().all(|d| !d));
        assert_eq!(text.lines().count(), BAR_HEIGHT_LINES);
    }

    #[test]
    fn blank_image_is_not_found() {
        let img = GrayImage::from_pixel(200, 200, Luma([255]));
        assert_eq!(decode_image(DynamicImage::ImageLuma8(img)), None);
    }

    #[test]
    fn png_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code.png");
        write_code_png(DIGITS, &path).unwrap();
        assert_eq!(decode_image_file(&path).unwrap(), DIGITS);
        let missing = decode_image_file(&dir.path().join("nope.png")).unwrap_err();
        assert!(missing.to_string().contains("cannot open the image"));
    }
}
