// linkClusters and unlinkClusters: cluster infos, and the statuses each may answer.

import { LLMClusterInfo, LLMRole } from "../../../mod.ts";
import { counter, fail, INT32_MAX, INT32_MIN, S, show } from "./core.ts";
import type { Ctx, InstModel } from "./model.ts";
import { attempt, BAD, codeName, expectations, intIn, OK, Oracle } from "./outcomes.ts";
import { resolve } from "./resolve.ts";
import { hasHole } from "./values.ts";

// ---------------------------------------------------------------------------
// Cluster infos, links

/** A cluster to link to: the PROMPT's id or another, at the PROMPT's port, a dead one, port 0, or no address. */
export interface ClusterSpec {
  id: "P" | "wrong";
  port: "P" | "dead" | "zero" | "none";
  ipAsInt: boolean;
}

export function clusterInfo(ctx: Ctx, spec: ClusterSpec): LLMClusterInfo {
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = spec.id === "P" ? ctx.P.clusterId : ctx.P.clusterId + 1_000_000n;
  cluster.remoteRoleType = LLMRole.PROMPT;
  counter.calls += 3;
  if (spec.port !== "none") {
    const port = spec.port === "P" ? ctx.P.port : spec.port === "dead" ? ctx.deadPort : 0;
    cluster.appendRemoteIpInfo(spec.ipAsInt ? 0x0100007F : "127.0.0.1", port); // upstream: lowest byte first
    counter.calls++;
  }
  return cluster;
}

/** What a cluster info (made by the fuzz) points at. */
function specOf(ctx: Ctx, info: LLMClusterInfo): ClusterSpec {
  const remote = info.remoteIpInfoList[0];
  const port = remote === undefined ? "none" : remote.port === 0 ? "zero" : remote.port === ctx.P.port ? "P" : "dead";
  if (port === "dead" && remote!.port !== ctx.deadPort) {
    fail(`model: a cluster info at an unknown port ${remote!.port}`);
  }
  return { id: info.remoteClusterId === ctx.P.clusterId ? "P" : "wrong", port, ipAsInt: false };
}

/** What linkClusters / unlinkClusters may answer for each cluster. */
function checkStatuses(
  label: string,
  value: unknown,
  allowed: number[][],
  exactlyOne: { indexes: number[]; status: number } | undefined,
): number[] {
  if (!Array.isArray(value) || value.length !== 2 || !Array.isArray(value[1])) {
    fail(`${label}: returned ${show(value)}, not [status, statuses]`);
  }
  const [overall, statuses] = value as [number, number[]];
  if (statuses.length !== allowed.length) fail(`${label}: ${statuses.length} statuses for ${allowed.length} clusters`);
  statuses.forEach((s, i) => {
    if (!allowed[i].includes(s)) {
      fail(`${label}: cluster ${i} status ${codeName(s)}, expected ${allowed[i].map(codeName).join(" or ")}`);
    }
  });
  const first = statuses.find((s) => s !== S.LLM_SUCCESS) ?? S.LLM_SUCCESS;
  if (overall !== first) {
    fail(`${label}: overall status ${codeName(overall)} but per-cluster ${statuses.map(codeName)}`);
  }
  if (exactlyOne && exactlyOne.indexes.length > 0) {
    const n = exactlyOne.indexes.filter((i) => statuses[i] === exactlyOne.status).length;
    if (n !== 1) fail(`${label}: ${n} clusters got ${codeName(exactlyOne.status)}, expected exactly one`);
  }
  return statuses;
}

/** A clusters argument: specs to build, or any value. */
export type ClustersSpec = { specs: ClusterSpec[] } | { many: number } | { any: unknown } | { elements: unknown[] };

function buildClusters(ctx: Ctx, inst: InstModel, spec: ClustersSpec): { value: unknown; specs?: ClusterSpec[] } {
  if ("any" in spec) return { value: resolve(ctx, inst, spec.any) };
  if ("elements" in spec) return { value: spec.elements.map((e) => resolve(ctx, inst, e)) };
  if ("many" in spec) {
    const specs = Array.from({ length: spec.many }, (): ClusterSpec => ({ id: "wrong", port: "dead", ipAsInt: false }));
    return { value: specs.map((s) => clusterInfo(ctx, s)), specs };
  }
  return { value: spec.specs.map((s) => clusterInfo(ctx, s)), specs: spec.specs };
}

