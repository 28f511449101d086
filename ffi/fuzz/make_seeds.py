#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_abi (fuzz/corpus/*.bin).

Each seed is a small program in fuzz_abi.c's input format: a first byte (how
the input ends), then steps, each an opcode byte and the bytes its arguments
read. The encoders below mirror the reads of fuzz_abi.c's step functions; if
those change, change these and run `python3 fuzz/make_seeds.py` from ffi/.
A seed that drifts out of step still works (any input is valid), it only
exercises less.
"""
import os
import struct

# Opcodes: indexes into fuzz_abi.c's steps[] table.
INIT, FINALIZE, INFO, USAGE, ALLOC = 0, 3, 4, 5, 7
DEALLOC, KEY_REMOVE, WRITE, READ, COPY = 11, 13, 15, 18, 21
JOB_CREATE, JOB_CANCEL, JOB_MESSAGE, JOB_RELEASE, LAST_ERROR = 24, 26, 27, 28, 29
LINK, UNLINK, PULL, VERIFY, ABI = 30, 31, 32, 33, 34
CACHE_MANAGER = 35  # ABI 3: register, unregister, copy_blocks, set_role with refused arguments

PROMPT, DECODER, MIX = 0, 1, 2  # role selector bytes (role = 1 + byte % 3)
POOL = {64: 0, 4096: 1, 65536: 2, 1 << 20: 3, 8 << 20: 4}


def u8(*v):
    return bytes(x & 0xFF for x in v)


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def engine(i=0):  # the i-th live engine (in slot order)
    return u8(0, i)


def job(i=None):  # None: job 0; else the i-th live job
    return u8(0) if i is None else u8(6, i)


def init_clean(role, devices=1, pool=1 << 20, cluster=0):
    b = u8(INIT, role, cluster)
    if role == DECODER:
        b += u8(1)  # keep the cluster id
    return b + u8(POOL[pool], 0, devices - 1, 0, 0) + u8(1)  # mode clean, then out not NULL


def init_mode(role, mode, body, cluster=1):
    b = u8(INIT, role, cluster)
    if role == DECODER:
        b += u8(1)
    return b + u8(POOL[1 << 20], mode) + body + u8(1)


def size_small(n):  # pick_size: 1 + n % 128
    return u8(8, n - 1)


def size_u16(n):  # pick_size: 1 + n % 4096
    return u8(3) + u16(n - 1)


def alloc(e, tensors, tensor_size, batch=1, keys=(), layout=0x1234, cap_exact=True):
    b = u8(ALLOC) + engine(e) + u8(0, tensors - 1) + tensor_size
    b += u8(4, batch - 1) if batch > 1 else u8(6)
    b += u64(layout) + u8(1, 0)  # placement HOST
    if keys:
        b += u8(4, len(keys) - 1) + u8(1)  # keys not NULL
        for k in keys:
            b += u8(*k)
    else:
        b += u8(0)
    b += u8(5 if cap_exact else 0)
    return b + u8(1, 1)  # addrs and id not NULL


def write(e, c, d, t, whole=True, off=0, n=64, seed=7):
    b = u8(WRITE, e, c, d) + u16(t)
    b += u8(0) if whole else u8(1) + u32(off) + u16(n - 1)
    return b + u8(seed)


def cache_id(k):  # the first live cache from model slot k on
    return u8(0, k)


def index(i):
    return u8(6, i)


def read(e, c, t=0, d=0, j=None, interfere=None):
    b = u8(READ) + engine(e) + job(j) + cache_id(c) + index(t) + index(d) + u8(3, 1)
    return b + (u8(interfere) if interfere is not None else b"")


def copy(e, dst, src, j=None, interfere=None):
    b = u8(COPY) + engine(e) + job(j) + cache_id(dst) + u8(1) + cache_id(src) + u8(1)
    return b + (u8(interfere) if interfere is not None else b"")


def job_create(timeout_sel=5, done=False):
    return u8(JOB_CREATE, timeout_sel, 0 if done else 1, 1)


SEEDS = {
    # Two devices: allocate with a key, write, read, copy, verify, release.
    "roundtrip": u8(1)
    + init_clean(MIX, devices=2)
    + alloc(0, 2, size_u16(256), keys=[(0, 1, 0)])
    + alloc(0, 2, size_u16(256), batch=4)
    + write(0, 0, 0, 0)
    + write(0, 0, 1, 1, whole=False, off=10, n=100)
    + read(0, 0, t=0, d=0)
    + read(0, 0, t=1, d=1)
    + copy(0, 1, 0)
    + u8(VERIFY, 0, 0, 1) + u16(1)
    + u8(USAGE) + engine(0) + index(1) + u8(1)
    + u8(DEALLOC) + engine(0) + cache_id(0)
    + u8(KEY_REMOVE) + engine(0) + u8(1, 0)
    + u8(USAGE) + engine(0) + index(0) + u8(1),
    # Background reads and copies with a done callback, and interference.
    "background": u8(1)
    + init_clean(DECODER)
    + job_create(done=True)
    + alloc(0, 3, size_u16(4096))
    + alloc(0, 3, size_u16(4096))
    + alloc(0, 3, size_u16(4096))
    + write(0, 0, 0, 2)
    + read(0, 0, t=2, j=0, interfere=0)
    + read(0, 2, t=1, j=0, interfere=1)
    + copy(0, 1, 0, j=0, interfere=3)
    + copy(0, 0, 1, j=0, interfere=5),
    # Deadlines of 0, cancels, messages and stale jobs.
    "jobs": u8(1)
    + init_clean(PROMPT)
    + alloc(0, 1, size_small(100))
    + job_create(timeout_sel=0)
    + read(0, 0, j=0)
    + u8(JOB_MESSAGE) + job(0) + u8(8, 40)
    + u8(LAST_ERROR, 8, 20)
    + u8(JOB_RELEASE) + job(0)
    + job_create()
    + u8(JOB_CANCEL) + job(0)
    + copy(0, 0, 0, j=0)
    + u8(JOB_RELEASE) + job(0)
    + u8(JOB_RELEASE, 11, 0)
    + u8(JOB_MESSAGE, 11, 0),
    # Option texts: garbage, bad device lists, long text, listening, no options.
    "options": u8(0)
    + init_mode(MIX, 3, u8(24) + b"ge.exec.deviceId=0;1\nx=y")
    + init_mode(DECODER, 4, u8(16))
    + init_mode(PROMPT, 6, u16(300) + u8(1), cluster=2)
    + init_mode(MIX, 7, u8(0), cluster=3)
    + u8(INFO) + engine(1)
    + init_mode(DECODER, 8, b"")
    + u8(FINALIZE) + engine(0)
    + u8(FINALIZE, 10, 0)
    + u8(INFO, 12, 0),
    # Links to a closed port, unlink and pull without links.
    "links": u8(1)
    + init_clean(MIX)
    + alloc(0, 1, size_u16(512), batch=4)
    + u8(LINK) + engine(0) + u8(1, 1) + u8(0) + job() + u8(2, 1, 1)
    + u8(UNLINK) + engine(0) + job() + u8(1, 1, 2)
    + u8(PULL) + engine(0) + job() + cache_id(0) + u8(1, 1, 0, 0, 0) + index(1) + u8(1),
    # A small pool filled up, then freed and filled again.
    "exhaust": u8(1)
    + init_clean(MIX, pool=4096)
    + alloc(0, 4, size_u16(1024))
    + alloc(0, 1, size_small(64))
    + u8(DEALLOC) + engine(0) + cache_id(0)
    + alloc(0, 1, size_small(64))
    + alloc(0, 2, size_u16(1024))
    + u8(ABI),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(data)
        print(f"{name}.bin: {len(data)} bytes")


if __name__ == "__main__":
    main()
