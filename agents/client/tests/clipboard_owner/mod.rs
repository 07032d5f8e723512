//! A clipboard owner that always answers with an `INCR` (chunked) transfer, as X clients
//! do for large selections: the real protocol, written with x11rb, run on its own thread.

use std::sync::mpsc;
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    ChangeWindowAttributesAux, ConnectionExt as _, CreateWindowAux, EventMask, PropMode, Property,
    SELECTION_NOTIFY_EVENT, SelectionNotifyEvent, WindowClass,
};
use x11rb::wrapper::ConnectionExt as _;

pub struct IncrOwner {
    done: mpsc::Receiver<()>,
}

impl IncrOwner {
    /// Takes `CLIPBOARD` and serves `UTF8_STRING` requests with `data` in `chunk`-byte
    /// pieces. Returns once it owns the selection.
    pub fn start(display: &str, data: Vec<u8>, chunk: usize) -> IncrOwner {
        let (conn, screen) = x11rb::connect(Some(display)).expect("connect");
        let root = conn.setup().roots[screen].root;
        let intern = |name: &str| {
            conn.intern_atom(false, name.as_bytes())
                .unwrap()
                .reply()
                .unwrap()
                .atom
        };
        let (clipboard, utf8, incr) = (intern("CLIPBOARD"), intern("UTF8_STRING"), intern("INCR"));
        let window = conn.generate_id().unwrap();
        conn.create_window(
            0,
            window,
            root,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new(),
        )
        .unwrap()
        .check()
        .unwrap();
        conn.set_selection_owner(window, clipboard, x11rb::CURRENT_TIME)
            .unwrap()
            .check()
            .unwrap();
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            // (requestor, property, bytes sent so far) of the transfer in progress.
            let mut transfer: Option<(u32, u32, usize)> = None;
            while let Ok(event) = conn.wait_for_event() {
                match event {
                    Event::SelectionRequest(e) => {
                        let property = if e.property == x11rb::NONE {
                            e.target
                        } else {
                            e.property
                        };
                        let ok = e.target == utf8 && transfer.is_none();
                        if ok {
                            conn.change_window_attributes(
                                e.requestor,
                                &ChangeWindowAttributesAux::new()
                                    .event_mask(EventMask::PROPERTY_CHANGE),
                            )
                            .unwrap();
                            let len = u32::try_from(data.len()).unwrap();
                            conn.change_property32(
                                PropMode::REPLACE,
                                e.requestor,
                                property,
                                incr,
                                &[len],
                            )
                            .unwrap();
                            transfer = Some((e.requestor, property, 0));
                        }
                        let notify = SelectionNotifyEvent {
                            response_type: SELECTION_NOTIFY_EVENT,
                            sequence: 0,
                            time: e.time,
                            requestor: e.requestor,
                            selection: e.selection,
                            target: e.target,
                            property: if ok { property } else { x11rb::NONE },
                        };
                        conn.send_event(false, e.requestor, EventMask::NO_EVENT, notify)
                            .unwrap();
                        conn.flush().unwrap();
                    }
                    Event::PropertyNotify(e) if e.state == Property::DELETE => {
                        let Some((requestor, property, sent)) = transfer else {
                            continue;
                        };
                        if e.window != requestor || e.atom != property {
                            continue;
                        }
                        let end = (sent + chunk).min(data.len());
                        conn.change_property8(
                            PropMode::REPLACE,
                            requestor,
                            property,
                            utf8,
                            &data[sent..end],
                        )
                        .unwrap();
                        conn.flush().unwrap();
                        if sent == data.len() {
                            // The zero-length chunk just written ends the transfer. The
                            // owner stays connected, as real ones do, until Xvfb goes.
                            let _ = tx.send(());
                            transfer = None;
                            continue;
                        }
                        transfer = Some((requestor, property, end));
                    }
                    _ => {}
                }
            }
        });
        IncrOwner { done }
    }

    /// Whether the whole transfer, end marker included, was taken within `timeout`.
    pub fn finished(&self, timeout: Duration) -> bool {
        self.done.recv_timeout(timeout).is_ok()
    }
}
