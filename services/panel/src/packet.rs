//! Packet framing of the panel's serial protocol.
//!
//! # Design
//!
//! Every packet on the line has the same shape:
//!
//! | byte | meaning |
//! | --- | --- |
//! | 0 | type in the top two bits (`00` command, `01` reply, `10` report, `11` error) and the command number in the low six bits |
//! | 1 | number of data bytes that follow |
//! | 2.. | data |
//! | last two | CRC-16/X-25 over everything before it, little-endian |
//!
//! [`Packet`] is one such packet and [`Packet::encode`] turns it into bytes. [`Decoder`] is a
//! streaming decoder: feed it whatever the line delivered, in pieces of any size, and it yields
//! the packets it can prove by their CRC. When the bytes at the front of its buffer cannot be a
//! packet (a length above the configured maximum, or a CRC that does not match) it drops exactly
//! one byte and tries again from the next one, so it finds the next real packet after noise or a
//! partial packet. While it is resynchronising (bytes were dropped since the last good
//! packet), a header that announces more bytes than have arrived does not hold up a complete
//! packet with a good CRC behind it. [`Decoder::flush_stalled`] gives up on a header that waits
//! for bytes that will never come (the link calls it after a timeout).
//!
//! # Limits
//!
//! - The decoder never holds more than one maximal packet plus one input piece of at most
//!   [`Decoder::FEED_PIECE`] bytes, whatever it is fed; it never panics on any input.
//! - The length byte caps data at 255 bytes. Character modules accept at most
//!   [`MAX_CHAR_DATA`] (22) data bytes; the graphic models accept a larger maximum chosen by
//!   configuration and bounded by [`MAX_DATA_LIMIT`].
//! - A packet whose CRC happens to match by chance (1 in 65 536 for random bytes) is accepted:
//!   the protocol has no other integrity check. Callers check the type and command they expect.

use std::fmt;

use thiserror::Error;

/// The CRC used by the panel family: CRC-16/X-25 (reflected 0x1021, init and xor-out 0xFFFF).
pub const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);

/// Most data bytes a character module accepts in one packet.
pub const MAX_CHAR_DATA: usize = 22;

/// Upper bound for any configured data maximum (the length byte could say 255; we keep a margin
/// so a garbage length byte never makes the decoder wait for a quarter of a kilobyte).
pub const MAX_DATA_LIMIT: usize = 250;

/// Bytes around the data: type/command, length, two CRC bytes.
pub const OVERHEAD: usize = 4;

/// Highest command number (six bits).
pub const MAX_COMMAND: u8 = 0x3F;

/// What the top two bits of byte 0 say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Host to module.
    Command,
    /// Module's answer to a command, same command number.
    Reply,
    /// Module's unsolicited report (key presses).
    Report,
    /// Module's refusal of a command (bad CRC, unknown command, bad data), same command number.
    Error,
}

impl PacketType {
    fn bits(self) -> u8 {
        match self {
            PacketType::Command => 0b00,
            PacketType::Reply => 0b01,
            PacketType::Report => 0b10,
            PacketType::Error => 0b11,
        }
    }

    fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0b00 => PacketType::Command,
            0b01 => PacketType::Reply,
            0b10 => PacketType::Report,
            _ => PacketType::Error,
        }
    }
}

/// Errors building a packet.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PacketError {
    /// The command number does not fit the six command bits.
    #[error("command number {command} does not fit in six bits (at most 63)")]
    CommandOutOfRange { command: u8 },
    /// More data than the length byte or the configured maximum allows.
    #[error("packet data is {len} bytes, more than the maximum of {max}")]
    DataTooLong { len: usize, max: usize },
}

/// One packet: type, command number and data (the CRC is computed on encoding).
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    kind: PacketType,
    command: u8,
    data: Vec<u8>,
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Packet({:?} {} [", self.kind, self.command)?;
        for (i, b) in self.data.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str("])")
    }
}

