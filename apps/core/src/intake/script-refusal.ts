// Redis 7.0 refuses a command a script runs under the user's ACL without naming the command ("ERR The
// user executing the script can't run this command or subcommand script: <sha>, on @user_script:3.";
// 7.2 names it, as NOPERM). Each script's caller knows what its script runs and names it here, so that
// the loop's restart line and /readyz say which permission is missing, not only that one is.

const UNNAMED_REFUSAL = /can't run this command or subcommand/;

/** Whether Redis refused a command to the engine's ACL user, named (NOPERM) or not (in a script). */
export function isAclRefusal(error: unknown): error is Error {
  return error instanceof Error && (/\bNOPERM\b/.test(error.message) || UNNAMED_REFUSAL.test(error.message));
}

/** `call`, a script's, with an unnamed refusal given the commands the script runs (`commands`, in
 *  Redis's ACL spelling: `xinfo|stream`). */
export async function namingScriptCommands<T>(call: Promise<T>, script: string, commands: readonly string[]): Promise<T> {
  try {
    return await call;
  } catch (error) {
    if (error instanceof Error && UNNAMED_REFUSAL.test(error.message)) {
      throw new Error(`${error.message}: ${script} runs ${commands.join(', ')}`, { cause: error });
    }
    throw error;
  }
}
