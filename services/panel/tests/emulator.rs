//! End to end over a real pseudo-terminal: driver and service against the panel emulator.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use lifeline_panel::driver::{CharDisplay, Display, GraphicDisplay, Model};
use lifeline_panel::emulator::Emulator;
use lifeline_panel::link::{self, Key, KeyEvent, Link};
use lifeline_panel::menu::Action;
use lifeline_panel::packet::{Packet, PacketType};
use lifeline_panel::screens::{Screen, render_bitmap, render_text};
use lifeline_panel::service::{self, Hooks, Options};
use lifeline_panel::status::{Alert, FixedSource, State, sample};

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn graphic_driver_draws_status_into_emulator_frame_buffer() {
    for model in [Model::Graphic128x64, Model::Graphic244x68] {
        let emu = Emulator::start(model).unwrap();
        let port = link::open_serial(emu.path(), 115_200).unwrap();
        let mut d = GraphicDisplay::new(port, model);
        d.init().unwrap();
        let screen = Screen::Status(sample());
        d.show(&screen).unwrap();
        d.set_backlight(37).unwrap();
        let (w, h) = model.pixels().unwrap();
        let snap = emu.snapshot();
        assert_eq!(snap.frame, render_bitmap(&screen, w, h), "{model}");
        assert_eq!(snap.backlight, 37);
        assert_eq!(snap.errors, 0);
        // A second, different screen: only changed chunks go out, the result is still exact.
        let next = Screen::Alerts(sample());
        d.show(&next).unwrap();
        assert_eq!(emu.snapshot().frame, render_bitmap(&next, w, h), "{model}");
    }
}

#[test]
fn char_driver_writes_rows_into_emulator() {
    let emu = Emulator::start(Model::Char20x4).unwrap();
    let port = link::open_serial(emu.path(), 115_200).unwrap();
    let mut d = CharDisplay::new(port);
    d.init().unwrap();
    let screen = Screen::Status(sample());
    d.show(&screen).unwrap();
    assert_eq!(emu.snapshot().rows, render_text(&screen));
    let pic = emu.picture();
    assert!(pic.width() > 100 && pic.height() > 40);
}

#[test]
fn emulator_refuses_bad_crc_unknown_and_wrong_model_commands() {
    let emu = Emulator::start(Model::Char20x4).unwrap();
    let mut link = Link::new(link::open_serial(emu.path(), 115_200).unwrap(), 22)
        .with_timeout(Duration::from_millis(100))
        .with_retries(0);
    assert!(matches!(
        link.command(0x3E, &[]),
        Err(link::LinkError::Refused { .. })
    ));
    assert!(matches!(
        link.command(0x28, &[0, 0, 1]),
        Err(link::LinkError::Refused { .. })
    ));
    assert!(matches!(
        link.command(0x0E, &[101]),
        Err(link::LinkError::Refused { .. })
    ));
    // A command with a broken CRC gets an error packet for that command.
    let mut bad = Packet::command(0x06, &[]).unwrap().encode();
    bad[2] ^= 1;
    let errors_before = emu.snapshot().errors;
    link.transport_mut().write_all_bytes(&bad);
    let (_, ok) = emu.wait_for(WAIT, |s| s.errors > errors_before);
    assert!(ok, "no error reply for a bad CRC");
    assert_eq!(link.command(0x00, b"still fine").unwrap(), b"still fine");
}

