// Reads a V8 CPU profile (node --cpu-prof, e.g. of the edge under the benchmark's load) on a
// machine without a browser: where the busy time went, by place (Postern's own code, each package,
// Node's internals, native frames such as the write syscalls, the garbage collector) and by
// function, as shares of the time the process was not idle. With a message count, also CPU ms per
// message. For the flame graph, open the same file in DevTools or `npx speedscope` (docs/performance.md).
// Two questions self time alone does not answer:
//   --callers REGEX  who calls the functions whose "name  file:line" matches: their self time by
//                    stack of callers (what writes, what throws, what draws random bytes)
//   --within REGEX   the share of busy time with a matching frame anywhere on the stack (a package's
//                    whole cost, its callees in Node and native code included)
//
//   node bench/mta/profile-top.ts <file.cpuprofile> [messages] [top=25] [--callers REGEX [--depth 8]] [--within REGEX]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

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

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: { callers: { type: 'string' }, depth: { type: 'string', default: '8' }, within: { type: 'string' } },
});
const [file, messagesArg, topArg] = positionals;
if (!file) throw new Error('usage: node bench/mta/profile-top.ts <file.cpuprofile> [messages] [top] [--callers REGEX [--depth N]] [--within REGEX]');
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

/** `function  file:line`, the name the tables and the options use. */
function frameName({ callFrame: { functionName, url, lineNumber } }: ProfileNode): string {
  const source = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(apps|packages)\//, '$1/');
  return url ? `${functionName || '(anonymous)'}  ${source}:${lineNumber + 1}` : functionName || '(native, unnamed)';
}

const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const parents = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
/** The frame and its callers, innermost first. */
function* stack(id: number): Generator<ProfileNode> {
  for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) yield nodes.get(at) as ProfileNode;
}
const selfMicros = new Map<number, number>();
profile.samples.forEach((id, index) => {
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
});
const byPlace = new Map<string, number>();
const byFunction = new Map<string, number>();
let total = 0;
let idle = 0;
for (const [id, micros] of selfMicros) {
  const { functionName, url } = (nodes.get(id) as ProfileNode).callFrame;
  total += micros;
  if (functionName === '(idle)') {
    idle += micros;
    continue;
  }
  const where = place(url, functionName);
  byPlace.set(where, (byPlace.get(where) ?? 0) + micros);
  const name = frameName(nodes.get(id) as ProfileNode);
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

if (options.callers) {
  const pattern = new RegExp(options.callers);
  const depth = Number(options.depth);
  const chains = new Map<string, number>();
  for (const [id, micros] of selfMicros) {
    if (!pattern.test(frameName(nodes.get(id) as ProfileNode))) continue;
    const chain = [...stack(id)].slice(0, depth).map(frameName).join('\n           <- ');
    chains.set(chain, (chains.get(chain) ?? 0) + micros);
  }
  table(`self time of /${options.callers}/ by callers (share of busy time)`, chains);
}
if (options.within) {
  const pattern = new RegExp(options.within);
  let within = 0;
  for (const [id, micros] of selfMicros) {
    if ((nodes.get(id) as ProfileNode).callFrame.functionName === '(idle)') continue;
    for (const node of stack(id)) {
      if (pattern.test(frameName(node)) || pattern.test(node.callFrame.url)) {
        within += micros;
        break;
      }
    }
  }
  const perMessage = Number.isFinite(messages) ? `, ${(within / 1000 / messages).toFixed(3)} ms/msg` : '';
  console.log(`\n/${options.within}/ anywhere on the stack: ${((100 * within) / busy).toFixed(1)} % of busy time${perMessage}`);
}
