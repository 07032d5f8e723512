//! Input injection against a real Xvfb server, checked with a real X client (`xev`): the
//! pointer lands at origin + surface position, buttons and wheel arrive, text typed as
//! keysyms arrives intact on US, French and German layouts, modifiers and combos arrive as
//! keys, and `release_all` leaves nothing held.
#![cfg(target_os = "linux")]

mod input_xvfb;

use input_xvfb::{Xev, XevEvent, Xvfb, connect, wait_for};
use lifeline_agent::platform::linux::input::X11Input;
use lifeline_proto::remote::{Combo, InputEvent, buttons};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

const SHIFT_L: u32 = 0xffe1;
const CONTROL_L: u32 = 0xffe3;
const CONTROL_MASK: u32 = 4;

fn key(keysym: u32, down: bool) -> InputEvent {
    InputEvent::Key {
        keysym,
        down,
        code: String::new(),
    }
}

fn key_code(keysym: u32, down: bool, code: &str) -> InputEvent {
    InputEvent::Key {
        keysym,
        down,
        code: code.into(),
    }
}

/// The keysym a browser-side console sends for a character.
fn keysym_of(c: char) -> u32 {
    match u32::from(c) {
        cp @ (0x20..=0x7e | 0xa0..=0xff) => cp,
        0x20ac => 0x20ac,
        cp => 0x0100_0000 + cp,
    }
}

/// Whether a representative on a US keyboard holds Shift to type `c`.
fn us_shifted(c: char) -> bool {
    c.is_ascii_uppercase() || "~!@#$%^&*()_+{}|:\"<>?".contains(c)
}

/// Types `text` the way a representative with a US keyboard would send it: Shift pressed
/// around the characters that need it there, each key pressed and released.
fn type_as_us_rep(input: &mut X11Input, text: &str) {
    for c in text.chars() {
        let shift = us_shifted(c);
        if shift {
            input
                .inject(&key_code(SHIFT_L, true, "ShiftLeft"), (0, 0))
                .unwrap();
        }
        input.inject(&key(keysym_of(c), true), (0, 0)).unwrap();
        input.inject(&key(keysym_of(c), false), (0, 0)).unwrap();
        if shift {
            input
                .inject(&key_code(SHIFT_L, false, "ShiftLeft"), (0, 0))
                .unwrap();
        }
    }
}

/// Waits until the recording client has caught up with a layout switch: a key that needs
/// no remapping goes through and is seen.
fn settle(input: &mut X11Input, xev: &Xev) {
    input.inject(&key(SHIFT_L, true), (0, 0)).unwrap();
    input.inject(&key(SHIFT_L, false), (0, 0)).unwrap();
    xev.collect("the layout switch to settle", |e| {
        e.iter().any(|e| {
            matches!(
                e,
                XevEvent::KeyRelease {
                    keysym: SHIFT_L,
                    ..
                }
            )
        })
    });
}

/// The text of the key presses (Control not held) among `events`.
fn typed(events: &[XevEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            XevEvent::KeyPress { text, state, .. } if state & CONTROL_MASK == 0 => {
                Some(text.as_str())
            }
            _ => None,
        })
        .collect()
}

fn keys_down(conn: &RustConnection) -> Vec<u8> {
    let map = conn.query_keymap().unwrap().reply().unwrap().keys;
    (0..=255u8)
        .filter(|&k| map[usize::from(k / 8)] & (1 << (k % 8)) != 0)
        .collect()
}

fn pointer_state(conn: &RustConnection) -> (i32, i32, u16) {
    let root = conn.setup().roots[0].root;
    let p = conn.query_pointer(root).unwrap().reply().unwrap();
    (i32::from(p.root_x), i32::from(p.root_y), u16::from(p.mask))
}

fn keyboard_mapping(conn: &RustConnection) -> Vec<u32> {
    let setup = conn.setup();
    let (min, max) = (setup.min_keycode, setup.max_keycode);
    conn.get_keyboard_mapping(min, max - min + 1)
        .unwrap()
        .reply()
        .unwrap()
        .keysyms
}

fn last_motion(events: &[XevEvent]) -> Option<(i32, i32)> {
    events.iter().rev().find_map(|e| match e {
        XevEvent::Motion { root } => Some(*root),
        _ => None,
    })
}

