//! Binary frames: a fixed 12-byte header followed by the payload.
//!
//! ```text
//! offset  size  field
//! 0       1     magic 0x4C ('L')
//! 1       1     channel (see Channel)
//! 2       1     flags: bit 0 FLAG_SUPERSEDES (any channel), bit 1 FLAG_DEFLATE (screen
//!               channel only); others reserved, must be 0
//! 3       1     reserved, must be 0
//! 4       4     sequence number, big-endian, per channel
//! 8       4     payload length, big-endian, at most MAX_FRAME_PAYLOAD
//! 12      ...   payload
//! ```
//!
//! The relay reads only the header: it needs the channel to route a frame and the flags to
//! drop superseded screen frames on a slow link (and to let a new viewer in at a superseding
//! one). [`FLAG_DEFLATE`] says the payload is a chunk of the screen channel's deflate stream
//! ([`crate::deflate`]); it is refused on other channels.

use crate::MAX_FRAME_PAYLOAD;

pub const HEADER_LEN: usize = 12;
pub const MAGIC: u8 = 0x4C;

/// Flag: this frame supersedes every earlier unsent frame on its channel (and, on the
/// screen channel, starts the deflate stream afresh).
pub const FLAG_SUPERSEDES: u8 = 0x01;
/// Flag, screen channel only: the payload is the next chunk of the channel's deflate stream
/// ([`crate::deflate`]), not an update message.
pub const FLAG_DEFLATE: u8 = 0x02;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    Screen = 1,
    Cursor = 2,
    File = 3,
    Shell = 4,
}

impl Channel {
    /// The flags a frame on this channel may carry.
    pub fn allowed_flags(self) -> u8 {
        match self {
            Channel::Screen => FLAG_SUPERSEDES | FLAG_DEFLATE,
            Channel::Cursor | Channel::File | Channel::Shell => FLAG_SUPERSEDES,
        }
    }

    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Channel::Screen,
            2 => Channel::Cursor,
            3 => Channel::File,
            4 => Channel::Shell,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub channel: Channel,
    pub flags: u8,
    pub seq: u32,
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("frame does not start with the Lifeline magic byte")]
    BadMagic,
    #[error("unknown channel {0}")]
    UnknownChannel(u8),
    #[error("reserved flag bits set: {0:#04x}")]
    ReservedBits(u8),
    #[error("flags {flags:#04x} are not allowed on the {channel:?} channel")]
    FlagNotAllowed { channel: Channel, flags: u8 },
    #[error("payload of {0} bytes exceeds the limit")]
    TooLarge(u32),
    #[error("header announces {announced} payload bytes but {actual} follow")]
    LengthMismatch { announced: u32, actual: usize },
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = MAGIC;
        out[1] = self.channel as u8;
        out[2] = self.flags;
        out[4..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..12].copy_from_slice(&self.len.to_be_bytes());
        out
    }
}

/// Checks a frame's flags against its channel.
fn check_flags(channel: Channel, flags: u8) -> Result<(), FrameError> {
    if flags & !(FLAG_SUPERSEDES | FLAG_DEFLATE) != 0 {
        return Err(FrameError::ReservedBits(flags));
    }
    if flags & !channel.allowed_flags() != 0 {
        return Err(FrameError::FlagNotAllowed { channel, flags });
    }
    Ok(())
}

