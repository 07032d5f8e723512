//! `cargo xtask image --model b200|b300 [--if-stale]`: the development firmware image.
//!
//! Built from Debian packages with mmdebstrap (the production build of the same image is the
//! Yocto layer in `yocto/`). Inputs: `firmware/packages.txt` (Debian packages),
//! `firmware/daemons.toml` (which release binaries and units go in), `rootfs/` (the overlay
//! shared with Yocto), `firmware/dev-overlay/` (the test harness channel; development images
//! only), `firmware/layout.toml` (GPT layout), `firmware/grub/grub.cfg` (A/B selection),
//! `firmware/rauc/` (system.conf and manifest templates) and the development signing key in
//! `firmware/keys/dev/`.
//!
//! Outputs under `target/image/MODEL/`: `lifeline-MODEL.img` (raw GPT disk: ESP with GRUB,
//! boot-state with the GRUB environment, rootfs A and B, data), `lifeline-MODEL.raucb` (a
//! verity RAUC bundle of the root file system, signed with the development key),
//! `rootfs.ext4`, `packages.txt` (the Debian package versions that went in), `figures.txt`
//! (`name=value` lines: build time and sizes) and `inputs.sha256` (the stamp `--if-stale`
//! compares).
//!
//! The Debian base (mmdebstrap output) is cached in `target/image/cache/` by the hash of the
//! package list and the mirror, so rebuilding after a code change takes seconds. The
//! mirror is deb.debian.org unless `LIFELINE_DEBIAN_MIRROR` names another; setting
//! `LIFELINE_DEBIAN_SNAPSHOT=20261201T000000Z` builds from that snapshot of the archive
//! instead (reproducible package set; needs the snapshot service to be reachable).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Result, cargo, root, status};

/// Host tools the image build needs: (command, Debian package).
const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("sfdisk", "fdisk"),
    ("grub-mkstandalone", "grub-efi-amd64-bin"),
    ("grub-editenv", "grub-common"),
    ("rauc", "rauc"),
    ("mksquashfs", "squashfs-tools"),
    ("zstd", "zstd"),
];

/// Debian packages for building and booting images (installed by `ensure_deps`).
pub const IMAGE_PACKAGES: &[&str] = &[
    "mmdebstrap",
    "e2fsprogs",
    "dosfstools",
    "mtools",
    "fdisk",
    "grub-efi-amd64-bin",
    "grub-common",
    "rauc",
    "squashfs-tools",
    "zstd",
    "openssl",
    "qemu-system-x86",
    "qemu-utils",
    "ovmf",
];

#[derive(Debug, Deserialize)]
pub struct Daemons {
    pub daemon: Vec<Daemon>,
}

#[derive(Debug, Deserialize)]
pub struct Daemon {
    pub name: String,
    #[serde(rename = "crate")]
    pub krate: String,
    pub binary: String,
    pub unit: String,
}

#[derive(Debug, Deserialize)]
pub struct Layout {
    pub partition: Vec<Partition>,
}

#[derive(Debug, Deserialize)]
pub struct Partition {
    pub name: String,
    pub size_mib: u64,
    #[serde(rename = "type")]
    pub type_guid: String,
    pub uuid: String,
    pub fs: String,
}

#[derive(Debug, Deserialize)]
pub struct Model {
    pub model: String,
    pub compatible: String,
    pub panel_model: String,
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
}

pub fn daemons() -> Result<Daemons> {
    read_toml(&root().join("firmware/daemons.toml"))
}

pub fn layout() -> Result<Layout> {
    read_toml(&root().join("firmware/layout.toml"))
}

pub fn model(name: &str) -> Result<Model> {
    let path = root().join(format!("firmware/models/{name}.toml"));
    if !path.is_file() {
        return Err(format!(
            "unknown model `{name}`: the models are the files in firmware/models/ (b200, b300)"
        ));
    }
    read_toml(&path)
}

/// Progress: "[3/12] what".
struct Progress {
    n: usize,
    total: usize,
    start: Instant,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.n += 1;
        eprintln!(
            "\x1b[1m[{}/{}]\x1b[0m {what} \x1b[2m({:.0?})\x1b[0m",
            self.n,
            self.total,
            self.start.elapsed()
        );
    }
}

