//! A desktop's shared libraries for a guest that plays a customer's Linux computer.
//!
//! The stock client (`lifeline-agent`) is linked against a desktop's X11, pango and cairo
//! libraries. The appliance image has none of them, and must not get them: the box itself
//! never runs the client. When an image test lets the guest play a customer's computer
//! (the jump client installed there as a systemd service), the guest needs those libraries,
//! so the test brings them on a disk of their own:
//!
//! 1. [`resolved`] lists what `ldd` resolves for the program on the host (host and guest are
//!    both Debian 12, so the host's builds of those libraries fit the guest);
//! 2. [`disk`] puts them, each under the name the program asks for (its soname; `ldd`'s
//!    paths are often symlinks, the file behind is copied), on an ext4 image labelled
//!    [`LABEL`], attached read-only with `Options::extra_disks`;
//! 3. [`install`] mounts that disk in the guest and copies every library the guest does not
//!    have already into `/usr/local/lib/x86_64-linux-gnu` (a folder of the dynamic linker's
//!    default configuration), then runs `ldconfig`;
//! 4. [`missing`] runs `ldd` on the program in the guest and lists whatever is still
//!    "not found".
//!
//! Limits: the guest's root file system must be writable at [`install`] (the caller remounts
//! it: a customer's computer is, the appliance's is not); the libraries the guest already
//! has (the C library and its kin) are never replaced; only what `ldd` reports is copied, so
//! modules a library loads by itself at run time (e.g. pango's or gio's plug-ins) are not.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::shell::Shell;

/// The file system label of the libraries' disk (found by udev as
/// `/dev/disk/by-label/desktop-libs` in the guest).
pub const LABEL: &str = "desktop-libs";
/// Where the guest gets the libraries it lacks.
pub const GUEST_DIR: &str = "/usr/local/lib/x86_64-linux-gnu";

/// The shared libraries `ldd` resolves for `program` on the host: (soname, path). The
/// dynamic linker itself and the kernel's vDSO are left out.
pub fn resolved(program: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| format!("cannot run ldd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ldd {} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    let mut unresolved = Vec::new();
    for line in text.lines() {
        // "\tlibX11.so.6 => /lib/x86_64-linux-gnu/libX11.so.6 (0x...)"
        let Some((name, rest)) = line.trim().split_once(" => ") else {
            continue;
        };
        let path = rest.split(" (").next().unwrap_or("").trim();
        if path == "not found" || path.is_empty() {
            unresolved.push(name.to_string());
            continue;
        }
        libs.push((name.to_string(), PathBuf::from(path)));
    }
    if !unresolved.is_empty() {
        return Err(format!(
            "the host itself lacks libraries of {}: {}",
            program.display(),
            unresolved.join(", ")
        ));
    }
    Ok(libs)
}

/// An ext4 image at `out` (labelled [`LABEL`]) with the libraries `program` needs, each
/// under its soname; `dir` is scratch space.
pub fn disk(program: &Path, dir: &Path, out: &Path) -> Result<usize, String> {
    let libs = resolved(program)?;
    let content = dir.join("desktop-libs");
    let _ = std::fs::remove_dir_all(&content);
    std::fs::create_dir_all(&content).map_err(|e| format!("{}: {e}", content.display()))?;
    let mut bytes = 0;
    for (name, path) in &libs {
        // `copy` follows the symlink: the library's file under the name the program asks for.
        bytes += std::fs::copy(path, content.join(name))
            .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
    }
    let mib = bytes / (1024 * 1024) + 16;
    let o = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", LABEL, "-d"])
        .arg(&content)
        .arg(out)
        .arg(format!("{mib}M"))
        .output()
        .map_err(|e| format!("cannot run mkfs.ext4: {e}"))?;
    let _ = std::fs::remove_dir_all(&content);
    if !o.status.success() {
        return Err(format!(
            "mkfs.ext4 (desktop libraries) failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(libs.len())
}

/// In the guest: mounts the libraries' disk, copies each library the guest lacks into
/// [`GUEST_DIR`], runs `ldconfig` and unmounts. Returns the names copied.
pub fn install(shell: &mut Shell) -> Result<Vec<String>, String> {
    let mnt = "/run/desktop-libs";
    let cmd = format!(
        "mkdir -p {mnt} {GUEST_DIR} && mount -o ro /dev/disk/by-label/{LABEL} {mnt} && \
         for f in {mnt}/*.so*; do n=$(basename \"$f\"); \
         if [ ! -e /lib/x86_64-linux-gnu/$n ] && [ ! -e /usr/lib/x86_64-linux-gnu/$n ]; then \
         cp \"$f\" {GUEST_DIR}/$n && echo \"copied $n\"; fi; done; \
         umount {mnt} && ldconfig"
    );
    let o = shell.run_timeout(&cmd, std::time::Duration::from_secs(120))?;
    if !o.ok() {
        return Err(format!(
            "installing the desktop libraries failed ({}): {}",
            o.status, o.text
        ));
    }
    Ok(o.text
        .lines()
        .filter_map(|l| l.strip_prefix("copied "))
        .map(str::to_string)
        .collect())
}

/// In the guest: what `ldd program` still cannot find (empty when everything resolves).
pub fn missing(shell: &mut Shell, program: &str) -> Result<Vec<String>, String> {
    let o = shell.run(&format!("ldd '{program}'"))?;
    let gone: Vec<String> = o
        .text
        .lines()
        .filter(|l| l.contains("not found"))
        .map(|l| l.trim().to_string())
        .collect();
    if !o.ok() && gone.is_empty() {
        return Err(format!("ldd {program} failed ({}): {}", o.status, o.text));
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_a_host_program() {
        // Every Debian host has /bin/sh linked to the C library.
        let libs = resolved(Path::new("/bin/sh")).unwrap();
        assert!(libs.iter().any(|(n, _)| n == "libc.so.6"), "{libs:?}");
        assert!(libs.iter().all(|(_, p)| p.is_absolute()), "{libs:?}");
    }
}
