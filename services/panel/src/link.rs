//! Request/reply link to the panel module over any byte transport.
//!
//! # Design
//!
//! [`Link`] owns a transport (`Read + Write`: a serial port, one end of a pty, an in-memory
//! pipe in tests) and a [`Decoder`]. [`Link::command`] sends one command packet and reads
//! until the reply for that command arrives (type reply, same command number). While it waits,
//! key reports (type report, command [`KEY_REPORT`]) are decoded into [`KeyEvent`]s and queued;
//! other packets (stale replies of earlier attempts, unknown reports) are ignored. When no reply
//! comes within the timeout (default [`DEFAULT_TIMEOUT`]), or the module answers with an error
//! packet (its CRC check of our command failed on the line), the command is sent again, up to
//! [`Link::retries`] more times.
//!
//! The transport's `read` must return within a short time when no byte arrives (a serial
//! port's timeout: `TimedOut`/`WouldBlock`, or `Ok(0)`), so the link can watch its deadline;
//! [`open_serial`] sets that timeout. A read or write that fails in any other way (the pty
//! hung up, the USB adapter was unplugged) is returned as [`LinkError::Io`]; the caller then
//! drops the link and reconnects.
//!
//! # Limits
//!
//! - One command in flight at a time; the module family answers commands in order.
//! - The key queue holds at most [`MAX_QUEUED_KEYS`] events; older ones are dropped first.
//! - A reply that arrives after its command timed out and was re-sent is taken as the reply
//!   of the second attempt (commands here are idempotent: drawing, clearing, backlight).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::packet::{Decoded, Decoder, Packet, PacketError, PacketType};

/// How long a command waits for its reply before it is sent again.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// How many times a command is sent again after the first attempt.
pub const DEFAULT_RETRIES: u32 = 2;
/// Key events kept while nobody reads them.
pub const MAX_QUEUED_KEYS: usize = 64;
/// Command number of key reports (sent with type report).
pub const KEY_REPORT: u8 = 0x00;
/// How long one transport read may block (the serial port timeout set by [`open_serial`]).
pub const READ_SLICE: Duration = Duration::from_millis(20);

/// The six keys of the keypad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Key {
    Up,
    Down,
    Left,
    Right,
    Enter,
    Exit,
}

impl Key {
    /// All keys, in key-code order.
    pub const ALL: [Key; 6] = [
        Key::Up,
        Key::Down,
        Key::Left,
        Key::Right,
        Key::Enter,
        Key::Exit,
    ];

    fn index(self) -> u8 {
        match self {
            Key::Up => 0,
            Key::Down => 1,
            Key::Left => 2,
            Key::Right => 3,
            Key::Enter => 4,
            Key::Exit => 5,
        }
    }
}

/// A key going down or up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyEvent {
    pub key: Key,
    pub pressed: bool,
}

impl KeyEvent {
    /// The one data byte of a key report: 1..=6 press up, down, left, right, enter, exit;
    /// 7..=12 the same keys' release.
    pub fn code(self) -> u8 {
        let base = if self.pressed { 1 } else { 7 };
        base + self.key.index()
    }

    /// The event for a key-report code, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        let (pressed, index) = match code {
            1..=6 => (true, code - 1),
            7..=12 => (false, code - 7),
            _ => return None,
        };
        Some(KeyEvent {
            key: Key::ALL[usize::from(index)],
            pressed,
        })
    }

    /// The key report packet the module sends for this event.
    pub fn report(self) -> Packet {
        // Command 0 and one data byte are always valid.
        Packet::new(PacketType::Report, KEY_REPORT, &[self.code()]).expect("valid key report")
    }
}

/// Link errors.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The transport failed: the device went away or was never there.
    #[error("the panel's serial line failed while {doing}")]
    Io {
        doing: &'static str,
        #[source]
        source: io::Error,
    },
    /// No reply after every attempt.
    #[error("the panel did not answer command {command} after {attempts} attempts")]
    Timeout { command: u8, attempts: u32 },
    /// The module refused the command on every attempt.
    #[error("the panel refused command {command} after {attempts} attempts")]
    Refused { command: u8, attempts: u32 },
    /// The command could not be built.
    #[error("the command could not be built")]
    Packet(#[from] PacketError),
    /// Opening the serial device failed.
    #[error("cannot open the panel's serial device {path}")]
    Open {
        path: String,
        #[source]
        source: serialport::Error,
    },
}

impl LinkError {
    /// True when the device is gone (unplugged, pty closed): reconnect rather than retry.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, LinkError::Io { .. } | LinkError::Open { .. })
    }
}

/// Request/reply link. See the module docs.
#[derive(Debug)]
pub struct Link<T> {
    io: T,
    decoder: Decoder,
    keys: VecDeque<KeyEvent>,
    timeout: Duration,
    retries: u32,
}

