// CacheDesc, CacheKey, LLMConfig, enums and error classes: names, numbers and argument checks.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  LLMConfig,
  LLMException,
  LLMRole,
  LLMStatusCode,
  Placement,
  statusName,
  Tensor,
  ValueError,
} from "../mod.ts";
import { layoutTag } from "../src/cache_desc.ts";
import { rejectsWith, rejectsWithStatus } from "./helpers.ts";

describe("enums keep upstream numbers", () => {
  test("LLMRole, Placement", () => {
    assert.deepEqual({ ...LLMRole }, { PROMPT: 1, DECODER: 2, MIX: 3 });
    assert.deepEqual({ ...Placement }, { HOST: 0, DEVICE: 1 });
  });
  test("DataType", () => {
    assert.deepEqual({ ...DataType }, {
      DT_FLOAT: 0,
      DT_FLOAT16: 1,
      DT_INT8: 2,
      DT_INT32: 3,
      DT_UINT8: 4,
      DT_INT16: 6,
      DT_UINT16: 7,
      DT_UINT32: 8,
      DT_INT64: 9,
      DT_UINT64: 10,
      DT_DOUBLE: 11,
      DT_BOOL: 12,
      DT_BF16: 27,
    });
  });
  test("LLMStatusCode", () => {
    assert.equal(LLMStatusCode.LLM_SUCCESS, 0);
    assert.equal(LLMStatusCode.LLM_FAILED, 0xFFFFFFFF);
    const offsets: Record<string, number> = {
      WAIT_PROCESS_TIMEOUT: 1,
      KV_CACHE_NOT_EXIST: 2,
      REPEAT_REQUEST: 3,
      REQUEST_ALREADY_COMPLETED: 4,
      PARAM_INVALID: 5,
      ENGINE_FINALIZED: 6,
      NOT_YET_LINK: 7,
      ALREADY_LINK: 8,
      LINK_FAILED: 9,
      UNLINK_FAILED: 0xA,
      NOTIFY_PROMPT_UNLINK_FAILED: 0xB,
      CLUSTER_NUM_EXCEED_LIMIT: 0xC,
      PROCESSING_LINK: 0xD,
      DEVICE_OUT_OF_MEMORY: 0xE,
      PREFIX_ALREADY_EXIST: 0xF,
      PREFIX_NOT_EXIST: 0x10,
      SEQ_LEN_OVER_LIMIT: 0x11,
      NO_FREE_BLOCK: 0x12,
      BLOCKS_OUT_OF_MEMORY: 0x13,
      EXIST_LINK: 0x18,
      FEATURE_NOT_ENABLED: 0x19,
      TIMEOUT: 0x1A,
      LINK_BUSY: 0x1B,
      OUT_OF_MEMORY: 0x1C,
      // In llm_error_codes.h, not in upstream Python's enum.
      CACHE_INCOMPATIBLE: 0x14,
      CACHE_KEY_ALREADY_EXIST: 0x15,
      COPY_CACHE_FAILED: 0x16,
      CACHE_ID_ALREADY_EXIST: 0x17,
      SEQ_LENOVERLIMIT: 0x11, // upstream Python's spelling
    };
    for (const [name, n] of Object.entries(offsets)) {
      assert.equal((LLMStatusCode as Record<string, number>)[`LLM_${name}`], 0x5010B000 + n, name);
    }
    // status.py: kLLMDeviceMemError, kLLMSuspectRemoteError are ACL runtime codes; LLM_UNKNOWN_ERROR = -1.
    assert.equal(LLMStatusCode.LLM_DEVICE_MEM_ERROR, 507053);
    assert.equal(LLMStatusCode.LLM_SUSPECT_REMOTE_ERROR, 507057);
    assert.equal(LLMStatusCode.LLM_UNKNOWN_ERROR, -1);
    assert.equal(Object.keys(LLMStatusCode).length, Object.keys(offsets).length + 5);
  });
  test("statusName names every code, prefers the C header's name, spells others in hex", () => {
    for (const [name, code] of Object.entries(LLMStatusCode)) {
      if (name !== "LLM_SEQ_LENOVERLIMIT") assert.equal(statusName(code), name);
    }
    assert.equal(statusName(1343270921), "LLM_LINK_FAILED");
    assert.equal(statusName(0x5010B011), "LLM_SEQ_LEN_OVER_LIMIT");
    assert.equal(statusName(0x5010B005 | 0), "LLM_PARAM_INVALID"); // an int32 from a native call
    assert.equal(statusName(0xFFFFFFFF), "LLM_FAILED");
    assert.equal(statusName(-1), "LLM_UNKNOWN_ERROR");
    assert.equal(statusName(0x5010B0FF), "0x5010B0FF");
  });
  test("each enum member's doc names its value (what deno doc shows)", async () => {
    const { readFile } = await import("node:fs/promises");
    const files: [string, Record<string, number>][] = [
      ["../src/status.ts", LLMStatusCode],
      ["../src/enums.ts", { ...LLMRole, ...Placement }],
      ["../src/data_type.ts", DataType],
    ];
    for (const [file, members] of files) {
      const text = await readFile(new URL(file, import.meta.url), "utf8");
      for (const [name, value] of Object.entries(members)) {
        const doc = new RegExp(`/\\*\\*(?:(?!\\*/)[\\s\\S])*\\*/\\s*${name}: `).exec(text);
        assert.ok(doc, `${file}: ${name} has a doc comment`);
        const spelled = [String(value), `0x${(value >>> 0).toString(16).toUpperCase()}`];
        assert.ok(spelled.some((v) => doc[0].includes(`\`${v}\``)), `${file}: the doc of ${name} names ${spelled[0]}`);
      }
    }
  });
});

