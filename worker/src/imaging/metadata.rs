//! EXIF extraction with kamadak-exif (JPEG, TIFF, HEIF, PNG and WebP containers). Parsing
//! continues past broken entries, and any field that is missing, empty or of the wrong type is
//! left out: broken metadata is never fatal. Tag numbers follow EXIF 2.32 (CIPA DC-008-2019).

use std::io::Cursor;

use exif::{Exif, Field, In, Reader, Tag, Value};
use kiln_shared::domain::metadata::ExifSummary;

/// Reads the EXIF fields Kiln keeps from a whole file, or `None` when it has no readable EXIF.
pub fn read_exif(file: &[u8]) -> Option<ExifSummary> {
    let mut reader = Reader::new();
    reader.continue_on_error(true);
    let exif = match reader.read_from_container(&mut Cursor::new(file)) {
        Ok(exif) => exif,
        Err(exif::Error::PartialResult(partial)) => {
            let (exif, errors) = partial.into_inner();
            tracing::debug!(
                errors = errors.len(),
                "EXIF parsed with errors; broken fields skipped"
            );
            exif
        }
        Err(e) => {
            tracing::debug!(error = %e, "no readable EXIF");
            return None;
        }
    };
    let summary = summarize(&exif);
    (summary != ExifSummary::default()).then_some(summary)
}

/// The file's raw EXIF block (TIFF structure: byte order, IFD0, sub-IFDs), for derivatives
/// that keep metadata; `None` when the file has no readable EXIF.
pub fn raw_exif(file: &[u8]) -> Option<Vec<u8>> {
    let mut reader = Reader::new();
    reader.continue_on_error(true);
    match reader.read_from_container(&mut Cursor::new(file)) {
        Ok(exif) => Some(exif.buf().to_vec()),
        Err(exif::Error::PartialResult(partial)) => Some(partial.into_inner().0.buf().to_vec()),
        Err(_) => None,
    }
}

fn summarize(exif: &Exif) -> ExifSummary {
    let field = |tag: Tag| exif.get_field(tag, In::PRIMARY);
    let date = field(Tag::DateTimeOriginal).and_then(ascii).and_then(|dt| {
        let offset = field(Tag::OffsetTimeOriginal).and_then(ascii);
        exif_datetime_to_iso(&dt, offset.as_deref())
    });
    ExifSummary {
        make: field(Tag::Make).and_then(ascii),
        model: field(Tag::Model).and_then(ascii),
        lens_model: field(Tag::LensModel).and_then(ascii),
        date_time_original: date,
        orientation: field(Tag::Orientation)
            .and_then(|f| f.value.get_uint(0))
            .and_then(|o| u16::try_from(o).ok())
            .filter(|o| (1..=8).contains(o)),
        exposure_time: field(Tag::ExposureTime).and_then(rational),
        f_number: field(Tag::FNumber).and_then(rational),
        iso: field(Tag::PhotographicSensitivity).and_then(|f| f.value.get_uint(0)),
        focal_length: field(Tag::FocalLength).and_then(rational),
        gps_latitude: gps(exif, Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S', 90.0),
        gps_longitude: gps(exif, Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W', 180.0),
    }
}

/// First non-empty ASCII string of a field, trimmed of NULs and spaces.
fn ascii(field: &Field) -> Option<String> {
    let Value::Ascii(ref parts) = field.value else {
        return None;
    };
    parts
        .iter()
        .map(|p| {
            String::from_utf8_lossy(p)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_owned()
        })
        .find(|s| !s.is_empty())
}

/// First rational of a field as f64; `None` for a zero denominator or a non-rational type.
fn rational(field: &Field) -> Option<f64> {
    let v = match field.value {
        Value::Rational(ref r) => r.first().filter(|r| r.denom != 0).map(|r| r.to_f64()),
        Value::SRational(ref r) => r.first().filter(|r| r.denom != 0).map(|r| r.to_f64()),
        _ => None,
    }?;
    v.is_finite().then_some(v)
}

/// GPS degrees/minutes/seconds (three rationals) plus the N/S or E/W ref as signed degrees.
fn gps(exif: &Exif, tag: Tag, ref_tag: Tag, negative: u8, max: f64) -> Option<f64> {
    let field = exif.get_field(tag, In::PRIMARY)?;
    let Value::Rational(ref dms) = field.value else {
        return None;
    };
    if dms.is_empty() || dms.iter().any(|r| r.denom == 0) {
        return None;
    }
    let part = |i: usize| dms.get(i).map(|r| r.to_f64()).unwrap_or(0.0);
    let mut deg = part(0) + part(1) / 60.0 + part(2) / 3600.0;
    let sign = exif
        .get_field(ref_tag, In::PRIMARY)
        .and_then(ascii)
        .map(|r| r.as_bytes().first().copied() == Some(negative));
    if sign == Some(true) {
        deg = -deg;
    }
    (deg.is_finite() && deg.abs() <= max).then_some(deg)
}

/// `YYYY:MM:DD HH:MM:SS` (EXIF 2.32 §4.6.5) → `YYYY-MM-DDTHH:MM:SS`, plus `±HH:MM` when an
/// offset is given. `None` for blank or malformed dates.
fn exif_datetime_to_iso(dt: &str, offset: Option<&str>) -> Option<String> {
    let naive = chrono::NaiveDateTime::parse_from_str(dt.trim(), "%Y:%m:%d %H:%M:%S").ok()?;
    let mut out = naive.format("%Y-%m-%dT%H:%M:%S").to_string();
    if let Some(off) = offset.filter(|o| {
        let b = o.as_bytes();
        b.len() == 6 && matches!(b[0], b'+' | b'-') && b[3] == b':'
    }) {
        out.push_str(off);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_become_iso_8601() {
        assert_eq!(
            exif_datetime_to_iso("2008:05:30 15:56:01", None).unwrap(),
            "2008-05-30T15:56:01"
        );
        assert_eq!(
            exif_datetime_to_iso("2022:02:16 12:55:41", Some("+01:00")).unwrap(),
            "2022-02-16T12:55:41+01:00"
        );
        assert!(exif_datetime_to_iso("    :  :     :  :  ", None).is_none());
    }

    #[test]
    fn garbage_has_no_exif() {
        assert!(read_exif(b"not an image").is_none());
    }
}
