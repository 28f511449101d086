// Lets Node run this repository's TypeScript sources directly (tests, examples,
// benchmarks): a module hook that strips types with esbuild. Deno and Bun run
// TypeScript natively and do not need it.
import { register } from "node:module";

register("./ts_hooks.mjs", import.meta.url);
