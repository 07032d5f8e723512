//! `cargo xtask yocto [--check]`: keeps the Yocto layer true to the workspace.
//!
//! Without `--check` it writes `yocto/meta-lifeline/recipes-lifeline/lifeline/
//! lifeline-crates.inc` from `Cargo.lock` (bitbake's `update_crates` task does the same
//! where bitbake exists). With `--check` (run by `cargo xtask test`) it changes nothing and
//! fails when:
//! - `lifeline-crates.inc` differs from what `Cargo.lock` gives (stale);
//! - the wks file's partitions differ from `firmware/layout.toml`;
//! - the recipe's daemon packages differ from `firmware/daemons.toml`;
//! - a file of the `rootfs/` overlay is installed by no recipe (a symbolic link: its target
//!   appears in none), so the Yocto image would lack what the development image has;
//! - `oelint-adv` (pinned, release scarthgap) reports anything on any recipe;
//! - a kas file does not validate against the schema of the pinned kas.
//!
//! `oelint-adv` and `kas` are installed from PyPI into `target/yocto-tools/venv`, so
//! nothing global is needed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::{daemons, layout};
use crate::{Result, root, step};

const OELINT_ADV: &str = "oelint-adv==9.11.2";
const KAS: &str = "kas==5.5";
const CRATES_INC: &str = "yocto/meta-lifeline/recipes-lifeline/lifeline/lifeline-crates.inc";
const RECIPE: &str = "yocto/meta-lifeline/recipes-lifeline/lifeline/lifeline_0.1.0.bb";
const WKS: &str = "yocto/meta-lifeline/wic/lifeline.wks";

#[derive(serde::Deserialize)]
struct Lock {
    package: Vec<LockedPackage>,
}

#[derive(serde::Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// `lifeline-crates.inc` as `Cargo.lock` gives it.
pub fn crates_inc() -> Result<String> {
    let path = root().join("Cargo.lock");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lock: Lock =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let mut crates: Vec<&LockedPackage> = lock
        .package
        .iter()
        .filter(|p| {
            p.source
                .as_deref()
                .is_some_and(|s| s == "registry+https://github.com/rust-lang/crates.io-index")
        })
        .collect();
    if let Some(p) = lock.package.iter().find(|p| {
        p.source
            .as_deref()
            .is_some_and(|s| !s.starts_with("registry+"))
    }) {
        return Err(format!(
            "Cargo.lock: {} {} comes from {}; the Yocto recipe only fetches crates.io crates",
            p.name,
            p.version,
            p.source.as_deref().unwrap_or("")
        ));
    }
    crates.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    let mut out = String::from(
        "# Generated from Cargo.lock by `cargo xtask yocto`; do not edit.\n\
         # `cargo xtask test` fails when this file is stale.\n\n\
         SRC_URI += \"",
    );
    for (i, c) in crates.iter().enumerate() {
        let indent = if i == 0 { "" } else { "            " };
        let _ = write!(out, "{indent}crate://crates.io/{}/{}", c.name, c.version);
        out.push_str(if i + 1 == crates.len() {
            "\"\n"
        } else {
            " \\\n"
        });
    }
    out.push('\n');
    for c in &crates {
        let sum = c
            .checksum
            .as_deref()
            .ok_or_else(|| format!("Cargo.lock: {} {} has no checksum", c.name, c.version))?;
        let _ = writeln!(
            out,
            "SRC_URI[{}-{}.sha256sum] = \"{sum}\"",
            c.name, c.version
        );
    }
    Ok(out)
}

pub fn yocto(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        None => {
            let text = crates_inc()?;
            let path = root().join(CRATES_INC);
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {CRATES_INC}");
            Ok(())
        }
        Some("--check") => check(),
        Some(other) => Err(format!(
            "unknown argument `{other}`; usage: cargo xtask yocto [--check]"
        )),
    }
}

