/**
 * `bun bench/profile.ts <file.cpuprofile> [top]`: a .cpuprofile (from
 * `bun --cpu-prof`, e.g. `bun bench/join.ts --profile`) summed per function
 * and per file by samples where the function was on top of the stack.
 * Samples are counted, not their time deltas: Bun's profile has no idle
 * samples, so a delta after a quiet spell lands on whatever ran next. With
 * the default interval a sample is about 1 ms of the JS thread; a native
 * function's share includes the system call it makes (res.write: the send).
 */
export {};

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: Node[];
  samples: number[];
}

const [path, topArg] = process.argv.slice(2);
if (path === undefined) {
  console.error("usage: bun bench/profile.ts <file.cpuprofile> [top]");
  process.exit(2);
}
const top = Number(topArg ?? 30);
const profile = (await Bun.file(path).json()) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));

const shortUrl = (url: string) => url.replace(/^.*\/(src|bench|node_modules)\//, "$1/") || "(native)";
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
const add = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
for (const id of profile.samples) {
  const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
  add(byFunction, `${functionName || "(anonymous)"} ${shortUrl(url)}:${lineNumber + 1}`);
  add(byFile, shortUrl(url));
}

const total = profile.samples.length;
const print = (title: string, rows: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [name, n] of [...rows].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${String(n).padStart(7)} ${((n / total) * 100).toFixed(1).padStart(5)}%  ${name}`);
  }
};
console.log(`${total} samples`);
print("samples by function (self)", byFunction);
print("samples by file (self)", byFile);
