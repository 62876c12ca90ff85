/**
 * Loads and compiles every mapping of a configuration directory, once, at start-up.
 */
import { DataFilesError, loadDataFiles, type DataFileProblem } from '../config/data-files.ts';
import { compileMapping, MappingCompileError, type CompiledMapping } from './compile.ts';

/** The compiled mappings, by name. */
export class MappingRegistry {
  readonly #byName: ReadonlyMap<string, CompiledMapping>;
  constructor(mappings: readonly CompiledMapping[]) {
    this.#byName = new Map(mappings.map((m) => [m.name, m]));
  }
  /** The mapping with this name, if any. */
  get(name: string): CompiledMapping | undefined {
    return this.#byName.get(name);
  }
  /** Every mapping, by name. */
  all(): CompiledMapping[] {
    return [...this.#byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
  /** The mappings that read this kind of record (FHIR resource type, HL7 message type, or any CSV). */
  accepting(transport: CompiledMapping['transport'], resourceType: string): CompiledMapping[] {
    return this.all().filter((m) => m.transport === transport && (m.acceptsAll.length === 0 || m.acceptsAll.some((a) => resourceType === a || resourceType.startsWith(`${a}/`))));
  }
}

/**
 * Loads `mappings/*.json` of a configuration directory, checks them against the schema and compiles each.
 * @throws DataFilesError listing every problem of every mapping file (schema, FHIRPath, HL7 paths, code tables).
 */
export function loadMappings(configDir: string): MappingRegistry {
  const files = loadDataFiles(configDir);
  const problems: DataFileProblem[] = files.problems.filter((p) => p.file.startsWith('mappings/'));
  const compiled: CompiledMapping[] = [];
  for (const file of files.mappings) {
    try {
      compiled.push(compileMapping(file));
    } catch (error) {
      if (!(error instanceof MappingCompileError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new DataFilesError(problems);
  return new MappingRegistry(compiled);
}
