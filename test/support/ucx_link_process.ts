// A DECODER in its own process that links to a PROMPT over UCX and says how it
// went, for test/ucx.test.ts: run with an environment of the test's choosing
// (LLMDD_UCX_LIBRARY naming a missing file shows what a machine without UCX
// answers). Argument: JSON {clusterId, promptClusterId, port}; prints
// {"status": N, "message": "..."}.
import process from "node:process";
import { LLMClusterInfo, LLMDataDist, LLMRole } from "../../mod.ts";

const config = JSON.parse(process.argv[process.argv.length - 1]) as {
  clusterId: string;
  promptClusterId: string;
  port: number;
};
const decoder = new LLMDataDist(LLMRole.DECODER, BigInt(config.clusterId));
try {
  // With llmdd.transport=ucx a missing UCX is reported by init (linkClusters
  // answers statuses only); with auto, by the link to a remote PROMPT.
  await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llmdd.transport": "ucx" });
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = BigInt(config.promptClusterId);
  cluster.appendRemoteIpInfo("127.0.0.1", config.port);
  const [status] = await decoder.linkClusters([cluster], 5000);
  console.log(JSON.stringify({ status, message: "linkClusters" }));
  decoder.finalize();
} catch (e) {
  const err = e as { statusCode?: number; message?: string };
  console.log(JSON.stringify({ status: err.statusCode ?? -1, message: err.message ?? String(e) }));
}