#[test]
fn graphics_sub_commands_like_the_module() {
    use lifeline_panel::driver::{cmd, gfx};
    let emu = Emulator::start(Model::Graphic128x64).unwrap();
    let mut link = Link::new(link::open_serial(emu.path(), 115_200).unwrap(), 122)
        .with_timeout(Duration::from_millis(200))
        .with_retries(0);
    // At power-on a write shows at once; the reply echoes the sub-command.
    let reply = link
        .command(cmd::GRAPHICS, &[gfx::WRITE, 8, 2, 8, 1, 0b1000_0001])
        .unwrap();
    assert_eq!(reply, [gfx::WRITE]);
    let s = emu.snapshot();
    assert!(s.frame.get(8, 2) && s.frame.get(15, 2) && !s.frame.get(9, 2));
    assert_eq!(s.frames_shown, 1);
    // With manual flushing, a write waits for the flush.
    link.command(cmd::GRAPHICS, &[gfx::OPTIONS, gfx::MANUAL_FLUSH])
        .unwrap();
    link.command(cmd::GRAPHICS, &[gfx::WRITE, 0, 0, 8, 1, 0xFF])
        .unwrap();
    assert!(!emu.snapshot().frame.get(0, 0), "shown before the flush");
    assert_eq!(
        link.command(cmd::GRAPHICS, &[gfx::FLUSH]).unwrap(),
        [gfx::FLUSH]
    );
    assert!(emu.snapshot().frame.get(7, 0));
    // Outside the screen, short pixel data, unknown or drawing sub-commands: error packets.
    for bad in [
        vec![gfx::WRITE, 124, 0, 8, 1, 0xFF],
        vec![gfx::WRITE, 0, 63, 8, 2, 0xFF, 0xFF],
        vec![gfx::WRITE, 0, 0, 16, 1, 0xFF],
        vec![5, 1, 1, 255],
        vec![0x7F],
        vec![],
    ] {
        assert!(
            matches!(
                link.command(cmd::GRAPHICS, &bad),
                Err(link::LinkError::Refused { .. })
            ),
            "{bad:?}"
        );
    }
}

trait WriteAll {
    fn write_all_bytes(&mut self, b: &[u8]);
}
impl<T: std::io::Write> WriteAll for T {
    fn write_all_bytes(&mut self, b: &[u8]) {
        self.write_all(b).unwrap();
    }
}

#[test]
fn hostile_bytes_do_not_break_the_driver() {
    let model = Model::Graphic128x64;
    let emu = Emulator::start(model).unwrap();
    let mut d = GraphicDisplay::new(link::open_serial(emu.path(), 115_200).unwrap(), model);
    d.init().unwrap();
    // Deterministic noise: random bytes, headers with impossible lengths, replies and error
    // packets for commands nobody sent, broken key reports, a header that never completes.
    let mut noise = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    noise.extend([0x5F, 0xFF, 0xC0, 0x30]);
    noise.extend(
        Packet::new(PacketType::Reply, 0x29, b"stale")
            .unwrap()
            .encode(),
    );
    noise.extend(Packet::new(PacketType::Error, 0x05, &[]).unwrap().encode());
    noise.extend(Packet::new(PacketType::Report, 0, &[99]).unwrap().encode());
    noise.extend([0x40, 20, 1, 2]);
    for (i, screen) in [
        Screen::Status(sample()),
        Screen::Alerts(sample()),
        Screen::Starting,
    ]
    .iter()
    .enumerate()
    {
        emu.inject_raw(&noise[i * 1000..(i + 1) * 1000]);
        emu.inject_raw(&noise[3000..]);
        d.show(screen).unwrap();
        assert_eq!(emu.snapshot().frame, render_bitmap(screen, 128, 64));
    }
    // Keys still come through after the noise.
    emu.inject_raw(&noise[..500]);
    emu.press(Key::Left);
    let mut keys = Vec::new();
    for _ in 0..40 {
        keys.extend(d.poll_keys(Duration::from_millis(50)).unwrap());
        if keys.contains(&KeyEvent {
            key: Key::Left,
            pressed: false,
        }) {
            break;
        }
    }
    assert!(
        keys.contains(&KeyEvent {
            key: Key::Left,
            pressed: true
        }),
        "{keys:?}"
    );
    d.ping().unwrap();
}

struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    actions: mpsc::Receiver<Action>,
    connects: Arc<AtomicUsize>,
    source: FixedSource,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start_service(device: &std::path::Path, model: Model) -> Running {
    let mut opts = Options::new(device.to_owned(), 115_200, model, Duration::ZERO);
    opts.boot_hold = Duration::ZERO;
    opts.retry_every = Duration::from_millis(50);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, actions) = mpsc::channel();
    let tx = Mutex::new(tx);
    let connects = Arc::new(AtomicUsize::new(0));
    let source = FixedSource::new(Some(sample()));
    let thread = {
        let stop = Arc::clone(&stop);
        let connects = Arc::clone(&connects);
        let mut source = source.clone();
        std::thread::spawn(move || {
            let mut hooks = Hooks {
                on_action: Box::new(move |a| tx.lock().unwrap().send(a).unwrap()),
                on_connect: Box::new(move || {
                    connects.fetch_add(1, Ordering::SeqCst);
                }),
                ..Hooks::default()
            };
            service::run(&opts, &mut source, &mut hooks, &stop);
        })
    };
    Running {
        stop,
        thread: Some(thread),
        actions,
        connects,
        source,
    }
}

