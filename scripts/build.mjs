// `npm run build`: the npm package's dist/ from the same sources Deno and Bun
// run directly. esbuild strips the types of mod.ts and src/**/*.ts file by file
// (no bundling, so dist/ mirrors the source tree and relative paths such as
// the loader's ../../prebuilds stay right), relative ".ts" imports become
// ".js", and tsc writes the .d.ts files beside them.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { transform } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sources(path) : entry.name.endsWith(".ts") ? [path] : [];
  });
}

// "./x.ts" and "../y/z.ts" in static and dynamic imports; nothing else (lines
// of doc comments keep their examples as written).
const relativeTs = /^(?!\s*\*)(.*?(?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']+)\.ts(["'])/gm;

rmSync(dist, { recursive: true, force: true });
const files = [join(root, "mod.ts"), ...sources(join(root, "src"))];
for (const file of files) {
  const { code } = await transform(readFileSync(file, "utf8"), {
    loader: "ts",
    format: "esm",
    target: "es2022",
    sourcefile: relative(root, file),
  });
  const out = join(dist, relative(root, file)).replace(/\.ts$/, ".js");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, code.replace(relativeTs, "$1$2.js$3"));
}
execFileSync(join(root, "node_modules", ".bin", "tsc"), ["-p", join(root, "tsconfig.build.json")], {
  stdio: "inherit",
});
// tsc keeps the ".ts" specifiers in declarations; point them at the .d.ts/.js pairs.
for (const file of sources(dist).filter((f) => f.endsWith(".d.ts"))) {
  writeFileSync(file, readFileSync(file, "utf8").replace(relativeTs, "$1$2.js$3"));
}
console.log(`dist/: ${files.length} modules with their .d.ts`);
