// Byte views of tensor data.

/** The bytes of a tensor's data, whatever its TypedArray. */
export function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
