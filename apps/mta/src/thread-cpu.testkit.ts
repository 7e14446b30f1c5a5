// What a piece of work costs on this thread, for tests that compare costs on a busy machine: the
// wall clock also counts the time the process waited for a core (a second and more at a load of
// 35-80 on 2 cores), which no code under test caused. Used by the mailauth patch's linear-time
// check and the e2e stall watcher (e2e/mta/helpers/stall-watch.ts).

/** This thread's CPU time in ms (Node 23.9+; before it, the process's, V8's helper threads included). */
export function threadCpuMs(): number {
  const { user, system } = typeof process.threadCpuUsage === 'function' ? process.threadCpuUsage() : process.cpuUsage();
  return (user + system) / 1_000;
}
