// The round-trip floor of the pull benchmarks: a TCP echo server in a child
// process of the same runtime (bench/support/echo_process.ts), and a client
// that sends 64 bytes and waits for all of them to come back. node:net on
// 127.0.0.1, TCP_NODELAY on both ends.

import { spawn } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runtimeCommand } from "../../test/support/children.ts";

export const ECHO_BYTES = 64;

// deno-lint-ignore no-explicit-any
const g = globalThis as unknown as Record<string, any>;

/** The echo child's main: prints {"ready": true, "port": N} and echoes until its stdin closes. */
export function serveEcho(): void {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("data", (chunk) => socket.write(chunk));
    socket.on("error", () => socket.destroy());
  });
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    const port = typeof address === "object" && address !== null ? address.port : 0;
    console.log(JSON.stringify({ ready: true, port, pid: process.pid }));
  });
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
}

/** Starts the echo child on this runtime (on Deno with --allow-net for loopback). */
export function startEcho(): { port: Promise<number>; stop(): Promise<void> } {
  const script = fileURLToPath(new URL("./echo_process.ts", import.meta.url));
  const { command, args } = runtimeCommand(script);
  if (g.Deno) args.splice(args.indexOf("run") + 1, 0, "--allow-net=127.0.0.1");
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const port = new Promise<number>((resolve, reject) => {
    let buffered = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      const line = buffered.split("\n").find((l) => l.trim().startsWith("{"));
      if (line !== undefined && buffered.includes("\n")) resolve(Number(JSON.parse(line).port));
    });
    exited.then(() => reject(new Error("the echo child exited before it listened")));
  });
  return {
    port,
    async stop() {
      child.stdin!.end();
      await exited;
    },
  };
}

/** A client of the echo child: `roundTrip()` sends 64 bytes and resolves when all 64 came back. */
export async function echoClient(port: number): Promise<{ roundTrip(): Promise<void>; close(): void }> {
  const socket: Socket = connect({ host: "127.0.0.1", port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.setNoDelay(true);
  const payload = new Uint8Array(ECHO_BYTES).fill(0x42);
  let received = 0;
  let waiting: (() => void) | undefined;
  socket.on("data", (chunk: Uint8Array) => {
    received += chunk.length;
    if (received >= ECHO_BYTES && waiting !== undefined) {
      received -= ECHO_BYTES;
      const resolve = waiting;
      waiting = undefined;
      resolve();
    }
  });
  return {
    roundTrip() {
      return new Promise<void>((resolve) => {
        waiting = resolve;
        socket.write(payload);
      });
    },
    close() {
      socket.destroy();
    },
  };
}
