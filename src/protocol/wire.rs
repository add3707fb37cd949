//! Wire primitives shared by every packet: the UTF-8 string type, a bounds-checked reader over one
//! received frame, and the `Sink` that lets one description of a packet both size and write it.
//! Pure data; used on every shard.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::{BufMut, Bytes, BytesMut};

use super::DecodeError;

/// Largest value a Variable Byte Integer can hold (4 bytes of 7 bits).
pub const VARINT_MAX: u32 = 268_435_455;
/// Largest length of a UTF-8 string or binary field (a two-byte length prefix).
pub const FIELD_LEN_MAX: usize = u16::MAX as usize;

/// An MQTT UTF-8 Encoded String: checked to be well-formed UTF-8 without U+0000 when decoded,
/// and backed by `Bytes` so a decoded string is a zero-copy slice of the received frame.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct MqttStr(Bytes);

impl MqttStr {
    pub const fn from_static(s: &'static str) -> Self {
        MqttStr(Bytes::from_static(s.as_bytes()))
    }

    /// Validates `bytes` as an MQTT string: well-formed UTF-8 ([MQTT-1.5.4-1]; surrogates are
    /// ill-formed UTF-8 and fail here too) and no U+0000 ([MQTT-1.5.4-2]).
    #[inline]
    pub fn from_bytes(bytes: Bytes) -> Result<Self, DecodeError> {
        if !ascii_without_nul(&bytes) {
            check_utf8_without_nul(&bytes)?;
        }
        Ok(MqttStr(bytes))
    }

    /// A Topic Name ([MQTT-4.7.3-1], [MQTT-3.3.2-2]): an MQTT string without the wildcards
    /// `+` and `#`. An ASCII name is checked in one pass for all three rules; UTF-8/NUL errors
    /// take precedence over the wildcard error, as when the checks ran one after the other.
    #[inline]
    pub fn topic_name(bytes: Bytes) -> Result<Self, DecodeError> {
        let (ascii_no_nul, wildcard) = scan_topic(&bytes);
        if !ascii_no_nul {
            check_utf8_without_nul(&bytes)?;
        }
        if wildcard {
            return Err(DecodeError::TopicNameWildcard);
        }
        Ok(MqttStr(bytes))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either validated the bytes as UTF-8 (`from_bytes`) or took
        // them from a `str` / `String`.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

/// Every byte is in 0x01..=0x7f: ASCII (hence well-formed UTF-8) without U+0000. A branch-free
/// fold the compiler vectorises: a byte is rejected when it or its predecessor value has the
/// high bit set (`b >= 0x80`, or `b == 0` where `b - 1` wraps to 0xff).
#[inline]
fn ascii_without_nul(b: &[u8]) -> bool {
    b.iter().fold(0u8, |acc, &c| acc | c | c.wrapping_sub(1)) & 0x80 == 0
}

/// [`ascii_without_nul`] and whether a `+` or `#` occurs, in one pass.
#[inline]
fn scan_topic(b: &[u8]) -> (bool, bool) {
    let (bad, wild) = b.iter().fold((0u8, false), |(bad, wild), &c| {
        (
            bad | c | c.wrapping_sub(1),
            wild | (c == b'+') | (c == b'#'),
        )
    });
    (bad & 0x80 == 0, wild)
}

/// The general check: well-formed UTF-8 ([MQTT-1.5.4-1]; surrogates are ill-formed UTF-8 and
/// fail here too), then no U+0000 ([MQTT-1.5.4-2]).
#[cold]
fn check_utf8_without_nul(b: &[u8]) -> Result<(), DecodeError> {
    std::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8)?;
    if b.contains(&0) {
        return Err(DecodeError::NulCharacter);
    }
    Ok(())
}

impl Deref for MqttStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MqttStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for MqttStr {
    // Hash as a `str` so that `Borrow<str>` lookups in hash maps agree.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl From<&str> for MqttStr {
    fn from(s: &str) -> Self {
        MqttStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for MqttStr {
    fn from(s: String) -> Self {
        MqttStr(Bytes::from(s))
    }
}

impl PartialEq<str> for MqttStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Number of bytes `value` takes as a Variable Byte Integer.
pub const fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Outcome of reading a Variable Byte Integer from the front of a byte slice.
pub enum Varint {
    /// The value and how many bytes it took.
    Value(u32, usize),
    /// The slice ended before the last byte of the integer.
    Incomplete,
}

/// Reads a Variable Byte Integer; a fifth byte (continuation bit set on the fourth) is malformed,
/// and so is a longer encoding than the value needs ([MQTT-1.5.5-1]: a last byte of 0 after a
/// continuation byte, e.g. `0x80 0x00` for 0).
#[inline]
pub fn read_varint(bytes: &[u8]) -> Result<Varint, DecodeError> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(DecodeError::MalformedVarint);
            }
            return Ok(Varint::Value(value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::MalformedVarint)
    } else {
        Ok(Varint::Incomplete)
    }
}

/// A bounds-checked cursor over one complete frame. Every read that would run past the end is a
/// Malformed Packet, never a panic; byte fields are zero-copy slices of the frame.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    #[inline]
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.first().ok_or(DecodeError::Truncated)?;
        self.advance(1);
        Ok(b)
    }

    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.buf.get(..2).ok_or(DecodeError::Truncated)?;
        let v = u16::from_be_bytes([b[0], b[1]]);
        self.advance(2);
        Ok(v)
    }

    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.buf.get(..4).ok_or(DecodeError::Truncated)?;
        let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.advance(4);
        Ok(v)
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        match read_varint(&self.buf)? {
            Varint::Value(v, n) => {
                self.advance(n);
                Ok(v)
            }
            Varint::Incomplete => Err(DecodeError::Truncated),
        }
    }

    /// The next `n` bytes, zero-copy.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.split_to(n))
    }

    /// Binary Data: a two-byte length, then that many bytes.
    #[inline]
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// UTF-8 Encoded String: a two-byte length, then that many bytes of checked UTF-8.
    #[inline]
    pub fn string(&mut self) -> Result<MqttStr, DecodeError> {
        let b = self.binary()?;
        MqttStr::from_bytes(b)
    }

    /// A UTF-8 Encoded String that is a Topic Name (no wildcards), see [`MqttStr::topic_name`].
    #[inline]
    pub fn topic_name(&mut self) -> Result<MqttStr, DecodeError> {
        let b = self.binary()?;
        MqttStr::topic_name(b)
    }

    /// Everything left in the frame.
    #[inline]
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless the frame has been consumed exactly.
    #[inline]
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    /// Skips `n` bytes already checked to be there: a pointer bump, no reference count traffic
    /// (`split_to` would clone and drop a handle to the frame).
    #[inline]
    fn advance(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.buf, n);
    }
}

