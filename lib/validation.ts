// Validation of external input shared by every route: ids, JSON bodies, query strings. Every
// failure is a typed 4xx error with a stable code, never a 500.
import { z } from 'zod';
import {
  MalformedJsonError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  ValidationError,
  type FieldError,
} from './errors';

/** 3–59 lowercase letters, digits and single hyphens, starting and ending with a letter or digit,
 * so that `dev-<deviceId>` is a valid queue name (3–63 chars). */
export const DEVICE_ID_PATTERN = /^(?=.{3,59}$)[a-z0-9]+(?:-[a-z0-9]+)*$/;
export const deviceIdSchema = z
  .string()
  .regex(
    DEVICE_ID_PATTERN,
    '3-59 lowercase letters, digits and single hyphens, starting and ending with a letter or digit',
  );

/** Session ids are UUIDs we generate. */
export const sessionIdSchema = z.uuid({ message: 'must be a session id (UUID)' });

export const DEFAULT_MAX_JSON_BYTES = 16 * 1024;

export function fieldErrors(error: z.ZodError): FieldError[] {
  return error.issues.map((i) => ({
    path: i.path.length ? i.path.map(String).join('.') : '(body)',
    message: i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message,
  }));
}

/** Parses a value with a schema, turning a failure into a ValidationError that lists each field. */
export function parseWith<T extends z.ZodTypeAny>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const errors = fieldErrors(r.error);
    throw new ValidationError(
      `${what} is not valid: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`,
      errors,
    );
  }
  return r.data;
}

/** Decodes and validates a JSON request body. An empty body counts as `{}` only if `allowEmpty`. */
export function parseJsonBody<T extends z.ZodTypeAny>(
  body: Uint8Array | undefined,
  contentType: string | null,
  schema: T,
  options: { maxBytes?: number; allowEmpty?: boolean } = {},
): z.infer<T> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_JSON_BYTES;
  const bytes = body ?? new Uint8Array();
  if (bytes.length > maxBytes)
    throw new PayloadTooLargeError(`The request body is ${bytes.length} bytes; at most ${maxBytes} are accepted.`);
  if (bytes.length === 0) {
    if (options.allowEmpty) return parseWith(schema, {}, 'The request body');
    throw new ValidationError('The request body is empty; a JSON object is required.', [
      { path: '(body)', message: 'required' },
    ]);
  }
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json' && !type.endsWith('+json')) {
    throw new UnsupportedMediaTypeError(`Content-Type must be application/json, not "${type || '(none)'}".`);
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new MalformedJsonError('The request body is not valid UTF-8 JSON.');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError('The request body must be a JSON object.', [
      { path: '(body)', message: 'must be an object' },
    ]);
  }
  return parseWith(schema, value, 'The request body');
}
