/**
 * An index of the sandbox repository's resources by identifier, so conditional creates and identifier searches
 * find a match among any number of resources (a type search without `_count` only sees the first page) and in
 * constant time. Every write to the repository — through the FHIR API or directly, as seeding does — keeps it
 * current, because the repository's own write methods are wrapped.
 */
import type { Resource } from '@medplum/fhirtypes';
import type { MemoryRepository } from '@medplum/fhir-router';

/** Looks resources up by identifier. */
export interface IdentifierIndex {
  /**
   * Ids of `resourceType` resources with an identifier matching `system|value`: `system` undefined matches any
   * system, `''` only identifiers without one.
   */
  find(resourceType: string, system: string | undefined, value: string): Set<string>;
}

type Identified = Resource & { identifier?: { system?: string; value?: string }[] };

const keyOf = (type: string, system: string | undefined, value: string) => `${type}\u0000${system === undefined ? '*' : `=${system}`}\u0000${value}`;

const indexes = new WeakMap<MemoryRepository, IdentifierIndex>();

/**
 * Wraps `repo`'s writes so that the returned index always reflects what it holds (once per repository: a
 * restarted sandbox serving the same repository gets the same index).
 */
export function indexIdentifiers(repo: MemoryRepository): IdentifierIndex {
  const existing = indexes.get(repo);
  if (existing) return existing;
  const index = new Map<string, Set<string>>();
  const keysById = new Map<string, string[]>();
  const forget = (type: string, id: string) => {
    for (const key of keysById.get(`${type}/${id}`) ?? []) index.get(key)?.delete(id);
    keysById.delete(`${type}/${id}`);
  };
  const remember = (resource: Identified) => {
    if (!resource.id) return;
    forget(resource.resourceType, resource.id);
    const keys: string[] = [];
    for (const identifier of resource.identifier ?? []) {
      if (typeof identifier.value !== 'string') continue;
      keys.push(keyOf(resource.resourceType, identifier.system ?? '', identifier.value), keyOf(resource.resourceType, undefined, identifier.value));
    }
    for (const key of keys) {
      let ids = index.get(key);
      if (!ids) index.set(key, (ids = new Set()));
      ids.add(resource.id);
    }
    keysById.set(`${resource.resourceType}/${resource.id}`, keys);
  };
  const create = repo.createResource.bind(repo);
  const update = repo.updateResource.bind(repo);
  const remove = repo.deleteResource.bind(repo);
  repo.createResource = (async (...args: Parameters<typeof create>) => {
    const created = await create(...args);
    remember(created as Identified);
    return created;
  }) as typeof repo.createResource;
  repo.updateResource = (async (...args: Parameters<typeof update>) => {
    const updated = await update(...args);
    remember(updated as Identified);
    return updated;
  }) as typeof repo.updateResource;
  repo.deleteResource = async (...args: Parameters<typeof remove>) => {
    await remove(...args);
    forget(args[0], args[1]);
  };
  const created: IdentifierIndex = { find: (type, system, value) => new Set(index.get(keyOf(type, system, value))) };
  indexes.set(repo, created);
  return created;
}
