/**
 * For tests that assert no phone, email or name leaks into stored or served text: random ids (uuids) and blind
 * indexes (64 hex) can contain digits such as "617" or "555" by chance, so they are blanked before matching.
 */
export function withoutIds(text: string): string {
  return text.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>').replace(/\b[0-9a-f]{64}\b/gi, '<index>');
}
