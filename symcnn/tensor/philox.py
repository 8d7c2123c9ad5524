"""Philox4x32-10 in numpy: the reference generator of symcnn's random streams.

Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC11). A counter-based generator:
block = philox(counter, key) is a pure function, so any thread or vector lane computes any block
without shared state. The native backend's kernel emits the same arithmetic, and
the two must agree bit for bit; the formulas below are the specification both follow.

A stream's state is 4 uint32 words [k0, k1, c_lo, c_hi]: a 64-bit key and a 64-bit draw counter.
Draw number C of a stream fills its n elements from blocks b = 0, 1, ... with

    counter = (b mod 2^32, b div 2^32, C mod 2^32, C div 2^32),  key = (k0, k1)

and then C becomes C + 1. Each block gives 4 uint32 words w0..w3:

* float32: 4 elements per block, element j from block j // 4, word j % 4:
  u = (2 * (w >> 9) + 1) * 2^-24, exactly representable, in (0, 1) (never 0 or 1);
* float64: 2 elements per block, element j from block j // 2, words (2s, 2s + 1) with s = j % 2:
  x = w_{2s} | w_{2s+1} << 32, u = (2 * (x >> 12) + 1) * 2^-53, in (0, 1);
* standard normal (Box-Muller on consecutive pairs of those uniforms, computed in float64 and
  rounded once to the dtype): for the pair (u1, u2) = (u_{2m}, u_{2m+1}) of one block,
  r = sqrt(-2 log u1), t = 2 pi u2, z_{2m} = r cos t, z_{2m+1} = r sin t.

Streams of one RandomStreams differ by key: key(seed, i) is the first two words of
philox((i mod 2^32, i div 2^32, 0x5EED, 0), (seed mod 2^32, seed div 2^32 mod 2^32)).
"""
import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
MASK32 = 0xFFFFFFFF
STATE_WORDS = 4

# elements of each dtype one Philox block fills
PER_BLOCK = {"float32": 4, "float64": 2}


def round_keys(k0, k1):
    """The 10 (k0, k1) pairs of the rounds (the key is bumped by the Weyl constants)."""
    return [((k0 + r * W0) & MASK32, (k1 + r * W1) & MASK32) for r in range(ROUNDS)]


def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counters (uint32 arrays of one shape) under key (k0, k1) (Python ints).
    Returns the 4 output words as uint32 arrays."""
    c = [np.asarray(x, dtype=np.uint32) for x in (c0, c1, c2, c3)]
    m0, m1 = np.uint64(M0), np.uint64(M1)
    for rk0, rk1 in round_keys(k0, k1):
        p0 = c[0].astype(np.uint64) * m0
        p1 = c[2].astype(np.uint64) * m1
        hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), p0.astype(np.uint32)
        hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), p1.astype(np.uint32)
        c = [hi1 ^ c[1] ^ np.uint32(rk0), lo1, hi0 ^ c[3] ^ np.uint32(rk1), lo0]
    return c


def stream_key(seed, index):
    """The key of stream `index` of a generator seeded with `seed` (a non-negative int < 2^64)."""
    i = np.array([index & MASK32], dtype=np.uint32)
    hi = np.array([(index >> 32) & MASK32], dtype=np.uint32)
    w = philox4x32(i, hi, np.array([0x5EED], dtype=np.uint32), np.zeros(1, np.uint32),
                   seed & MASK32, (seed >> 32) & MASK32)
    return int(w[0][0]), int(w[1][0])


def initial_state(seed, index):
    """The state of stream `index` right after seeding: its key, draw counter 0."""
    k0, k1 = stream_key(seed, index)
    return np.array([k0, k1, 0, 0], dtype=np.uint32)


def advance(state):
    """The state after one draw (64-bit counter + 1, wrapping)."""
    c = (int(state[2]) | int(state[3]) << 32) + 1
    return np.array([state[0], state[1], c & MASK32, (c >> 32) & MASK32], dtype=np.uint32)


def blocks(state, nblocks):
    """Words w0..w3 (uint32 arrays of length nblocks) of the draw the state is at."""
    b = np.arange(nblocks, dtype=np.uint64)
    lo = (b & np.uint64(MASK32)).astype(np.uint32)
    hi = (b >> np.uint64(32)).astype(np.uint32)
    c2 = np.full(nblocks, state[2], dtype=np.uint32)
    c3 = np.full(nblocks, state[3], dtype=np.uint32)
    return philox4x32(lo, hi, c2, c3, int(state[0]), int(state[1]))


def uniform_words(w, dtype):
    """Uniforms in (0, 1) from the block words: shape (nblocks, PER_BLOCK[dtype])."""
    if dtype == "float32":
        k = np.stack(w, axis=1) >> np.uint32(9)
        return (k.astype(np.float32) * np.float32(2) + np.float32(1)) * np.float32(2.0 ** -24)
    x = [w[2 * s].astype(np.uint64) | (w[2 * s + 1].astype(np.uint64) << np.uint64(32)) for s in range(2)]
    k = np.stack(x, axis=1) >> np.uint64(12)
    return (k.astype(np.float64) * 2.0 + 1.0) * 2.0 ** -53


def box_muller(u, dtype):
    """Standard normals from uniforms of shape (nblocks, 2m): pairs (u[:, 2i], u[:, 2i+1])."""
    u1 = u[:, 0::2].astype(np.float64)
    u2 = u[:, 1::2].astype(np.float64)
    r = np.sqrt(-2.0 * np.log(u1))
    t = (2.0 * np.pi) * u2
    z = np.empty(u.shape, dtype=np.float64)
    z[:, 0::2] = r * np.cos(t)
    z[:, 1::2] = r * np.sin(t)
    return z.astype(dtype)


def draw(state, n, dtype, distribution):
    """The n values (a flat array of `dtype`) of the draw `state` is at, 'uniform' or 'normal'."""
    e = PER_BLOCK[dtype]
    nblocks = -(-n // e)
    u = uniform_words(blocks(state, nblocks), dtype)
    if distribution == "normal":
        u = box_muller(u, dtype)
    return u.reshape(-1)[:n]