fn check_tools() -> Result {
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(cmd, _)| !crate::have(cmd))
        .map(|(cmd, pkg)| format!("{cmd} (Debian package {pkg})"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the image build needs: {}; `cargo xtask deps` installs them",
            missing.join(", ")
        ));
    }
    if !crate::is_root() {
        return Err(
            "the image build runs as root (it installs Debian packages into a folder \
                    with their owners and runs systemd-sysusers in it); run it with sudo"
                .into(),
        );
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn sh(script: &str, what: &str) -> Result {
    run(Command::new("sh").args(["-euc", script]), what)
}

fn write(path: &Path, text: &str) -> Result {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn hash_tree(h: &mut Sha256, dir: &Path) -> Result {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).map_err(|e| e.to_string())?;
        h.update(
            p.strip_prefix(root())
                .unwrap_or(&p)
                .to_string_lossy()
                .as_bytes(),
        );
        if meta.file_type().is_symlink() {
            h.update(
                std::fs::read_link(&p)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .as_bytes(),
            );
        } else if meta.is_dir() {
            hash_tree(h, &p)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            h.update(meta.permissions().mode().to_le_bytes());
            h.update(std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?);
        }
    }
    Ok(())
}

fn mirror_lines() -> Vec<String> {
    if let Ok(ts) = std::env::var("LIFELINE_DEBIAN_SNAPSHOT") {
        let base = "http://snapshot.debian.org/archive";
        return vec![
            format!("deb [check-valid-until=no] {base}/debian/{ts} bookworm main"),
            format!("deb [check-valid-until=no] {base}/debian/{ts} bookworm-updates main"),
            format!(
                "deb [check-valid-until=no] {base}/debian-security/{ts} bookworm-security main"
            ),
        ];
    }
    let m = std::env::var("LIFELINE_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let sec = std::env::var("LIFELINE_DEBIAN_SECURITY_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian-security".into());
    vec![
        format!("deb {m} bookworm main"),
        format!("deb {m} bookworm-updates main"),
        format!("deb {sec} bookworm-security main"),
    ]
}

fn packages() -> Result<Vec<String>> {
    let path = root().join("firmware/packages.txt");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// The Debian base as a tarball, from the cache when the package list is unchanged.
fn base_tarball(cache: &Path) -> Result<PathBuf> {
    let pkgs = packages()?;
    let mirrors = mirror_lines();
    let mut h = Sha256::new();
    h.update(pkgs.join(",").as_bytes());
    h.update(mirrors.join("\n").as_bytes());
    let key = hex(&h.finalize())[..16].to_string();
    let tar = cache.join(format!("debian-base-{key}.tar"));
    if tar.is_file() {
        return Ok(tar);
    }
    std::fs::create_dir_all(cache).map_err(|e| e.to_string())?;
    let tmp = tar.with_extension("tar.part");
    let mut c = Command::new("mmdebstrap");
    c.args([
        "--variant=minbase",
        "--mode=root",
        "--format=tar",
        "--quiet",
        "--aptopt=Acquire::Retries \"3\"",
        // Documentation, manuals and translations stay out of the image.
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        "--dpkgopt=path-exclude=/usr/share/lintian/*",
        "--customize-hook=rm -rf \"$1\"/var/cache/apt/* \"$1\"/var/lib/apt/lists/* \"$1\"/var/log/*.log \"$1\"/var/log/apt/*",
    ]);
    c.arg(format!("--include={}", pkgs.join(",")));
    c.arg("bookworm").arg(&tmp);
    for m in &mirrors {
        c.arg(m);
    }
    run(
        &mut c,
        "mmdebstrap (downloading and installing Debian packages)",
    )?;
    std::fs::rename(&tmp, &tar).map_err(|e| e.to_string())?;
    Ok(tar)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The stamp of every input of one model's image.
fn inputs_hash(model: &Model, daemons: &Daemons) -> Result<String> {
    let r = root();
    let mut h = Sha256::new();
    h.update(model.model.as_bytes());
    h.update(mirror_lines().join("\n").as_bytes());
    for d in ["rootfs", "firmware"] {
        hash_tree(&mut h, &r.join(d))?;
    }
    // How the image is put together is an input too.
    h.update(std::fs::read(r.join("xtask/src/image.rs")).map_err(|e| e.to_string())?);
    for b in daemons
        .daemon
        .iter()
        .map(|d| d.binary.as_str())
        .chain(["lifeline-agent"])
    {
        let p = r.join("target/release").join(b);
        h.update(std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?);
    }
    Ok(hex(&h.finalize()))
}

pub fn image(args: &[String]) -> Result {
    let mut model_name = None;
    let mut if_stale = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => model_name = it.next().cloned(),
            "--if-stale" => if_stale = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: cargo xtask image --model b200|b300 [--if-stale]"
                ));
            }
        }
    }
    let model_name = model_name.ok_or("usage: cargo xtask image --model b200|b300 [--if-stale]")?;
    let model = model(&model_name)?;
    let daemons = daemons()?;
    let layout = layout()?;
    crate::apt_install(IMAGE_PACKAGES)?;
    check_tools()?;
    let start = Instant::now();
    let mut p = Progress {
        n: 0,
        total: 9,
        start,
    };

    p.step("building the release binaries");
    let mut c = cargo();
    c.args(["build", "--release", "--locked", "-p", "lifeline-agent"]);
    for d in &daemons.daemon {
        c.args(["-p", &d.krate]);
    }
    status(c, "cargo build --release")?;

    let r = root();
    let out = r.join("target/image").join(&model.model);
    let stamp_path = out.join("inputs.sha256");
    let stamp = inputs_hash(&model, &daemons)?;
    let img = out.join(format!("lifeline-{}.img", model.model));
    let bundle = out.join(format!("lifeline-{}.raucb", model.model));
    if if_stale
        && img.is_file()
        && bundle.is_file()
        && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s.trim() == stamp)
    {
        eprintln!("the {} image is up to date: {}", model.model, img.display());
        return Ok(());
    }
    let _ = std::fs::remove_file(&stamp_path);
    let work = out.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .map_err(|e| format!("cannot clear {}: {e}", work.display()))?;
    }
    let sysroot = work.join("rootfs");
    std::fs::create_dir_all(&sysroot).map_err(|e| e.to_string())?;

    p.step("Debian base with mmdebstrap (cached after the first build)");
    let tar = base_tarball(&r.join("target/image/cache"))?;
    run(
        Command::new("tar")
            .args(["-x", "--numeric-owner", "-p", "-f"])
            .arg(&tar)
            .arg("-C")
            .arg(&sysroot),
        "unpacking the Debian base",
    )?;

    p.step("Lifeline overlay, binaries, client store, RAUC configuration");
    install_overlay(&sysroot, &model, &daemons)?;

    p.step("root file system image (ext4)");
    let slot = layout
        .partition
        .iter()
        .find(|x| x.name == "rootfs-a")
        .ok_or("firmware/layout.toml: no partition `rootfs-a`")?;
    let rootfs_img = out.join("rootfs.ext4");
    mkfs_ext4(&sysroot, &rootfs_img, slot.size_mib, "rootfs")?;

    p.step("EFI system partition (GRUB) and boot-state partition (GRUB environment)");
    let esp = work.join("esp.vfat");
    let state = work.join("boot-state.vfat");
    build_esp(&work, &esp, size_of(&layout, "esp")?)?;
    build_boot_state(&work, &state, size_of(&layout, "boot-state")?)?;

    p.step("data partition");
    let data_img = work.join("data.ext4");
    build_data(
        &work,
        &sysroot,
        &data_img,
        &model,
        size_of(&layout, "data")?,
    )?;

    p.step("GPT disk image");
    let mut parts: BTreeMap<&str, &Path> = BTreeMap::new();
    parts.insert("esp", &esp);
    parts.insert("boot-state", &state);
    parts.insert("rootfs-a", &rootfs_img);
    parts.insert("data", &data_img);
    let tmp_img = img.with_extension("img.part");
    build_disk(&layout, &parts, &tmp_img)?;
    std::fs::rename(&tmp_img, &img).map_err(|e| e.to_string())?;

    p.step("signed RAUC bundle (verity, development key)");
    let version = env!("CARGO_PKG_VERSION");
    let build_id = build_id();
    make_bundle(
        &rootfs_img,
        &model,
        version,
        &build_id,
        &r.join("firmware/keys/dev/signing.cert.pem"),
        &r.join("firmware/keys/dev/signing.key.pem"),
        Some(&r.join("firmware/keys/dev/ca.cert.pem")),
        &bundle,
        &work.join("bundle"),
    )?;

    p.step("figures");
    std::fs::copy(
        sysroot.join("usr/share/lifeline/packages.txt"),
        out.join("packages.txt"),
    )
    .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let raw = std::fs::metadata(&img).map_err(|e| e.to_string())?.len();
    let allocated = allocated_bytes(&img);
    let bundle_bytes = std::fs::metadata(&bundle).map_err(|e| e.to_string())?.len();
    let rootfs_used = dir_bytes(&sysroot);
    let figures = format!(
        "image_build_seconds={secs:.1}\nraw_image_bytes={raw}\nraw_image_allocated_bytes={allocated}\n\
         rootfs_content_bytes={rootfs_used}\nbundle_bytes={bundle_bytes}\n"
    );
    write(&out.join("figures.txt"), &figures)?;
    std::fs::remove_dir_all(&work).map_err(|e| e.to_string())?;
    write(&stamp_path, &stamp)?;
    print!("{figures}");
    eprintln!("image:  {}\nbundle: {}", img.display(), bundle.display());
    Ok(())
}

