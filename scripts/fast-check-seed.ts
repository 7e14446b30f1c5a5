// Every property test in every vitest project runs from one fixed seed, so a CI run is repeatable
// and a counterexample found once is found again. POSTERN_PROPERTY_SEED picks another seed (a
// number) or `random` to explore; a failure prints the seed and path that reproduce it.
import fc from 'fast-check';

const wanted = process.env.POSTERN_PROPERTY_SEED ?? '20261127';
if (wanted !== 'random') {
  const seed = Number(wanted);
  if (!Number.isInteger(seed)) throw new Error(`POSTERN_PROPERTY_SEED must be an integer or "random", not ${JSON.stringify(wanted)}`);
  fc.configureGlobal({ ...fc.readConfigureGlobal(), seed });
}