fn count(events: &[XevEvent], want: &XevEvent) -> usize {
    events.iter().filter(|e| *e == want).count()
}

fn button_presses(events: &[XevEvent]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            XevEvent::ButtonPress { button, .. } => Some(*button),
            _ => None,
        })
        .collect()
}

#[test]
fn pointer_buttons_and_wheel_arrive_at_the_origin_offset() {
    let x = Xvfb::start();
    let xev = Xev::start(&x);
    let conn = connect(&x);
    let mut input = X11Input::open(Some(&x.display)).unwrap();
    let origin = (100, 50);
    let ptr = |x, y, buttons| InputEvent::Pointer { x, y, buttons };

    input.inject(&ptr(10, 20, 0), origin).unwrap();
    let ev = xev.collect("motion to (110, 70)", |e| last_motion(e) == Some((110, 70)));
    assert!(!ev.iter().any(|e| matches!(e, XevEvent::ButtonPress { .. })));
    let (px, py, _) = pointer_state(&conn);
    assert_eq!((px, py), (110, 70));

    // Left drag from (110, 70) to (130, 90).
    input.inject(&ptr(10, 20, buttons::LEFT), origin).unwrap();
    input.inject(&ptr(30, 40, buttons::LEFT), origin).unwrap();
    input.inject(&ptr(30, 40, 0), origin).unwrap();
    let ev = xev.collect("a left drag", |e| {
        e.iter()
            .any(|e| matches!(e, XevEvent::ButtonRelease { button: 1, .. }))
    });
    let press = XevEvent::ButtonPress {
        button: 1,
        root: (110, 70),
    };
    let release = XevEvent::ButtonRelease {
        button: 1,
        root: (130, 90),
    };
    assert_eq!(count(&ev, &press), 1, "{ev:#?}");
    assert_eq!(count(&ev, &release), 1, "{ev:#?}");

    // Right and middle click at the desktop's origin; back and forward buttons.
    for (bit, button) in [
        (buttons::RIGHT, 3),
        (buttons::MIDDLE, 2),
        (buttons::BACK, 8),
        (buttons::FORWARD, 9),
    ] {
        input.inject(&ptr(5, 6, bit), (0, 0)).unwrap();
        input.inject(&ptr(5, 6, 0), (0, 0)).unwrap();
        let ev = xev.collect("a click", |e| {
            e.iter()
                .any(|e| matches!(e, XevEvent::ButtonRelease { button: b, .. } if *b == button))
        });
        let want = XevEvent::ButtonPress {
            button,
            root: (5, 6),
        };
        assert_eq!(count(&ev, &want), 1, "button {button}: {ev:#?}");
    }

    // Wheel: two notches down, one up, one left, three right.
    input
        .inject(&InputEvent::Wheel { dx: 0, dy: 2 }, origin)
        .unwrap();
    input
        .inject(&InputEvent::Wheel { dx: -1, dy: -1 }, origin)
        .unwrap();
    input
        .inject(&InputEvent::Wheel { dx: 3, dy: 0 }, origin)
        .unwrap();
    let ev = xev.collect("seven wheel clicks", |e| {
        e.iter()
            .filter(|e| matches!(e, XevEvent::ButtonRelease { .. }))
            .count()
            == 7
    });
    assert_eq!(button_presses(&ev), vec![5, 5, 4, 6, 7, 7, 7]);

    // Far outside the desktop: dropped. Near the edge: clamped.
    input.inject(&ptr(60_000, 10, 0), (0, 0)).unwrap();
    input
        .inject(&ptr(-500, -500, buttons::LEFT), (0, 0))
        .unwrap();
    input.inject(&ptr(7, 8, 0), (0, 0)).unwrap();
    let ev = xev.collect("motion to (7, 8)", |e| last_motion(e) == Some((7, 8)));
    let motions: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            XevEvent::Motion { root } => Some(*root),
            _ => None,
        })
        .collect();
    assert_eq!(
        motions,
        vec![(7, 8)],
        "far events must not move the pointer"
    );
    assert!(button_presses(&ev).is_empty(), "{ev:#?}");
    input.inject(&ptr(1300, 810, 0), (0, 0)).unwrap();
    wait_for("the pointer clamped to the corner", || {
        let (px, py, _) = pointer_state(&conn);
        (px == 1279 && py == 799).then_some(())
    });
}

