// The bytes an attempt sends. Relayed mail (payload_mode relay) is sent exactly as the edge stored
// it — the bytes received with the edge's Received: trace header prepended — so signatures (DKIM)
// survive. Template and rendered deliveries are composed here, with the delivery's one stable
// Message-ID, its creation time as Date: and MIME boundaries made from its id, so every attempt
// sends the same bytes.
// Relayed mail that is not ours is forwarded mail: its envelope sender is SRS-rewritten and an ARC
// set is sent in front of its bytes (forward-message.ts), which still go out unchanged.
// What Postern originates — composed mail and its own bounces (relayed, source BOUNCE_SOURCE) — is
// DKIM-signed at each attempt when its From domain has an active key (dkim-signer.ts): the key
// that signs is the one active when the mail leaves, so a retired key never signs a retry.
import { createHash } from 'node:crypto';
import { BOUNCE_SOURCE, type ClaimedDelivery, type Logger, renderLocale, resolveLocale, type TemplateCatalog, TemplateRenderError } from '@postern/shared';
import MailComposer from 'nodemailer/lib/mail-composer';
import { encodeWord } from 'nodemailer/lib/mime-funcs';
import type { MessageSigner } from './dkim-signer.ts';
import type { Forwarder } from './forward-message.ts';

/** The delivery cannot be built, now or ever: it fails without an attempt. */
export class UnbuildableDelivery extends Error {}

export interface ComposeContext {
  catalog: TemplateCatalog;
  /** MAIL_SMTP_FROM. */
  sender: string;
  logger: Logger;
  loadPayload(messageId: string): Promise<{ raw: Buffer; receivedAt: Date; envelopeTo?: string[] } | null>;
  /** false: render and check everything, but compose no bytes (the stub relay discards them). */
  compose?: boolean;
  /** Signs what Postern originates; absent: nothing is signed. */
  signer?: MessageSigner;
  /** SRS and ARC for forwarded mail; absent: it keeps its envelope sender and goes unsealed. */
  forwarder?: Forwarder;
}

const NOT_COMPOSED = Buffer.alloc(0);

export interface BuiltMessage {
  raw: Buffer;
  envelopeFrom: string;
  receivedAt: Date | null;
  /** The DKIM-Signature (or, forwarded, the ARC set) header lines sent in front of raw, or null. */
  signature: Buffer | null;
  /** Relayed mail whose sender used SMTPUTF8 / BODY=8BITMIME: the relay is told the same. */
  smtpUtf8?: boolean;
  body8BitMime?: boolean;
}

/** A run of this many characters without white space cannot be folded (RFC 5322 2.2.3). */
const LONGEST_FOLDABLE_RUN = 900;

/** The Subject as given to the composer. nodemailer folds a subject only at white space and
 *  encodes only one beyond ASCII, so an ASCII run of more than about 990 characters (the API
 *  accepts 998, a template variable any length) became a header line over 998 octets (RFC 5322
 *  2.1.1). Such a subject goes as RFC 2047 encoded words, which fold anywhere. */
function subjectFields(subject: string): { subject: string } | { subjectHeader: { prepared: true; foldLines: true; value: string } } {
  if (!new RegExp(`\\S{${LONGEST_FOLDABLE_RUN + 1}}`).test(subject)) return { subject };
  return { subjectHeader: { prepared: true, foldLines: true, value: encodeWord(subject, 'Q', 52) } };
}

/** The shared part of a composed message's MIME boundaries: the same on every attempt (nodemailer
 *  draws random bytes for each message otherwise, and a retry of a text-and-HTML delivery went out
 *  with other bytes than its first attempt), and one no body can hold. It was the delivery id
 *  alone, which a producer may choose (deliveryId): a line of it in a template variable, text a
 *  producer's users wrote, started a part of its own. A digest of the content cannot be in that
 *  content. */
function boundaryOf(deliveryId: string, content: { subject: string; text: string | null; html: string | null }): string {
  const digest = createHash('sha256');
  for (const part of [deliveryId, content.subject, content.text ?? '', content.html ?? '']) digest.update(part).update('\0');
  return digest.digest('hex').slice(0, 32);
}