/// Builds a whole frame (header and payload).
pub fn encode(
    channel: Channel,
    flags: u8,
    seq: u32,
    payload: &[u8],
) -> Result<Vec<u8>, FrameError> {
    check_flags(channel, flags)?;
    if payload.len() > MAX_FRAME_PAYLOAD {
        return Err(FrameError::TooLarge(
            payload.len().min(u32::MAX as usize) as u32
        ));
    }
    let header = FrameHeader {
        channel,
        flags,
        seq,
        len: payload.len() as u32,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes a whole binary message into its header and payload; never panics.
pub fn decode(bytes: &[u8]) -> Result<(FrameHeader, &[u8]), FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::Short(bytes.len()));
    }
    if bytes[0] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let channel = Channel::from_u8(bytes[1]).ok_or(FrameError::UnknownChannel(bytes[1]))?;
    let flags = bytes[2];
    if bytes[3] != 0 {
        return Err(FrameError::ReservedBits(bytes[3]));
    }
    check_flags(channel, flags)?;
    let seq = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if len as usize > MAX_FRAME_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len as usize {
        return Err(FrameError::LengthMismatch {
            announced: len,
            actual: payload.len(),
        });
    }
    Ok((
        FrameHeader {
            channel,
            flags,
            seq,
            len,
        },
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vector() {
        let f = encode(Channel::Screen, FLAG_SUPERSEDES, 7, b"hi").unwrap();
        assert_eq!(f, [0x4C, 1, 1, 0, 0, 0, 0, 7, 0, 0, 0, 2, b'h', b'i']);
        let (h, p) = decode(&f).unwrap();
        assert_eq!((h.channel, h.seq, p), (Channel::Screen, 7, &b"hi"[..]));
    }

    #[test]
    fn rejects() {
        assert_eq!(decode(&[0x4C; 3]), Err(FrameError::Short(3)));
        assert_eq!(decode(&[0u8; 12]), Err(FrameError::BadMagic));
        let mut f = encode(Channel::Shell, 0, 1, b"abc").unwrap();
        f.push(0);
        assert!(matches!(decode(&f), Err(FrameError::LengthMismatch { .. })));
        f[1] = 99;
        assert_eq!(decode(&f), Err(FrameError::UnknownChannel(99)));
        let mut big = [0x4C, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff].to_vec();
        assert!(matches!(decode(&big), Err(FrameError::TooLarge(_))));
        big[8..12].copy_from_slice(&0u32.to_be_bytes());
        big[2] = 0x80;
        assert!(matches!(decode(&big), Err(FrameError::ReservedBits(_))));
        big[2] = 0;
        big[3] = 1;
        assert!(matches!(decode(&big), Err(FrameError::ReservedBits(_))));
    }

    #[test]
    fn deflate_flag_on_the_screen_channel_only() {
        let f = encode(Channel::Screen, FLAG_DEFLATE | FLAG_SUPERSEDES, 1, b"z").unwrap();
        assert_eq!(decode(&f).unwrap().0.flags, FLAG_DEFLATE | FLAG_SUPERSEDES);
        let mut c = encode(Channel::Cursor, 0, 1, b"z").unwrap();
        c[2] = FLAG_DEFLATE;
        assert_eq!(
            decode(&c),
            Err(FrameError::FlagNotAllowed {
                channel: Channel::Cursor,
                flags: FLAG_DEFLATE
            })
        );
        assert!(matches!(
            encode(Channel::Shell, FLAG_DEFLATE, 1, b""),
            Err(FrameError::FlagNotAllowed { .. })
        ));
        assert!(matches!(
            encode(Channel::Screen, 0x04, 1, b""),
            Err(FrameError::ReservedBits(4))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok((h, _)) = decode(&bytes) {
                // Whatever passes carries only the flags its channel allows.
                prop_assert_eq!(h.flags & !h.channel.allowed_flags(), 0);
            }
        }

        #[test]
        fn round_trip(ch in 1u8..=4, sup in any::<bool>(), deflate in any::<bool>(),
                      seq in any::<u32>(), payload in prop::collection::vec(any::<u8>(), 0..512)) {
            let channel = Channel::from_u8(ch).unwrap();
            let flags = if sup { FLAG_SUPERSEDES } else { 0 }
                | if deflate && channel == Channel::Screen { FLAG_DEFLATE } else { 0 };
            let f = encode(channel, flags, seq, &payload).unwrap();
            let (h, p) = decode(&f).unwrap();
            prop_assert_eq!(h, FrameHeader { channel, flags, seq, len: payload.len() as u32 });
            prop_assert_eq!(p, &payload[..]);
        }
    }
}
