// The code blocks of the documentation, as test/docs.test.ts runs them: the
// fenced blocks of the Markdown files and the `@example` blocks of the JSDoc.
//
// A block's info string is `<language> [attribute…]`, as Deno's documentation
// tests read it. Languages js/mjs run as plain JavaScript (what a Node 20 user
// copies into a `.mjs` file), ts as TypeScript; other languages (sh, text) are
// not code to run. `ignore` leaves a block out (Deno's own `deno test --doc`
// honours it too): signatures and fragments. `process=<name>` marks a block as
// one program of a set that runs together, in the order written: every block
// of the set but the last is started as a server and must print a line with
// "ready" before the next one starts; the last must finish, then the servers
// get SIGINT and must finish too. The port 26000 the examples use is replaced by a
// free one. Such blocks also carry `ignore`, since run
// alone by Deno's doc tests they would wait for a peer that never comes.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** One runnable block of the documentation. */
export interface DocBlock {
  /** Where it is: `README.md:123` (the line of the opening fence). */
  readonly where: string;
  /** `js` or `ts`. */
  readonly language: "js" | "ts";
  /** The set it belongs to (`process=<name>`), if any. */
  readonly processSet?: string;
  /** The block's code. */
  readonly code: string;
}

const LANGUAGES: Record<string, "js" | "ts"> = { js: "js", javascript: "js", mjs: "js", ts: "ts", typescript: "ts" };

interface Fence {
  info: string;
  line: number;
  code: string;
}

/** The fenced blocks of Markdown text (fences may be indented, as in lists). */
export function fencesOf(text: string): Fence[] {
  const fences: Fence[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^(\s*)```(.*)$/);
    if (!open) continue;
    const indent = open[1].length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) body.push(lines[j].slice(indent));
    fences.push({ info: open[2].trim(), line: i + 1, code: body.join("\n") });
    i = j;
  }
  return fences;
}

/** The Markdown inside a source file's JSDoc comments, line numbers kept. */
function jsdocText(source: string): string {
  const out = source.split("\n").map(() => "");
  const lines = source.split("\n");
  let inside = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!inside && /^\s*\/\*\*/.test(line)) inside = true;
    if (inside) out[i] = line.replace(/^\s*\/?\*+\/?\s?/, "").replace(/\s*\*\/\s*$/, "");
    if (inside && /\*\/\s*$/.test(line)) inside = false;
  }
  return out.join("\n");
}

function blocksOf(text: string, file: string): DocBlock[] {
  const blocks: DocBlock[] = [];
  for (const fence of fencesOf(text)) {
    const [lang, ...attributes] = fence.info.split(/\s+/);
    const language = LANGUAGES[lang];
    if (!language) continue;
    const processSet = attributes.find((a) => a.startsWith("process="))?.slice("process=".length);
    if (attributes.includes("ignore") && !processSet) continue;
    blocks.push({ where: `${file}:${fence.line}`, language, processSet, code: fence.code });
  }
  return blocks;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

/** The Markdown files and sources whose blocks are documentation. */
export function documentationFiles(root: string): string[] {
  const markdown = ["README.md", "ffi/cann/README.md", "docs/DESIGN.md"].map((f) => join(root, f));
  return [
    ...markdown.filter((f) => statSync(f, { throwIfNoEntry: false })),
    join(root, "mod.ts"),
    ...sourceFiles(join(root, "src")),
  ];
}

/** Every runnable block of the documentation under `root`. */
export function documentationBlocks(root: string): DocBlock[] {
  return documentationFiles(root).flatMap((path) => {
    const text = readFileSync(path, "utf8");
    const name = relative(root, path);
    return blocksOf(path.endsWith(".md") ? text : jsdocText(text), name);
  });
}
