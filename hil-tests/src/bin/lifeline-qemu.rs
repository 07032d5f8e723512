//! `lifeline-qemu`: boots the firmware image for a person to try (run by `cargo xtask qemu`).
//!
//! The serial console is this terminal (Ctrl-A X quits QEMU, Ctrl-A C its monitor); the
//! panel emulator sits on the second serial port and its picture is kept in
//! `target/qemu/MODEL/panel.png`; the portal is at https://localhost:8443 (443 forwarded) and
//! http://localhost:8080 (80). The disk is a copy-on-write overlay in `target/qemu/MODEL/`
//! that survives restarts; `--fresh` starts from the built image again.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use lifeline_hil_tests::artifacts::Artifacts;
use lifeline_hil_tests::machine::{Console, Machine, Options, accel};
use lifeline_hil_tests::{image, workspace};

#[derive(serde::Deserialize)]
struct ModelFile {
    panel_model: lifeline_panel::driver::Model,
}

fn main() -> ExitCode {
    let mut model = "b200".to_string();
    let mut fresh = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => model = args.next().unwrap_or_default(),
            "--fresh" => fresh = true,
            other => {
                eprintln!("usage: lifeline-qemu [--model b200|b300] [--fresh] (unknown `{other}`)");
                return ExitCode::from(2);
            }
        }
    }
    let path = workspace().join(format!("firmware/models/{model}.toml"));
    let panel = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str::<ModelFile>(&t).map_err(|e| e.to_string()))
    {
        Ok(m) => m.panel_model,
        Err(e) => {
            eprintln!(
                "lifeline-qemu: unknown model `{model}` ({}: {e})",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    let built = match image::ensure(&model) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("lifeline-qemu: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = workspace().join("target/qemu").join(&model);
    if fresh {
        let _ = std::fs::remove_dir_all(&state);
    }
    let (accel_name, _) = accel();
    eprintln!(
        "\n  Lifeline {model} in QEMU ({accel_name})\n  Portal:   https://localhost:8443/ (self-signed certificate)\n  \
         Panel:    {}/panel.png (updated every second)\n  Shell:    socat -,raw,echo=0 UNIX-CONNECT:{}/hil.sock (root, development image)\n  \
         Console:  this terminal; Ctrl-A X quits\n",
        state.display(),
        state.display()
    );
    let opts = Options {
        panel: Some(panel),
        console: Console::Terminal,
        https_port: 8443,
        http_port: 8080,
        state_dir: Some(state.clone()),
        ..Options::default()
    };
    let art = Artifacts { dir: state.clone() };
    let mut m = match Machine::boot(&built, &opts, art) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("lifeline-qemu: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The harness holds the channel socket; hand it to a person instead.
    drop(std::mem::replace(
        &mut m.shell,
        lifeline_hil_tests::shell::Shell::new(
            Box::new(std::io::empty()),
            Box::new(std::io::sink()),
        ),
    ));
    let png = state.join("panel.png");
    while m.running() {
        if let Some(p) = &m.panel {
            let _ = p.save_png(&png);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    ExitCode::SUCCESS
}
