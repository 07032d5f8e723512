//! The image under test: built (or found up to date) by `cargo xtask image --if-stale`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::workspace;

/// What `cargo xtask image` produced for one model.
#[derive(Debug, Clone)]
pub struct Built {
    pub model: String,
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
}

static BUILD: Mutex<()> = Mutex::new(());

/// Builds the image of `model` when it is missing or older than its inputs.
pub fn ensure(model: &str) -> Result<Built, String> {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = workspace().join("target/image").join(model);
    eprintln!(
        "hil: checking the {model} firmware image (`cargo xtask image --model {model} --if-stale`; \
         a first build takes a few minutes)"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["xtask", "image", "--model", model, "--if-stale"])
        .output()
        .map_err(|e| format!("cannot run cargo xtask image: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the {model} image failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let built = Built {
        model: model.into(),
        disk: dir.join(format!("lifeline-{model}.img")),
        bundle: dir.join(format!("lifeline-{model}.raucb")),
        rootfs: dir.join("rootfs.ext4"),
        dir,
    };
    for p in [&built.disk, &built.bundle, &built.rootfs] {
        if !p.is_file() {
            return Err(format!("the image build did not produce {}", p.display()));
        }
    }
    Ok(built)
}