/// Where encoded bytes go. A packet describes itself once, generically over the sink, and is run
/// against a [`Sizer`] (to learn its exact length without encoding) and against `BytesMut`.
pub trait Sink {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn varint(&mut self, v: u32);
    fn raw(&mut self, b: &[u8]);

    /// A two-byte length and the bytes; a field longer than 65,535 bytes makes the [`Sizer`]
    /// report an error, so the write pass never sees one.
    fn binary(&mut self, b: &[u8]) {
        self.u16(b.len().min(FIELD_LEN_MAX) as u16);
        self.raw(&b[..b.len().min(FIELD_LEN_MAX)]);
    }

    fn string(&mut self, s: &str) {
        self.binary(s.as_bytes())
    }
}

/// Counts the bytes a description would write and remembers whether any field is unencodable.
#[derive(Default)]
pub struct Sizer {
    pub len: usize,
    pub too_long_field: bool,
}

impl Sink for Sizer {
    fn u8(&mut self, _: u8) {
        self.len += 1;
    }
    fn u16(&mut self, _: u16) {
        self.len += 2;
    }
    fn u32(&mut self, _: u32) {
        self.len += 4;
    }
    fn varint(&mut self, v: u32) {
        self.len += varint_len(v);
    }
    fn raw(&mut self, b: &[u8]) {
        self.len += b.len();
    }
    fn binary(&mut self, b: &[u8]) {
        self.too_long_field |= b.len() > FIELD_LEN_MAX;
        self.len += 2 + b.len();
    }
}