fn size_of(layout: &Layout, name: &str) -> Result<u64> {
    layout
        .partition
        .iter()
        .find(|x| x.name == name)
        .map(|x| x.size_mib)
        .ok_or_else(|| format!("firmware/layout.toml: no partition `{name}`"))
}

fn build_id() -> String {
    Command::new("git")
        .args(["-C"])
        .arg(root())
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn copy_tree(from: &Path, to: &Path) -> Result {
    // cp -a keeps symlinks (e.g. /etc/lifeline -> /data/lifeline/etc) and modes.
    run(
        Command::new("cp")
            .args(["-a", "--no-preserve=ownership"])
            .arg(format!("{}/.", from.display()))
            .arg(to),
        &format!("copying {}", from.display()),
    )
}

fn install_overlay(sysroot: &Path, model: &Model, daemons: &Daemons) -> Result {
    let r = root();
    // The overlay's /etc/lifeline and /etc/systemd/network are links into /data; Debian
    // left no /etc/lifeline and an empty /etc/systemd/network (a folder with files in it
    // makes the copy below fail, naming it).
    let _ = std::fs::remove_dir(sysroot.join("etc/lifeline"));
    let _ = std::fs::remove_dir(sysroot.join("etc/systemd/network"));
    copy_tree(&r.join("rootfs"), sysroot)?;
    copy_tree(&r.join("firmware/dev-overlay"), sysroot)?;
    let panel = sysroot.join("usr/share/lifeline/etc/panel.toml");
    let text = std::fs::read_to_string(&panel).map_err(|e| e.to_string())?;
    write(&panel, &text.replace("@PANEL_MODEL@", &model.panel_model))?;
    for d in &daemons.daemon {
        let dst = sysroot.join("usr/bin").join(&d.binary);
        std::fs::copy(r.join("target/release").join(&d.binary), &dst)
            .map_err(|e| format!("cannot install {}: {e}", d.binary))?;
    }
    let store = sysroot.join("usr/share/lifeline/clients/linux-x86_64");
    std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
    std::fs::copy(
        r.join("target/release/lifeline-agent"),
        store.join("lifeline-agent"),
    )
    .map_err(|e| format!("cannot install the client: {e}"))?;
    let conf = std::fs::read_to_string(r.join("firmware/rauc/system.conf.in"))
        .map_err(|e| e.to_string())?;
    write(
        &sysroot.join("etc/rauc/system.conf"),
        &conf.replace("@COMPATIBLE@", &model.compatible),
    )?;
    std::fs::copy(
        r.join("firmware/keys/dev/ca.cert.pem"),
        sysroot.join("etc/rauc/keyring.pem"),
    )
    .map_err(|e| e.to_string())?;
    write(
        &sysroot.join("usr/lib/lifeline/version"),
        &format!(
            "version={}\nmodel={}\ncompatible={}\nbuild={}\n",
            env!("CARGO_PKG_VERSION"),
            model.model,
            model.compatible,
            build_id()
        ),
    )?;
    for d in ["data", "boot/state", "var/lib/lifeline", "var/log/journal"] {
        std::fs::create_dir_all(sysroot.join(d)).map_err(|e| e.to_string())?;
    }
    // An empty machine-id: systemd makes a transient one at boot on the read-only root.
    write(&sysroot.join("etc/machine-id"), "")?;
    let dbus_id = sysroot.join("var/lib/dbus/machine-id");
    let _ = std::fs::remove_file(&dbus_id);
    std::os::unix::fs::symlink("/etc/machine-id", &dbus_id).map_err(|e| e.to_string())?;
    let units: Vec<&str> = daemons.daemon.iter().map(|d| d.unit.as_str()).collect();
    let script = format!(
        "root=\"$1\"\n\
         chroot \"$root\" systemd-sysusers\n\
         chroot \"$root\" systemctl enable {units} systemd-networkd.service systemd-timesyncd.service nftables.service\n\
         chroot \"$root\" systemctl disable apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer 2>/dev/null || true\n\
         chroot \"$root\" dpkg-query -W -f '${{Package}} ${{Version}}\\n' > \"$root/usr/share/lifeline/packages.txt\"\n\
         rm -rf \"$root/var/lib/apt/lists\" \"$root/var/cache/apt\" \"$root/var/cache/debconf/\"*-old\n",
        units = units.join(" ")
    );
    run(
        Command::new("sh")
            .args(["-euc", &script, "sh"])
            .arg(sysroot),
        "configuring the root file system (users, units)",
    )
}

pub fn mkfs_ext4(dir: &Path, img: &Path, size_mib: u64, label: &str) -> Result {
    let _ = std::fs::remove_file(img);
    run(
        Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-L",
                label,
                "-E",
                "root_owner=0:0",
                "-O",
                "^orphan_file,^metadata_csum_seed",
                "-d",
            ])
            .arg(dir)
            .arg(img)
            .arg(format!("{size_mib}M")),
        &format!("mkfs.ext4 {}", img.display()),
    )
}

