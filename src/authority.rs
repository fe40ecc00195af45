//! Fixes one kind of malformed `:authority` in requests before h2 reads them.
//!
//! Why this exists: etcdctl 3.4 dials its per-endpoint maintenance clients
//! (endpoint status and hashkv, defrag, move-leader, snapshot) with the gRPC
//! target `passthrough:///http://127.0.0.1:2379`, so grpc-go sends
//! `:authority: http://127.0.0.1:2379`. Go's server takes that; the h2 crate
//! resets the stream with PROTOCOL_ERROR ("malformed authority"), and we may
//! not change h2. So we change the bytes it reads: in a HEADERS frame, an
//! `:authority` literal whose value holds "://" gets its first "://" replaced
//! by "::@" (`http::@127.0.0.1:2379`: userinfo `http:`, then the real host and
//! port). The decoded value keeps its length, so a dynamic table entry it
//! creates has the size the client counted (name + value + 32): both HPACK
//! tables stay in step without our tracking them, and later requests that name
//! the entry by index get the fixed value out of h2's own table.
//!
//! Everything else passes through as it came: the client's writes before the
//! HTTP/2 preface decide (anything else, such as HTTP/1.1, is never looked at
//! again), then frames are walked by their 9-byte headers. Only HEADERS frames
//! that end their header block are parsed; payloads of other frames are handed
//! on as they arrive, in the reader's own buffer, without being looked at or
//! copied again (only the rest of the one read that carried a rewritten frame
//! is queued behind it: grpc-go sends `:authority` literally once per
//! connection, then by table index). Any frame we cannot parse, or whose
//! rewrite would not fit the default maximum frame size, goes on unchanged:
//! h2 then rejects it as it did before.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE's default: larger HEADERS frames are not touched,
/// and no rewrite makes one.
const MAX_FRAME: usize = 16_384;
/// HPACK static table index of `:authority` (RFC 7541, appendix A).
const AUTHORITY_INDEX: usize = 1;
const AUTHORITY: &[u8] = b":authority";
/// Length of `:authority` Huffman-coded: no other length can decode to it.
const AUTHORITY_HUFFMAN_LEN: usize = 8;
/// A side read's size when the reader's buffer is too small to take back a
/// held frame.
const SIDE_READ: usize = 64;

/// The client-to-server side of an accepted connection, with `:authority`
/// values fixed as the module describes. Writes pass straight through.
#[derive(Debug)]
pub struct AuthorityFix<S> {
    inner: S,
    state: State,
    /// Payload bytes of the current frame still to pass on untouched.
    skip: usize,
    /// An incomplete frame held back: part of a frame header, or a HEADERS
    /// frame still arriving. It goes back in front of the next bytes read.
    held: Vec<u8>,
    /// Output owed to the reader before anything else (a rewritten frame and
    /// what followed it in the same read).
    out: Vec<u8>,
    out_pos: usize,
    /// Huffman-decoded strings.
    scratch: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of the preface seen so far.
    Preface(usize),
    Frames,
    /// Not HTTP/2 (or given up on): every byte as it comes.
    Passthrough,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> AuthorityFix<S> {
        AuthorityFix {
            inner,
            state: State::Preface(0),
            skip: 0,
            held: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            scratch: Vec::new(),
        }
    }

