/**
 * Who may do what: the roles an API key carries.
 */

/** Roles of API keys. */
export const ROLES = ['admin', 'staff', 'integration'] as const;

/** A role: `admin` manages keys and configuration, `staff` works balances, `integration` feeds and reads connectors. */
export type Role = (typeof ROLES)[number];

/** The caller an API key identifies. */
export interface Principal {
  keyId: string;
  practiceId: string;
  name: string;
  role: Role;
}

/**
 * Whether a caller with `role` may use something open to `allowed`. Admins may use everything.
 */
export function roleAllows(role: Role, allowed: readonly Role[]): boolean {
  return role === 'admin' || allowed.includes(role);
}
