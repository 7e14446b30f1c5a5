// Which images the suites run. Public images by default, so a workstation with Docker pulls and
// runs as usual; machines with no registry build local equivalents (npm run images:local) and
// select them with these variables (scripts/images/local-images.env).
export const images = {
  postgres: process.env.POSTERN_IMAGE_POSTGRES ?? 'postgres:16-alpine',
  redis: process.env.POSTERN_IMAGE_REDIS ?? 'redis:7-alpine',
  // Pinned to the maildev version the local image installs, so the REST API is the same everywhere.
  maildev: process.env.POSTERN_IMAGE_MAILDEV ?? 'maildev/maildev:3.0.0',
  // The DNS server of the direct-to-MX tests (e2e/mx); run with `dnsmasq` as its entrypoint, so any
  // image with dnsmasq on its PATH will do.
  dnsmasq: process.env.POSTERN_IMAGE_DNSMASQ ?? '4km3/dnsmasq:2.90-r3',
  // Postern itself, as `npm run image` tags it (e2e/topology runs it).
  postern: process.env.POSTERN_IMAGE ?? 'postern:latest',
  // The version compose.yaml runs; the local image is Debian's 2.42. The test passes flags only, which both take.
  prometheus: process.env.POSTERN_IMAGE_PROMETHEUS ?? 'prom/prometheus:v2.53.0',
};
