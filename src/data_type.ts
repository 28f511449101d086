/**
 * Tensor data types, with the numeric values of upstream `DataType`
 * (`ge::DataType`), and the TypedArray each one is read through.
 *
 * @module
 */

/** The data type of a cache's tensors (upstream `DataType`). */
export const DataType = {
  /** `0`: 32-bit float (`Float32Array`). */
  DT_FLOAT: 0,
  /** `1`: 16-bit float, raw bits (`Uint16Array`). */
  DT_FLOAT16: 1,
  /** `2`: `Int8Array`. */
  DT_INT8: 2,
  /** `3`: `Int32Array`. */
  DT_INT32: 3,
  /** `4`: `Uint8Array`. */
  DT_UINT8: 4,
  /** `6`: `Int16Array`. */
  DT_INT16: 6,
  /** `7`: `Uint16Array`. */
  DT_UINT16: 7,
  /** `8`: `Uint32Array`. */
  DT_UINT32: 8,
  /** `9`: `BigInt64Array`. */
  DT_INT64: 9,
  /** `10`: `BigUint64Array`. */
  DT_UINT64: 10,
  /** `11`: 64-bit float (`Float64Array`). */
  DT_DOUBLE: 11,
  /** `12`: one byte per element (`Uint8Array`). */
  DT_BOOL: 12,
  /** `27`: bfloat16, raw bits (`Uint16Array`). */
  DT_BF16: 27,
} as const;

/** One of the {@link DataType} values. */
export type DataType = typeof DataType[keyof typeof DataType];

/**
 * The TypedArray that holds a tensor's elements. FLOAT16 and BF16 come as
 * their raw bits in a `Uint16Array`; BOOL as one byte per element.
 */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

interface TypedArrayClass {
  readonly BYTES_PER_ELEMENT: number;
  new (length: number): TensorData;
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TensorData;
}

const arrayClass: ReadonlyMap<number, TypedArrayClass> = new Map<number, TypedArrayClass>([
  [DataType.DT_FLOAT, Float32Array],
  [DataType.DT_FLOAT16, Uint16Array],
  [DataType.DT_INT8, Int8Array],
  [DataType.DT_INT32, Int32Array],
  [DataType.DT_UINT8, Uint8Array],
  [DataType.DT_INT16, Int16Array],
  [DataType.DT_UINT16, Uint16Array],
  [DataType.DT_UINT32, Uint32Array],
  [DataType.DT_INT64, BigInt64Array],
  [DataType.DT_UINT64, BigUint64Array],
  [DataType.DT_DOUBLE, Float64Array],
  [DataType.DT_BOOL, Uint8Array],
  [DataType.DT_BF16, Uint16Array],
]);

const typeNames = new Map<number, string>(
  Object.entries(DataType).map(([name, value]) => [value, name]),
);

/** Whether `value` is one of the {@link DataType} values. */
export function isDataType(value: unknown): value is DataType {
  return typeof value === "number" && arrayClass.has(value);
}

/** Bytes per element of a data type. */
export function dataTypeSize(dataType: DataType): number {
  return arrayClass.get(dataType)!.BYTES_PER_ELEMENT;
}

/** The upstream name of a data type (`"DT_FLOAT16"`). */
export function dataTypeName(dataType: DataType): string {
  return typeNames.get(dataType) ?? String(dataType);
}

/**
 * A new zeroed TypedArray of the data type holding `byteLength` bytes. Made in
 * one step: wrapping a `Uint8Array`'s `.buffer` afterwards makes the engine
 * move a small array's memory off its heap, which costs more than the copy.
 */
export function newTypedArray(dataType: DataType, byteLength: number): TensorData {
  const cls = arrayClass.get(dataType)!;
  return new cls(byteLength / cls.BYTES_PER_ELEMENT);
}

/** Wraps `byteLength` bytes of `buffer` from `byteOffset` in the data type's TypedArray. */
export function typedArrayOf(
  dataType: DataType,
  buffer: ArrayBuffer,
  byteOffset = 0,
  byteLength: number = buffer.byteLength - byteOffset,
): TensorData {
  const cls = arrayClass.get(dataType)!;
  return new cls(buffer, byteOffset, byteLength / cls.BYTES_PER_ELEMENT);
}
