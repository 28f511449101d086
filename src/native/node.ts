/**
 * The Node shim: koffi. Long operations use koffi's asynchronous calls, which
 * run on a worker thread and call back on the JavaScript thread.
 *
 * @module
 */
import { type LongSymbolName, type NativeFunction, type RawLibrary, type SymbolDef, SYMBOLS } from "./symbols.ts";

// The few koffi declarations used here, typed locally (koffi ships its own
// types, but Deno must type-check this file without resolving npm packages).
interface KoffiFunction {
  (...args: unknown[]): number;
  async(...args: unknown[]): void;
}
interface Koffi {
  load(path: string): {
    func(name: string, result: string, params: string[]): KoffiFunction;
    unload(): void;
  };
  view(pointer: number, byteLength: number): ArrayBuffer;
  address(bytes: Uint8Array): bigint;
}

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
  return {
    runtime: "node",
    path,
    symbols: functions as unknown as RawLibrary["symbols"],
    doneCallback: null,
    callLong<K extends LongSymbolName>(name: K, args: Parameters<NativeFunction<K>>): Promise<number> {
      return new Promise((resolve, reject) => {
        functions[name].async(...args, (err: unknown, status: number) => err ? reject(err) : resolve(status));
      });
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
      lib.unload();
    },
  };
}
