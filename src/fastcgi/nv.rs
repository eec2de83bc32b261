//! FastCGI name-value pairs (spec §3.4): length encoding, an encoder and an
//! incremental, bounded decoder for PARAMS / GET_VALUES bodies.

use thiserror::Error;

/// Largest length a name or value may declare (31 bits).
pub const MAX_NV_LEN: usize = 0x7fff_ffff;

/// A decoded `(name, value)` pair; names and values are raw bytes.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Errors of the name-value layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NvError {
    /// Encoding: a name or value is longer than 2^31-1 bytes.
    #[error("name or value length {0} exceeds 2^31-1")]
    LengthTooLarge(usize),
    /// Decoding: the data (received or declared) exceeds the byte budget.
    #[error("name-value data exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    /// Decoding: more pairs than allowed.
    #[error("more than {limit} name-value pairs")]
    TooManyPairs { limit: usize },
    /// Decoding: the data ended inside a pair.
    #[error("name-value data ends inside a pair")]
    Truncated,
}

/// Appends one length: 1 byte if <= 127, else 4 bytes big-endian with the
/// top bit set.
pub fn encode_len(out: &mut Vec<u8>, len: usize) -> Result<(), NvError> {
    if let Ok(short) = u8::try_from(len) {
        if short <= 0x7f {
            out.push(short);
            return Ok(());
        }
    }
    if len > MAX_NV_LEN {
        return Err(NvError::LengthTooLarge(len));
    }
    // len <= 2^31-1 here, so it fits in u32 with the top bit free.
    let long = u32::try_from(len).map_err(|_| NvError::LengthTooLarge(len))?;
    out.extend_from_slice(&(long | 0x8000_0000).to_be_bytes());
    Ok(())
}

/// Wire size of one encoded pair (saturating; only meaningful for valid pairs).
#[must_use]
pub fn encoded_len(name: &[u8], value: &[u8]) -> usize {
    let l = |n: usize| -> usize {
        if n <= 0x7f {
            1
        } else {
            4
        }
    };
    l(name.len()).saturating_add(l(value.len())).saturating_add(name.len()).saturating_add(value.len())
}

/// Appends one pair. Nothing is written if either length is invalid.
pub fn encode_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), NvError> {
    for len in [name.len(), value.len()] {
        if len > MAX_NV_LEN {
            return Err(NvError::LengthTooLarge(len));
        }
    }
    encode_len(out, name.len())?;
    encode_len(out, value.len())?;
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    Ok(())
}

