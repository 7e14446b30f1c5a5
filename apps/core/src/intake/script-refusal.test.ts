import { describe, expect, it } from 'vitest';
import { isAclRefusal, namingScriptCommands } from './script-refusal.ts';

// Redis 7.0.15's reply, as the TLS/ACL drill received it (e2e/faults/redis-tls-acl).
const UNNAMED =
  "ERR The user executing the script can't run this command or subcommand script: ccd1b2b0db2e3f1ec6007f1e22e682103c587b03, on @user_script:3.";

describe('namingScriptCommands', () => {
  it("names the script's commands when Redis refused one of them without a name", async () => {
    const named = await namingScriptCommands(Promise.reject(new Error(UNNAMED)), 'the check script', ['xinfo|stream']).catch((error: Error) => error);
    expect(named.message).toBe(`${UNNAMED}: the check script runs xinfo|stream`);
    expect(isAclRefusal(named)).toBe(true);
  });

  it('passes every other outcome through unchanged', async () => {
    await expect(namingScriptCommands(Promise.resolve(3), 'a script', ['xrange'])).resolves.toBe(3);
    const other = new Error('NOGROUP No such key or consumer group');
    await expect(namingScriptCommands(Promise.reject(other), 'a script', ['xrange'])).rejects.toBe(other);
    const named = new Error("NOPERM User u has no permissions to run the 'xrange' command");
    await expect(namingScriptCommands(Promise.reject(named), 'a script', ['xrange'])).rejects.toBe(named);
    expect(isAclRefusal(named)).toBe(true);
    expect(isAclRefusal(other)).toBe(false);
  });
});
