/**
 * The Bun shim: `bun:ffi`. Bun has no asynchronous FFI call, so long
 * operations run on the native library's worker threads and report back
 * through one thread-safe `JSCallback` (the job's `done` callback).
 *
 * @module
 */
import { type LongSymbolName, type NativeFunction, type RawLibrary, type SymbolDef, SYMBOLS } from "./symbols.ts";

// The few bun:ffi declarations used here, typed locally so that Deno and the
// npm build type-check without bun-types.
type BunType = "i32" | "u64" | "ptr" | "void";
interface BunFfi {
  dlopen(path: string, symbols: Record<string, { args: BunType[]; returns: BunType }>): {
    symbols: Record<string, (...args: unknown[]) => number>;
    close(): void;
  };
  JSCallback: new (
    fn: (job: bigint | number, status: number) => void,
    def: { args: BunType[]; returns: BunType; threadsafe: boolean },
  ) => { ptr: number | null; close(): void };
  toArrayBuffer(pointer: number, byteOffset: number, byteLength: number): ArrayBuffer;
  ptr(bytes: Uint8Array): number;
}

const TYPE: Record<string, BunType> = { i32: "i32", u64: "u64", buffer: "ptr", callback: "ptr" };
// A variable specifier keeps type checkers other than Bun's from resolving it.
const BUN_FFI = "bun:ffi";

/**
 * Opens the library at `path` with bun:ffi, binding the functions of `table`
 * (all of them unless told otherwise).
 */
export async function open(path: string, table: Record<string, SymbolDef> = SYMBOLS): Promise<RawLibrary> {
  const ffi = (await import(BUN_FFI)) as BunFfi;
  const defs: Record<string, { args: BunType[]; returns: BunType }> = {};
  for (const [name, def] of Object.entries(table)) {
    defs[name] = { args: def.params.map((kind) => TYPE[kind]), returns: "i32" };
  }
  const lib = ffi.dlopen(path, defs);
  const bun = (globalThis as unknown as { Bun: { allocUnsafe(size: number): Uint8Array } }).Bun;
  // Operations in flight, by job handle, waiting for their done callback.
  const pending = new Map<bigint, (status: number) => void>();
  const done = new ffi.JSCallback((job, status) => {
    const key = BigInt(job);
    const resolve = pending.get(key);
    pending.delete(key);
    resolve?.(status);
  }, { args: ["u64", "i32"], returns: "void", threadsafe: true });
  return {
    runtime: "bun",
    path,
    symbols: lib.symbols as unknown as RawLibrary["symbols"],
    doneCallback: done.ptr,
    callLong<K extends LongSymbolName>(name: K, args: Parameters<NativeFunction<K>>): Promise<number> {
      const job = args[args.length - 1] as bigint;
      const status = lib.symbols[name](...args);
      // Non-zero: the arguments were refused and no callback will come.
      if (status !== 0) return Promise.resolve(status);
      // The callback is queued to this thread, so it cannot run before this line.
      return new Promise((resolve) => pending.set(job, resolve));
    },
    allocate(byteLength: number): Uint8Array {
      // JavaScriptCore zeroes new ArrayBuffers itself, on this thread: for a
      // 512 MiB tensor that took longer than the copy. The copy overwrites
      // every byte, so uninitialized memory is safe here.
      return bun.allocUnsafe(byteLength);
    },
    view(address: bigint, byteLength: number): ArrayBuffer {
      return ffi.toArrayBuffer(Number(address), 0, byteLength);
    },
    address(bytes: Uint8Array): bigint {
      return BigInt(ffi.ptr(bytes));
    },
    close(): void {
      done.close();
      lib.close();
    },
  };
}
