// Reads a V8 CPU profile (node --cpu-prof, e.g. of the edge under the benchmark's load) on a
// machine without a browser: where the busy time went, by place (Postern's own code, each package,
// Node's internals, native frames such as the write syscalls, the garbage collector) and by
// function, as shares of the time the process was not idle. With a message count, also CPU ms per
// message. For the flame graph, open the same file in DevTools or `npx speedscope` (docs/performance.md).
//
//   node bench/mta/profile-top.ts <file.cpuprofile> [messages] [top=25]
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, messagesArg, topArg] = process.argv.slice(2);
if (!file) throw new Error('usage: node bench/mta/profile-top.ts <file.cpuprofile> [messages] [top]');
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const messages = messagesArg ? Number(messagesArg) : Number.NaN;
const top = Number(topArg ?? 25);

/** Where a frame's code lives: a package, Node itself, Postern's source, or a native/VM frame. */
function place(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : `native ${functionName || '(unnamed)'}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1] as string;
  if (url.startsWith('node:')) return 'node internals';
  const own = /\/(apps|packages)\/([^/]+)\//.exec(url);
  return own ? `postern ${own[1]}/${own[2]}` : url;
}

const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const selfMicros = new Map<number, number>();
profile.samples.forEach((id, index) => {
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
});
const byPlace = new Map<string, number>();
const byFunction = new Map<string, number>();
let total = 0;
let idle = 0;
for (const [id, micros] of selfMicros) {
  const { functionName, url, lineNumber } = (nodes.get(id) as ProfileNode).callFrame;
  total += micros;
  if (functionName === '(idle)') {
    idle += micros;
    continue;
  }
  const where = place(url, functionName);
  byPlace.set(where, (byPlace.get(where) ?? 0) + micros);
  const source = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(apps|packages)\//, '$1/');
  const name = url ? `${functionName || '(anonymous)'}  ${source}:${lineNumber + 1}` : functionName || '(native, unnamed)';
  byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
}
const busy = total - idle;

function table(title: string, values: Map<string, number>): void {
  console.log(`\n${title}`);
  for (const [name, micros] of [...values].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    const perMessage = Number.isFinite(messages) ? `  ${(micros / 1000 / messages).toFixed(3)} ms/msg` : '';
    console.log(`${((100 * micros) / busy).toFixed(1).padStart(6)} %${perMessage}  ${name}`);
  }
}

console.log(
  `${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(1)} s busy (${((100 * busy) / total).toFixed(0)} %)` +
    (Number.isFinite(messages) ? `, ${((busy / 1000) / messages).toFixed(3)} ms busy per message over ${messages}` : ''),
);
table('self time by place (share of busy time)', byPlace);
table('self time by function (share of busy time)', byFunction);
