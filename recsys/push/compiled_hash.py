"""A compiled keyed BLAKE2b with an 8-byte digest over many short strings (RFC 7693).

Why it exists: ``hashlib`` has no call that hashes many messages; it takes one
Python call per id. The push hashes every user id of the city twice a night
(the holdout over all 3.1M users, the history buckets over the ~2.9M computed),
and at ~3 us per id (the call, the copy of the keyed state, the id's encoding)
that was ~17 s of the city's 16-21 s plan, on one core before any chunk
starts. Here the ids come as one UTF-8 byte buffer with offsets (an Arrow
string column's own layout) and one compiled loop hashes them all: ~0.5 us per
id (the compression function itself; hashlib's C code takes about as long per
block), ~10x less for the plan (benchmarks/README.md, "Push").

It is integer work on fixed-width words, so each digest is bit for bit the one
:mod:`hashlib` computes: the tests compare them with ``hashlib.blake2b`` on
ids of every length class (empty, non-ASCII, 64 bytes, the 128-byte block
edge and one byte over, several blocks) and keys of 0, 1 and 64 bytes (a salt
over 64 bytes is hashed down first, by hashlib, once per run). hashlib stays
the reference in the tests only; the engine hashes ids here alone. The holdout
and the buckets do not move.
"""

from __future__ import annotations

import numba
import numpy as np

from recsys.ranking.compiled_scoring import frozen

#: BLAKE2b's initial words (those of SHA-512)
_IV = np.array(
    [
        0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
        0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)
#: the message word schedule of each round (rounds 10 and 11 reuse the first two)
_SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    ],
    dtype=np.uint64,  # unsigned: the compiled indexing has no negative-index branch
)
_IV.flags.writeable = False
_SIGMA.flags.writeable = False
#: bytes in a block
BLOCK = 128
#: the longest key BLAKE2b takes
MAX_KEY = 64
#: bytes of the digest (the first word of the state)
DIGEST = 8

# every constant is uint64: numba, like NumPy, turns uint64 mixed with a signed integer into float64
_U0 = np.uint64(0)
_U8 = np.uint64(8)
_U16 = np.uint64(16)
_U24 = np.uint64(24)
_U32 = np.uint64(32)
_U40 = np.uint64(40)
_U48 = np.uint64(48)
_U63 = np.uint64(63)
_U1 = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _rotr(x, n, m):  # m = 64 - n (LLVM inlines it; forcing numba to inline only slowed the compile)
    return (x >> n) | (x << m)


@numba.njit(cache=True, nogil=True)
def _g(a, b, c, d, x, y):  # the mixing function G on four words
    a = a + b + x
    d = _rotr(d ^ a, _U32, _U32)
    c = c + d
    b = _rotr(b ^ c, _U24, _U40)
    a = a + b + y
    d = _rotr(d ^ a, _U16, _U48)
    c = c + d
    b = _rotr(b ^ c, _U63, _U1)
    return a, b, c, d


@numba.njit(cache=True, nogil=True)
def _compress(h: np.ndarray, m: np.ndarray, t: np.uint64, last: bool, iv: np.ndarray, sigma: np.ndarray) -> None:
    """The compression function F on state ``h`` (in place), block words ``m``, byte counter ``t``
    (below 2**64: the high counter word stays 0) and the last-block flag.

    The sixteen working words are locals, not an array: they then stay in registers (an
    array's stores and loads made a digest ~4x slower)."""
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11 = iv[0], iv[1], iv[2], iv[3]
    v12 = iv[4] ^ t
    v13 = iv[5]
    v14 = iv[6] ^ _ALL if last else iv[6]
    v15 = iv[7]
    for r in range(12):
        s = sigma[r % 10]
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, m[s[0]], m[s[1]])
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, m[s[2]], m[s[3]])
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, m[s[4]], m[s[5]])
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, m[s[6]], m[s[7]])
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, m[s[8]], m[s[9]])
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, m[s[10]], m[s[11]])
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, m[s[12]], m[s[13]])
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, m[s[14]], m[s[15]])
    h[0] ^= v0 ^ v8
    h[1] ^= v1 ^ v9
    h[2] ^= v2 ^ v10
    h[3] ^= v3 ^ v11
    h[4] ^= v4 ^ v12
    h[5] ^= v5 ^ v13
    h[6] ^= v6 ^ v14
    h[7] ^= v7 ^ v15


