//! Drawing and scanning payment codes (QR and Code 128).
