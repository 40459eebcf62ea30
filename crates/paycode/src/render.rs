//! Drawing and scanning payment codes (QR and Code 128).
//!
//! A payment code is shown two ways, as the SPEC asks: a QR code (ISO/IEC 18004) and a Code 128
//! barcode of the same digits. Both are drawn from one module matrix, either as terminal text
//! (half-block characters, two modules per character cell) or as a PNG that a POS can scan.
//! The PNG also shows the digits under the barcode, grouped in fours, as a phone screen does
//! (for a cashier to type when the scanner fails). They are drawn with a 5×7 bitmap font of
//! `0-9` built in here ([`DIGIT_GLYPHS`]) rather than a font-rendering dependency, and kept
//! clear of both symbols' quiet zones so that the codes still decode.
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
/// Width and height of a digit glyph, in font pixels.
const GLYPH_WIDTH: u32 = 5;
const GLYPH_HEIGHT: u32 = 7;
/// Font pixels from one character's left edge to the next (the glyph and one blank column).
const GLYPH_ADVANCE: u32 = GLYPH_WIDTH + 1;
/// Image pixels per font pixel: 3 gives digits 21 px tall, legible under a 561 px barcode.
const DIGIT_SCALE_PX: u32 = 3;
/// White margin around the line of digits in a PNG (below the barcode's own quiet zone).
const DIGITS_MARGIN_PX: u32 = 12;
/// Digits per group in the line under the codes.
const DIGITS_PER_GROUP: usize = 4;

/// The 5×7 font of the digits: one byte per row, top first; bit 4 is the leftmost pixel. A space
/// is a blank cell.
pub const DIGIT_GLYPHS: [[u8; 7]; 10] = [
    [
        0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110,
    ], // 0
    [
        0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
    ], // 1
    [
        0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111,
    ], // 2
    [
        0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110,
    ], // 3
    [
        0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010,
    ], // 4
    [
        0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110,
    ], // 5
    [
        0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110,
    ], // 6
    [
        0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000,
    ], // 7
    [
        0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110,
    ], // 8
    [
        0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100,
    ], // 9
];

const ANSI_INK_ON_PAPER: &str = "\x1b[30;47m";
const ANSI_RESET: &str = "\x1b[0m";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot draw {0:?} as a QR code: {1}")]
    Qr(String, String),
    #[error("cannot draw the code as a Code 128 barcode: {0}")]
    Barcode(String),
    #[error("cannot write {0:?} under the code: only digits and spaces can be drawn")]
    Digits(char),
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

/// `2810 1202 0000 1234 8765 4321`: the digits in groups of four, as people read them.
pub fn group_digits(digits: &str) -> String {
    let chars: Vec<char> = digits.chars().collect();
    chars
        .chunks(DIGITS_PER_GROUP)
        .map(|g| g.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The glyph of a digit; `None` for a space (a blank cell).
fn glyph(c: char) -> Result<Option<&'static [u8; 7]>, RenderError> {
    match c {
        ' ' => Ok(None),
        '0'..='9' => {
            let idx = c as usize - '0' as usize;
            Ok(Some(&DIGIT_GLYPHS[idx]))
        }
        other => Err(RenderError::Digits(other)),
    }
}

/// A line of text (digits and spaces) in the built-in font, `scale_px` image pixels per font
/// pixel, with a white margin of `margin_px` all round.
pub fn text_image(text: &str, scale_px: u32, margin_px: u32) -> Result<GrayImage, RenderError> {
    let glyphs = text.chars().map(glyph).collect::<Result<Vec<_>, _>>()?;
    let n_chars = u32::try_from(glyphs.len()).unwrap_or(u32::MAX);
    // The last character needs no blank column after it.
    let width_font_px = (n_chars * GLYPH_ADVANCE).saturating_sub(1);
    let mut img = GrayImage::from_pixel(
        width_font_px * scale_px + 2 * margin_px,
        GLYPH_HEIGHT * scale_px + 2 * margin_px,
        Luma([255]),
    );
    for (idx, g) in glyphs.iter().enumerate() {
        let Some(rows) = g else { continue };
        let x0 = margin_px + idx as u32 * GLYPH_ADVANCE * scale_px;
        for (row_idx, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits & (1 << (GLYPH_WIDTH - 1 - col)) == 0 {
                    continue;
                }
                let x = x0 + col * scale_px;
                let y = margin_px + row_idx as u32 * scale_px;
                for dy in 0..scale_px {
                    for dx in 0..scale_px {
                        img.put_pixel(x + dx, y + dy, Luma([0]));
                    }
                }
            }
        }
    }
    Ok(img)
}

/// The digits line under the codes in a PNG.
pub fn digits_image(digits: &str) -> Result<GrayImage, RenderError> {
    text_image(&group_digits(digits), DIGIT_SCALE_PX, DIGITS_MARGIN_PX)
}

