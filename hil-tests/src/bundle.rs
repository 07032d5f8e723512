//! RAUC bundles made for the update tests: signed with another key, for another model, in
//! the plain (not verity) format, or of a root file system whose relay cannot start.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace;

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let o = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// The development signer of `firmware/keys/dev/`.
pub fn dev_signer() -> (PathBuf, PathBuf) {
    let k = workspace().join("firmware/keys/dev");
    (k.join("signing.cert.pem"), k.join("signing.key.pem"))
}

/// A throw-away self-signed signer that no Lifeline keyring trusts.
pub fn foreign_signer(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join("foreign.cert.pem");
    let key = dir.join("foreign.key.pem");
    run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            ])
            .arg("/O=Not Lifeline/CN=someone else")
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "openssl req",
    )?;
    Ok((cert, key))
}

/// Signs a verity bundle of `rootfs` for `compatible` with `signer`.
pub fn make(
    rootfs: &Path,
    compatible: &str,
    version: &str,
    signer: &(PathBuf, PathBuf),
    out: &Path,
) -> Result<(), String> {
    make_format(rootfs, compatible, version, signer, out, "verity")
}

/// Signs a bundle of `rootfs` in `format` (`verity`, or `plain`, which the box refuses).
pub fn make_format(
    rootfs: &Path,
    compatible: &str,
    version: &str,
    signer: &(PathBuf, PathBuf),
    out: &Path,
    format: &str,
) -> Result<(), String> {
    let scratch = out.with_extension("content");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let manifest = std::fs::read_to_string(workspace().join("firmware/rauc/manifest.raucm.in"))
        .map_err(|e| e.to_string())?
        .replace("@COMPATIBLE@", compatible)
        .replace("@VERSION@", version)
        .replace("@MODEL@", "test")
        .replace("@BUILD@", "hil-tests")
        .replace("format=verity", &format!("format={format}"));
    std::fs::write(scratch.join("manifest.raucm"), manifest).map_err(|e| e.to_string())?;
    if std::fs::hard_link(rootfs, scratch.join("rootfs.ext4")).is_err() {
        std::fs::copy(rootfs, scratch.join("rootfs.ext4")).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_file(out);
    run(
        Command::new("rauc")
            .arg("bundle")
            .arg(format!("--cert={}", signer.0.display()))
            .arg(format!("--key={}", signer.1.display()))
            .arg("--mksquashfs-args=-comp zstd -Xcompression-level 3 -b 1M")
            .arg(&scratch)
            .arg(out),
        "rauc bundle",
    )?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// A copy of `rootfs` without the relay binary: its relay unit fails, so the slot never
/// passes its health check.
pub fn broken_rootfs(rootfs: &Path, out: &Path) -> Result<(), String> {
    run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(rootfs)
            .arg(out),
        "copying the root file system",
    )?;
    run(
        Command::new("debugfs")
            .args(["-w", "-R", "rm /usr/bin/lifeline-relay"])
            .arg(out),
        "debugfs rm",
    )
}

/// An ext4 image holding `files`, attached to the guest as a read-only disk.
pub fn disk_of(files: &[&Path], dir: &Path, out: &Path) -> Result<(), String> {
    let content = dir.join("bundle-disk");
    let _ = std::fs::remove_dir_all(&content);
    std::fs::create_dir_all(&content).map_err(|e| e.to_string())?;
    let mut bytes = 0;
    for f in files {
        let name = f.file_name().ok_or("a file name")?;
        if std::fs::hard_link(f, content.join(name)).is_err() {
            std::fs::copy(f, content.join(name)).map_err(|e| e.to_string())?;
        }
        bytes += std::fs::metadata(f).map_err(|e| e.to_string())?.len();
    }
    let mib = bytes / (1024 * 1024) + 64;
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "bundles", "-d"])
            .arg(&content)
            .arg(out)
            .arg(format!("{mib}M")),
        "mkfs.ext4 (bundle disk)",
    )?;
    let _ = std::fs::remove_dir_all(&content);
    Ok(())
}
