// Child processes for the two-process tests: the same runtime as the test runs
// a script from test/support/, which talks JSON lines on stdin/stdout.
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** The command that runs `script` (absolute, or relative to test/support/) on this runtime. */
export function runtimeCommand(script: string): { command: string; args: string[] } {
  const path = resolve(here, script);
  const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
  if (deno) return { command: deno.execPath(), args: ["run", "--allow-ffi", "--allow-env", "--allow-read", path] };
  if ("Bun" in globalThis) return { command: process.execPath, args: [path] };
  return { command: process.execPath, args: ["--import", join(here, "register.mjs"), path] };
}

/** A running child: its messages, and ways to talk to it and end it. */
export interface Child {
  readonly process: ChildProcess;
  /** Resolves with the next JSON message the child prints (rejects if it exits first). */
  next(): Promise<Record<string, unknown>>;
  send(message: Record<string, unknown>): void;
  /** Kills it with SIGKILL and waits until it is gone. */
  kill(): Promise<void>;
  /** Asks it to finish and waits until it is gone. */
  stop(): Promise<void>;
  /** `stop()`: `await using child = startChild(...)` stops it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts `script` with `config` as its only argument (JSON); `prefix` runs it
 * under another command (`["ip", "netns", "exec", name]`), `env` replaces the
 * environment.
 */
export function startChild(
  script: string,
  config: Record<string, unknown>,
  options: { prefix?: string[]; env?: Record<string, string | undefined> } = {},
): Child {
  const { command, args } = runtimeCommand(script);
  const [first, ...rest] = [...(options.prefix ?? []), command, ...args, JSON.stringify(config)];
  const child = spawn(first, rest, { stdio: ["pipe", "pipe", "inherit"], env: options.env ?? process.env });
  const messages: Record<string, unknown>[] = [];
  const waiters: { resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  let buffered = "";
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on("exit", () => {
      exited = true;
      for (const w of waiters.splice(0)) w.reject(new Error(`${script} exited`));
      resolve();
    })
  );
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line.startsWith("{")) continue;
      const message = JSON.parse(line);
      const waiter = waiters.shift();
      if (waiter) waiter.resolve(message);
      else messages.push(message);
    }
  });
  return {
    process: child,
    next() {
      const message = messages.shift();
      if (message) return Promise.resolve(message);
      if (exited) return Promise.reject(new Error(`${script} exited`));
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    send(message) {
      child.stdin!.write(JSON.stringify(message) + "\n");
    },
    async kill() {
      if (!exited) child.kill("SIGKILL");
      await exit;
    },
    async stop() {
      if (!exited) child.stdin!.end();
      await exit;
    },
    [Symbol.asyncDispose]() {
      return this.stop();
    },
  };
}