/// Appends all pairs; on error `out` is left as it was.
pub fn encode_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut Vec<u8>, pairs: &[(N, V)]) -> Result<(), NvError> {
    let start = out.len();
    for (n, v) in pairs {
        if let Err(e) = encode_pair(out, n.as_ref(), v.as_ref()) {
            out.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}

/// Decodes one length at the start of `buf`. Returns `(length, bytes used)`,
/// or `None` if `buf` does not yet hold the whole length.
#[must_use]
pub fn decode_len(buf: &[u8]) -> Option<(usize, usize)> {
    let first = *buf.first()?;
    if first & 0x80 == 0 {
        return Some((usize::from(first), 1));
    }
    let b: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(b) & 0x7fff_ffff;
    Some((usize::try_from(len).ok()?, 4))
}

/// Incremental decoder: pairs may be split anywhere (even inside a length)
/// across `push` calls. Memory is bounded by `max_bytes`: declared lengths
/// are checked against the budget before any data is waited for, and no
/// buffer is ever sized from a declared length.
#[derive(Debug, Clone)]
pub struct NvDecoder {
    /// Bytes of the pair currently being received.
    buf: Vec<u8>,
    pairs: Vec<Pair>,
    /// Bytes received so far (all pushes).
    received: usize,
    /// Bytes belonging to completed pairs.
    consumed: usize,
    max_bytes: usize,
    max_pairs: usize,
}

impl NvDecoder {
    #[must_use]
    pub fn new(max_bytes: usize, max_pairs: usize) -> Self {
        Self { buf: Vec::new(), pairs: Vec::new(), received: 0, consumed: 0, max_bytes, max_pairs }
    }

    /// Feeds more encoded bytes and decodes every complete pair.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), NvError> {
        let too_large = NvError::TooLarge { limit: self.max_bytes };
        self.received = self.received.checked_add(bytes.len()).filter(|&r| r <= self.max_bytes).ok_or_else(|| too_large.clone())?;
        self.buf.extend_from_slice(bytes);

        let mut pos = 0usize;
        loop {
            let rest = self.buf.get(pos..).unwrap_or(&[]);
            let Some((name_len, a)) = decode_len(rest) else {
                break;
            };
            // Reject an oversized claim as soon as the name length is known.
            let name_end = a.checked_add(name_len).ok_or_else(|| too_large.clone())?;
            self.check_budget(name_end)?;
            let Some((value_len, b)) = decode_len(rest.get(a..).unwrap_or(&[])) else {
                break;
            };
            let name_start = a.checked_add(b).ok_or_else(|| too_large.clone())?;
            let name_end = name_start.checked_add(name_len).ok_or_else(|| too_large.clone())?;
            let value_end = name_end.checked_add(value_len).ok_or_else(|| too_large.clone())?;
            self.check_budget(value_end)?;
            let (Some(name), Some(value)) = (rest.get(name_start..name_end), rest.get(name_end..value_end)) else {
                break; // wait for more data
            };
            if self.pairs.len() >= self.max_pairs {
                return Err(NvError::TooManyPairs { limit: self.max_pairs });
            }
            self.pairs.push((name.to_vec(), value.to_vec()));
            pos = pos.saturating_add(value_end);
            self.consumed = self.consumed.saturating_add(value_end);
        }
        self.buf.drain(..pos.min(self.buf.len()));
        Ok(())
    }

    /// Errors if a pair of `pair_len` bytes following the completed pairs
    /// would exceed the byte budget.
    fn check_budget(&self, pair_len: usize) -> Result<(), NvError> {
        match self.consumed.checked_add(pair_len) {
            Some(total) if total <= self.max_bytes => Ok(()),
            _ => Err(NvError::TooLarge { limit: self.max_bytes }),
        }
    }

    /// Pairs decoded so far.
    #[must_use]
    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// Ends the stream: errors if it stopped inside a pair.
    pub fn finish(self) -> Result<Vec<Pair>, NvError> {
        if self.buf.is_empty() {
            Ok(self.pairs)
        } else {
            Err(NvError::Truncated)
        }
    }
}

/// Decodes a complete body (e.g. GET_VALUES) in one go.
pub fn decode_all(bytes: &[u8], max_bytes: usize, max_pairs: usize) -> Result<Vec<Pair>, NvError> {
    let mut d = NvDecoder::new(max_bytes, max_pairs);
    d.push(bytes)?;
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 1 << 20;

    fn enc(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_pairs(&mut out, pairs).unwrap();
        out
    }

    #[test]
    fn short_short_literal() {
        let wire = [3, 2, b'F', b'O', b'O', b'h', b'i'];
        assert_eq!(enc(&[(b"FOO", b"hi")]), wire);
        assert_eq!(decode_all(&wire, BIG, 10).unwrap(), vec![(b"FOO".to_vec(), b"hi".to_vec())]);
    }

    #[test]
    fn all_four_length_combinations() {
        let short = vec![b's'; 127]; // largest 1-byte length
        let long = vec![b'l'; 128]; // smallest 4-byte length
        for (n, v, prefix) in [
            (&short, &short, vec![0x7f, 0x7f]),
            (&short, &long, vec![0x7f, 0x80, 0, 0, 0x80]),
            (&long, &short, vec![0x80, 0, 0, 0x80, 0x7f]),
            (&long, &long, vec![0x80, 0, 0, 0x80, 0x80, 0, 0, 0x80]),
        ] {
            let mut wire = prefix.clone();
            wire.extend_from_slice(n);
            wire.extend_from_slice(v);
            let mut out = Vec::new();
            encode_pair(&mut out, n, v).unwrap();
            assert_eq!(out, wire);
            assert_eq!(encoded_len(n, v), wire.len());
            assert_eq!(decode_all(&wire, BIG, 10).unwrap(), vec![(n.clone(), v.clone())]);
        }
    }

    #[test]
    fn four_byte_length_may_encode_small_values() {
        // Senders may use the long form for short lengths; accept it.
        let wire = [0x80, 0, 0, 1, 0x80, 0, 0, 0, b'A'];
        assert_eq!(decode_all(&wire, BIG, 10).unwrap(), vec![(b"A".to_vec(), vec![])]);
    }

    #[test]
    fn split_at_every_position() {
        let long = vec![b'v'; 300];
        let wire = enc(&[(b"A", b"1"), (b"LONG", &long), (b"", b""), (b"Z", b"")]);
        for cut in 0..=wire.len() {
            let mut d = NvDecoder::new(BIG, 10);
            d.push(&wire[..cut]).unwrap();
            d.push(&wire[cut..]).unwrap();
            let pairs = d.finish().unwrap();
            assert_eq!(pairs.len(), 4);
            assert_eq!(pairs[1], (b"LONG".to_vec(), long.clone()));
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let wire = enc(&[(b"SCRIPT_NAME", b"/app"), (&[b'k'; 200], b"x")]);
        let mut d = NvDecoder::new(BIG, 10);
        for b in &wire {
            d.push(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(d.pairs().len(), 2);
        assert_eq!(d.finish().unwrap()[0].1, b"/app");
    }

    #[test]
    fn truncated_stream() {
        // inside a 4-byte length
        assert_eq!(decode_all(&[0x80, 0], BIG, 10), Err(NvError::Truncated));
        // inside the value
        assert_eq!(decode_all(&[1, 3, b'a', b'b'], BIG, 10), Err(NvError::Truncated));
    }

    #[test]
    fn huge_declared_length_is_rejected_without_allocation() {
        // name length 2^31-1 declared, only 5 bytes sent
        let wire = [0xff, 0xff, 0xff, 0xff, 0];
        assert_eq!(decode_all(&wire, BIG, 10), Err(NvError::TooLarge { limit: BIG }));
        // value length huge, name fine
        let wire = [1, 0xff, 0xff, 0xff, 0xff, b'a'];
        let mut d = NvDecoder::new(BIG, 10);
        assert_eq!(d.push(&wire), Err(NvError::TooLarge { limit: BIG }));
    }

    #[test]
    fn byte_and_pair_bounds() {
        let wire = enc(&[(b"AB", b"CD")]); // 6 bytes
        assert!(decode_all(&wire, 6, 10).is_ok());
        assert_eq!(decode_all(&wire, 5, 10), Err(NvError::TooLarge { limit: 5 }));
        let wire = enc(&[(b"A", b""), (b"B", b""), (b"C", b"")]);
        assert!(decode_all(&wire, BIG, 3).is_ok());
        assert_eq!(decode_all(&wire, BIG, 2), Err(NvError::TooManyPairs { limit: 2 }));
    }

    #[test]
    fn encode_rejects_oversized_lengths() {
        let mut out = vec![9];
        assert_eq!(encode_len(&mut out, MAX_NV_LEN + 1), Err(NvError::LengthTooLarge(MAX_NV_LEN + 1)));
        encode_len(&mut out, MAX_NV_LEN).unwrap();
        assert_eq!(out, [9, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_len(&out[1..]), Some((MAX_NV_LEN, 4)));
        assert_eq!(decode_len(&[]), None);
        assert_eq!(decode_len(&[0x80, 1, 2]), None);
    }
}