impl Packet {
    /// A packet with up to [`MAX_DATA_LIMIT`] data bytes.
    pub fn new(kind: PacketType, command: u8, data: &[u8]) -> Result<Self, PacketError> {
        if command > MAX_COMMAND {
            return Err(PacketError::CommandOutOfRange { command });
        }
        if data.len() > MAX_DATA_LIMIT {
            return Err(PacketError::DataTooLong {
                len: data.len(),
                max: MAX_DATA_LIMIT,
            });
        }
        Ok(Packet {
            kind,
            command,
            data: data.to_vec(),
        })
    }

    /// A command packet (host to module).
    pub fn command(command: u8, data: &[u8]) -> Result<Self, PacketError> {
        Self::new(PacketType::Command, command, data)
    }

    /// The packet type.
    pub fn kind(&self) -> PacketType {
        self.kind
    }

    /// The command number (0..=63).
    pub fn command_number(&self) -> u8 {
        self.command
    }

    /// The data bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Byte 0 on the wire.
    pub fn type_byte(&self) -> u8 {
        (self.kind.bits() << 6) | self.command
    }

    /// The bytes on the wire, CRC included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + OVERHEAD);
        out.push(self.type_byte());
        // `new` bounds the data at MAX_DATA_LIMIT (< 256), so this cannot truncate.
        out.push(self.data.len() as u8);
        out.extend_from_slice(&self.data);
        let crc = CRC.checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Counters of what the decoder threw away, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Packets decoded.
    pub packets: u64,
    /// Candidate packets whose CRC did not match.
    pub bad_crc: u64,
    /// Bytes dropped while resynchronising (bad CRC, impossible length, stalled garbage).
    pub dropped_bytes: u64,
}

/// Something the decoder found at the front of its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A packet whose CRC matched.
    Packet(Packet),
    /// A complete candidate whose CRC did not match; one byte was dropped. `type_byte` is the
    /// byte that looked like a type/command byte (the emulator answers a command-typed one with
    /// an error reply, like the real module).
    BadCrc { type_byte: u8 },
}

enum Front {
    NeedMore,
    Packet(Packet, usize),
    BadCrc(u8),
    BadLength,
}

/// Streaming decoder with one-byte resynchronisation. See the module docs.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_data: usize,
    stats: DecoderStats,
    /// Bytes were dropped since the last good packet: we are between packets, not at a
    /// packet boundary.
    hunting: bool,
}

impl Decoder {
    /// Input is taken in pieces of at most this many bytes, so the buffer stays bounded.
    pub const FEED_PIECE: usize = 256;

    /// A decoder that accepts packets with at most `max_data` data bytes (clamped to
    /// [`MAX_DATA_LIMIT`]).
    pub fn new(max_data: usize) -> Self {
        let max_data = max_data.min(MAX_DATA_LIMIT);
        Decoder {
            buf: Vec::with_capacity(max_data + OVERHEAD + Self::FEED_PIECE),
            max_data,
            stats: DecoderStats::default(),
            hunting: false,
        }
    }

    /// The data maximum this decoder enforces.
    pub fn max_data(&self) -> usize {
        self.max_data
    }

