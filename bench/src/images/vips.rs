//! The peer: libvips' `vipsthumbnail`, its version and the commands that make the same
//! renditions as Kiln (one process per rendition: the tool makes one size per run).

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use kiln_shared::domain::{Fit, Rendition};

/// `vipsthumbnail --version`, e.g. `vips-8.14.1`.
///
/// # Errors
/// When `vipsthumbnail` is not installed.
pub fn version() -> anyhow::Result<String> {
    let out = Command::new("vipsthumbnail")
        .arg("--version")
        .output()
        .context(
            "vipsthumbnail not found: scripts/deps installs it (Debian package libvips-tools)",
        )?;
    if !out.status.success() {
        bail!("vipsthumbnail --version failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The `vipsthumbnail` commands that make `renditions` of `file` in `out`, one per rendition:
/// `--size WxH>` (shrink only), plus `--smartcrop centre` for a cover rendition, writing the
/// same format and quality with metadata stripped.
pub fn commands(file: &Path, renditions: &[Rendition], out: &Path) -> Vec<Vec<OsString>> {
    renditions
        .iter()
        .map(|r| {
            let mut cmd: Vec<OsString> = vec![
                "vipsthumbnail".into(),
                file.into(),
                "--size".into(),
                format!("{}x{}>", r.max_width, r.max_height).into(),
            ];
            if r.fit == Fit::Cover {
                cmd.extend(["--smartcrop".into(), "centre".into()]);
            }
            let target = out.join(format!(
                "%s_{}_vips.{}[Q={},strip]",
                r.name,
                r.format.extension(),
                r.quality
            ));
            cmd.extend(["-o".into(), target.into_os_string()]);
            cmd
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_makes_each_rendition_like_kiln() {
        let cmds = commands(
            Path::new("a.jpg"),
            &Rendition::defaults(),
            Path::new("/tmp/x"),
        );
        let shown: Vec<String> = cmds
            .iter()
            .map(|c| {
                c.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            shown,
            [
                "vipsthumbnail a.jpg --size 256x256> --smartcrop centre -o /tmp/x/%s_thumb_vips.webp[Q=80,strip]",
                "vipsthumbnail a.jpg --size 1280x1280> -o /tmp/x/%s_preview_vips.webp[Q=80,strip]",
            ]
        );
    }
}
