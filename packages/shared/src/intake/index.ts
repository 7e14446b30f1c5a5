export { type AcceptCommandOptions, type AcceptOutcome, acceptCommand, commandHash } from './accept-command.ts';
export {
  type CommandPayload,
  commandSize,
  type DecodeFailure,
  type DecodeResult,
  type DeliveryCommand,
  decodeCommand,
  decodeFailure,
  FAILURE_FIELD_CHARS,
  MAX_COMMAND_BYTES,
  SUPPORTED_SCHEMA_VERSIONS,
  type SchemaVersion,
} from './decode-command.ts';
export { type CommandChannel, quarantineCommand } from './quarantine.ts';
