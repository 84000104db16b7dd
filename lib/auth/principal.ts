// Who is calling: the authenticated principal every lib/ call that needs authorization receives.
import { z } from 'zod';

export const ROLES = ['admin', 'operator'] as const;
export const roleSchema = z.enum(ROLES);
export type Role = z.infer<typeof roleSchema>;

export interface Principal {
  /** Stable id: the token's `oid` (Entra object id), else `sub`. Used as the grants partition key. */
  id: string;
  /** Display name or UPN when known; for logs and audit only. */
  name?: string;
  roles: readonly Role[];
  /** How it was authenticated. */
  via: 'jwt' | 'appservice' | 'local';
}

export function hasRole(p: Principal, role: Role): boolean {
  return p.roles.includes(role);
}

export function isAdmin(p: Principal): boolean {
  return hasRole(p, 'admin');
}
