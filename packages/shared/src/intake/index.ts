export { type AcceptCommandOptions, type AcceptOutcome, acceptCommand, commandHash } from './accept-command.ts';
export { commandField, type FieldRefusal, firstRefusal, MAX_VARIABLES_DEPTH, renderedBody } from './command-fields.ts';
export { commandSize, type DecodeResult, decodeCommand, oversizedCommand } from './decode-command.ts';
export {
  type CommandPayload,
  type DecodeFailure,
  type DeliveryCommand,
  decodeFailure,
  FAILURE_FIELD_CHARS,
  MAX_COMMAND_BYTES,
  type SchemaVersion,
  SUPPORTED_SCHEMA_VERSIONS,
} from './delivery-command.ts';
export { type CommandOrigin, type IntakeOutcome, intakeCommand, QuarantineFailed, refuseCommand } from './intake-command.ts';
export { type CommandChannel, quarantineCommand } from './quarantine.ts';
export { DEFAULT_URGENT_CATEGORIES, NORMAL_PRIORITY, priorityOf, URGENT_PRIORITY } from './urgency.ts';