impl<T: Read + Write> Link<T> {
    /// A link over `io` that accepts packets with at most `max_data` data bytes.
    pub fn new(io: T, max_data: usize) -> Self {
        Link {
            io,
            decoder: Decoder::new(max_data),
            keys: VecDeque::new(),
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
        }
    }

    /// Set the reply timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set how often a command is sent again.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Retries after the first attempt.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The decoder's counters.
    pub fn decoder_stats(&self) -> crate::packet::DecoderStats {
        self.decoder.stats()
    }

    /// The data maximum of packets on this link.
    pub fn max_data(&self) -> usize {
        self.decoder.max_data()
    }

    /// Send a command and wait for its reply; returns the reply's data.
    pub fn command(&mut self, command: u8, data: &[u8]) -> Result<Vec<u8>, LinkError> {
        let packet = Packet::command(command, data)?;
        if data.len() > self.decoder.max_data() {
            return Err(PacketError::DataTooLong {
                len: data.len(),
                max: self.decoder.max_data(),
            }
            .into());
        }
        let bytes = packet.encode();
        let attempts = self.retries + 1;
        let mut refused = 0;
        for _ in 0..attempts {
            self.io
                .write_all(&bytes)
                .and_then(|()| self.io.flush())
                .map_err(|source| LinkError::Io {
                    doing: "sending a command",
                    source,
                })?;
            match self.wait_reply(command)? {
                Some(Ok(reply)) => return Ok(reply),
                Some(Err(())) => refused += 1,
                None => {
                    // Whatever is buffered will not become our reply: resynchronise.
                    let stalled = self.decoder.flush_stalled();
                    if let Some(reply) = self.absorb(stalled, command) {
                        match reply {
                            Ok(data) => return Ok(data),
                            Err(()) => refused += 1,
                        }
                    }
                }
            }
        }
        if refused == attempts {
            Err(LinkError::Refused { command, attempts })
        } else {
            Err(LinkError::Timeout { command, attempts })
        }
    }

    /// Read for up to `wait` and return every key event queued so far (oldest first).
    pub fn poll_keys(&mut self, wait: Duration) -> Result<Vec<KeyEvent>, LinkError> {
        let deadline = Instant::now() + wait;
        while self.keys.is_empty() {
            let decoded = self.read_some()?;
            // Replies to nothing are ignored here.
            let _ = self.absorb(decoded, u8::MAX);
            if Instant::now() >= deadline {
                break;
            }
        }
        Ok(self.keys.drain(..).collect())
    }

    /// Take the key events queued so far without reading.
    pub fn take_keys(&mut self) -> Vec<KeyEvent> {
        self.keys.drain(..).collect()
    }