#[test]
fn text_arrives_intact_on_us_french_and_german_layouts() {
    let x = Xvfb::start();
    let xev = Xev::start(&x);
    let conn = connect(&x);
    let mut input = X11Input::open(Some(&x.display)).unwrap();
    // The brief's sentence, then characters whose Shift differs between US and AZERTY or
    // QWERTZ (the representative holds Shift for `!` and `?`, not for `1` or `/`).
    let text = "Grüße, élève @€{ !1?/;:zZyY Ω";
    for layout in ["us", "fr", "de", "us"] {
        x.run("setxkbmap", &["-display", &x.display, layout]);
        settle(&mut input, &xev);
        type_as_us_rep(&mut input, text);
        let ev = xev.collect(&format!("the text on the {layout} layout"), |e| {
            typed(e).chars().count() >= text.chars().count()
        });
        assert_eq!(typed(&ev), text, "layout {layout}");
        // The layout really changed and the injector followed it: `z` sits on another key.
        let z_key = ev.iter().find_map(|e| match e {
            XevEvent::KeyPress {
                keysym: 0x7a,
                keycode,
                ..
            } => Some(*keycode),
            _ => None,
        });
        let want = match layout {
            "fr" => 25,
            "de" => 29,
            _ => 52,
        };
        assert_eq!(z_key, Some(want), "layout {layout}");
        input.release_all().unwrap();
        assert_eq!(keys_down(&conn), Vec::<u8>::new(), "layout {layout}");
    }
}

#[test]
fn modifiers_combos_and_release_all() {
    let x = Xvfb::start();
    let xev = Xev::start(&x);
    let conn = connect(&x);
    let mapping = keyboard_mapping(&conn);
    let mut input = X11Input::open(Some(&x.display)).unwrap();

    // Ctrl+C reaches the application as C with Control held.
    input
        .inject(&key_code(CONTROL_L, true, "ControlLeft"), (0, 0))
        .unwrap();
    input.inject(&key_code(0x63, true, "KeyC"), (0, 0)).unwrap();
    input
        .inject(&key_code(0x63, false, "KeyC"), (0, 0))
        .unwrap();
    input
        .inject(&key_code(CONTROL_L, false, "ControlLeft"), (0, 0))
        .unwrap();
    let ev = xev.collect("Ctrl+C", |e| {
        e.iter().any(|e| {
            matches!(
                e,
                XevEvent::KeyRelease {
                    keysym: CONTROL_L,
                    ..
                }
            )
        })
    });
    assert!(
        ev.iter().any(|e| matches!(e,
            XevEvent::KeyPress { keysym: 0x63, state, .. } if state & CONTROL_MASK != 0)),
        "{ev:#?}"
    );

    // Combos arrive as their keys, pressed in order and released in reverse.
    for (combo, keysyms) in [
        (Combo::CtrlAltDel, vec![0xffe3, 0xffe9, 0xffff]),
        (Combo::AltTab, vec![0xffe9, 0xff09]),
        (Combo::Super, vec![0xffeb]),
        (Combo::PrintScreen, vec![0xff61]),
    ] {
        xev.drain();
        input.inject(&InputEvent::Combo { combo }, (0, 0)).unwrap();
        let n = keysyms.len();
        let ev = xev.collect(&format!("{combo:?}"), |e| {
            e.iter()
                .filter(|e| matches!(e, XevEvent::KeyRelease { .. }))
                .count()
                == n
        });
        let order: Vec<(bool, u32)> = ev
            .iter()
            .filter_map(|e| match e {
                XevEvent::KeyPress { keysym, .. } => Some((true, *keysym)),
                XevEvent::KeyRelease { keysym, .. } => Some((false, *keysym)),
                _ => None,
            })
            .collect();
        let mut want: Vec<(bool, u32)> = keysyms.iter().map(|&k| (true, k)).collect();
        want.extend(keysyms.iter().rev().map(|&k| (false, k)));
        assert_eq!(order, want, "{combo:?}");
    }

    // Hold Shift, a letter (released under another keysym later), a character only a spare
    // keycode produces on this US layout, and the left button: release_all lifts them all
    // and undoes the temporary binding.
    input
        .inject(&key_code(SHIFT_L, true, "ShiftLeft"), (0, 0))
        .unwrap();
    input.inject(&key_code(0x41, true, "KeyA"), (0, 0)).unwrap();
    input.inject(&key(0xe9, true), (0, 0)).unwrap();
    input
        .inject(
            &InputEvent::Pointer {
                x: 3,
                y: 4,
                buttons: buttons::LEFT,
            },
            (0, 0),
        )
        .unwrap();
    wait_for("keys and the button held", || {
        let (_, _, mask) = pointer_state(&conn);
        (keys_down(&conn).len() == 3 && mask & 0x100 != 0).then_some(())
    });
    assert_ne!(
        keyboard_mapping(&conn),
        mapping,
        "é needs a temporary binding"
    );
    input.release_all().unwrap();
    assert_eq!(keys_down(&conn), Vec::<u8>::new());
    assert_eq!(pointer_state(&conn).2, 0, "no button or modifier left down");
    assert_eq!(keyboard_mapping(&conn), mapping, "temporary binding undone");

    // A key released under another keysym than it was pressed with (Shift pressed in
    // between) is still found by its code.
    input.inject(&key_code(0x61, true, "KeyA"), (0, 0)).unwrap();
    input
        .inject(&key_code(SHIFT_L, true, "ShiftLeft"), (0, 0))
        .unwrap();
    input
        .inject(&key_code(0x41, false, "KeyA"), (0, 0))
        .unwrap();
    input
        .inject(&key_code(SHIFT_L, false, "ShiftLeft"), (0, 0))
        .unwrap();
    wait_for("all keys up", || keys_down(&conn).is_empty().then_some(()));

    // ReleaseAll as an event, and dropping the injector, also release.
    input.inject(&key(0x62, true), (0, 0)).unwrap();
    input.inject(&InputEvent::ReleaseAll, (0, 0)).unwrap();
    assert_eq!(keys_down(&conn), Vec::<u8>::new());
    input.inject(&key(0x62, true), (0, 0)).unwrap();
    drop(input);
    assert_eq!(keys_down(&conn), Vec::<u8>::new());
}