    /// Walks `data`, the bytes just read. The first bytes it returns the
    /// count of stay where they are as output; from the first byte held back
    /// or rewritten on (from the start when `in_place` is false), output goes
    /// to `out` and an incomplete frame at the end to `held`.
    fn walk(&mut self, data: &[u8], in_place: bool) -> usize {
        let mut kept = if in_place { None } else { Some(0) };
        let mut r = 0;
        while r < data.len() {
            let rest = &data[r..];
            let take = match self.state {
                State::Passthrough => rest.len(),
                State::Preface(seen) => {
                    let n = (PREFACE.len() - seen).min(rest.len());
                    self.state = if rest[..n] != PREFACE[seen..seen + n] {
                        State::Passthrough
                    } else if seen + n == PREFACE.len() {
                        State::Frames
                    } else {
                        State::Preface(seen + n)
                    };
                    n
                }
                State::Frames if self.skip > 0 => {
                    let n = self.skip.min(rest.len());
                    self.skip -= n;
                    n
                }
                State::Frames => {
                    let Some(header) = rest.get(..FRAME_HEADER) else {
                        kept.get_or_insert(r);
                        self.held.extend_from_slice(rest);
                        break;
                    };
                    let len = frame_len(header);
                    if header[3] != HEADERS || header[4] & END_HEADERS == 0 || len > MAX_FRAME {
                        self.skip = len;
                        FRAME_HEADER
                    } else {
                        let Some(frame) = rest.get(..FRAME_HEADER + len) else {
                            kept.get_or_insert(r);
                            self.held.extend_from_slice(rest);
                            break;
                        };
                        if rewrite(frame, &mut self.out, &mut self.scratch) {
                            kept.get_or_insert(r);
                            r += frame.len();
                            continue;
                        }
                        frame.len()
                    }
                }
            };
            if kept.is_some() {
                self.out.extend_from_slice(&rest[..take]);
            }
            r += take;
        }
        kept.unwrap_or(data.len())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                    // It held at most one read's worth: don't keep that for
                    // the connection's life.
                    this.out.shrink_to(FRAME_HEADER + MAX_FRAME);
                }
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Passthrough || buf.remaining() == 0 {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.held.len() < buf.remaining() {
                // The usual case: the held bytes (if any) go back in front of
                // the new ones, and the whole is walked in the reader's buffer.
                let start = buf.filled().len();
                let held = this.held.len();
                buf.put_slice(&this.held);
                match Pin::new(&mut this.inner).poll_read(cx, buf) {
                    Poll::Ready(Ok(())) => {}
                    other => {
                        buf.set_filled(start);
                        return other;
                    }
                }
                this.held.clear();
                if buf.filled().len() == start + held {
                    // End of stream: an incomplete frame goes on as it came.
                    this.state = State::Passthrough;
                    return Poll::Ready(Ok(()));
                }
                let kept = this.walk(&buf.filled()[start..], true);
                buf.set_filled(start + kept);
                if kept > 0 {
                    return Poll::Ready(Ok(()));
                }
            } else {
                // A reader's buffer too small for the held frame: read a
                // little on the side and queue everything in `out`.
                let mut side = [0u8; SIDE_READ];
                let mut side = ReadBuf::new(&mut side);
                match Pin::new(&mut this.inner).poll_read(cx, &mut side) {
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
                if side.filled().is_empty() {
                    std::mem::swap(&mut this.out, &mut this.held);
                    this.state = State::Passthrough;
                    continue;
                }
                let mut chunk = std::mem::take(&mut this.held);
                chunk.extend_from_slice(side.filled());
                this.walk(&chunk, false);
                if this.held.is_empty() {
                    chunk.clear();
                    this.held = chunk;
                }
            }
        }
    }
}