fn build_esp(work: &Path, esp: &Path, size_mib: u64) -> Result {
    let efi = work.join("BOOTX64.EFI");
    run(
        Command::new("grub-mkstandalone")
            .args([
                "-O",
                "x86_64-efi",
                "--locales=",
                "--fonts=",
                "--themes=",
                "--modules=part_gpt fat ext2 search search_label regexp loadenv test echo linux gzio serial terminal sleep reboot",
                "-o",
            ])
            .arg(&efi)
            .arg(format!(
                "boot/grub/grub.cfg={}",
                root().join("firmware/grub/grub.cfg").display()
            )),
        "grub-mkstandalone",
    )?;
    let _ = std::fs::remove_file(esp);
    run(
        Command::new("mkfs.vfat")
            .args(["-n", "ESP", "-i", "4c4c4553", "-C"])
            .arg(esp)
            .arg((size_mib * 1024).to_string()),
        "mkfs.vfat (ESP)",
    )?;
    let img = esp.display().to_string();
    sh(
        &format!(
            "mmd -i '{img}' ::/EFI ::/EFI/BOOT && mcopy -i '{img}' '{}' ::/EFI/BOOT/BOOTX64.EFI",
            efi.display()
        ),
        "copying GRUB into the ESP",
    )
}

fn build_boot_state(work: &Path, state: &Path, size_mib: u64) -> Result {
    let env = work.join("grubenv");
    let _ = std::fs::remove_file(&env);
    run(
        Command::new("grub-editenv").arg(&env).arg("create"),
        "grub-editenv create",
    )?;
    // A fresh disk boots slot A; slot B is empty until the first update.
    run(
        Command::new("grub-editenv").arg(&env).args([
            "set",
            "ORDER=A B",
            "A_OK=1",
            "A_TRY=0",
            "B_OK=0",
            "B_TRY=0",
        ]),
        "grub-editenv set",
    )?;
    let _ = std::fs::remove_file(state);
    run(
        Command::new("mkfs.vfat")
            .args(["-n", "BOOTSTATE", "-i", "4c4c5354", "-C"])
            .arg(state)
            .arg((size_mib * 1024).to_string()),
        "mkfs.vfat (boot-state)",
    )?;
    run(
        Command::new("mcopy")
            .arg("-i")
            .arg(state)
            .arg(&env)
            .arg("::/grubenv"),
        "copying the GRUB environment",
    )
}

