//! The X11 clipboard against a real Xvfb server and real clipboard clients (`xclip`): text
//! copied by another client arrives on the channel (UTF-8 intact, oversized copies
//! dropped), `set_text` is what other clients paste, and our own text is never echoed.
#![cfg(target_os = "linux")]

mod clipboard_owner;
mod input_xvfb;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use input_xvfb::{WAIT, Xvfb, wait_for};
use lifeline_agent::platform::linux::clipboard::{ClipboardError, X11Clipboard};
use lifeline_proto::remote::MAX_CLIPBOARD_BYTES;
use tokio::sync::mpsc;

/// `xclip` owning the clipboard with `text` until it loses it; killed on drop.
struct XclipOwner(Child);

impl XclipOwner {
    fn copy(x: &Xvfb, text: &str) -> XclipOwner {
        let mut child = Command::new("xclip")
            .args(["-selection", "clipboard", "-i", "-quiet"])
            .env("DISPLAY", &x.display)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xclip must be installed (Debian package xclip)");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes()).unwrap();
        drop(stdin);
        XclipOwner(child)
    }
}

impl Drop for XclipOwner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `xclip -o` pastes from the clipboard as `target`, if it succeeds.
fn paste(x: &Xvfb, target: &str) -> Option<String> {
    let out = Command::new("xclip")
        .args(["-selection", "clipboard", "-o", "-t", target])
        .env("DISPLAY", &x.display)
        .stderr(Stdio::null())
        .output()
        .expect("xclip must be installed (Debian package xclip)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn next(rx: &mut mpsc::Receiver<String>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("clipboard text in time")
        .expect("clipboard channel open")
}

const TEXT: &str = "Grüße, élève @€{ 日本語\n\tzweite Zeile";

#[tokio::test]
async fn copies_from_other_clients_arrive() {
    let x = Xvfb::start();
    let (tx, mut rx) = mpsc::channel(8);
    let _clip = X11Clipboard::start(Some(&x.display), tx).unwrap();

    let _owner = XclipOwner::copy(&x, TEXT);
    assert_eq!(next(&mut rx).await, TEXT);

    // Too large: dropped; the next ordinary copy still arrives.
    let big = "x".repeat(MAX_CLIPBOARD_BYTES + 1);
    let _big = XclipOwner::copy(&x, &big);
    wait_for("xclip to own the large text", || {
        (paste(&x, "UTF8_STRING")?.len() == big.len()).then_some(())
    });
    let _small = XclipOwner::copy(&x, "small");
    assert_eq!(next(&mut rx).await, "small");

    // Exactly the bound is fine.
    let edge = "é".repeat(MAX_CLIPBOARD_BYTES / 2);
    let _edge = XclipOwner::copy(&x, &edge);
    assert_eq!(next(&mut rx).await, edge);
}

#[tokio::test]
async fn set_text_is_pasted_by_others_and_not_echoed() {
    let x = Xvfb::start();
    let (tx, mut rx) = mpsc::channel(8);
    let clip = X11Clipboard::start(Some(&x.display), tx).unwrap();

    clip.set_text(TEXT.to_owned()).unwrap();
    wait_for("xclip to paste our text", || {
        (paste(&x, "UTF8_STRING")? == TEXT).then_some(())
    });
    let targets = paste(&x, "TARGETS").unwrap();
    for t in ["UTF8_STRING", "TEXT", "STRING", "TARGETS"] {
        assert!(targets.lines().any(|l| l == t), "{t} in {targets:?}");
    }
    // STRING is Latin-1: what it cannot hold becomes '?'.
    clip.set_text("élève 5€".to_owned()).unwrap();
    wait_for("the second text", || {
        (paste(&x, "UTF8_STRING")? == "élève 5€").then_some(())
    });
    let latin1 = Command::new("xclip")
        .args(["-selection", "clipboard", "-o", "-t", "STRING"])
        .env("DISPLAY", &x.display)
        .output()
        .unwrap()
        .stdout;
    assert_eq!(latin1, b"\xe9l\xe8ve 5?");

    // Our own text never comes back; the next copy by someone else does.
    let _owner = XclipOwner::copy(&x, "from the customer");
    assert_eq!(next(&mut rx).await, "from the customer");

    // Too large for the protocol: refused at once.
    assert!(matches!(
        clip.set_text("y".repeat(MAX_CLIPBOARD_BYTES + 1)),
        Err(ClipboardError::TooLarge { .. })
    ));

    // Dropping the handle stops the thread and closes the channel.
    drop(clip);
    assert_eq!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap(), None);
}

#[tokio::test]
async fn incremental_transfers_within_and_beyond_the_bound() {
    let x = Xvfb::start();
    let (tx, mut rx) = mpsc::channel(8);
    let _clip = X11Clipboard::start(Some(&x.display), tx).unwrap();

    // 20 KiB in 4 KiB chunks: arrives whole.
    let text: String = (0..20 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let owner = clipboard_owner::IncrOwner::start(&x.display, text.clone().into_bytes(), 4096);
    assert_eq!(next(&mut rx).await, text);
    assert!(owner.finished(Duration::from_secs(5)), "the owner finished");

    // 100 KiB in chunks: acknowledged to the end but dropped; the next copy arrives.
    let big = vec![b'z'; 100 * 1024];
    let owner = clipboard_owner::IncrOwner::start(&x.display, big, 8192);
    assert!(owner.finished(WAIT), "the oversized transfer was drained");
    let _small = XclipOwner::copy(&x, "after");
    assert_eq!(next(&mut rx).await, "after");
}

/// The session moves both handles into its tasks.
#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<X11Clipboard>();
    check::<lifeline_agent::platform::linux::input::X11Input>();
}