async function compose(
  delivery: ClaimedDelivery,
  sender: string,
  content: { subject: string; text: string | null; html: string | null },
): Promise<Buffer> {
  const subject = subjectFields(content.subject);
  const composer = new MailComposer({
    from: sender,
    to: delivery.recipient,
    ...('subject' in subject ? { subject: subject.subject } : {}),
    ...(content.text !== null ? { text: content.text } : {}),
    ...(content.html !== null ? { html: content.html } : {}),
    messageId: delivery.rfc_message_id,
    date: delivery.created_at,
    baseBoundary: boundaryOf(delivery.id, content),
    headers: {
      'X-Postern-Delivery-Id': delivery.id,
      // RFC 3834: machine-generated mail; auto-responders should not answer it.
      'Auto-Submitted': 'auto-generated',
      ...('subjectHeader' in subject ? { Subject: subject.subjectHeader } : {}),
    },
  });
  return composer.compile().build();
}

function signatureFor(context: ComposeContext, raw: Buffer): Promise<Buffer | null> {
  return context.signer ? context.signer.signatureFor(raw) : Promise.resolve(null);
}

function notComposed(context: ComposeContext, delivery: ClaimedDelivery): BuiltMessage {
  return { raw: NOT_COMPOSED, envelopeFrom: delivery.envelope_from || context.sender, receivedAt: null, signature: null };
}

async function composed(context: ComposeContext, delivery: ClaimedDelivery, raw: Buffer): Promise<BuiltMessage> {
  return { raw, envelopeFrom: delivery.envelope_from || context.sender, receivedAt: null, signature: await signatureFor(context, raw) };
}

export async function buildMessage(context: ComposeContext, delivery: ClaimedDelivery): Promise<BuiltMessage> {
  if (delivery.payload_mode === 'relay') {
    if (!delivery.message_id) throw new UnbuildableDelivery('relay delivery without a message');
    const payload = await context.loadPayload(delivery.message_id);
    if (!payload) throw new UnbuildableDelivery('the received message is gone (purged by retention or deleted)');
    const ours = delivery.source === BOUNCE_SOURCE;
    const forwarded =
      !ours && context.forwarder && context.compose !== false
        ? await context.forwarder.forward(delivery.envelope_from, payload)
        : { envelopeFrom: delivery.envelope_from, arcSet: null };
    return {
      raw: payload.raw,
      envelopeFrom: forwarded.envelopeFrom,
      receivedAt: payload.receivedAt,
      signature: ours && context.compose !== false ? await signatureFor(context, payload.raw) : forwarded.arcSet,
      smtpUtf8: delivery.smtputf8 === true,
      body8BitMime: delivery.body_type === '8bitmime',
    };
  }
  if (delivery.payload_mode === 'rendered') {
    if (context.compose === false) return notComposed(context, delivery);
    const raw = await compose(delivery, context.sender, {
      subject: delivery.subject ?? '',
      text: delivery.text_body,
      html: delivery.html_body,
    });
    return composed(context, delivery, raw);
  }
  const template = context.catalog.templates.get(delivery.template_id ?? '');
  if (!template) throw new UnbuildableDelivery(`template "${delivery.template_id}" is no longer in the catalog`);
  const locale = template.locales.get(delivery.template_locale ?? '') ?? resolveLocale(template, delivery.template_locale);
  if (locale.hash !== delivery.template_hash) {
    // The catalog changed between intake and this attempt (a restart with new templates): the
    // current version is sent, and the difference is logged with both hashes.
    context.logger.warn(
      { deliveryId: delivery.id, template: template.id, accepted: delivery.template_hash, current: locale.hash },
      'template changed since the delivery was accepted; sending the current version',
    );
  }
  let content: ReturnType<typeof renderLocale>;
  try {
    content = renderLocale(locale, delivery.template_variables ?? {});
  } catch (error) {
    // Intake renders every template command once before accepting it, so this is a delivery
    // accepted under another catalog: it can never be rendered, and fails without an attempt.
    if (error instanceof TemplateRenderError) throw new UnbuildableDelivery(error.message);
    throw error;
  }
  if (context.compose === false) return notComposed(context, delivery);
  return composed(context, delivery, await compose(delivery, context.sender, content));
}