    /// The transport, e.g. to write raw bytes in tests.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// `Some(Ok(data))` reply, `Some(Err(()))` error packet, `None` timeout.
    fn wait_reply(&mut self, command: u8) -> Result<Option<Result<Vec<u8>, ()>>, LinkError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let decoded = self.read_some()?;
            if let Some(reply) = self.absorb(decoded, command) {
                return Ok(Some(reply));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Queue key reports; return the first reply or error packet for `command`.
    fn absorb(&mut self, decoded: Vec<Decoded>, command: u8) -> Option<Result<Vec<u8>, ()>> {
        let mut answer = None;
        for d in decoded {
            let Decoded::Packet(p) = d else { continue };
            match p.kind() {
                PacketType::Report if p.command_number() == KEY_REPORT => {
                    if let Some(ev) = p.data().first().copied().and_then(KeyEvent::from_code) {
                        if self.keys.len() == MAX_QUEUED_KEYS {
                            self.keys.pop_front();
                        }
                        self.keys.push_back(ev);
                    } else {
                        tracing::debug!(?p, "ignoring key report with an unknown key code");
                    }
                }
                PacketType::Reply if p.command_number() == command && answer.is_none() => {
                    answer = Some(Ok(p.data().to_vec()));
                }
                PacketType::Error if p.command_number() == command && answer.is_none() => {
                    answer = Some(Err(()));
                }
                _ => tracing::trace!(?p, "ignoring unexpected packet"),
            }
        }
        answer
    }

    fn read_some(&mut self) -> Result<Vec<Decoded>, LinkError> {
        let mut buf = [0u8; 256];
        match self.io.read(&mut buf) {
            Ok(0) => {
                // A transport with no data may return 0 instead of blocking; do not spin.
                std::thread::sleep(Duration::from_millis(2));
                Ok(Vec::new())
            }
            Ok(n) => Ok(self.decoder.feed(&buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Vec::new())
            }
            Err(source) => Err(LinkError::Io {
                doing: "reading from the panel",
                source,
            }),
        }
    }
}

/// Open a real serial device (or a pty's slave path) as a link transport, raw 8N1, with the
/// short read timeout the link needs.
pub fn open_serial(path: &Path, baud: u32) -> Result<serialport::TTYPort, LinkError> {
    let name = path.to_string_lossy().into_owned();
    serialport::new(name.clone(), baud)
        .timeout(READ_SLICE)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .open_native()
        .map_err(|source| LinkError::Open { path: name, source })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::packet::MAX_CHAR_DATA;
    use std::sync::{Arc, Mutex};

    /// An in-memory transport: what the link writes is recorded, what it reads comes from a
    /// script that answers each written command.
    #[derive(Clone, Default)]
    pub struct Scripted {
        pub written: Arc<Mutex<Vec<u8>>>,
        pub incoming: Arc<Mutex<VecDeque<u8>>>,
        /// Answer for each written packet, consumed in order.
        pub answers: Arc<Mutex<VecDeque<Vec<u8>>>>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut inc = self.incoming.lock().unwrap();
            if inc.is_empty() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no data"));
            }
            let n = buf.len().min(inc.len());
            for b in buf.iter_mut().take(n) {
                *b = inc.pop_front().unwrap();
            }
            Ok(n)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.lock().unwrap().extend_from_slice(buf);
            if let Some(a) = self.answers.lock().unwrap().pop_front() {
                self.incoming.lock().unwrap().extend(a);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn reply(cmd: u8, data: &[u8]) -> Vec<u8> {
        Packet::new(PacketType::Reply, cmd, data).unwrap().encode()
    }

    #[test]
    fn key_codes_round_trip() {
        for code in 1..=12 {
            assert_eq!(KeyEvent::from_code(code).unwrap().code(), code);
        }
        assert_eq!(KeyEvent::from_code(0), None);
        assert_eq!(KeyEvent::from_code(13), None);
        assert_eq!(
            KeyEvent::from_code(5),
            Some(KeyEvent {
                key: Key::Enter,
                pressed: true
            })
        );
        assert_eq!(
            KeyEvent::from_code(12),
            Some(KeyEvent {
                key: Key::Exit,
                pressed: false
            })
        );
    }

    #[test]
    fn command_gets_reply_and_queues_keys_meanwhile() {
        let t = Scripted::default();
        let key = KeyEvent {
            key: Key::Up,
            pressed: true,
        };
        let mut answer = key.report().encode();
        answer.extend(reply(0, b"hello"));
        t.answers.lock().unwrap().push_back(answer);
        let mut link = Link::new(t.clone(), MAX_CHAR_DATA);
        assert_eq!(link.command(0, b"hello").unwrap(), b"hello");
        assert_eq!(link.take_keys(), vec![key]);
        assert_eq!(
            *t.written.lock().unwrap(),
            Packet::command(0, b"hello").unwrap().encode()
        );
    }

    #[test]
    fn timeout_retries_then_fails() {
        let t = Scripted::default();
        let mut link = Link::new(t.clone(), MAX_CHAR_DATA)
            .with_timeout(Duration::from_millis(20))
            .with_retries(2);
        let err = link.command(6, &[]).unwrap_err();
        assert!(matches!(
            err,
            LinkError::Timeout {
                command: 6,
                attempts: 3
            }
        ));
        assert_eq!(t.written.lock().unwrap().len(), 3 * 4);
    }

    #[test]
    fn lost_reply_is_retried() {
        let t = Scripted::default();
        t.answers.lock().unwrap().push_back(Vec::new());
        t.answers.lock().unwrap().push_back(reply(6, &[]));
        let mut link = Link::new(t, MAX_CHAR_DATA).with_timeout(Duration::from_millis(20));
        assert_eq!(link.command(6, &[]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn error_packets_mean_refused() {
        let t = Scripted::default();
        for _ in 0..3 {
            let e = Packet::new(PacketType::Error, 14, &[]).unwrap().encode();
            t.answers.lock().unwrap().push_back(e);
        }
        let mut link = Link::new(t, MAX_CHAR_DATA).with_timeout(Duration::from_millis(20));
        assert!(matches!(
            link.command(14, &[200]),
            Err(LinkError::Refused { command: 14, .. })
        ));
    }

    #[test]
    fn reply_behind_a_stalled_garbage_header_is_found() {
        let t = Scripted::default();
        let mut answer = vec![0x40, 20];
        answer.extend(reply(0, &[]));
        t.answers.lock().unwrap().push_back(answer);
        let mut link = Link::new(t, MAX_CHAR_DATA).with_timeout(Duration::from_millis(20));
        assert!(link.command(0, &[]).is_ok());
    }

    #[test]
    fn oversized_command_is_refused_locally() {
        let mut link = Link::new(Scripted::default(), MAX_CHAR_DATA);
        assert!(matches!(
            link.command(31, &[0; 30]),
            Err(LinkError::Packet(PacketError::DataTooLong { .. }))
        ));
    }
}
