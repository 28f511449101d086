/**
 * `CacheDesc`: what a KV cache holds (upstream `CacheDesc`).
 *
 * @module
 */
import { type DataType, dataTypeName, dataTypeSize, isDataType } from "./data_type.ts";
import { Placement } from "./enums.ts";
import { ValueError } from "./errors.ts";
import { describe, INT32_MAX, requireInt, requireIntIn } from "./validate.ts";

/** Most dimensions a cache tensor may have. */
const MAX_RANK = 32;

/**
 * Shapes already frozen, by their dimensions: descs of the same shape share one
 * frozen array (Object.freeze costs ~0.5 µs on JavaScriptCore, as much as the
 * rest of a desc). Bounded: emptied when it holds SHAPES_KEPT shapes.
 */
const frozenShapes = new Map<string, readonly number[]>();
const SHAPES_KEPT = 1024;

// The shape frozen last: a program makes its descs from a few shapes, often
// the same one again (one per request), which then costs no string key.
let lastShape: readonly number[] = [];

function frozenShape(dims: number[]): readonly number[] {
  if (sameDims(lastShape, dims, -1)) return lastShape;
  lastShape = keptShape(dims);
  return lastShape;
}

function keptShape(dims: number[]): readonly number[] {
  const key = dims.join(",");
  let shape = frozenShapes.get(key);
  if (shape === undefined) {
    if (frozenShapes.size >= SHAPES_KEPT) frozenShapes.clear();
    frozenShapes.set(key, shape = Object.freeze(dims));
  }
  return shape;
}

/** The layout tag of a desc, computed once (set by CacheDesc's static block). */
let tagOf: (desc: CacheDesc) => bigint;

/**
 * Describes a KV cache: `numTensors` tensors of one `shape` and `dataType`.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, Placement } from "llm-datadist";
 * // 2 tensors (K and V) of [batch 4, seq 16, hidden 8] in FP16, in host memory
 * const desc = new CacheDesc(2, [4, 16, 8], DataType.DT_FLOAT16, Placement.HOST);
 * console.log(desc.size, desc.batchSize); // 1024 4
 * ```
 */
export class CacheDesc {
  /** Number of tensors in the cache (for example, one K and one V per layer). */
  readonly numTensors: number;
  /** Shape of every tensor. */
  readonly shape: readonly number[];
  /** Element type of every tensor. */
  readonly dataType: DataType;
  /** Where the memory lives. */
  readonly placement: Placement;
  /** Which dimension of `shape` is the batch. */
  readonly batchDimIndex: number;
  /** Which dimension is the sequence length, or -1 when unspecified. */
  readonly seqLenDimIndex: number;
  readonly #size: number;
  #layoutTag: bigint | undefined;

  static {
    tagOf = (desc) => desc.#layoutTag ??= computeLayoutTag(desc);
  }

  /**
   * Creates a description; throws `TypeError` for a wrong type and `ValueError`
   * for a value out of range, naming the argument.
   */
  constructor(
    numTensors: number,
    shape: readonly number[],
    dataType: DataType,
    placement: Placement = Placement.DEVICE,
    batchDimIndex = 0,
    seqLenDimIndex = -1,
  ) {
    this.numTensors = requireIntIn(numTensors, "numTensors", 1, INT32_MAX);
    if (!Array.isArray(shape)) {
      throw new TypeError(`shape must be an array of integers, got ${describe(shape)}`);
    }
    if (shape.length < 1 || shape.length > MAX_RANK) {
      throw new ValueError(`shape must have 1 to ${MAX_RANK} dimensions, got ${shape.length}`);
    }
    let elements = 1;
    const dims: number[] = new Array(shape.length);
    // An index loop, not forEach: forEach skips the holes of a sparse array.
    for (let i = 0; i < shape.length; i++) {
      const dim = shape[i];
      // requireIntIn only for what it would refuse: its name is built for the message.
      dims[i] = Number.isSafeInteger(dim) && dim >= 1
        ? dim
        : requireIntIn(dim, `shape[${i}]`, 1, Number.MAX_SAFE_INTEGER);
      elements *= dims[i];
    }
    if (typeof dataType !== "number") {
      throw new TypeError(`dataType must be a DataType, got ${describe(dataType)}`);
    }
    if (!isDataType(dataType)) {
      throw new ValueError(`dataType ${dataType} is not a DataType`);
    }
    const size = elements * dataTypeSize(dataType);
    if (!Number.isSafeInteger(size)) {
      throw new ValueError(`shape [${shape.join(", ")}] is too large: the tensor size exceeds 2^53 bytes`);
    }
    placement = requireInt(placement, "placement") as Placement;
    if (placement !== Placement.HOST && placement !== Placement.DEVICE) {
      throw new ValueError(`placement must be Placement.HOST (0) or Placement.DEVICE (1), got ${placement}`);
    }
    this.batchDimIndex = requireIntIn(batchDimIndex, "batchDimIndex", 0, shape.length - 1);
    this.seqLenDimIndex = requireIntIn(seqLenDimIndex, "seqLenDimIndex", -1, shape.length - 1);
    if (this.seqLenDimIndex === this.batchDimIndex) {
      throw new ValueError(`seqLenDimIndex and batchDimIndex must differ, both are ${batchDimIndex}`);
    }
    this.shape = frozenShape(dims);
    this.dataType = dataType;
    this.placement = placement;
    this.#size = size;
  }

