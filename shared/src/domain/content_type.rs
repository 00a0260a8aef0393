//! The content type a client declares for a file, from its extension. Advisory only: the
//! worker sniffs the real format from magic bytes.

use std::path::Path;

/// MIME type for `path`'s extension (case-insensitive): the formats Kiln accepts, else
/// `application/octet-stream` (which the API refuses with 415).
pub fn for_path(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "tif" | "tiff" => "image/tiff",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "avif" => "image/avif",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_case_insensitively() {
        assert_eq!(for_path(Path::new("a/IMG_1.HEIC")), "image/heic");
        assert_eq!(for_path(Path::new("x.jpeg")), "image/jpeg");
        assert_eq!(for_path(Path::new("notes.txt")), "application/octet-stream");
    }
}