    /// What was decoded and dropped so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Bytes waiting for the rest of a packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feed bytes; returns the packets (and bad-CRC candidates) completed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        for piece in bytes.chunks(Self::FEED_PIECE) {
            self.buf.extend_from_slice(piece);
            self.drain(&mut out, false);
        }
        out
    }

    /// Convenience: feed bytes and keep only the good packets.
    pub fn feed_packets(&mut self, bytes: &[u8]) -> Vec<Packet> {
        self.feed(bytes)
            .into_iter()
            .filter_map(|d| match d {
                Decoded::Packet(p) => Some(p),
                Decoded::BadCrc { .. } => None,
            })
            .collect()
    }

    /// Give up on bytes that wait for a packet that never completes (called after a reply
    /// timed out): drop one byte at a time and pick up any whole packet behind them. The
    /// buffer is empty afterwards.
    pub fn flush_stalled(&mut self) -> Vec<Decoded> {
        let mut out = Vec::new();
        self.drain(&mut out, true);
        out
    }

    fn drain(&mut self, out: &mut Vec<Decoded>, stalled: bool) {
        let mut start = 0;
        while start < self.buf.len() {
            match self.front(start) {
                Front::NeedMore if stalled => {
                    self.stats.dropped_bytes += 1;
                    start += 1;
                }
                Front::NeedMore if self.hunting => {
                    // While resynchronising, a header that announces more bytes than have
                    // arrived is probably noise: if a complete packet with a good CRC lies
                    // behind it, skip to that packet instead of waiting.
                    match (start + 1..self.buf.len())
                        .find(|&k| matches!(self.front(k), Front::Packet(..)))
                    {
                        Some(k) => {
                            self.stats.dropped_bytes += (k - start) as u64;
                            start = k;
                        }
                        None => break,
                    }
                }
                Front::NeedMore => break,
                Front::BadLength => {
                    self.hunting = true;
                    self.stats.dropped_bytes += 1;
                    start += 1;
                }
                Front::BadCrc(type_byte) => {
                    self.hunting = true;
                    self.stats.bad_crc += 1;
                    self.stats.dropped_bytes += 1;
                    start += 1;
                    out.push(Decoded::BadCrc { type_byte });
                }
                Front::Packet(p, len) => {
                    self.hunting = false;
                    self.stats.packets += 1;
                    start += len;
                    out.push(Decoded::Packet(p));
                }
            }
        }
        if stalled {
            self.hunting = false;
        }
        self.buf.drain(..start);
    }

    fn front(&self, start: usize) -> Front {
        let rest = &self.buf[start..];
        if rest.len() < 2 {
            return Front::NeedMore;
        }
        let len = usize::from(rest[1]);
        if len > self.max_data {
            return Front::BadLength;
        }
        let total = len + OVERHEAD;
        if rest.len() < total {
            return Front::NeedMore;
        }
        let body = &rest[..len + 2];
        let crc = u16::from_le_bytes([rest[len + 2], rest[len + 3]]);
        if CRC.checksum(body) != crc {
            return Front::BadCrc(rest[0]);
        }
        let packet = Packet {
            kind: PacketType::from_bits(rest[0] >> 6),
            command: rest[0] & MAX_COMMAND,
            data: rest[2..len + 2].to_vec(),
        };
        Front::Packet(packet, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(CRC.checksum(b"123456789"), 0x906E);
    }

    #[test]
    fn known_vector_send_data_hi() {
        let p = Packet::command(0x1F, &[0, 0, b'H', b'i']).unwrap();
        assert_eq!(p.encode(), [0x1f, 0x04, 0x00, 0x00, 0x48, 0x69, 0xc7, 0xd3]);
        let mut d = Decoder::new(MAX_CHAR_DATA);
        assert_eq!(
            d.feed_packets(&[0x1f, 0x04, 0x00, 0x00, 0x48, 0x69, 0xc7, 0xd3]),
            vec![p]
        );
    }

    #[test]
    fn type_bits() {
        let reply = Packet::new(PacketType::Reply, 0x1F, &[]).unwrap();
        assert_eq!(reply.type_byte(), 0x5F);
        let report = Packet::new(PacketType::Report, 0, &[5]).unwrap();
        assert_eq!(report.type_byte(), 0x80);
        let err = Packet::new(PacketType::Error, 14, &[]).unwrap();
        assert_eq!(err.type_byte(), 0xCE);
        let mut d = Decoder::new(MAX_CHAR_DATA);
        let mut bytes = reply.encode();
        bytes.extend(report.encode());
        bytes.extend(err.encode());
        assert_eq!(d.feed_packets(&bytes), vec![reply, report, err]);
    }

    #[test]
    fn building_rejects_bad_input() {
        assert_eq!(
            Packet::command(64, &[]),
            Err(PacketError::CommandOutOfRange { command: 64 })
        );
        assert!(matches!(
            Packet::command(1, &[0; MAX_DATA_LIMIT + 1]),
            Err(PacketError::DataTooLong { .. })
        ));
    }

    #[test]
    fn byte_at_a_time() {
        let p = Packet::command(0x1F, &[0, 1, b'a', b'b', b'c']).unwrap();
        let mut d = Decoder::new(MAX_CHAR_DATA);
        let mut got = Vec::new();
        for b in p.encode() {
            got.extend(d.feed_packets(&[b]));
        }
        assert_eq!(got, vec![p]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn bad_crc_drops_one_byte_and_finds_next_packet() {
        let good = Packet::command(0, b"ping").unwrap();
        let mut bad = good.encode();
        let n = bad.len();
        bad[n - 1] ^= 0xFF;
        let mut bytes = bad;
        bytes.extend(good.encode());
        let mut d = Decoder::new(MAX_CHAR_DATA);
        let out = d.feed(&bytes);
        assert_eq!(out[0], Decoded::BadCrc { type_byte: 0x00 });
        assert_eq!(out.last(), Some(&Decoded::Packet(good)));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn impossible_length_is_skipped() {
        let good = Packet::command(6, &[]).unwrap();
        let mut bytes = vec![0x1F, 200];
        bytes.extend(good.encode());
        let mut d = Decoder::new(MAX_CHAR_DATA);
        assert_eq!(d.feed_packets(&bytes), vec![good]);
        assert!(d.stats().dropped_bytes >= 2);
    }

    #[test]
    fn stalled_prefix_is_flushed() {
        // A garbage header announcing 20 bytes swallows a short real packet until flushed.
        let good = Packet::new(PacketType::Reply, 0, &[]).unwrap();
        let mut bytes = vec![0x41, 20];
        bytes.extend(good.encode());
        let mut d = Decoder::new(MAX_CHAR_DATA);
        assert!(d.feed_packets(&bytes).is_empty());
        let flushed = d.flush_stalled();
        assert_eq!(flushed, vec![Decoded::Packet(good)]);
        assert_eq!(d.buffered(), 0);
    }

    fn any_packet(max: usize) -> impl Strategy<Value = Packet> {
        (
            0u8..4,
            0u8..=MAX_COMMAND,
            proptest::collection::vec(any::<u8>(), 0..=max),
        )
            .prop_map(|(t, c, d)| Packet::new(PacketType::from_bits(t), c, &d).unwrap())
    }

    proptest! {
        #[test]
        fn round_trip(packets in proptest::collection::vec(any_packet(120), 0..8),
                      split in 1usize..40) {
            let mut d = Decoder::new(120);
            let bytes: Vec<u8> = packets.iter().flat_map(Packet::encode).collect();
            let mut got = Vec::new();
            for piece in bytes.chunks(split) {
                got.extend(d.feed_packets(piece));
            }
            prop_assert_eq!(got, packets);
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn garbage_never_panics_and_stays_bounded(
            garbage in proptest::collection::vec(any::<u8>(), 0..4096),
            max in 0usize..=300,
        ) {
            let mut d = Decoder::new(max);
            for piece in garbage.chunks(97) {
                let _ = d.feed(piece);
                prop_assert!(d.buffered() <= d.max_data() + OVERHEAD + Decoder::FEED_PIECE);
            }
            let _ = d.flush_stalled();
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn packet_after_garbage_is_found(
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            packet in any_packet(MAX_CHAR_DATA),
        ) {
            // Garbage, then the packet; then the caller gives up on any stalled header in the
            // garbage, as the link does after a timeout.
            let mut d = Decoder::new(MAX_CHAR_DATA);
            let mut bytes = garbage;
            bytes.extend(packet.encode());
            let mut got = d.feed_packets(&bytes);
            got.extend(d.flush_stalled().into_iter().filter_map(|x| match x {
                Decoded::Packet(p) => Some(p),
                Decoded::BadCrc { .. } => None,
            }));
            // The packet is always found, unless a chance CRC match inside the garbage made a
            // spurious packet that swallowed its first bytes (a 1-in-65536 coincidence).
            let spurious = got.iter().any(|p| p != &packet);
            prop_assert!(got.contains(&packet) || spurious);
        }
    }
}