/// The image a phone would show: the QR code above the barcode, the digits under it, on white.
/// Each part carries its own quiet zone, so stacking them keeps both symbols readable.
pub fn code_image(text: &str) -> Result<GrayImage, RenderError> {
    let qr = qr_image(text)?;
    let bar = barcode_image(text)?;
    let digits = digits_image(text)?;
    let width = qr.width().max(bar.width()).max(digits.width());
    let bar_y = qr.height() + PNG_GAP_PX;
    let digits_y = bar_y + bar.height();
    let height = digits_y + digits.height();
    let mut img = GrayImage::from_pixel(width, height, Luma([255]));
    for (part, y) in [(&qr, 0), (&bar, bar_y), (&digits, digits_y)] {
        let x = (width - part.width()) / 2;
        image::imageops::overlay(&mut img, part, i64::from(x), i64::from(y));
    }
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

    /// Decodes one symbology only, so that an image with both is checked for each.
    fn decode_as(img: &GrayImage, format: rxing::BarcodeFormat) -> Option<String> {
        rxing::helpers::detect_in_image(DynamicImage::ImageLuma8(img.clone()), Some(format))
            .ok()
            .map(|r| r.getText().to_string())
    }

    /// Reads a line drawn by [`text_image`] back, cell by cell, by the centre of each font
    /// pixel: the inverse of the renderer, so a test sees what a person reads.
    fn read_text(img: &GrayImage, scale_px: u32, margin_px: u32) -> String {
        let n_chars = (img.width() - 2 * margin_px + scale_px) / (GLYPH_ADVANCE * scale_px);
        let mut out = String::new();
        for idx in 0..n_chars {
            let x0 = margin_px + idx * GLYPH_ADVANCE * scale_px;
            let mut rows = [0u8; 7];
            for (row_idx, bits) in rows.iter_mut().enumerate() {
                for col in 0..GLYPH_WIDTH {
                    let x = x0 + col * scale_px + scale_px / 2;
                    let y = margin_px + row_idx as u32 * scale_px + scale_px / 2;
                    if img.get_pixel(x, y).0[0] < 128 {
                        *bits |= 1 << (GLYPH_WIDTH - 1 - col);
                    }
                }
            }
            match DIGIT_GLYPHS.iter().position(|g| *g == rows) {
                Some(d) => out.push(char::from(b'0' + d as u8)),
                None if rows == [0; 7] => out.push(' '),
                None => out.push('?'),
            }
        }
        out
    }

    #[test]
    fn phone_image_with_both_symbols_decodes_to_the_digits() {
        let img = code_image(DIGITS).unwrap();
        check_decodes(img.clone(), DIGITS);
        // Each symbol on its own, with the digits drawn under them.
        assert_eq!(
            decode_as(&img, rxing::BarcodeFormat::QR_CODE).as_deref(),
            Some(DIGITS)
        );
        assert_eq!(
            decode_as(&img, rxing::BarcodeFormat::CODE_128).as_deref(),
            Some(DIGITS)
        );
    }

    #[test]
    fn every_digit_has_its_own_visible_glyph() {
        for (d, g) in DIGIT_GLYPHS.iter().enumerate() {
            assert!(g.iter().any(|row| *row != 0), "digit {d} is blank");
            assert!(
                g.iter().all(|row| *row < 1 << GLYPH_WIDTH),
                "digit {d} too wide"
            );
            for (e, other) in DIGIT_GLYPHS.iter().enumerate().skip(d + 1) {
                assert_ne!(g, other, "digits {d} and {e} look the same");
            }
        }
        // Drawn and read back at several sizes, each digit is itself.
        for scale_px in [1, 2, 3] {
            let img = text_image("0123456789 9876543210", scale_px, 5).unwrap();
            assert_eq!(read_text(&img, scale_px, 5), "0123456789 9876543210");
        }
        assert!(matches!(
            text_image("12a", 3, 0),
            Err(RenderError::Digits('a'))
        ));
    }

    #[test]
    fn phone_image_shows_the_digits_in_groups_of_four_under_the_codes() {
        assert_eq!(group_digits(DIGITS), "2810 1202 0000 1234 8765 4321");
        assert_eq!(group_digits("28100512345678901"), "2810 0512 3456 7890 1");
        let img = code_image(DIGITS).unwrap();
        let digits = digits_image(DIGITS).unwrap();
        // The bottom strip is the digits line, centred, and it reads as the code.
        let (x, y) = (
            (img.width() - digits.width()) / 2,
            img.height() - digits.height(),
        );
        let strip =
            image::imageops::crop_imm(&img, x, y, digits.width(), digits.height()).to_image();
        assert!(
            strip.pixels().any(|p| p.0[0] == 0),
            "the digits area is blank"
        );
        assert_eq!(strip, digits);
        assert_eq!(
            read_text(&strip, DIGIT_SCALE_PX, DIGITS_MARGIN_PX),
            "2810 1202 0000 1234 8765 4321"
        );
        // Nothing of the digits intrudes on the barcode's quiet zone above them.
        let bar = barcode_image(DIGITS).unwrap();
        let quiet_px = BAR_QUIET_MODULES as u32 * BAR_MODULE_PX;
        let quiet_top = y - quiet_px;
        for yy in quiet_top..y {
            assert!(
                (0..img.width()).all(|xx| img.get_pixel(xx, yy).0[0] == 255),
                "row {yy} under the bars is not white"
            );
        }
        assert!(
            digits.width() <= bar.width(),
            "the digits fit under the barcode"
        );
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
        let png = image::open(&path).unwrap().to_luma8();
        assert_eq!(
            png,
            code_image(DIGITS).unwrap(),
            "the file holds the drawn image"
        );
        let missing = decode_image_file(&dir.path().join("nope.png")).unwrap_err();
        assert!(missing.to_string().contains("cannot open the image"));
    }
}