describe("error classes", () => {
  test("ValueError extends RangeError", () => {
    const err = new ValueError("x");
    assert.ok(err instanceof RangeError);
    assert.equal(err.name, "ValueError");
  });
  test("LLMException carries an unsigned statusCode and names it", () => {
    const err = new LLMException(-1, "boom");
    assert.ok(err instanceof Error);
    assert.equal(err.statusCode, LLMStatusCode.LLM_FAILED);
    assert.match(err.message, /^LLM_FAILED: boom$/);
    assert.match(new LLMException(0x5010B002, "gone").message, /LLM_KV_CACHE_NOT_EXIST/);
  });
  test("LLMException shows its status name beside the number (issue 14)", async () => {
    const err = new LLMException(1343270921, "no route");
    assert.equal(err.statusCode, 1343270921);
    assert.equal(err.statusName, "LLM_LINK_FAILED");
    assert.ok(Object.keys(err).includes("statusName"), "statusName is an own property, so inspection prints it");
    const { inspect } = await import("node:util");
    assert.match(inspect(err), /statusCode: 1343270921,\s+statusName: ['"]LLM_LINK_FAILED['"]/);
    assert.equal(new LLMException(0x5010B0FF, "?").statusName, "0x5010B0FF");
  });
});

describe("CacheDesc", () => {
  test("size and batchSize", () => {
    const desc = new CacheDesc(2, [4, 16, 8], DataType.DT_FLOAT16);
    assert.equal(desc.size, 4 * 16 * 8 * 2);
    assert.equal(desc.batchSize, 4);
    assert.equal(desc.placement, Placement.DEVICE);
    assert.equal(desc.seqLenDimIndex, -1);
    const byBatch1 = new CacheDesc(1, [3, 5], DataType.DT_INT64, Placement.HOST, 1, 0);
    assert.equal(byBatch1.batchSize, 5);
    assert.equal(byBatch1.size, 3 * 5 * 8);
  });
  test("shape is copied and frozen", () => {
    const shape = [2, 2];
    const desc = new CacheDesc(1, shape, DataType.DT_INT8);
    shape[0] = 100;
    assert.deepEqual(desc.shape, [2, 2]);
    assert.ok(Object.isFrozen(desc.shape));
    // Descs of one shape share the frozen array (freezing costs ~0.5 µs on Bun);
    // the mutated input made a shape of its own.
    assert.equal(new CacheDesc(2, [2, 2], DataType.DT_FLOAT).shape, desc.shape);
    assert.deepEqual(new CacheDesc(1, shape, DataType.DT_INT8).shape, [100, 2]);
    assert.deepEqual(desc.shape, [2, 2]);
  });

  test("descs made one after another keep their own shapes (the last shape is reused only when equal)", () => {
    const shapes = [[2, 2], [2, 3], [2, 3, 1], [2], [3, 2], [2, 2], [2, 2, 1], [2, 3]];
    for (const shape of [...shapes, ...shapes.reverse()]) {
      const desc = new CacheDesc(1, shape, DataType.DT_INT8);
      assert.deepEqual(desc.shape, shape);
      assert.equal(new CacheDesc(1, [...shape], DataType.DT_INT8).shape, desc.shape);
    }
  });
  test("wrong types are TypeError", async () => {
    const bad: [string, () => unknown][] = [
      ["numTensors", () => new CacheDesc("2" as unknown as number, [1], DataType.DT_INT8)],
      ["numTensors", () => new CacheDesc(1.5, [1], DataType.DT_INT8)],
      ["numTensors", () => new CacheDesc(NaN, [1], DataType.DT_INT8)],
      ["shape", () => new CacheDesc(1, 4 as unknown as number[], DataType.DT_INT8)],
      ["shape\\[1\\]", () => new CacheDesc(1, [4, 2.5], DataType.DT_INT8)],
      ["dataType", () => new CacheDesc(1, [4], "DT_INT8" as unknown as DataType)],
      ["placement", () => new CacheDesc(1, [4], DataType.DT_INT8, null as unknown as Placement)],
      ["batchDimIndex", () => new CacheDesc(1, [4], DataType.DT_INT8, Placement.HOST, 0.5)],
    ];
    for (const [name, make] of bad) await rejectsWith(make, TypeError, new RegExp(name));
  });
  test("values out of range are ValueError", async () => {
    const bad: [string, () => unknown][] = [
      ["numTensors", () => new CacheDesc(0, [1], DataType.DT_INT8)],
      ["numTensors", () => new CacheDesc(2 ** 31, [1], DataType.DT_INT8)],
      ["shape", () => new CacheDesc(1, [], DataType.DT_INT8)],
      ["shape\\[0\\]", () => new CacheDesc(1, [0], DataType.DT_INT8)],
      ["shape\\[1\\]", () => new CacheDesc(1, [4, -1], DataType.DT_INT8)],
      ["too large", () => new CacheDesc(1, [2 ** 40, 2 ** 20], DataType.DT_INT8)],
      ["dataType", () => new CacheDesc(1, [4], 5 as DataType)],
      ["placement", () => new CacheDesc(1, [4], DataType.DT_INT8, 2 as Placement)],
      ["batchDimIndex", () => new CacheDesc(1, [4], DataType.DT_INT8, Placement.HOST, 1)],
      ["seqLenDimIndex", () => new CacheDesc(1, [4, 4], DataType.DT_INT8, Placement.HOST, 0, 2)],
      ["differ", () => new CacheDesc(1, [4, 4], DataType.DT_INT8, Placement.HOST, 1, 1)],
    ];
    for (const [name, make] of bad) await rejectsWith(make, ValueError, new RegExp(name));
  });
  test("compatibility ignores only the batch size", () => {
    const a = new CacheDesc(2, [4, 8], DataType.DT_FLOAT16);
    assert.ok(a.isCompatibleWith(new CacheDesc(2, [1, 8], DataType.DT_FLOAT16, Placement.HOST)));
    assert.ok(!a.isCompatibleWith(new CacheDesc(2, [4, 9], DataType.DT_FLOAT16)));
    assert.ok(!a.isCompatibleWith(new CacheDesc(3, [4, 8], DataType.DT_FLOAT16)));
    assert.ok(!a.isCompatibleWith(new CacheDesc(2, [4, 8], DataType.DT_BF16)));
  });
});

describe("CacheKey", () => {
  test("ids are bigint, modelId defaults to 0", () => {
    const key = new CacheKey(1, 2n);
    assert.deepEqual([key.promptClusterId, key.reqId, key.modelId], [1n, 2n, 0n]);
    const byId = new CacheKeyByIdAndIndex(3n, 4, 5);
    assert.deepEqual([byId.clusterId, byId.cacheId, byId.batchIndex], [3n, 4n, 5]);
  });
  test("bad ids", async () => {
    await rejectsWith(() => new CacheKey(-1, 0), ValueError, /promptClusterId/);
    await rejectsWith(() => new CacheKey(0, 2n ** 64n), ValueError, /reqId/);
    await rejectsWith(() => new CacheKey(0, 0, "1" as unknown as number), TypeError, /modelId/);
    await rejectsWith(() => new CacheKey(2 ** 60, 0), ValueError, /safe integer/);
    await rejectsWith(() => new CacheKeyByIdAndIndex(0, 0, -1), ValueError, /batchIndex/);
  });
});

describe("LLMConfig", () => {
  test("generateOptions uses upstream keys", () => {
    const config = new LLMConfig();
    assert.deepEqual(config.generateOptions(), {
      "ge.exec.deviceId": "0",
      "ge.session_device_id": "0",
      "llm.SyncKvCacheWaitTime": "1000",
      "llm.MemoryUtilization": "0.95",
    });
    config.deviceId = [0, 1];
    config.syncKvTimeout = 250;
    config.listenIpInfo = "127.0.0.1:26000";
    config.geOptions = { "ge.flowGraphMemMaxSize": "1048576" };
    assert.deepEqual(config.generateOptions(), {
      "ge.flowGraphMemMaxSize": "1048576",
      "ge.exec.deviceId": "0;1",
      "ge.session_device_id": "0",
      "llm.SyncKvCacheWaitTime": "250",
      "llm.listenIpInfo": "127.0.0.1:26000",
      "llm.MemoryUtilization": "0.95",
    });
  });
  test("geOptions may carry the upstream keys themselves", () => {
    const config = new LLMConfig();
    const own = { "ge.exec.deviceId": "3", "llm.SyncKvCacheWaitTime": "77", "llm.MemoryUtilization": "0.5" };
    config.geOptions = own;
    assert.deepEqual(config.generateOptions(), own);
  });
  test("bad values", async () => {
    const config = new LLMConfig();
    await rejectsWithStatus(() => (config.deviceId = -1), LLMStatusCode.LLM_PARAM_INVALID, /deviceId/); // as upstream
    await rejectsWith(() => (config.deviceId = [0, 0]), ValueError, /twice/);
    await rejectsWith(() => (config.deviceId = []), ValueError, /deviceId/);
    await rejectsWith(() => (config.deviceId = 1.5), TypeError, /deviceId/);
    await rejectsWithStatus(() => (config.syncKvTimeout = 0), LLMStatusCode.LLM_PARAM_INVALID, /syncKvTimeout/);
    await rejectsWith(() => (config.syncKvTimeout = 2 ** 31), ValueError, /syncKvTimeout/);
    await rejectsWith(() => (config.syncKvTimeout = {} as unknown as number), TypeError, /syncKvTimeout/);
    await rejectsWith(() => (config.listenIpInfo = "127.0.0.1"), ValueError, /listenIpInfo/);
    await rejectsWith(() => (config.listenIpInfo = "127.0.0.1:70000"), ValueError, /listenIpInfo/);
    await rejectsWith(() => (config.geOptions = { a: 1 as unknown as string }), TypeError, /geOptions/);
    config.syncKvTimeout = "300" as unknown as number; // upstream takes int or str
    assert.equal(config.syncKvTimeout, 300);
  });
});

describe("Tensor", () => {
  test("wraps data without copying", () => {
    const data = new Float32Array([1, 2, 3, 4]);
    const tensor = new Tensor([2, 2], DataType.DT_FLOAT, data, 3);
    assert.equal(tensor.data, data);
    assert.equal(tensor.byteLength, 16);
    assert.equal(tensor.deviceId, 3);
    assert.equal(tensor.revoked, false);
    assert.equal(String(tensor), "Tensor([2, 2], DT_FLOAT, device 3)");
  });
});

describe("layout tags (what a pull compares between the two caches)", () => {
  // The tag as first defined: FNV-1a (two 32-bit halves) over the text
  // `dataType|batchDimIndex|dims` with the batch dimension written `*`. Both
  // ends compute it, so it must not drift: layoutTag makes no text, and is
  // checked here against the text-based reference.
  const reference = (desc: CacheDesc): bigint => {
    const shape = desc.shape.map((dim, i) => (i === desc.batchDimIndex ? "*" : String(dim)));
    const text = `${desc.dataType}|${desc.batchDimIndex}|${shape.join(",")}`;
    let low = 0x811C9DC5, high = 0x01000193 ^ 0x5bd1e995;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      low = Math.imul(low ^ c, 0x01000193);
      high = Math.imul(high ^ c, 0x01000193) ^ (high >>> 15);
    }
    return (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
  };

  test("equal to the reference for every data type, batch dimension and size of dimension", () => {
    const dims = [1, 7, 10, 99, 100, 1000, 65536, 2 ** 31 + 5, 2 ** 40];
    let n = 0;
    for (const dataType of [DataType.DT_FLOAT, DataType.DT_FLOAT16, DataType.DT_INT8, DataType.DT_BF16]) {
      for (let rank = 1; rank <= 4; rank++) {
        for (let batchDim = 0; batchDim < rank; batchDim++) {
          for (let k = 0; k < dims.length; k++) {
            const shape = Array.from({ length: rank }, (_, i) => dims[(k + 3 * i) % dims.length]);
            let desc: CacheDesc;
            try {
              desc = new CacheDesc(2, shape, dataType, Placement.DEVICE, batchDim);
            } catch {
              continue; // too large
            }
            assert.equal(layoutTag(desc), reference(desc), `${desc}, batch dimension ${batchDim}`);
            assert.equal(layoutTag(desc), layoutTag(desc)); // and the same when asked again
            n++;
          }
        }
      }
    }
    assert.ok(n > 100, `${n} descs checked`);
  });

  test("a tag asked right after another's is its own (the last tag is reused only for the same layout)", () => {
    // Neighbours that differ in one thing the tag counts (a dimension, the rank,
    // the data type, the batch dimension) or only in the batch size.
    const descs = [
      new CacheDesc(1, [4, 16, 8], DataType.DT_FLOAT16),
      new CacheDesc(1, [4, 16, 9], DataType.DT_FLOAT16),
      new CacheDesc(1, [5, 16, 9], DataType.DT_FLOAT16),
      new CacheDesc(1, [5, 16, 9], DataType.DT_BF16),
      new CacheDesc(1, [5, 16, 9], DataType.DT_BF16, Placement.DEVICE, 1),
      new CacheDesc(1, [5, 17, 9], DataType.DT_BF16, Placement.DEVICE, 1),
      new CacheDesc(1, [5, 17], DataType.DT_BF16, Placement.DEVICE, 1),
      new CacheDesc(1, [5, 17, 9, 1], DataType.DT_BF16, Placement.DEVICE, 1),
      new CacheDesc(3, [4, 16, 8], DataType.DT_FLOAT16),
    ];
    for (const desc of [...descs, ...descs.toReversed(), ...descs]) {
      assert.equal(layoutTag(desc), reference(desc), String(desc));
    }
    for (const desc of descs) {
      // A desc asked for the first time right after one of the same layout.
      assert.equal(
        layoutTag(new CacheDesc(2, [...desc.shape], desc.dataType, Placement.HOST, desc.batchDimIndex)),
        reference(desc),
      );
    }
  });

  test("the batch size does not count; every other dimension and the data type do", () => {
    const tag = (shape: number[], dataType: DataType = DataType.DT_FLOAT16, batchDim = 0) =>
      layoutTag(new CacheDesc(1, shape, dataType, Placement.DEVICE, batchDim));
    assert.equal(tag([4, 16, 8]), tag([9, 16, 8]));
    assert.notEqual(tag([4, 16, 8]), tag([4, 16, 9]));
    assert.notEqual(tag([4, 16, 8]), tag([4, 16, 8], DataType.DT_BF16));
    assert.notEqual(tag([4, 16, 8]), tag([4, 16, 8], DataType.DT_FLOAT16, 1));
    assert.equal(tag([16, 4, 8], DataType.DT_FLOAT16, 1), tag([16, 5, 8], DataType.DT_FLOAT16, 1));
  });
});
