import { describe, expect, it } from 'vitest';
import { LiveLeases } from './live-leases.ts';

describe('LiveLeases', () => {
  it('releases a lease only for the attempt that holds it', () => {
    const leases = new LiveLeases();
    leases.hold({ id: 'd1', attemptNumber: 1 });
    // The watchdog abandoned attempt 1; the delivery was taken back and claimed again as attempt 2.
    leases.hold({ id: 'd1', attemptNumber: 2 });
    leases.release({ id: 'd1', attemptNumber: 1 }); // the abandoned attempt finishing late
    expect(leases.list()).toEqual([{ id: 'd1', attemptNumber: 2 }]);
    leases.release({ id: 'd1', attemptNumber: 2 });
    expect(leases.ids()).toEqual([]);
  });
});