function checkClustersArg(o: Oracle, clusters: unknown, timeout: unknown): LLMClusterInfo[] | undefined {
  let list: LLMClusterInfo[] | undefined;
  if (!Array.isArray(clusters)) o.type();
  else if (hasHole(clusters) || clusters.some((c) => !(c instanceof LLMClusterInfo))) o.type();
  else list = clusters;
  // Upstream: check_int32, then timeout > 0 (LLM_PARAM_INVALID).
  const ms = intIn(o, timeout, INT32_MIN, INT32_MAX, 3000);
  if (ms !== BAD && ms <= 0) o.llm(S.LLM_PARAM_INVALID);
  if (Array.isArray(clusters) && clusters.length > 16) o.llm(S.LLM_CLUSTER_NUM_EXCEED_LIMIT);
  return list;
}

export async function doLink(ctx: Ctx, inst: InstModel, clustersSpec: ClustersSpec, timeout: unknown): Promise<void> {
  const { value, specs } = buildClusters(ctx, inst, clustersSpec);
  const o = new Oracle();
  const list = checkClustersArg(o, value, timeout);
  if (list && list.some((c) => c.remoteIpInfoList.length === 0)) o.value();
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (inst.role === LLMRole.PROMPT) o.llm(S.LLM_PARAM_INVALID);
  const label = `${inst.name}.linkClusters(${specs ? show(specs) : show(value)}, ${show(timeout)})`;
  const P = ctx.P;
  // Per-cluster outcomes, when the call gets that far (only specs reach the native side here).
  let allowed: number[][] = [];
  let exactlyOne: { indexes: number[]; status: number } | undefined;
  if (!o.failed) {
    const specs = list!.map((info) => specOf(ctx, info));
    const linkable = specs.map((s, i) => (s.id === "P" && s.port === "P" && !P.finalized ? i : -1)).filter((i) =>
      i >= 0
    );
    allowed = specs.map((s): number[] => {
      if (s.port === "zero") return [S.LLM_PARAM_INVALID];
      if (s.id === "wrong") return [S.LLM_LINK_FAILED];
      if (inst.linked) return P.finalized ? [S.LLM_ALREADY_LINK, S.LLM_LINK_FAILED] : [S.LLM_ALREADY_LINK];
      if (P.finalized) return [S.LLM_LINK_FAILED];
      if (s.port === "P") return [S.LLM_SUCCESS, S.LLM_ALREADY_LINK];
      return linkable.length > 0 ? [S.LLM_LINK_FAILED, S.LLM_ALREADY_LINK] : [S.LLM_LINK_FAILED];
    });
    if (!inst.linked) exactlyOne = { indexes: linkable, status: S.LLM_SUCCESS };
  }
  const settled = await attempt(
    label,
    expectations(o, [OK]),
    () => inst.dd.linkClusters(value as LLMClusterInfo[], timeout as number),
    true,
  );
  if (settled.ok) {
    const statuses = checkStatuses(label, settled.value, allowed, exactlyOne);
    if (statuses.includes(S.LLM_SUCCESS)) inst.linked = true;
  }
}

export async function doUnlink(
  ctx: Ctx,
  inst: InstModel,
  clustersSpec: ClustersSpec,
  timeout: unknown,
  force: unknown,
): Promise<void> {
  const { value, specs } = buildClusters(ctx, inst, clustersSpec);
  const o = new Oracle();
  checkClustersArg(o, value, timeout);
  if (force !== undefined && typeof force !== "boolean") o.type();
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (inst.role === LLMRole.PROMPT) o.llm(S.LLM_PARAM_INVALID);
  const label = `${inst.name}.unlinkClusters(${specs ? show(specs) : show(value)}, ${show(timeout)}, ${show(force)})`;
  let allowed: number[][] = [];
  let exactlyOne: { indexes: number[]; status: number } | undefined;
  let mine: number[] = [];
  if (!o.failed) {
    const specs = (value as LLMClusterInfo[]).map((info) => specOf(ctx, info));
    mine = specs.map((s, i) => (s.id === "P" ? i : -1)).filter((i) => i >= 0);
    const done = !ctx.P.finalized || force === true ? S.LLM_SUCCESS : S.LLM_UNLINK_FAILED;
    allowed = specs.map((s) => (s.id === "P" && inst.linked ? [done, S.LLM_NOT_YET_LINK] : [S.LLM_NOT_YET_LINK]));
    if (inst.linked) exactlyOne = { indexes: mine, status: done };
  }
  const settled = await attempt(
    label,
    expectations(o, [OK]),
    () => inst.dd.unlinkClusters(value as LLMClusterInfo[], timeout as number, force as boolean),
    true,
  );
  if (settled.ok) {
    checkStatuses(label, settled.value, allowed, exactlyOne);
    if (mine.length > 0) inst.linked = false;
  }
}
