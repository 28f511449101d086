// The bytes the transfer tests write and expect: a function of where they are,
// so that a pulled row can be checked without sending the data around.

/** Byte `i` of tensor `tensor` on device `device` of a cache filled with `seed`. */
export function patternByte(seed: number, tensor: number, device: number, i: number): number {
  return (seed * 29 + i * 7 + tensor * 13 + device * 31 + (i >>> 10)) & 0xFF;
}

/** Fills `bytes` (a whole tensor) with the pattern. */
export function fillPattern(bytes: Uint8Array, seed: number, tensor: number, device: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = patternByte(seed, tensor, device, i);
}

/** The index of the first byte of `bytes[from, from + length)` that differs from the pattern at `at`, or -1. */
export function firstMismatch(
  bytes: Uint8Array,
  from: number,
  length: number,
  seed: number,
  tensor: number,
  device: number,
  at: number,
): number {
  for (let i = 0; i < length; i++) {
    if (bytes[from + i] !== patternByte(seed, tensor, device, at + i)) return from + i;
  }
  return -1;
}
