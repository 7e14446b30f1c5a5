// What the engine reports as it works, as typed events on one emitter per engine: claims, commits
// of outcomes, isolated outcomes, leases taken back, retention purges, the LISTEN session, loop
// restarts and stalls. Metrics (metrics.ts), the benchmark and tests subscribe here instead of
// each module growing a reporting callback of its own. Event names and payloads live in one map,
// so a subscriber is checked against what the emitter sends.
//
// Listeners run synchronously inside the loop that emits (a metric is counted before the work
// goes on); a listener that throws is logged and skipped, never thrown into that loop.
import { EventEmitter, once } from 'node:events';
import type { Logger } from '@postern/shared';
import type { Purged } from './keepalive/retention.ts';
import type { ReclaimResult } from './queue/reclaim-leases.ts';

export interface EngineEventMap {
  /** One claim statement (scheduler): how many were asked for and claimed, how long it took. */
  claim: { wanted: number; claimed: number; durationMs: number };
  /** One committed batch of outcomes (completion batcher); `skipped`: lost leases, not written. */
  'completion:batch': { size: number; recorded: number; skipped: string[]; bounces: number; durationMs: number };
  /** An outcome PostgreSQL refused even alone: recorded bare, or not at all. */
  'completion:isolated': { deliveryId: string; reason: 'outcome_recorded_bare' | 'outcome_unrecordable' };
  /** A reclaim pass that took expired leases back (maintenance). */
  'lease:reclaimed': ReclaimResult;
  /** A retention pass that purged something (maintenance). */
  'retention:purged': Purged;
  /** The LISTEN mail_delivery_due session is open. */
  'listen:connected': { channel: string };
  /** The LISTEN session could not be opened, or broke: the scheduler restarts and polls meanwhile. */
  'listen:error': { channel: string; error: Error };
  /** A supervised loop failed or was abandoned and will be started again. */
  'loop:restart': { loop: string; error: unknown };
  /** The watchdog found a loop stalled (no heartbeat while holding work) and restarts it. */
  'loop:stall': { loop: string; heartbeatAgeMs: number };
}

export type EngineEventName = keyof EngineEventMap;

export class EngineEvents {
  // Untyped inside: the methods below are the typed surface, one payload per event.
  readonly #emitter = new EventEmitter();
  readonly #logger: Logger | undefined;

  /** Without a logger, a listener's error becomes a process warning: never lost. */
  constructor(logger?: Logger) {
    this.#logger = logger;
  }

  /** Subscribe; returns the function that unsubscribes. */
  on<K extends EngineEventName>(name: K, listener: (payload: EngineEventMap[K]) => void): () => void {
    const guarded = (payload: EngineEventMap[K]) => {
      try {
        listener(payload);
      } catch (error) {
        if (this.#logger) this.#logger.error({ err: error, event: name }, 'an engine event listener threw; ignored');
        else process.emitWarning(`an engine event listener for "${name}" threw: ${(error as Error)?.stack ?? String(error)}`);
      }
    };
    this.#emitter.on(name, guarded);
    return () => this.#emitter.off(name, guarded);
  }

  /** The next event of this name (tests: "the next claim", "the LISTEN session is open"). */
  async next<K extends EngineEventName>(name: K, signal?: AbortSignal): Promise<EngineEventMap[K]> {
    const [payload] = await once(this.#emitter, name, signal ? { signal } : {});
    return payload as EngineEventMap[K];
  }

  emit<K extends EngineEventName>(name: K, payload: EngineEventMap[K]): void {
    this.#emitter.emit(name, payload);
  }
}