fn build_data(work: &Path, sysroot: &Path, img: &Path, model: &Model, size_mib: u64) -> Result {
    let d = work.join("data");
    let etc = d.join("lifeline/etc");
    std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(d.join("journal")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(d.join("rauc")).map_err(|e| e.to_string())?;
    copy_tree(&sysroot.join("usr/share/lifeline/etc"), &etc)?;
    // Provisioning writes the factory data of a real box; a development image is "DEV".
    write(
        &etc.join("factory.toml"),
        &format!(
            "# Development image: provisioning writes the real serial number.\nserial = \"DEV-{}-0001\"\nmodel = \"{}\"\n",
            model.model.to_uppercase(),
            model.model
        ),
    )?;
    mkfs_ext4(&d, img, size_mib, "data")
}

fn build_disk(layout: &Layout, parts: &BTreeMap<&str, &Path>, img: &Path) -> Result {
    let total_mib: u64 = 1 + layout.partition.iter().map(|p| p.size_mib).sum::<u64>() + 1;
    let _ = std::fs::remove_file(img);
    let f = std::fs::File::create(img).map_err(|e| e.to_string())?;
    f.set_len(total_mib * 1024 * 1024)
        .map_err(|e| e.to_string())?;
    drop(f);
    let mut script = String::from(
        "label: gpt\nlabel-id: 6A1E5F3C-2B0D-4C8E-9F7A-1E0C5D2B4A00\nunit: sectors\nfirst-lba: 2048\n",
    );
    let mut start = 2048u64;
    let mut offsets = Vec::new();
    for p in &layout.partition {
        let sectors = p.size_mib * 2048;
        let _ = writeln!(
            script,
            "start={start}, size={sectors}, type={}, uuid={}, name=\"{}\"",
            p.type_guid, p.uuid, p.name
        );
        offsets.push((p.name.as_str(), start));
        start += sectors;
    }
    let mut c = Command::new("sfdisk");
    c.args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("cannot start sfdisk: {e}"))?;
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "sfdisk failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    for (name, off) in offsets {
        if let Some(src) = parts.get(name) {
            run(
                Command::new("dd")
                    .arg(format!("if={}", src.display()))
                    .arg(format!("of={}", img.display()))
                    .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
                    .arg(format!("seek={}", off / 2048)),
                &format!("writing partition {name}"),
            )?;
        }
    }
    Ok(())
}

