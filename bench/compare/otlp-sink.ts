// Where a traced variant of the benchmarks exports its spans (`--tracing on`): an OTLP/HTTP
// receiver on loopback that reads each export request, answers 200 with an empty
// ExportTraceServiceResponse (which the exporter takes as "all accepted") and discards it, so what
// is measured is the process building, batching, serialising and sending its spans — not a
// collector. It counts what it received, so the figures show the spans did leave the process.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OtlpSink {
  /** The value for OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  received(): { requests: number; bytes: number };
  stop(): Promise<void>;
}

export async function startOtlpSink(): Promise<OtlpSink> {
  let requests = 0;
  let bytes = 0;
  const server = http.createServer((request, response) => {
    request.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    request.on('end', () => {
      requests += 1;
      response.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': '0' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    received: () => ({ requests, bytes }),
    stop: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // The exporter keeps its connection open between exports.
        server.closeAllConnections();
      }),
  };
}

/** The environment that turns tracing on in a Postern process, exporting to the sink. */
export function tracingEnv(sink: OtlpSink): Record<string, string> {
  return { OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' };
}