@numba.njit(cache=True, nogil=True)
def _load(m: np.ndarray, data: np.ndarray, lo: int, n: int) -> None:
    """Block words ``m`` from ``n`` (<= 128) bytes of ``data`` at ``lo``, little-endian, zero-padded."""
    for i in range(16):
        m[i] = _U0
    for j in range(n):
        m[j >> 3] |= np.uint64(data[lo + j]) << (np.uint64(j & 7) * _U8)


@numba.njit(cache=True, nogil=True)
def _digests(data: np.ndarray, offsets: np.ndarray, key: np.ndarray, iv: np.ndarray,
             sigma: np.ndarray) -> np.ndarray:
    n = offsets.shape[0] - 1
    out = np.empty(n, np.uint64)
    kk = key.shape[0]
    h0 = iv.copy()
    h0[0] ^= np.uint64(0x01010000) ^ (np.uint64(kk) << _U8) ^ np.uint64(DIGEST)
    m = np.empty(16, np.uint64)
    h = np.empty(8, np.uint64)
    # the key, padded to a block, is the first block of every keyed message: its compression
    # is the same for all ids but an empty one (where it is also the last block)
    keyed = h0.copy()
    key_words = np.empty(16, np.uint64)
    _load(key_words, key, 0, kk)
    if kk > 0:
        _compress(keyed, key_words, np.uint64(BLOCK), False, iv, sigma)
    for i in range(n):
        lo = offsets[i]
        size = offsets[i + 1] - lo
        if size == 0:
            h[:] = h0
            if kk > 0:
                _compress(h, key_words, np.uint64(BLOCK), True, iv, sigma)
            else:
                for w in range(16):
                    m[w] = _U0
                _compress(h, m, _U0, True, iv, sigma)
            out[i] = h[0]
            continue
        h[:] = keyed
        done = BLOCK if kk > 0 else 0
        pos = lo
        left = size
        # every full block but the last is compressed as it comes; the last (full or not) is final
        while left > BLOCK:
            _load(m, data, pos, BLOCK)
            done += BLOCK
            _compress(h, m, np.uint64(done), False, iv, sigma)
            pos += BLOCK
            left -= BLOCK
        _load(m, data, pos, left)
        done += left
        _compress(h, m, np.uint64(done), True, iv, sigma)
        out[i] = h[0]
    return out


def blake2b_64(data: np.ndarray, offsets: np.ndarray, key: bytes) -> np.ndarray:
    """The keyed BLAKE2b digest (8 bytes, read little-endian) of each string of a UTF-8 buffer.

    Parameters
    ----------
    data : ndarray, uint8
        The strings' bytes, one after another.
    offsets : ndarray, int64 (n + 1,)
        String ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
    key : bytes
        At most :data:`MAX_KEY` bytes (empty: unkeyed).

    Returns
    -------
    ndarray, uint64 (n,)
        ``int.from_bytes(hashlib.blake2b(s, digest_size=8, key=key).digest(), "little")`` of each.

    Raises
    ------
    ValueError
        If the key is longer than :data:`MAX_KEY` bytes or the offsets do not fit ``data``.
    """
    if len(key) > MAX_KEY:
        raise ValueError(f"a BLAKE2b key holds at most {MAX_KEY} bytes, got {len(key)}")
    # read-only C arrays of one dtype each: one compiled signature whatever the caller passes
    data = frozen(data, np.uint8)
    offsets = frozen(offsets, np.int64)
    if offsets.ndim != 1 or not len(offsets):
        raise ValueError("offsets must be a 1-d array of n + 1 positions")
    # the kernel reads without bounds checks: the offsets must rise within the buffer
    if offsets[0] < 0 or offsets[-1] > len(data) or (len(offsets) > 1 and np.any(np.diff(offsets) < 0)):
        raise ValueError(f"offsets must rise from >= 0 to <= {len(data)} (the bytes' length)")
    return _digests(data, offsets, frozen(np.frombuffer(key, dtype=np.uint8), np.uint8), _IV, _SIGMA)