pub fn check() -> Result {
    step("Yocto layer: crates.inc, partition layout, daemon packages, overlay files");
    let want = crates_inc()?;
    let have = std::fs::read_to_string(root().join(CRATES_INC)).unwrap_or_default();
    if want != have {
        return Err(format!(
            "{CRATES_INC} is stale (Cargo.lock changed): run `cargo xtask yocto` and commit it"
        ));
    }
    check_layout()?;
    check_daemons()?;
    check_overlay()?;
    let venv = tools()?;
    step("Yocto layer: oelint-adv (release scarthgap)");
    let files = recipes(&root().join("yocto/meta-lifeline"))?;
    let out = Command::new(venv.join("bin/oelint-adv"))
        // The homepage check pings the network, which CI does not reach; the constants file
        // names the variables of meta-rauc and of this layer.
        .args([
            "--release",
            "scarthgap",
            "--quiet",
            "--suppress",
            "oelint.vars.homepageping",
            "--constantmods=+yocto/oelint-constants.json",
            "--",
        ])
        .args(&files)
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run oelint-adv: {e}"))?;
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !findings.trim().is_empty() {
        return Err(format!("oelint-adv found problems:\n{findings}"));
    }
    step("Yocto layer: kas files against the kas schema");
    let script = "import json, sys, yaml, jsonschema, kas, os\n\
        schema = json.load(open(os.path.join(os.path.dirname(kas.__file__), 'schema-kas.json')))\n\
        bad = 0\n\
        for f in sys.argv[1:]:\n\
        \x20   try:\n\
        \x20       jsonschema.validate(yaml.safe_load(open(f)), schema)\n\
        \x20   except jsonschema.ValidationError as e:\n\
        \x20       bad += 1\n\
        \x20       print(f'{f}: {e.message} (at {\"/\".join(str(p) for p in e.absolute_path)})')\n\
        sys.exit(1 if bad else 0)\n";
    let mut kas_files: Vec<PathBuf> = std::fs::read_dir(root().join("yocto/kas"))
        .map_err(|e| format!("cannot read yocto/kas: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    kas_files.sort();
    let out = Command::new(venv.join("bin/python3"))
        .arg("-c")
        .arg(script)
        .args(&kas_files)
        .output()
        .map_err(|e| format!("cannot run the kas schema check: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kas files do not validate:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!(
        "Yocto layer: {} recipes lint clean, {} kas files valid, crates.inc current",
        files.len(),
        kas_files.len()
    );
    Ok(())
}

/// The venv with the pinned linters, made on first use.
fn tools() -> Result<PathBuf> {
    let venv = root().join("target/yocto-tools/venv");
    let stamp = venv.join("lifeline-pins");
    let pins = format!("{OELINT_ADV} {KAS}");
    // A venv's scripts name its interpreter by absolute path: one that was moved with its
    // target folder no longer runs and is made again.
    let runs = || {
        Command::new(venv.join("bin/oelint-adv"))
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins) && runs() {
        return Ok(venv);
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .map_err(|e| format!("cannot remove {}: {e}", venv.display()))?;
    }
    step(&format!(
        "installing {OELINT_ADV} and {KAS} into target/yocto-tools/venv"
    ));
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(
            "cannot make a Python venv: install Debian's python3-venv (cargo xtask deps does)"
                .into(),
        );
    }
    let ok = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            OELINT_ADV,
            KAS,
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(format!(
            "pip could not install {OELINT_ADV} and {KAS} from PyPI"
        ));
    }
    std::fs::write(&stamp, pins).map_err(|e| e.to_string())?;
    Ok(venv)
}

fn recipes(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "bb" || x == "bbappend") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The wks file's partitions must be those of `firmware/layout.toml`, in order.
fn check_layout() -> Result {
    let layout = layout()?;
    let text =
        std::fs::read_to_string(root().join(WKS)).map_err(|e| format!("cannot read {WKS}: {e}"))?;
    let parts: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("part "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let opt = |words: &[&str], key: &str| -> Option<String> {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    if parts.len() != layout.partition.len() {
        return Err(format!(
            "{WKS} has {} partitions, firmware/layout.toml {}",
            parts.len(),
            layout.partition.len()
        ));
    }
    for (words, p) in parts.iter().zip(&layout.partition) {
        let got = (
            opt(words, "--part-name"),
            opt(words, "--fixed-size"),
            opt(words, "--uuid").map(|s| s.to_lowercase()),
            opt(words, "--part-type").map(|s| s.to_uppercase()),
        );
        let want = (
            Some(p.name.clone()),
            Some(format!("{}M", p.size_mib)),
            Some(p.uuid.to_lowercase()),
            Some(p.type_guid.to_uppercase()),
        );
        if got != want {
            return Err(format!(
                "{WKS}: partition {} differs from firmware/layout.toml: wks has {got:?}, layout {want:?}",
                p.name
            ));
        }
        let fs = opt(words, "--fstype");
        if fs.is_some() && fs.as_deref() != Some(p.fs.as_str()) {
            return Err(format!(
                "{WKS}: partition {} is {} in the wks file and {} in firmware/layout.toml",
                p.name,
                fs.unwrap_or_default(),
                p.fs
            ));
        }
    }
    Ok(())
}

/// Overlay files the recipes take in another way than by their path, and why.
const OVERLAY_ELSEWHERE: &[(&str, &str)] = &[
    ("README.md", "documentation, not installed"),
    (
        "etc/fstab",
        "base-files' own fstab, taken from rootfs/etc by base-files_%.bbappend",
    ),
    (
        "etc/hosts",
        "base-files' own hosts, taken from rootfs/etc by base-files_%.bbappend",
    ),
    (
        "usr/lib/sysusers.d/lifeline.conf",
        "the same users are made by USERADD_PARAM in the lifeline recipe",
    ),
];

/// Every file of `rootfs/` must be installed by some recipe of the layer: its path (relative
/// to `rootfs/`) appears in a recipe (or its folder and its name do), or for a symbolic link
/// its target does.
fn check_overlay() -> Result {
    let overlay = root().join("rootfs");
    let mut texts = String::new();
    let mut stack = vec![root().join("yocto/meta-lifeline")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "bb" || x == "bbappend" || x == "inc")
            {
                texts.push_str(&std::fs::read_to_string(&p).map_err(|e| e.to_string())?);
            }
        }
    }
    let mut missing = Vec::new();
    let mut stack = vec![overlay.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            let meta = std::fs::symlink_metadata(&p).map_err(|e| e.to_string())?;
            let rel = p
                .strip_prefix(&overlay)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                stack.push(p);
                continue;
            }
            if OVERLAY_ELSEWHERE.iter().any(|(f, _)| *f == rel) {
                continue;
            }
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).map_err(|e| e.to_string())?;
                if !texts.contains(&*target.to_string_lossy()) {
                    missing.push(format!("{rel} (a link to {})", target.display()));
                }
            } else {
                // Named whole, or its folder and its name apart (a loop over unit names).
                let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
                let named = texts.contains(&rel)
                    || (texts.contains(&format!("{dir}/")) && texts.contains(name));
                if !named {
                    missing.push(rel);
                }
            }
        }
    }
    missing.sort();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "no Yocto recipe installs these files of rootfs/ (the development image has them): {}",
            missing.join(", ")
        ))
    }
}

/// The recipe must package exactly the daemons of `firmware/daemons.toml`.
fn check_daemons() -> Result {
    let d = daemons()?;
    let text = std::fs::read_to_string(root().join(RECIPE))
        .map_err(|e| format!("cannot read {RECIPE}: {e}"))?;
    let mut in_recipe: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("SYSTEMD_SERVICE:${PN}-")?;
            let (name, unit) = rest.split_once('=')?;
            Some((
                name.trim().to_string(),
                unit.trim().trim_matches('"').to_string(),
            ))
        })
        .collect();
    in_recipe.sort();
    let mut want: Vec<(String, String)> = d
        .daemon
        .iter()
        .map(|x| (x.name.clone(), x.unit.clone()))
        .collect();
    want.sort();
    if in_recipe != want {
        return Err(format!(
            "{RECIPE} packages {in_recipe:?} but firmware/daemons.toml lists {want:?}"
        ));
    }
    for x in &d.daemon {
        if !text.contains(&format!("-p {}", x.krate)) {
            return Err(format!(
                "{RECIPE} does not build {} (`-p {}`)",
                x.name, x.krate
            ));
        }
    }
    Ok(())
}
