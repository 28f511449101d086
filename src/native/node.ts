/**
 * The Node shim: koffi. Long operations run as on Bun: on the native library's
 * worker threads, reporting back through the job's `done` callback, here one
 * callback registered with koffi, which koffi relays to the JavaScript thread.
 * (koffi's own asynchronous calls ran them on libuv's thread pool, where a
 * 4 KiB pull over UCX took 150-185 µs against 98-129 µs this way; docs/DESIGN.md
 * §1.)
 *
 * @module
 */
import { type LongSymbolName, type NativeFunction, type RawLibrary, type SymbolDef, SYMBOLS } from "./symbols.ts";

// The few koffi declarations used here, typed locally (koffi ships its own
// types, but Deno must type-check this file without resolving npm packages).
interface KoffiFunction {
  (...args: unknown[]): number;
}
interface Koffi {
  proto(signature: string): unknown;
  pointer(type: unknown): unknown;
  register(fn: (job: unknown, status: unknown) => void, type: unknown): unknown;
  unregister(callback: unknown): void;
  load(path: string): {
    func(name: string, result: string, params: string[]): KoffiFunction;
    unload(): void;
  };
  view(pointer: number, byteLength: number): ArrayBuffer;
  address(bytes: Uint8Array): bigint;
}

// The done callback's type, declared once per process (koffi refuses a name twice).
let doneType: unknown;
const TYPE: Record<string, string> = { i32: "int32_t", u64: "uint64_t", buffer: "void *", callback: "void *" };
// A variable specifier keeps Deno's type checker from resolving it.
const KOFFI = "koffi";

/**
 * Opens the library at `path` with koffi, binding the functions of `table`
 * (all of them unless told otherwise).
 */
export async function open(path: string, table: Record<string, SymbolDef> = SYMBOLS): Promise<RawLibrary> {
  const module = await import(KOFFI);
  const koffi = (module.default ?? module) as Koffi;
  const lib = koffi.load(path);
  const functions: Record<string, KoffiFunction> = {};
  for (const [name, def] of Object.entries(table)) {
    functions[name] = lib.func(name, "int32_t", def.params.map((kind) => TYPE[kind]));
  }
  // Operations in flight, by job handle, waiting for their done callback.
  const pending = new Map<bigint, (status: number) => void>();
  doneType ??= koffi.pointer(koffi.proto("void llmdd_done_fn(uint64_t job, int32_t status)"));
  const done = koffi.register((job, status) => {
    const key = BigInt(job as number | bigint);
    const resolve = pending.get(key);
    pending.delete(key);
    resolve?.(status as number);
  }, doneType);
  return {
    runtime: "node",
    path,
    symbols: functions as unknown as RawLibrary["symbols"],
    doneCallback: done,
    callLong<K extends LongSymbolName>(name: K, args: Parameters<NativeFunction<K>>): Promise<number> {
      const job = args[args.length - 1] as bigint;
      const status = functions[name](...args);
      // Non-zero: the arguments were refused and no callback will come.
      if (status !== 0) return Promise.resolve(status);
      // The callback is relayed to this thread, so it cannot run before this line.
      return new Promise((resolve) => pending.set(job, resolve));
    },
    allocate(byteLength: number): Uint8Array {
      // V8 takes large buffers from calloc, i.e. fresh zero pages: no zeroing pass.
      return new Uint8Array(byteLength);
    },
    view(address: bigint, byteLength: number): ArrayBuffer {
      return koffi.view(Number(address), byteLength);
    },
    address(bytes: Uint8Array): bigint {
      return BigInt(koffi.address(bytes));
    },
    close(): void {
      koffi.unregister(done);
      lib.unload();
    },
  };
}