impl Sink for BytesMut {
    fn u8(&mut self, v: u8) {
        self.put_u8(v)
    }
    fn u16(&mut self, v: u16) {
        self.put_u16(v)
    }
    fn u32(&mut self, v: u32) {
        self.put_u32(v)
    }
    fn varint(&mut self, mut v: u32) {
        loop {
            let mut b = (v & 0x7f) as u8;
            v >>= 7;
            if v > 0 {
                b |= 0x80;
            }
            self.put_u8(b);
            if v == 0 {
                break;
            }
        }
    }
    fn raw(&mut self, b: &[u8]) {
        self.put_slice(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries_round_trip() {
        for v in [
            0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
        ] {
            let mut b = BytesMut::new();
            b.varint(v);
            assert_eq!(b.len(), varint_len(v), "length of {v}");
            match read_varint(&b).unwrap() {
                Varint::Value(got, n) => assert_eq!((got, n), (v, b.len())),
                Varint::Incomplete => panic!("incomplete {v}"),
            }
        }
    }

    #[test]
    fn varint_spec_examples() {
        // MQTT 5.0 §1.5.5 table: the largest value of each length.
        let cases: [(&[u8], u32); 4] = [
            (&[0x7f], 127),
            (&[0xff, 0x7f], 16_383),
            (&[0xff, 0xff, 0x7f], 2_097_151),
            (&[0xff, 0xff, 0xff, 0x7f], 268_435_455),
        ];
        for (bytes, v) in cases {
            assert!(
                matches!(read_varint(bytes), Ok(Varint::Value(x, n)) if x == v && n == bytes.len())
            );
        }
        assert!(matches!(read_varint(&[0x80, 0x80]), Ok(Varint::Incomplete)));
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]).err(),
            Some(DecodeError::MalformedVarint)
        );
    }

    #[test]
    fn varint_must_use_the_fewest_bytes() {
        // [MQTT-1.5.5-1]: 0 as `80 00`, 127 as `ff 00`, 1 as `81 80 00` are all malformed.
        for bytes in [
            &[0x80, 0x00][..],
            &[0xff, 0x00],
            &[0x81, 0x80, 0x00],
            &[0x80, 0x80, 0x80, 0x00],
        ] {
            assert_eq!(
                read_varint(bytes).err(),
                Some(DecodeError::MalformedVarint),
                "{bytes:02x?}"
            );
        }
        // A zero continuation byte in the middle is fine: 16,384 is `80 80 01`.
        assert!(matches!(
            read_varint(&[0x80, 0x80, 0x01]),
            Ok(Varint::Value(16_384, 3))
        ));
    }

    #[test]
    fn reader_rejects_a_length_past_the_end() {
        // A Property Length (varint) or string length that claims more than the frame holds.
        let mut r = Reader::new(Bytes::from_static(&[0x05, 0x01]));
        let n = r.varint().unwrap() as usize;
        assert_eq!(r.take(n), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, b'a']));
        assert_eq!(r.binary(), Err(DecodeError::Truncated));
    }

    #[test]
    fn strings_reject_bad_utf8_and_nul() {
        let bad: [&[u8]; 4] = [
            &[0xc3, 0x28],             // invalid continuation
            &[0xed, 0xa0, 0x80],       // U+D800 surrogate encoded as UTF-8
            &[0xf8, 0x88, 0x80, 0x80], // 5-byte form
            &[0xc0, 0x80],             // overlong NUL
        ];
        for b in bad {
            assert_eq!(
                MqttStr::from_bytes(Bytes::copy_from_slice(b)),
                Err(DecodeError::InvalidUtf8)
            );
        }
        assert_eq!(
            MqttStr::from_bytes(Bytes::from_static(b"a\0b")),
            Err(DecodeError::NulCharacter)
        );
        // MQTT 5.0 §1.5.4 example: U+2A6D4 then "A" is valid.
        let s = MqttStr::from_bytes(Bytes::from_static(&[0xf0, 0xaa, 0x9b, 0x94, 0x41])).unwrap();
        assert_eq!(s.as_str(), "\u{2A6D4}A");
    }

    #[test]
    fn ascii_fast_path_agrees_with_the_full_check() {
        // Every byte value alone and around ASCII text, against from_utf8 + NUL search.
        let reference = |b: &[u8]| match std::str::from_utf8(b) {
            Err(_) => Err(DecodeError::InvalidUtf8),
            Ok(s) if s.contains('\0') => Err(DecodeError::NulCharacter),
            Ok(_) => Ok(()),
        };
        for c in 0..=255u8 {
            for b in [
                vec![c],
                vec![b'a', c, b'b'],
                [&[b'x'; 40][..], &[c]].concat(),
            ] {
                let want = reference(&b);
                let got = MqttStr::from_bytes(Bytes::from(b.clone())).map(|_| ());
                assert_eq!(got, want, "{b:02x?}");
                let wild = c == b'+' || c == b'#';
                let want_topic = want.and(if wild {
                    Err(DecodeError::TopicNameWildcard)
                } else {
                    Ok(())
                });
                let got = MqttStr::topic_name(Bytes::from(b.clone())).map(|_| ());
                assert_eq!(got, want_topic, "{b:02x?}");
            }
        }
        // UTF-8 / NUL errors come before the wildcard error.
        assert_eq!(
            MqttStr::topic_name(Bytes::from_static(b"a/+\0")),
            Err(DecodeError::NulCharacter)
        );
        assert_eq!(
            MqttStr::topic_name(Bytes::from_static(&[b'#', 0xc3, 0x28])),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            MqttStr::topic_name(Bytes::from_static("é/#".as_bytes())),
            Err(DecodeError::TopicNameWildcard)
        );
        assert!(MqttStr::topic_name(Bytes::from_static("é/\u{7f}".as_bytes())).is_ok());
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert_eq!(r.string(), Err(DecodeError::Truncated));
        let mut r = Reader::new(Bytes::from_static(&[0x01]));
        assert_eq!(r.u16(), Err(DecodeError::Truncated));
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u8(), Err(DecodeError::Truncated));
        assert_eq!(r.u32(), Err(DecodeError::Truncated));
    }
}
