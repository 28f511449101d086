// `npm pack` / `npm publish` around the tarball (npm's pack of a git
// dependency runs only `prepare`, not this):
//   node scripts/pack.mjs before   builds dist/ and prebuilds/, and leaves in
//                                  package.json only what an installed package
//                                  needs: no scripts (npm would list `prepare`
//                                  among the install scripts to approve), no
//                                  local build in "files"
//   node scripts/pack.mjs after    restores package.json, removes the builds
// package.json is kept as .package.json.packing meanwhile; a pack that died
// halfway is undone by the next `before`.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const manifest = join(root, "package.json");
const saved = join(root, ".package.json.packing");

function restore() {
  if (existsSync(saved)) renameSync(saved, manifest);
}

const step = process.argv[2];
if (step === "before") {
  restore();
  execFileSync(process.execPath, [join(root, "scripts", "build.mjs")], { stdio: "inherit" });
  execFileSync("sh", [join(root, "ffi", "prebuild.sh")], { stdio: "inherit" });
  copyFileSync(manifest, saved);
  const pkg = JSON.parse(readFileSync(manifest, "utf8"));
  delete pkg.scripts;
  // ffi/build/ is in "files" for git dependencies, which npm packs after
  // `prepare` without running this script: there the local build is what the
  // loader finds. A release carries prebuilds/ instead.
  pkg.files = pkg.files.filter((entry) => !entry.startsWith("ffi/build/"));
  writeFileSync(manifest, JSON.stringify(pkg, null, 2) + "\n");
} else if (step === "after") {
  restore();
  rmSync(join(root, "dist"), { recursive: true, force: true });
  rmSync(join(root, "prebuilds"), { recursive: true, force: true });
} else {
  console.error("usage: node scripts/pack.mjs before|after");
  process.exit(2);
}
