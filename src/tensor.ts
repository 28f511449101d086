/**
 * `Tensor`: one device's copy (or live view) of one cache tensor.
 *
 * @module
 */
import { type DataType, dataTypeName, type TensorData } from "./data_type.ts";
import { LLMException } from "./errors.ts";
import { LLMStatusCode } from "./status.ts";

/**
 * Whether a view's memory is still the cache's. Shared by every view of one
 * cache, and revoked when the cache is freed or the engine finalized.
 */
export interface Lease {
  revoked: boolean;
  readonly cacheId: bigint;
}

let lease: (tensor: Tensor, lease: Lease) => void;

// The last shape seen frozen. Tensors of one cache share its desc's frozen
// shape, and asking JavaScriptCore whether an array is frozen costs ~80 ns;
// a frozen array stays frozen, so remembering it is safe.
let frozenShape: readonly number[] | undefined;

/**
 * A tensor's elements with their shape, data type and device. Tensors from
 * `getCacheTensors` are copies that JavaScript owns; tensors from
 * `getCacheTensorViews` are live views that are revoked when their cache is
 * freed, after which `data` throws.
 *
 * @example
 * ```ts
 * import { DataType, Tensor } from "llm-datadist";
 * const t = new Tensor([2, 2], DataType.DT_FLOAT, new Float32Array([1, 2, 3, 4]));
 * console.log(t.byteLength, t.data[3]); // 16 4
 * ```
 */
export class Tensor {
  /** The tensor's shape (the cache desc's shape). */
  readonly shape: readonly number[];
  /** The element type. */
  readonly dataType: DataType;
  /** The id of the device the tensor came from. */
  readonly deviceId: number;
  readonly #data: TensorData;
  #lease: Lease | undefined;

  static {
    lease = (tensor, value) => {
      tensor.#lease = value;
    };
  }

  /** Wraps `data` (not copied) as a tensor of `shape` and `dataType`. */
  constructor(shape: readonly number[], dataType: DataType, data: TensorData, deviceId = 0) {
    if (shape !== frozenShape) shape = Object.isFrozen(shape) ? (frozenShape = shape) : Object.freeze([...shape]);
    this.shape = shape;
    this.dataType = dataType;
    this.#data = data;
    this.deviceId = deviceId;
  }

  /**
   * The elements, in the TypedArray of the data type (FLOAT16 and BF16 as raw
   * `Uint16Array` bits). Throws `LLMException(LLM_KV_CACHE_NOT_EXIST)` for a
   * view whose cache was freed.
   */
  get data(): TensorData {
    if (this.#lease?.revoked) {
      throw new LLMException(
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
        `this view of cache ${this.#lease.cacheId} was revoked when the cache was freed`,
      );
    }
    return this.#data;
  }

  /** Size of the data in bytes. */
  get byteLength(): number {
    return this.#data.byteLength;
  }

  /** Whether this is a live view whose cache has been freed. */
  get revoked(): boolean {
    return this.#lease?.revoked ?? false;
  }

  /** A readable summary, e.g. `Tensor([4, 8], DT_FLOAT16, device 0)`. */
  toString(): string {
    return `Tensor([${this.shape.join(", ")}], ${dataTypeName(this.dataType)}, device ${this.deviceId})`;
  }
}

/** Makes a tensor that refuses access once `value` is revoked. */
export function leasedTensor(
  shape: readonly number[],
  dataType: DataType,
  data: TensorData,
  deviceId: number,
  value: Lease,
): Tensor {
  const tensor = new Tensor(shape, dataType, data, deviceId);
  lease(tensor, value);
  return tensor;
}
