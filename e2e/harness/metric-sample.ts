// One sample of a /metrics answer (Prometheus' text format), named as a test would write it:
// 'mail_mta_connections_total' or 'mail_mta_tls_certificate_reloads_total{outcome="refused"}'. The
// app label every Postern registry adds (app="mta", app="core", ...) is left out of the name.
export function metricSample(text: string, sample: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const name = line.slice(0, space).replace(/,?app="[^"]*"/, '').replace('{,', '{').replace('{}', '');
    if (name === sample) return Number(line.slice(space + 1));
  }
  return Number.NaN;
}
