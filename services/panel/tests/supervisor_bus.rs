//! The panel service (the real binary) on a real private `dbus-daemon`, driving the pty
//! emulator, with a test supervisor serving `org.lifeline.Supervisor1` from this process:
//! "starting" without the supervisor; its status on the screen once it appears; a change
//! signal reaches the emulator's frame buffer within a second; key presses walk the menu
//! and the reboot reaches the supervisor as a D-Bus call; an Identify asked elsewhere blinks
//! the backlight; the web mirror `org.lifeline.Panel1` shows the picture and presses keys.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeline_panel::bus::to_panel;
use lifeline_panel::driver::Model;
use lifeline_panel::emulator::Emulator;
use lifeline_panel::link::Key;
use lifeline_panel::menu::Menu;
use lifeline_panel::screens::render_bitmap;
use lifeline_supervisor_api::{self as api, ApplianceStatus, OverallState};
use zbus::object_server::SignalEmitter;

const BIN: &str = env!("CARGO_BIN_EXE_lifeline-panel");
const MODEL: Model = Model::Graphic244x68;

struct TestBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl TestBus {
    fn start() -> TestBus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:path={}</listen>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
                 <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                dir.path().join("bus").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon must be installed (Debian package dbus)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        TestBus {
            child,
            address: line.trim().to_string(),
            _dir: dir,
        }
    }

    async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Panel(Child);

impl Drop for Panel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stand-in supervisor: serves a status it is given and records the actions it receives.
#[derive(Clone)]
struct TestSupervisor {
    status: Arc<Mutex<ApplianceStatus>>,
    calls: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.lifeline.Supervisor1")]
impl TestSupervisor {
    async fn get_status(&self) -> String {
        self.status.lock().unwrap().to_json()
    }
    async fn reboot(&self, actor: &str) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("reboot by {actor}"));
    }
    async fn power_off(&self, actor: &str) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("power_off by {actor}"));
    }
    async fn identify(&self, actor: &str) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("identify by {actor}"));
    }
    #[zbus(signal)]
    async fn changed(emitter: &SignalEmitter<'_>, status: &str) -> zbus::Result<()>;
}

fn status(state: OverallState, hostname: &str, reps: u32) -> ApplianceStatus {
    ApplianceStatus {
        mode: api::Mode::Appliance,
        state,
        hostname: hostname.into(),
        version: "0.1.0".into(),
        build: "test".into(),
        uptime_seconds: 5,
        load: [0.0; 3],
        memory: Default::default(),
        disk: None,
        temperatures: vec![],
        interfaces: vec![api::Interface {
            name: "eth0".into(),
            up: true,
            addresses: vec!["192.0.2.44/24".into()],
            dhcp: Some(true),
        }],
        ntp_synchronized: Some(true),
        time: String::new(),
        timezone: "UTC".into(),
        services: vec![],
        relay: api::RelayCounts {
            rep_consoles: reps,
            customer_clients: 1,
            jump_clients: 0,
        },
        evaluation_licence: Some(false),
        update: Default::default(),
        alerts: vec![],
        validity_alerts: vec![],
        identify: false,
    }
}

/// What the panel should show at its status view for `s` (`None` = "starting").
fn expected(s: Option<&ApplianceStatus>) -> lifeline_panel::framebuffer::FrameBuffer {
    let (w, h) = MODEL.pixels().unwrap();
    let panel = s.and_then(to_panel);
    render_bitmap(&Menu::new().screen(panel.as_ref()), w, h)
}

