//! Object key layout (docs/design.md "Object keys"). Every key is built here, from validated parts,
//! so no key segment ever comes unsanitized from a client.
//!
//! - temp: `{prefix}tmp/{owner}/{upload_id}`
//! - original: `{prefix}originals/{owner}/{upload_id}/{sanitized filename}`
//! - derivative: `{prefix}derivatives/{owner}/{upload_id}/{rendition}.{ext}`

use super::{OwnerId, UploadId};

/// Builds object keys under an optional deployment-wide prefix (`storage.key_prefix`).
#[derive(Debug, Clone, Default)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// A layout whose keys all start with `prefix` (empty, or ending in `/`; a missing `/` is
    /// added).
    pub fn new(prefix: &str) -> Self {
        let mut prefix = prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { prefix }
    }

    /// The prefix every key starts with (may be empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Temp key the client uploads to.
    pub fn temp(&self, owner: &OwnerId, id: UploadId) -> String {
        format!("{}tmp/{owner}/{id}", self.prefix)
    }

    /// Prefix of every temp key (for sweeps and leftover checks).
    pub fn temp_root(&self) -> String {
        format!("{}tmp/", self.prefix)
    }

    /// Final key of the promoted original.
    pub fn original(&self, owner: &OwnerId, id: UploadId, filename: &str) -> String {
        format!(
            "{}originals/{owner}/{id}/{}",
            self.prefix,
            sanitize_filename(filename)
        )
    }

    /// Where a deleted upload's object `key` waits for restore or purge: the same key under
    /// `trash/` (inside the prefix), so presigned URLs issued for `key` stop working.
    pub fn trash(&self, key: &str) -> String {
        let rest = key.strip_prefix(self.prefix.as_str()).unwrap_or(key);
        format!("{}trash/{rest}", self.prefix)
    }

    /// The key whose `trash/` copy `key` is ([`Self::trash`] undone); any other key as it is.
    pub fn untrash(&self, key: &str) -> String {
        let trash = format!("{}trash/", self.prefix);
        match key.strip_prefix(trash.as_str()) {
            Some(rest) => format!("{}{rest}", self.prefix),
            None => key.to_owned(),
        }
    }

    /// The prefixes that hold one upload's objects (original and derivatives, and both in
    /// the trash); its temp key is [`Self::temp`].
    pub fn upload_prefixes(&self, owner: &OwnerId, id: UploadId) -> [String; 4] {
        let p = &self.prefix;
        [
            format!("{p}originals/{owner}/{id}/"),
            format!("{p}derivatives/{owner}/{id}/"),
            format!("{p}trash/originals/{owner}/{id}/"),
            format!("{p}trash/derivatives/{owner}/{id}/"),
        ]
    }

    /// The prefixes that hold every object of `owner` (temp, originals, derivatives, trash).
    pub fn owner_prefixes(&self, owner: &OwnerId) -> [String; 5] {
        let p = &self.prefix;
        [
            format!("{p}tmp/{owner}/"),
            format!("{p}originals/{owner}/"),
            format!("{p}derivatives/{owner}/"),
            format!("{p}trash/originals/{owner}/"),
            format!("{p}trash/derivatives/{owner}/"),
        ]
    }

    /// Key of one derivative, e.g. `derivatives/alice/{id}/thumb.webp`.
    pub fn derivative(&self, owner: &OwnerId, id: UploadId, rendition: &str, ext: &str) -> String {
        format!("{}derivatives/{owner}/{id}/{rendition}.{ext}", self.prefix)
    }
}

/// Reduces a client filename to a safe key segment: the last path component, with every byte
/// outside `[A-Za-z0-9._-]` replaced by `_`, leading dots removed, at most 128 bytes; `original`
/// when nothing is left.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    out = out.trim_start_matches('.').to_owned();
    out.truncate(128);
    if out.is_empty() {
        "original".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_cannot_escape_their_segment() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("..\\a b?.JPG"), "a_b_.JPG");
        assert_eq!(sanitize_filename("...."), "original");
        assert_eq!(sanitize_filename("Привет.jpg"), "______.jpg");
    }

    #[test]
    fn prefix_is_normalised() {
        let owner = OwnerId::parse("o").unwrap();
        let id = UploadId::new();
        assert_eq!(
            KeyLayout::new("t1").temp(&owner, id),
            format!("t1/tmp/o/{id}")
        );
        assert_eq!(KeyLayout::new("").temp(&owner, id), format!("tmp/o/{id}"));
    }
}
