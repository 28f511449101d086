// Reads the JUnit XML files the three runtimes' test runners write
// (`node --test-reporter=junit`, `bun test --reporter=junit`, `deno test
// --junit-path`): machine-readable results, so test/support/run_all.mjs never
// has to read counts out of a runner's prose.
//
// A test is a <testcase> that is not a group: Node and Bun write describe()
// groups as <testsuite>, Deno writes them as a <testcase> whose steps follow
// as "<group> > <step>", so a case named N is a group when another is named
// "N > …". A case failed when it holds <failure> or <error>, and was skipped
// when it holds <skipped>.
import { readFileSync } from "node:fs";

const ENTITIES = { "&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&amp;": "&" };
const unescape = (text) => text.replace(/&(?:lt|gt|quot|apos|amp);/g, (e) => ENTITIES[e]);

/** The test cases of one JUnit file: `{ name, failed, skipped }` each. */
export function junitCases(path) {
  const xml = readFileSync(path, "utf8");
  const cases = [];
  // <testcase …/> or <testcase …>…</testcase>; a case never nests another.
  // Attribute values are read whole: XML lets them hold ">" unescaped (Node
  // writes a test named "a -> b" so), which once ended a case's attributes
  // early, and with a failed or skipped case's "</testcase>" later in the file
  // (the cases with a body), swallowed every case in between (138 of 302
  // uncounted in a run with one failure).
  const element = /<testcase\b((?:[^>"']|"[^"]*"|'[^']*')*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(element)) {
    const name = unescape(m[1].match(/\bname="([^"]*)"/)?.[1] ?? "");
    const body = m[3] ?? "";
    cases.push({ name, failed: /<(?:failure|error)\b/.test(body), skipped: /<skipped\b/.test(body) });
  }
  const groups = new Set();
  for (const { name } of cases) {
    for (let at = name.indexOf(" > "); at >= 0; at = name.indexOf(" > ", at + 3)) groups.add(name.slice(0, at));
  }
  return cases.filter((c) => !groups.has(c.name));
}

/** `{ passed, failed, skipped, failures }` of one JUnit file (undefined when it is missing). */
export function junitCounts(path) {
  let cases;
  try {
    cases = junitCases(path);
  } catch {
    return undefined;
  }
  const failures = cases.filter((c) => c.failed).map((c) => c.name);
  const skipped = cases.filter((c) => !c.failed && c.skipped).length;
  return { passed: cases.length - failures.length - skipped, failed: failures.length, skipped, failures };
}
