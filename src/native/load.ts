/**
 * Finding and opening the native library, in this order (README, "How it is
 * built"; docs/DESIGN.md): the `libraryPath` option, then the `LLMDD_LIBRARY`
 * environment variable, then a prebuilt library shipped in the package for
 * this platform, then the local build in `ffi/build/`. A failure says what was
 * tried and how to fix it.
 *
 * @module
 */
import { LLMException } from "../errors.ts";
import { LLMStatusCode } from "../status.ts";
import { ABI_VERSION, type RawLibrary, type RuntimeName, type SymbolDef, SYMBOLS } from "./symbols.ts";

/** The two native backends. */
export type Backend = "host" | "cann";

/** The runtime this code runs on. */
export function currentRuntime(): RuntimeName {
  if ("Deno" in globalThis) return "deno";
  if ("Bun" in globalThis) return "bun";
  return "node";
}

async function openRaw(
  runtime: RuntimeName,
  path: string,
  table: Record<string, SymbolDef> = SYMBOLS,
): Promise<RawLibrary> {
  switch (runtime) {
    case "deno":
      return (await import("./deno.ts")).open(path, table);
    case "bun":
      return (await import("./bun.ts")).open(path, table);
    case "node":
      return (await import("./node.ts")).open(path, table);
  }
}

function environment(name: string): string | undefined {
  try {
    const g = globalThis as unknown as {
      Deno?: { env: { get(name: string): string | undefined } };
      process?: { env: Record<string, string | undefined> };
    };
    return (g.Deno ? g.Deno.env.get(name) : g.process?.env[name]) || undefined;
  } catch {
    return undefined; // Deno without --allow-env: treated as unset
  }
}

function platform(): string {
  const g = globalThis as unknown as {
    Deno?: { build: { os: string; arch: string } };
    process?: { platform: string; arch: string };
  };
  if (g.Deno) return `${g.Deno.build.os}-${g.Deno.build.arch === "x86_64" ? "x64" : "arm64"}`;
  return `${g.process?.platform}-${g.process?.arch}`;
}

// The package's root folder: this file is src/native/load.ts in a clone and
// on JSR, dist/src/native/load.js in the npm package (scripts/build.mjs).
const PACKAGE_ROOT = new URL(
  /\/dist\/src\/native\/[^/]+$/.test(import.meta.url) ? "../../../" : "../../",
  import.meta.url,
);

/** A path inside the package. */
function fileOf(relative: string): string {
  return decodeURIComponent(new URL(relative, PACKAGE_ROOT).pathname);
}

/** The library files to try, in order, with where each came from. */
export function candidates(backend: Backend, libraryPath?: string): { path: string; origin: string }[] {
  if (libraryPath !== undefined) return [{ path: libraryPath, origin: "the libraryPath option" }];
  const fromEnv = environment("LLMDD_LIBRARY");
  if (fromEnv !== undefined) return [{ path: fromEnv, origin: "the LLMDD_LIBRARY environment variable" }];
  const file = `libllmdd_${backend}.so`;
  // Loaded from a URL (a JSR import): no file next to the module can be opened.
  if (!import.meta.url.startsWith("file:")) return [];
  return [
    { path: fileOf(`prebuilds/${platform()}/${file}`), origin: `the prebuilt library for ${platform()}` },
    { path: fileOf(`ffi/build/${file}`), origin: "the local build" },
  ];
}

/** The platforms the npm package carries a prebuilt host library for (ffi/prebuild.sh). */
const PREBUILT_PLATFORMS = ["linux-x64", "linux-arm64"];

const loaded = new Map<string, Promise<RawLibrary>>();

async function openChecked(runtime: RuntimeName, path: string): Promise<RawLibrary> {
  // The version is read through a binding of that one function, so that a
  // library of another ABI (with other symbols) is named for what it is.
  const probe = await openRaw(runtime, path, { llmdd_abi_version: SYMBOLS.llmdd_abi_version });
  const version = probe.symbols.llmdd_abi_version();
  probe.close();
  if (version !== ABI_VERSION) {
    throw new Error(
      `it has ABI version ${version} but this code needs version ${ABI_VERSION}; rebuild it from this package's ffi/ sources`,
    );
  }
  return await openRaw(runtime, path);
}

/** Opens the library for `backend`, or throws an `LLMException` naming every file tried. */
export async function loadLibrary(backend: Backend, libraryPath?: string): Promise<RawLibrary> {
  const runtime = currentRuntime();
  const failures: string[] = [];
  let denied = false;
  for (const { path, origin } of candidates(backend, libraryPath)) {
    let library = loaded.get(path);
    if (!library) {
      library = openChecked(runtime, path);
      loaded.set(path, library);
    }
    try {
      return await library;
    } catch (err) {
      loaded.delete(path);
      denied ||= permissionDenied(err);
      failures.push(`  ${path} (${origin}): ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
    }
  }
  const shipped = PREBUILT_PLATFORMS.includes(platform())
    ? ""
    : `This package ships prebuilt libraries for ${PREBUILT_PLATFORMS.join(" and ")} only, not ${platform()}. `;
  const fix = backend === "host"
    ? `${shipped}Build it from source with \`make -C ${fileOf("ffi")}\` (needs a C compiler and make; ` +
      "in a clone, `npm run prepare` does it), or point the libraryPath option or LLMDD_LIBRARY at a built " +
      "libllmdd_host.so."
    : "The CANN backend is built only where the CANN toolkit is installed (ffi/cann/README.md); point the " +
      "libraryPath option or LLMDD_LIBRARY at libllmdd_cann.so.";
  const tried = failures.length > 0
    ? `Tried:\n${failures.join("\n")}`
    : `This module was loaded from ${import.meta.url}, so it has no native library beside it: set LLMDD_LIBRARY ` +
      "or the libraryPath option.";
  if (denied) {
    // The library is most likely there: what is missing is the permission.
    throw new LLMException(
      LLMStatusCode.LLM_FAILED,
      `cannot load the ${backend} native library: Deno denied FFI access. Run with --allow-ffi ` +
        `(and --allow-env to honour LLMDD_LIBRARY). ${tried}`,
    );
  }
  throw new LLMException(
    LLMStatusCode.LLM_FAILED,
    `cannot load the ${backend} native library on ${runtime}. ${tried}\n${fix}` +
      (runtime === "deno" ? "\nOn Deno, run with --allow-ffi (and --allow-env to honour LLMDD_LIBRARY)." : ""),
  );
}

/** Whether `err` is Deno refusing a permission (FFI, here), not a missing or broken file. */
function permissionDenied(err: unknown): boolean {
  const errors = (globalThis as { Deno?: { errors: Record<string, unknown> } }).Deno?.errors;
  if (!errors) return false;
  return [errors.NotCapable, errors.PermissionDenied].some((cls) => typeof cls === "function" && err instanceof cls);
}
