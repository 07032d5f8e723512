//! Golden files: every screen at 128x64 and 244x68 as PNG, and as 20x4 text.
//!
//! A rendering that differs from `tests/golden/<name>.png` fails the test, and the actual
//! picture and a diff (differing pixels red) are written to
//! `target/artifacts/panel/<name>.actual.png` and `<name>.diff.png`. Run with
//! `LIFELINE_GOLDEN=overwrite` to accept the new renderings.

use std::path::{Path, PathBuf};

use lifeline_panel::framebuffer::{FrameBuffer, diff_png};
use lifeline_panel::screens::{gallery, render_bitmap, render_text};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn artifacts_dir() -> PathBuf {
    // CARGO_MANIFEST_DIR is services/panel; the workspace target dir is two levels up.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            manifest
                .parent()
                .and_then(Path::parent)
                .unwrap_or(manifest)
                .join("target")
        });
    let dir = target.join("artifacts/panel");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn overwrite() -> bool {
    std::env::var("LIFELINE_GOLDEN").is_ok_and(|v| v == "overwrite")
}

#[test]
fn screens_match_golden_files() {
    let mut failures = Vec::new();
    std::fs::create_dir_all(golden_dir()).unwrap();
    for (name, screen) in gallery() {
        for (w, h) in [(128, 64), (244, 68)] {
            let file = format!("{name}-{w}x{h}");
            let golden = golden_dir().join(format!("{file}.png"));
            let actual = render_bitmap(&screen, w, h);
            if overwrite() {
                actual.save_png(&golden).unwrap();
                continue;
            }
            let expected = FrameBuffer::load_png(&golden).ok();
            if expected.as_ref() != Some(&actual) {
                let dir = artifacts_dir();
                let actual_path = dir.join(format!("{file}.actual.png"));
                actual.save_png(&actual_path).unwrap();
                let mut msg = format!(
                    "{} differs: see {}",
                    golden.display(),
                    actual_path.display()
                );
                if let Some(expected) = expected {
                    let diff_path = dir.join(format!("{file}.diff.png"));
                    diff_png(&expected, &actual, &diff_path).unwrap();
                    msg.push_str(&format!(" and {}", diff_path.display()));
                } else {
                    msg.push_str(" (golden file missing or unreadable)");
                }
                failures.push(msg);
            }
        }
        let file = format!("{name}-20x4");
        let golden = golden_dir().join(format!("{file}.txt"));
        let text = render_text(&screen).map(|r| format!("|{r}|\n")).concat();
        if overwrite() {
            std::fs::write(&golden, &text).unwrap();
            continue;
        }
        if std::fs::read_to_string(&golden).ok().as_deref() != Some(text.as_str()) {
            let actual_path = artifacts_dir().join(format!("{file}.actual.txt"));
            std::fs::write(&actual_path, &text).unwrap();
            failures.push(format!(
                "{} differs: see {}",
                golden.display(),
                actual_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rendering(s) changed (LIFELINE_GOLDEN=overwrite accepts them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
