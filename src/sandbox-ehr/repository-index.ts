/**
 * Indexes of the sandbox repository's resources, kept current because the repository's own write methods are
 * wrapped (every write — through the FHIR API or directly, as seeding does — goes through them):
 * - by identifier, so conditional creates and identifier searches find a match among any number of resources (a
 *   type search without `_count` only sees the first page) and in constant time;
 * - the newest `meta.lastUpdated` of each type, so an incremental sync's search (`_lastUpdated=ge…`) after which
 *   nothing of the type changed is answered without searching (MemoryRepository evaluates the criteria on every
 *   resource of the type: about 60 ms for 2,000 patients, for nothing, on each sync of the demo).
 */
import type { Resource } from '@medplum/fhirtypes';
import type { MemoryRepository } from '@medplum/fhir-router';

/** Looks resources up by identifier, and tells when a type last changed. */
export interface RepositoryIndex {
  /**
   * Ids of `resourceType` resources with an identifier matching `system|value`: `system` undefined matches any
   * system, `''` only identifiers without one.
   */
  find(resourceType: string, system: string | undefined, value: string): Set<string>;
  /**
   * The newest `meta.lastUpdated` (epoch milliseconds) of any resource of `resourceType` the repository has held,
   * deleted ones included (so it may be later than what is left, never earlier; Infinity when one had none that
   * reads as an instant); undefined when it never held one. The first call for a type reads all its resources once
   * (the repository may have held some before it was indexed).
   */
  newestUpdate(resourceType: string): Promise<number | undefined>;
}

type Identified = Resource & { identifier?: { system?: string; value?: string }[] };

const keyOf = (type: string, system: string | undefined, value: string) => `${type}\u0000${system === undefined ? '*' : `=${system}`}\u0000${value}`;

const indexes = new WeakMap<MemoryRepository, RepositoryIndex>();

/**
 * Wraps `repo`'s writes so that the returned indexes always reflect what it holds (once per repository: a
 * restarted sandbox serving the same repository gets the same index).
 */
export function indexRepository(repo: MemoryRepository): RepositoryIndex {
  const existing = indexes.get(repo);
  if (existing) return existing;
  const index = new Map<string, Set<string>>();
  const newest = new Map<string, number>();
  const scanned = new Set<string>();
  const noteUpdate = (resource: Resource) => {
    const updated = Date.parse(resource.meta?.lastUpdated ?? '');
    newest.set(resource.resourceType, Number.isNaN(updated) ? Infinity : Math.max(updated, newest.get(resource.resourceType) ?? -Infinity));
  };
  const newestUpdate = async (type: string) => {
    if (!scanned.has(type)) {
      for (const resource of await repo.searchResources({ resourceType: type as Resource['resourceType'], count: Number.MAX_SAFE_INTEGER })) noteUpdate(resource);
      scanned.add(type);
    }
    return newest.get(type);
  };
  const keysById = new Map<string, string[]>();
  const forget = (type: string, id: string) => {
    for (const key of keysById.get(`${type}/${id}`) ?? []) index.get(key)?.delete(id);
    keysById.delete(`${type}/${id}`);
  };
  const remember = (resource: Identified) => {
    if (!resource.id) return;
    noteUpdate(resource);
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
  const created: RepositoryIndex = { find: (type, system, value) => new Set(index.get(keyOf(type, system, value))), newestUpdate };
  indexes.set(repo, created);
  return created;
}
