// tr46 ships no types; only the call Postern makes is declared (tr46 7.x, UTS #46 section 4.2).
declare module 'tr46' {
  export interface ToAsciiOptions {
    checkHyphens?: boolean;
    checkBidi?: boolean;
    checkJoiners?: boolean;
    useSTD3ASCIIRules?: boolean;
    verifyDNSLength?: boolean;
    transitionalProcessing?: boolean;
    ignoreInvalidPunycode?: boolean;
  }
  /** The A-label form, or null when UTS #46 processing records an error. */
  export function toASCII(domainName: string, options?: ToAsciiOptions): string | null;
  const tr46: { toASCII: typeof toASCII };
  export default tr46;
}