fn wait_shows(emu: &Emulator, screen: &Screen, within: Duration) {
    let (w, h) = emu.model().pixels().unwrap();
    let want = render_bitmap(screen, w, h);
    let (snap, ok) = emu.wait_for(within, |s| s.frame == want);
    if !ok {
        let dir = std::env::temp_dir();
        let _ = snap.frame.save_png(&dir.join("panel-e2e-actual.png"));
        panic!("emulator did not show {screen:?} within {within:?}");
    }
}

#[test]
fn key_presses_walk_the_menu_and_produce_actions() {
    let emu = Emulator::start(Model::Graphic244x68).unwrap();
    let svc = start_service(emu.path(), Model::Graphic244x68);
    wait_shows(&emu, &Screen::Status(sample()), WAIT);

    // Enter opens the menu.
    emu.press(Key::Enter);
    let menu = Screen::Menu {
        title: "Menu".into(),
        items: lifeline_panel::menu::MAIN_ITEMS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        selected: 0,
    };
    wait_shows(&emu, &menu, WAIT);

    // Reboot: Down x3, Enter, Enter (are you sure), Enter (really).
    for k in [
        Key::Down,
        Key::Down,
        Key::Down,
        Key::Enter,
        Key::Enter,
        Key::Enter,
    ] {
        emu.press(k);
    }
    assert_eq!(svc.actions.recv_timeout(WAIT).unwrap(), Action::Reboot);

    // Exit returns to status; then set eth0 to a static address digit by digit.
    emu.press(Key::Exit);
    wait_shows(&emu, &Screen::Status(sample()), WAIT);
    let mut keys = vec![
        Key::Enter,
        Key::Down,
        Key::Enter,
        Key::Enter,
        Key::Down,
        Key::Enter,
    ];
    keys.extend([Key::Right; 11]);
    keys.extend([Key::Up, Key::Up, Key::Enter, Key::Enter]);
    for k in keys {
        emu.press(k);
    }
    assert_eq!(
        svc.actions.recv_timeout(WAIT).unwrap(),
        Action::SetStatic {
            iface: "eth0".into(),
            addr: "192.0.2.12".parse().unwrap(),
            prefix: 24
        }
    );
    emu.press(Key::Exit);

    // A status change reaches the panel within a second.
    let mut degraded = sample();
    degraded.state = State::Degraded;
    degraded.alerts.push(Alert::UpdateFailed {
        reason: "bad signature".into(),
    });
    svc.source.set(Some(degraded.clone()));
    wait_shows(&emu, &Screen::Status(degraded), Duration::from_secs(1));
}

#[test]
fn unplug_and_replug_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let link_path = dir.path().join("panel-tty");
    let model = Model::Graphic128x64;
    let emu = Emulator::start_linked(model, &link_path).unwrap();
    let svc = start_service(&link_path, model);
    wait_shows(&emu, &Screen::Status(sample()), WAIT);
    assert_eq!(svc.connects.load(Ordering::SeqCst), 1);

    // Unplug: the emulator goes away (the link path disappears with it).
    drop(emu);
    assert!(!link_path.exists());
    std::thread::sleep(Duration::from_millis(300));

    // Replug: a new emulator at the same path gets the picture again.
    let emu = Emulator::start_linked(model, &link_path).unwrap();
    wait_shows(&emu, &Screen::Status(sample()), WAIT);
    assert!(svc.connects.load(Ordering::SeqCst) >= 2);
    // And it answers keys.
    emu.press(Key::Down);
    wait_shows(
        &emu,
        &Screen::Network {
            iface: sample().interfaces[0].clone(),
            index: 0,
            count: 2,
        },
        WAIT,
    );
}

#[test]
fn absent_device_waits_quietly_then_connects() {
    let dir = tempfile::tempdir().unwrap();
    let link_path = dir.path().join("later-tty");
    let model = Model::Char20x4;
    let svc = start_service(&link_path, model);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(svc.connects.load(Ordering::SeqCst), 0);
    let emu = Emulator::start_linked(model, &link_path).unwrap();
    let want = render_text(&Screen::Status(sample()));
    let (snap, ok) = emu.wait_for(WAIT, |s| s.rows == want);
    assert!(ok, "{:?}", snap.rows);
}
