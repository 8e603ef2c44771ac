import { setDefaultTimeout } from "bun:test";

// Integration tests start real servers and move real bytes; 5 s (Bun's default) is
// too tight on a loaded 2-core CI machine. bunfig.toml preloads this file.
setDefaultTimeout(30_000);
