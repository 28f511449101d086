/**
 * Block lists as the native calls take them.
 *
 * @module
 */

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The (source, destination) pairs of a block transfer as the native call takes
 * them, in a new array: one uint64 per index (`packPairs`). Without `src`
 * (empty), source block i goes to `dst[i]`.
 */
export function blockPairs(src: readonly number[], dst: readonly number[]): BigUint64Array {
  const pairs = new BigUint64Array(dst.length * 2);
  packPairs(src, dst, new Uint32Array(pairs.buffer));
  return pairs;
}

/**
 * Writes the pairs into `halves`, the 32-bit view of a uint64 array of at
 * least `2 * dst.length` words (what follows is left as it is): each index as
 * two 32-bit halves, no BigInt per block (a list of 1024 blocks took
 * 100-160 µs that way); a negative index becomes its two's complement, out of
 * any range, as upstream's uint64.
 */
export function packPairs(src: readonly number[], dst: readonly number[], halves: Uint32Array): void {
  const lo = LITTLE_ENDIAN ? 0 : 1;
  const hi = 1 - lo;
  const n = dst.length;
  for (let i = 0; i < n; i++) {
    const s = src.length ? src[i] : i, d = dst[i];
    halves[4 * i + lo] = s >>> 0;
    halves[4 * i + hi] = Math.floor(s / 0x1_0000_0000) >>> 0;
    halves[4 * i + 2 + lo] = d >>> 0;
    halves[4 * i + 2 + hi] = Math.floor(d / 0x1_0000_0000) >>> 0;
  }
}