/// `impl AsyncWrite for $type<S>` passing every call to its `inner`
/// stream: for the wrappers that only change what is read.
macro_rules! forward_async_write {
    ($type:ident) => {
        impl<S: AsyncWrite + Unpin> AsyncWrite for $type<S> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}
pub(crate) use forward_async_write;

forward_async_write!(AuthorityFix);

fn frame_len(header: &[u8]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

/// Appends `frame` (a whole HEADERS frame with END_HEADERS) to `out` with its
/// `:authority` fixed, and says so; or leaves `out` as it was and says false:
/// nothing to fix, a block that does not parse, or a result too large.
fn rewrite(frame: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> bool {
    let mark = out.len();
    let done = rewrite_into(frame, out, scratch).is_some();
    if !done {
        out.truncate(mark);
    }
    done
}

fn rewrite_into(frame: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Option<()> {
    let (header, payload) = frame.split_at_checked(FRAME_HEADER)?;
    let flags = header[4];
    let (pad, mut start) = if flags & PADDED != 0 {
        (usize::from(*payload.first()?), 1)
    } else {
        (0, 0)
    };
    if flags & PRIORITY != 0 {
        start += 5;
    }
    let end = payload.len().checked_sub(pad)?;
    let block = payload.get(start..end)?;

    let mark = out.len();
    let mut copied = 0;
    let mut i = 0;
    while i < block.len() {
        let (prefix, literal) = match block[i] {
            0x80..=0xff => (7, false), // indexed field
            0x40..=0x7f => (6, true),  // literal with incremental indexing
            0x20..=0x3f => (5, false), // dynamic table size update
            _ => (4, true),            // literal without indexing, never indexed
        };
        let (index, next) = integer(block, i, prefix)?;
        i = next;
        if !literal {
            continue;
        }
        let is_authority = match index {
            0 => {
                let (huffman, name, next) = string(block, i)?;
                i = next;
                if huffman {
                    name.len() == AUTHORITY_HUFFMAN_LEN && {
                        scratch.clear();
                        huffman_decode(name, scratch)?;
                        scratch.as_slice() == AUTHORITY
                    }
                } else {
                    name == AUTHORITY
                }
            }
            AUTHORITY_INDEX => true,
            _ => false,
        };
        let value_start = i;
        let (huffman, raw, next) = string(block, i)?;
        i = next;
        if !is_authority {
            continue;
        }
        let value = if huffman {
            scratch.clear();
            huffman_decode(raw, scratch)?;
            scratch.as_slice()
        } else {
            raw
        };
        let Some(at) = value.windows(3).position(|w| w == b"://") else {
            continue;
        };
        if out.len() == mark {
            out.extend_from_slice(header);
            out.extend_from_slice(&payload[..start]);
        }
        out.extend_from_slice(&block[copied..value_start]);
        put_integer(out, 7, 0, value.len());
        out.extend_from_slice(&value[..at]);
        out.extend_from_slice(b"::@");
        out.extend_from_slice(&value[at + 3..]);
        copied = i;
    }
    if out.len() == mark {
        return None;
    }
    out.extend_from_slice(&block[copied..]);
    out.extend_from_slice(&payload[end..]);
    let len = out.len() - mark - FRAME_HEADER;
    if len > MAX_FRAME {
        return None;
    }
    out[mark..mark + 3].copy_from_slice(&len.to_be_bytes()[size_of::<usize>() - 3..]);
    Some(())
}

/// An HPACK integer (RFC 7541, section 5.1) with a `prefix`-bit prefix at
/// `block[i]`: its value and the index after it.
fn integer(block: &[u8], i: usize, prefix: u8) -> Option<(usize, usize)> {
    let max = (1u8 << prefix) - 1;
    let mut value = usize::from(*block.get(i)? & max);
    let mut i = i + 1;
    if value < usize::from(max) {
        return Some((value, i));
    }
    // Four continuation bytes (28 bits) are plenty for anything in a frame.
    for shift in [0, 7, 14, 21] {
        let b = *block.get(i)?;
        i += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value, i));
        }
    }
    None
}

fn put_integer(out: &mut Vec<u8>, prefix: u8, flags: u8, mut value: usize) {
    let max = (1u8 << prefix) - 1;
    if value < usize::from(max) {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max);
    value -= usize::from(max);
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// An HPACK string literal at `block[i]`: whether it is Huffman-coded, its
/// octets, and the index after it.
fn string(block: &[u8], i: usize) -> Option<(bool, &[u8], usize)> {
    let huffman = *block.get(i)? & 0x80 != 0;
    let (len, start) = integer(block, i, 7)?;
    let end = start.checked_add(len)?;
    Some((huffman, block.get(start..end)?, end))
}

fn huffman_decode(src: &[u8], dst: &mut Vec<u8>) -> Option<()> {
    httlib_huffman::decode(src, dst, httlib_huffman::DecoderSpeed::FourBits).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    const HOST: &str = "127.0.0.1:2379";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len().to_be_bytes();
        let mut f = len[len.len() - 3..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn huffman(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        httlib_huffman::encode(s, &mut v).unwrap();
        v
    }

    /// An HPACK string literal, Huffman-coded or raw.
    fn string_literal(out: &mut Vec<u8>, s: &[u8], huff: bool) {
        let bytes = if huff { huffman(s) } else { s.to_vec() };
        let flags = if huff { 0x80 } else { 0 };
        hpack::encoder::encode_integer_into(bytes.len(), 7, flags, out).unwrap();
        out.extend_from_slice(&bytes);
    }

    /// `:authority` as a literal with incremental indexing and static name
    /// index 1, the way grpc-go sends it.
    fn authority_indexed_name(out: &mut Vec<u8>, value: &str, huff: bool) {
        hpack::encoder::encode_integer_into(AUTHORITY_INDEX, 6, 0x40, out).unwrap();
        string_literal(out, value.as_bytes(), huff);
    }

    /// `:authority` as a literal without indexing with a literal name.
    fn authority_literal_name(out: &mut Vec<u8>, value: &str, huff_name: bool, huff: bool) {
        out.push(0x00);
        string_literal(out, AUTHORITY, huff_name);
        string_literal(out, value.as_bytes(), huff);
    }

    /// A request's header block as a client encodes it, with `authority`
    /// (the encoded `:authority` field) after the other pseudo-headers.
    fn request_with(authority: &[u8]) -> Vec<u8> {
        let mut encoder = hpack::Encoder::new();
        let pseudo: [(&[u8], &[u8]); 3] = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.Maintenance/Status"),
        ];
        let regular: [(&[u8], &[u8]); 3] = [
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"grpc-timeout", b"5S"),
        ];
        let mut block = encoder.encode(pseudo);
        block.extend_from_slice(authority);
        block.extend(encoder.encode(regular));
        block
    }

    /// The dynamic table index of the `:authority` entry `request_with` made,
    /// if it made one: two new names (te, grpc-timeout) were added after it.
    const AUTHORITY_ENTRY: u8 = 64;

    /// A later request that takes one field from the dynamic table entry
    /// `entry` (`:authority`, when it is `AUTHORITY_ENTRY`) and the rest from
    /// the static table.
    fn second_request(entry: u8) -> Vec<u8> {
        let mut block = vec![0x83, 0x86, 0x80 | entry];
        hpack::encoder::encode_integer_into(4, 4, 0, &mut block).unwrap();
        string_literal(&mut block, b"/etcdserverpb.Maintenance/Status", true);
        block
    }

    /// Everything the adapter hands on, read with `bufs` as the reader's
    /// buffer sizes in turn, from an inner stream that hands out `chunks`
    /// bytes at a time (in turn) and says Pending before every read.
    fn run(input: &[u8], chunks: &[usize], bufs: &[usize]) -> Vec<u8> {
        let mut fix = AuthorityFix::new(Chunked {
            data: input.iter().copied().collect(),
            sizes: chunks.to_vec(),
            turn: 0,
            ready: false,
        });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut got = Vec::new();
        let mut turn = 0;
        let mut b = vec![0u8; bufs.iter().copied().max().unwrap()];
        loop {
            let size = bufs[turn % bufs.len()];
            turn += 1;
            let n = loop {
                let mut rb = ReadBuf::new(&mut b[..size]);
                match Pin::new(&mut fix).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(r) => {
                        r.unwrap();
                        break rb.filled().len();
                    }
                    Poll::Pending => continue,
                }
            };
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&b[..n]);
        }
    }

    fn one_piece(input: &[u8]) -> Vec<u8> {
        run(input, &[usize::MAX], &[1 << 20])
    }

    struct Chunked {
        data: VecDeque<u8>,
        sizes: Vec<usize>,
        turn: usize,
        ready: bool,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.ready = false;
            let size = self.sizes[self.turn % self.sizes.len()];
            self.turn += 1;
            let n = size.min(buf.remaining()).min(self.data.len());
            let bytes: Vec<u8> = self.data.drain(..n).collect();
            buf.put_slice(&bytes);
            Poll::Ready(Ok(()))
        }
    }

    /// Splits what came out into frames after the preface.
    fn frames(stream: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        assert!(stream.starts_with(PREFACE));
        let mut rest = &stream[PREFACE.len()..];
        let mut v = Vec::new();
        while !rest.is_empty() {
            let len = frame_len(rest);
            v.push((rest[3], rest[4], rest[9..9 + len].to_vec()));
            rest = &rest[9 + len..];
        }
        v
    }

    fn decode(decoder: &mut hpack::Decoder, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        decoder.decode(block).unwrap()
    }

    fn fixed(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(n, v)| {
                if n == AUTHORITY {
                    let v = String::from_utf8(v.clone())
                        .unwrap()
                        .replacen("://", "::@", 1);
                    (n.clone(), v.into_bytes())
                } else {
                    (n.clone(), v.clone())
                }
            })
            .collect()
    }

    #[test]
    fn authority_of_huffman_length_8() {
        assert_eq!(huffman(AUTHORITY).len(), AUTHORITY_HUFFMAN_LEN);
    }

    /// Each way of sending `:authority` comes out fixed, with the same decoded
    /// length, every other field as it was, and the dynamic tables in step.
    #[test]
    fn authority_literals_are_rewritten() {
        let url = format!("http://{HOST}");
        let cases: Vec<(&str, Vec<u8>, bool)> = {
            let mut raw = Vec::new();
            authority_indexed_name(&mut raw, &url, false);
            let mut huff = Vec::new();
            authority_indexed_name(&mut huff, &url, true);
            let mut name = Vec::new();
            authority_literal_name(&mut name, &url, false, false);
            let mut huff_name = Vec::new();
            authority_literal_name(&mut huff_name, &format!("https://{HOST}"), true, true);
            let mut never = Vec::new();
            hpack::encoder::encode_integer_into(AUTHORITY_INDEX, 4, 0x10, &mut never).unwrap();
            string_literal(&mut never, b"unix://localhost:2379", true);
            vec![
                ("raw value", raw, true),
                ("huffman value", huff, true),
                ("literal name", name, false),
                ("huffman literal name", huff_name, false),
                ("never indexed", never, false),
            ]
        };
        for (what, authority, indexed) in cases {
            // The way a client sends it: other fields around it, and a table
            // that already holds something.
            let block = request_with(&authority);
            // The next request: `:authority` from the table if it went there,
            // else the newest entry (grpc-timeout).
            let second = second_request(if indexed { AUTHORITY_ENTRY } else { 62 });
            let input = [
                PREFACE,
                &frame(4, 0, 0, &[]),
                &frame(HEADERS, END_HEADERS, 1, &block),
                &frame(0, 1, 1, b"\0\0\0\0\0"),
                &frame(HEADERS, END_HEADERS | 1, 3, &second),
            ]
            .concat();
            let output = one_piece(&input);
            let got = frames(&output);
            assert_eq!(got.len(), 4, "{what}");
            assert_eq!(got[0], (4, 0, vec![]), "{what}");
            assert_eq!(got[2], (0, 1, b"\0\0\0\0\0".to_vec()), "{what}");

            let mut client_view = hpack::Decoder::new();
            let mut server_view = hpack::Decoder::new();
            let sent = decode(&mut client_view, &block);
            let seen = decode(&mut server_view, &got[1].2);
            assert_eq!(seen, fixed(&sent), "{what}");
            let authority = seen.iter().find(|(n, _)| n == AUTHORITY).unwrap();
            assert!(
                authority.1.ends_with(format!("::@{HOST}").as_bytes()) || what == "never indexed",
                "{what}"
            );
            for ((n1, v1), (n2, v2)) in sent.iter().zip(&seen) {
                assert_eq!((n1, v1.len()), (n2, v2.len()), "{what}");
            }
            // The second request decodes against the tables the first left.
            let sent = decode(&mut client_view, &second);
            let seen = decode(&mut server_view, &got[3].2);
            assert_eq!(seen, fixed(&sent), "{what}");
            assert_eq!(got[3].2, second, "{what}: indexed fields are not touched");
            if indexed {
                assert_eq!(
                    seen[2],
                    (AUTHORITY.to_vec(), format!("http::@{HOST}").into_bytes())
                );
            }
        }
    }

    #[test]
    fn padding_and_priority_are_kept() {
        let mut authority = Vec::new();
        authority_indexed_name(&mut authority, &format!("http://{HOST}"), true);
        let block = request_with(&authority);
        let mut payload = vec![3]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 1, 15]); // priority
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0, 0]);
        let input = [
            PREFACE,
            &frame(HEADERS, END_HEADERS | PADDED | PRIORITY, 1, &payload),
        ]
        .concat();
        let got = frames(&one_piece(&input));
        let out = &got[0].2;
        assert_eq!(got[0].1, END_HEADERS | PADDED | PRIORITY);
        assert_eq!(out[..6], payload[..6]);
        assert_eq!(out[out.len() - 3..], [0, 0, 0]);
        let fields = hpack::Decoder::new()
            .decode(&out[6..out.len() - 3])
            .unwrap();
        assert_eq!(
            fields.iter().find(|(n, _)| n == AUTHORITY).unwrap().1,
            format!("http::@{HOST}").into_bytes()
        );
    }

    #[test]
    fn frames_without_a_fix_pass_unchanged() {
        let mut authority = Vec::new();
        authority_indexed_name(&mut authority, HOST, true);
        let fine = request_with(&authority);
        let mut with_url = Vec::new();
        authority_indexed_name(&mut with_url, &format!("http://{HOST}"), true);
        let mut truncated = with_url.clone();
        truncated.pop();
        // A value whose raw form would not fit in a frame.
        let mut huge = Vec::new();
        authority_indexed_name(&mut huge, &format!("http://{}", "a".repeat(17_000)), true);
        assert!(huge.len() <= MAX_FRAME);
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let input = [
            PREFACE,
            &frame(4, 0, 0, &[0, 4, 0, 0x10, 0, 0]),
            &frame(8, 0, 0, &[0, 0x10, 0, 0]),
            &frame(HEADERS, END_HEADERS, 1, &fine),
            &frame(0, 0, 1, &data[..16_384]),
            &frame(0, 0, 1, &data),
            &frame(0, 1, 1, &[]),
            // Needs CONTINUATION: left alone.
            &frame(HEADERS, 0, 3, &with_url),
            &frame(9, END_HEADERS, 3, &[]),
            &frame(HEADERS, END_HEADERS, 5, &truncated),
            &frame(HEADERS, END_HEADERS, 7, &huge),
            &frame(HEADERS, END_HEADERS | PADDED, 9, &[200, 1, 2]),
            &frame(6, 0, 0, &[1; 8]),
        ]
        .concat();
        assert_eq!(one_piece(&input), input);
        assert_eq!(run(&input, &[1], &[7]), input);
        // Cut short mid-frame: what came goes on as it came.
        let cut = &input[..input.len() - 3];
        assert_eq!(one_piece(cut), cut);
        assert_eq!(run(cut, &[5], &[3]), cut);
        let headers = frame(HEADERS, END_HEADERS, 1, &with_url);
        for end in [3, 9, 12] {
            let cut = [PREFACE, &headers[..end]].concat();
            assert_eq!(one_piece(&cut), cut);
            assert_eq!(run(&cut, &[1], &[2]), cut);
        }
    }

    #[test]
    fn other_protocols_pass_unchanged() {
        let http1 = b"GET /v3/kv/range HTTP/1.1\r\nHost: x\r\n\r\n\x00\x00\x05\x01\x04".to_vec();
        assert_eq!(one_piece(&http1), http1);
        assert_eq!(run(&http1, &[1], &[1]), http1);
        // Starts like the preface, then is not.
        let mut almost = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".to_vec();
        let mut block = Vec::new();
        authority_indexed_name(&mut block, &format!("http://{HOST}"), false);
        almost.extend(frame(HEADERS, END_HEADERS, 1, &block));
        assert_eq!(one_piece(&almost), almost);
        assert_eq!(run(&almost, &[3], &[2]), almost);
        assert_eq!(one_piece(b"PR"), b"PR");
        assert_eq!(one_piece(b""), b"");
    }

    fn sample() -> Vec<u8> {
        let mut authority = Vec::new();
        authority_indexed_name(&mut authority, &format!("http://{HOST}"), true);
        let first = request_with(&authority);
        let second = second_request(AUTHORITY_ENTRY);
        let mut third = Vec::new();
        authority_literal_name(&mut third, "https://[::1]:2379", false, true);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        let mut padded = vec![4, 0x80, 0, 0, 1, 9];
        padded.extend_from_slice(&third);
        padded.extend_from_slice(&[0; 4]);
        [
            PREFACE,
            &frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]),
            &frame(HEADERS, END_HEADERS, 1, &first),
            &frame(0, 0, 1, &data[..300]),
            &frame(HEADERS, END_HEADERS, 3, &second),
            &frame(0, 1, 3, &data[..16_000]),
            &frame(HEADERS, END_HEADERS | PADDED | PRIORITY, 5, &padded),
            &frame(HEADERS, 0, 7, &first),
            &frame(9, END_HEADERS, 7, &[]),
            &frame(0, 1, 5, &data),
        ]
        .concat()
    }

    #[test]
    fn one_byte_at_a_time_is_the_same() {
        let input = sample();
        let whole = one_piece(&input);
        assert_ne!(whole, input);
        assert_eq!(run(&input, &[1], &[1 << 16]), whole);
        assert_eq!(run(&input, &[1], &[1]), whole);
        assert_eq!(run(&input, &[1 << 16], &[1]), whole);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_split_is_the_same(
            chunks in proptest::collection::vec(1usize..3000, 1..40),
            bufs in proptest::collection::vec(1usize..20_000, 1..20),
        ) {
            let input = sample();
            prop_assert_eq!(run(&input, &chunks, &bufs), one_piece(&input));
        }

        /// Arbitrary frames: no panic, and splitting changes nothing.
        #[test]
        fn arbitrary_frames(
            frames in proptest::collection::vec(
                (0u8..10, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)),
                0..12,
            ),
            chunks in proptest::collection::vec(1usize..50, 1..10),
            bufs in proptest::collection::vec(1usize..100, 1..10),
        ) {
            let mut input = PREFACE.to_vec();
            for (kind, flags, payload) in &frames {
                input.extend(frame(*kind, *flags, 1, payload));
            }
            prop_assert_eq!(run(&input, &chunks, &bufs), one_piece(&input));
        }

        /// Garbage where a Huffman-coded `:authority` name or value goes: no
        /// panic, and no change unless it decodes to something with "://".
        #[test]
        fn arbitrary_huffman_strings(
            name in proptest::collection::vec(any::<u8>(), 8),
            value in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut indexed = vec![0x40 | AUTHORITY_INDEX as u8];
            hpack::encoder::encode_integer_into(value.len(), 7, 0x80, &mut indexed).unwrap();
            indexed.extend_from_slice(&value);
            let mut literal = vec![0x10, 0x80 | 8];
            literal.extend_from_slice(&name);
            literal.extend_from_slice(&indexed[1..]);
            for block in [indexed, literal] {
                let input = [PREFACE, &frame(HEADERS, END_HEADERS, 1, &block)].concat();
                let output = one_piece(&input);
                let mut decoded = Vec::new();
                let fixable = huffman_decode(&value, &mut decoded).is_some()
                    && decoded.windows(3).any(|w| w == b"://");
                if !fixable {
                    prop_assert_eq!(&output, &input);
                }
                prop_assert_eq!(run(&input, &[3], &[5]), output);
            }
        }
    }

    /// Through a real h2 server: the request it would have reset arrives,
    /// and so does the next one that names the table entry.
    #[tokio::test]
    async fn h2_accepts_the_rewritten_requests() {
        use tokio::io::AsyncWriteExt;
        let (client, server) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(AuthorityFix::new(server))
                .await
                .unwrap();
            let mut seen = Vec::new();
            while let Some(request) = conn.accept().await {
                let (request, mut respond) = request.unwrap();
                seen.push(request.uri().to_string());
                let response = tonic::codegen::http::Response::new(());
                respond.send_response(response, true).unwrap();
                if seen.len() == 2 {
                    break;
                }
            }
            seen
        });
        let (mut reader, mut writer) = tokio::io::split(client);
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sink).await;
        });
        let mut authority = Vec::new();
        authority_indexed_name(&mut authority, &format!("http://{HOST}"), true);
        let first = request_with(&authority);
        let second = second_request(AUTHORITY_ENTRY);
        let input = [
            PREFACE,
            &frame(4, 0, 0, &[]),
            &frame(HEADERS, END_HEADERS | 1, 1, &first),
            &frame(HEADERS, END_HEADERS | 1, 3, &second),
        ]
        .concat();
        writer.write_all(&input).await.unwrap();
        let seen = tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        let uri = format!("http://http::@{HOST}/etcdserverpb.Maintenance/Status");
        assert_eq!(seen, vec![uri.clone(), uri]);
        drop(writer);
        drain.abort();
    }
}