/// Builds a signed verity bundle of `rootfs` (an ext4 image). `keyring` checks the
/// signature after signing; `None` skips that (for a bundle signed with a foreign key).
#[allow(clippy::too_many_arguments)]
pub fn make_bundle(
    rootfs: &Path,
    model: &Model,
    version: &str,
    build: &str,
    cert: &Path,
    key: &Path,
    keyring: Option<&Path>,
    out: &Path,
    scratch: &Path,
) -> Result {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let manifest = std::fs::read_to_string(root().join("firmware/rauc/manifest.raucm.in"))
        .map_err(|e| e.to_string())?
        .replace("@COMPATIBLE@", &model.compatible)
        .replace("@VERSION@", version)
        .replace("@MODEL@", &model.model.to_uppercase())
        .replace("@BUILD@", build);
    write(&scratch.join("manifest.raucm"), &manifest)?;
    if std::fs::hard_link(rootfs, scratch.join("rootfs.ext4")).is_err() {
        std::fs::copy(rootfs, scratch.join("rootfs.ext4")).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_file(out);
    let mut c = Command::new("rauc");
    c.arg("bundle")
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()));
    if let Some(k) = keyring {
        c.arg(format!("--signing-keyring={}", k.display()));
    }
    c.arg("--mksquashfs-args=-comp zstd -Xcompression-level 6 -b 1M")
        .arg(scratch)
        .arg(out);
    run(&mut c, "rauc bundle")?;
    std::fs::remove_dir_all(scratch).map_err(|e| e.to_string())
}

fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

fn dir_bytes(path: &Path) -> u64 {
    Command::new("du")
        .args(["-sb"])
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
