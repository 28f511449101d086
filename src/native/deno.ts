/**
 * The Deno shim: `Deno.dlopen`. Long operations use `nonblocking` symbols,
 * which Deno runs on its own thread pool and returns as promises.
 *
 * @module
 */
import { type LongSymbolName, type NativeFunction, type RawLibrary, type SymbolDef, SYMBOLS } from "./symbols.ts";

// The few Deno FFI declarations used here, typed locally so that the npm
// build type-checks without Deno's global types.
type DenoType = "i32" | "u64" | "buffer" | "pointer";
interface DenoForeignFunction {
  name?: string;
  parameters: DenoType[];
  result: "i32";
  nonblocking?: boolean;
}
interface DenoFfi {
  dlopen(path: string, symbols: Record<string, DenoForeignFunction>): {
    symbols: Record<string, (...args: unknown[]) => number | Promise<number>>;
    close(): void;
  };
  UnsafePointer: {
    create(address: bigint): unknown;
    of(bytes: Uint8Array): unknown;
    value(pointer: unknown): bigint | number;
  };
  UnsafePointerView: { getArrayBuffer(pointer: unknown, byteLength: number): ArrayBuffer };
}

const TYPE: Record<string, DenoType> = { i32: "i32", u64: "u64", buffer: "buffer", callback: "pointer" };
const NONBLOCKING = "$nonblocking";

/**
 * Opens the library at `path` with Deno's FFI, binding the functions of `table`
 * (all of them unless told otherwise).
 */
export function open(path: string, table: Record<string, SymbolDef> = SYMBOLS): RawLibrary {
  const deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
  const defs: Record<string, DenoForeignFunction> = {};
  for (const [name, def] of Object.entries(table)) {
    const parameters = def.params.map((kind) => TYPE[kind]);
    defs[name] = { parameters, result: "i32" };
    if ("long" in def) defs[name + NONBLOCKING] = { name, parameters, result: "i32", nonblocking: true };
  }
  const lib = deno.dlopen(path, defs);
  const symbols: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(table)) symbols[name] = positiveZero(lib.symbols[name], def);
  return {
    runtime: "deno",
    path,
    symbols: symbols as unknown as RawLibrary["symbols"],
    doneCallback: null,
    callLong<K extends LongSymbolName>(name: K, args: Parameters<NativeFunction<K>>): Promise<number> {
      return lib.symbols[name + NONBLOCKING](...zeroed(args, table[name])) as Promise<number>;
    },
    allocate(byteLength: number): Uint8Array {
      // V8 takes large buffers from calloc, i.e. fresh zero pages: no zeroing pass.
      return new Uint8Array(byteLength);
    },
    view(address: bigint, byteLength: number): ArrayBuffer {
      return deno.UnsafePointerView.getArrayBuffer(deno.UnsafePointer.create(address), byteLength);
    },
    address(bytes: Uint8Array): bigint {
      return BigInt(deno.UnsafePointer.value(deno.UnsafePointer.of(bytes)));
    },
    close(): void {
      lib.close();
    },
  };
}

// Deno's FFI refuses -0 for an i32 parameter (a TypeError); the ABI means 0,
// as the other runtimes pass it. Functions with i32 parameters are wrapped
// with a fixed parameter list, each argument passed through its own (inlined)
// conversion: a rest-and-spread wrapper made the 64-byte read 1.5x slower.
type Convert = (value: unknown) => unknown;
const asIs: Convert = (value) => value;
const positive: Convert = (value) => (value as number) + 0;
type Fn = (...args: unknown[]) => number | Promise<number>;

function positiveZero(fn: Fn, def: SymbolDef): Fn {
  if (!def.params.includes("i32")) return fn;
  const [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10] = def.params.map((kind) => kind === "i32" ? positive : asIs);
  switch (def.params.length) {
    case 2:
      return (a, b) => fn(c0(a), c1(b));
    case 3:
      return (a, b, c) => fn(c0(a), c1(b), c2(c));
    case 4:
      return (a, b, c, d) => fn(c0(a), c1(b), c2(c), c3(d));
    case 5:
      return (a, b, c, d, e) => fn(c0(a), c1(b), c2(c), c3(d), c4(e));
    case 7:
      return (a, b, c, d, e, f, g) => fn(c0(a), c1(b), c2(c), c3(d), c4(e), c5(f), c6(g));
    case 9:
      return (a, b, c, d, e, f, g, h, i) => fn(c0(a), c1(b), c2(c), c3(d), c4(e), c5(f), c6(g), c7(h), c8(i));
    case 11:
      return (a, b, c, d, e, f, g, h, i, j, k) =>
        fn(c0(a), c1(b), c2(c), c3(d), c4(e), c5(f), c6(g), c7(h), c8(i), c9(j), c10(k));
    default:
      return (...args) => fn(...zeroed(args, def));
  }
}

function zeroed(args: unknown[], def: SymbolDef): unknown[] {
  def.params.forEach((kind, i) => {
    if (kind === "i32") args[i] = (args[i] as number) + 0;
  });
  return args;
}
