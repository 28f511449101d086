// The echo child of the pull benchmarks (bench/support/echo.ts).
import { serveEcho } from "./echo.ts";

serveEcho();