  /** Bytes of one tensor. */
  get size(): number {
    return this.#size;
  }

  /** The batch dimension's extent: `shape[batchDimIndex]`. */
  get batchSize(): number {
    return this.shape[this.batchDimIndex];
  }

  /** Whether `other` describes the same caches except, possibly, the batch size. */
  isCompatibleWith(other: CacheDesc): boolean {
    return this.numTensors === other.numTensors &&
      this.dataType === other.dataType &&
      this.batchDimIndex === other.batchDimIndex &&
      this.shape.length === other.shape.length &&
      this.shape.every((dim, i) => i === this.batchDimIndex || dim === other.shape[i]);
  }

  /** A readable summary, e.g. `CacheDesc(2, [4, 16, 8], DT_FLOAT16, DEVICE)`. */
  toString(): string {
    const where = this.placement === Placement.HOST ? "HOST" : "DEVICE";
    return `CacheDesc(${this.numTensors}, [${this.shape.join(", ")}], ${dataTypeName(this.dataType)}, ${where})`;
  }
}

/**
 * A 64-bit value naming a desc's layout apart from its batch size: data type,
 * batch dimension and every other dimension. Two caches can exchange rows
 * (pulls) only if their tags are equal; the native side compares them.
 */
export function layoutTag(desc: CacheDesc): bigint {
  return tagOf(desc);
}

/** Whether two shapes have the same dimensions, but perhaps the one at `except`. */
function sameDims(a: readonly number[], b: readonly number[], except: number): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && i !== except) return false;
  return true;
}

// The tag computed last, and what from: descs made one per request, perhaps of
// another block count (which the tag leaves out), cost one comparison.
let lastTag = { dataType: -1, batchDimIndex: -1, shape: [] as readonly number[], tag: 0n };

function computeLayoutTag(desc: CacheDesc): bigint {
  const last = lastTag;
  if (
    last.dataType === desc.dataType && last.batchDimIndex === desc.batchDimIndex &&
    sameDims(last.shape, desc.shape, desc.batchDimIndex)
  ) {
    return last.tag;
  }
  const tag = hashLayout(desc);
  lastTag = { dataType: desc.dataType, batchDimIndex: desc.batchDimIndex, shape: desc.shape, tag };
  return tag;
}

/**
 * The tag computed: two 32-bit FNV-1a hashes with different offsets of the
 * text `dataType|batchDimIndex|d0,d1,...` (the batch dimension written `*`),
 * fed character by character as it is produced, without making the text.
 */
function hashLayout(desc: CacheDesc): bigint {
  let low = 0x811C9DC5;
  let high = 0x01000193 ^ 0x5bd1e995;
  let at = 0;
  const put = (c: number) => {
    TEXT[at++] = c;
  };
  const putInt = (n: number) => {
    const start = at;
    do {
      put(48 + (n % 10));
      n = Math.floor(n / 10);
    } while (n > 0);
    for (let i = start, j = at - 1; i < j; i++, j--) [TEXT[i], TEXT[j]] = [TEXT[j], TEXT[i]];
  };
  putInt(desc.dataType);
  put(PIPE);
  putInt(desc.batchDimIndex);
  put(PIPE);
  const shape = desc.shape;
  for (let i = 0; i < shape.length; i++) {
    if (i > 0) put(COMMA);
    if (i === desc.batchDimIndex) put(STAR);
    else putInt(shape[i]);
  }
  for (let i = 0; i < at; i++) {
    const c = TEXT[i];
    low = Math.imul(low ^ c, 0x01000193);
    high = Math.imul(high ^ c, 0x01000193) ^ (high >>> 15);
  }
  return (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
}

const PIPE = 0x7C, COMMA = 0x2C, STAR = 0x2A;
/** The text's characters: two numbers and MAX_RANK dimensions of at most 16 digits, and separators. */
const TEXT: number[] = new Array(2 * 17 + MAX_RANK * 17).fill(0);