#[test]
fn second_group_through_mode_switch() {
    let x = Xvfb::start();
    let xev = Xev::start(&x);
    let mut input = X11Input::open(Some(&x.display)).unwrap();
    x.run("setxkbmap", &["-display", &x.display, "-layout", "us,ru"]);
    settle(&mut input, &xev);
    // Cyrillic ya and its capital (legacy keysyms), then Latin again.
    for keysym in [0x6d1u32, 0x6f1, 0x61] {
        input.inject(&key(keysym, true), (0, 0)).unwrap();
        input.inject(&key(keysym, false), (0, 0)).unwrap();
    }
    let ev = xev.collect("three characters", |e| typed(e).chars().count() >= 3);
    assert_eq!(typed(&ev), "яЯa");
    // Typed on the key that carries it in the second group (Z), not on a spare keycode.
    let ya = ev.iter().find_map(|e| match e {
        XevEvent::KeyPress {
            keysym: 0x6d1,
            keycode,
            ..
        } => Some(*keycode),
        _ => None,
    });
    assert_eq!(ya, Some(52), "{ev:#?}");
}

#[test]
fn caps_lock_on_the_customer_side_does_not_change_letters() {
    let x = Xvfb::start();
    let xev = Xev::start(&x);
    let mut input = X11Input::open(Some(&x.display)).unwrap();
    x.run("setxkbmap", &["-display", &x.display, "de"]);
    settle(&mut input, &xev);
    // The customer's Caps Lock is on (toggled here through the injector itself).
    input.inject(&key(0xffe5, true), (0, 0)).unwrap();
    input.inject(&key(0xffe5, false), (0, 0)).unwrap();
    type_as_us_rep(&mut input, "aBüÜ1!");
    let ev = xev.collect("six characters", |e| typed(e).chars().count() >= 6);
    assert_eq!(typed(&ev), "aBüÜ1!");
    assert!(
        ev.iter()
            .any(|e| matches!(e, XevEvent::KeyPress { state, .. } if state & 2 != 0)),
        "Caps Lock was on: {ev:#?}"
    );
}