fn wait_frame(
    emu: &Emulator,
    want: &lifeline_panel::framebuffer::FrameBuffer,
    limit: Duration,
    what: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        if emu.snapshot().frame.count_differences(want) == 0 {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let dir = std::env::var("LIFELINE_TEST_ARTIFACTS")
                .unwrap_or_else(|_| "target/artifacts".into());
            let dir = std::path::Path::new(&dir).join("panel-bus");
            let _ = std::fs::create_dir_all(&dir);
            let _ = emu
                .snapshot()
                .frame
                .save_png(&dir.join(format!("{what}-got.png")));
            let _ = want.save_png(&dir.join(format!("{what}-want.png")));
            panic!(
                "the emulator did not show {what} within {limit:?} (pictures in {})",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_from_the_supervisor_and_actions_back_over_dbus() {
    let bus = TestBus::start();
    let emu = Emulator::start(MODEL).unwrap();
    let _panel = Panel(
        Command::new(BIN)
            .arg("--device")
            .arg(emu.path())
            .args(["--model", "graphic-244x68", "--idle-dim-seconds", "0"])
            .env("LIFELINE_DBUS_ADDRESS", &bus.address)
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap(),
    );

    // No supervisor: "starting".
    wait_frame(&emu, &expected(None), Duration::from_secs(20), "starting");

    // The supervisor appears: its status is shown.
    let sup = TestSupervisor {
        status: Arc::new(Mutex::new(status(OverallState::Ok, "rack-7", 2))),
        calls: Arc::default(),
    };
    let conn = bus.connect().await;
    conn.object_server()
        .at(api::OBJECT_PATH, sup.clone())
        .await
        .unwrap();
    conn.request_name(api::BUS_NAME).await.unwrap();
    let ok = sup.status.lock().unwrap().clone();
    wait_frame(
        &emu,
        &expected(Some(&ok)),
        Duration::from_secs(10),
        "ok-status",
    );

    // A change signal reaches the frame buffer within a second.
    let degraded = {
        let mut s = status(OverallState::Degraded, "rack-7", 5);
        s.alerts.push(api::Alert::ServiceFailed {
            unit: "relay".into(),
        });
        s
    };
    *sup.status.lock().unwrap() = degraded.clone();
    let iface = conn
        .object_server()
        .interface::<_, TestSupervisor>(api::OBJECT_PATH)
        .await
        .unwrap();
    let sent = Instant::now();
    TestSupervisor::changed(iface.signal_emitter(), &degraded.to_json())
        .await
        .unwrap();
    wait_frame(
        &emu,
        &expected(Some(&degraded)),
        Duration::from_secs(5),
        "degraded-status",
    );
    let took = sent.elapsed();
    println!("status change to frame buffer: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Keys walk the menu to Reboot, confirmed twice: the supervisor gets the call.
    for k in [
        Key::Enter,
        Key::Down,
        Key::Down,
        Key::Down,
        Key::Enter,
        Key::Enter,
        Key::Enter,
    ] {
        let before = emu.snapshot().frames_shown;
        emu.press(k);
        let start = Instant::now();
        while emu.snapshot().frames_shown == before && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let start = Instant::now();
    while sup.calls.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *sup.calls.lock().unwrap(),
        vec!["reboot by panel".to_string()]
    );
    emu.press(Key::Exit);
    wait_frame(
        &emu,
        &expected(Some(&degraded)),
        Duration::from_secs(5),
        "back-to-status",
    );

    // Identify asked from the web page: the supervisor's status says so, the backlight
    // blinks (it was steadily on: no dimming in this test).
    assert_eq!(emu.snapshot().backlight, 100);
    let identify = {
        let mut s = degraded.clone();
        s.identify = true;
        s
    };
    *sup.status.lock().unwrap() = identify.clone();
    TestSupervisor::changed(iface.signal_emitter(), &identify.to_json())
        .await
        .unwrap();
    let start = Instant::now();
    while emu.snapshot().backlight != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the backlight did not blink"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    *sup.status.lock().unwrap() = degraded.clone();
    TestSupervisor::changed(iface.signal_emitter(), &degraded.to_json())
        .await
        .unwrap();

    // The web mirror: the picture is a PNG, and a key pressed through it opens the menu.
    let mirror = lifeline_supervisor_api::panel::Panel1Proxy::new(&conn)
        .await
        .unwrap();
    let png = mirror.picture().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    mirror.press_key("enter").await.unwrap();
    let (w, h) = MODEL.pixels().unwrap();
    let mut menu = Menu::new();
    let panel_status = to_panel(&degraded);
    menu.on_key(Key::Enter, panel_status.as_ref());
    wait_frame(
        &emu,
        &render_bitmap(&menu.screen(panel_status.as_ref()), w, h),
        Duration::from_secs(5),
        "menu-via-mirror",
    );
    assert!(mirror.press_key("sideways").await.is_err());
    mirror.press_key("exit").await.unwrap();

    // The supervisor goes away: "starting" again, no crash.
    conn.release_name(api::BUS_NAME).await.unwrap();
    wait_frame(
        &emu,
        &expected(None),
        Duration::from_secs(5),
        "starting-again",
    );
}
