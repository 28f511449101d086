// test/support/junit.mjs, which test/support/run_all.mjs counts every runtime's
// results with: names holding ">" (legal unescaped in an XML attribute) and a
// failed case after them are all counted.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { junitCounts } from "./support/junit.mjs";

function countsOf(xml: string) {
  const dir = mkdtempSync(join(tmpdir(), "llmdd-junit-"));
  try {
    const path = join(dir, "report.xml");
    writeFileSync(path, xml);
    return junitCounts(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("junit counts", () => {
  test("names with '>' before a failed case: every case counted (Node's reporter)", () => {
    const counts = countsOf(`<?xml version="1.0" encoding="utf-8"?>
<testsuites>
	<testsuite name="links" time="0.1" tests="5" failures="1" skipped="1">
		<testcase name="DECODER -> PROMPT -> DECODER" time="0.005" classname="test"/>
		<testcase name="index &lt; 0 or >= numTensors is refused" time="0.004" classname="test"/>
		<testcase name='single-quoted > name' time="0.001" classname="test"/>
		<testcase name="skipped one" time="0" classname="test">
			<skipped type="skipped" message="not here"/>
		</testcase>
		<testcase name="fails" time="0.001" classname="test" failure="x">
			<failure type="testCodeFailure" message="x">Error: x
    at f (&lt;anonymous>)</failure>
		</testcase>
		<testcase name="after the failure" time="0.001" classname="test"/>
	</testsuite>
</testsuites>`);
    assert.deepEqual(counts, { passed: 4, failed: 1, skipped: 1, failures: ["fails"] });
  });

  test("Deno's groups (a case with 'name > step' cases) are not counted themselves", () => {
    const counts = countsOf(`<testsuites><testsuite name="./test/a.test.ts">
<testcase name="group" classname="./test/a.test.ts"></testcase>
<testcase name="group > one" classname="./test/a.test.ts"></testcase>
<testcase name="group > two" classname="./test/a.test.ts"><failure message="no"></failure></testcase>
</testsuite></testsuites>`);
    assert.deepEqual(counts, { passed: 1, failed: 1, skipped: 0, failures: ["group > two"] });
  });
});
