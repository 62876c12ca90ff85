/**
 * `settle config check`: validates the connector, mapping, policy and profile files and says what is wrong.
 */
import { formatProblem, loadDataFiles } from '../config/data-files.ts';
import { compileMapping, MappingCompileError } from '../mapping/compile.ts';
import { profileProblems } from '../mapping/fhir-profiles.ts';

/**
 * Checks the data folders of a configuration directory.
 * @param configDir - the directory holding `connectors/`, `mappings/`, `policies/` and `fhir-profiles/`.
 * @param out - receives each output line (no newline): one per problem as `file: /json/path: message`, then a
 *   summary counting the files that loaded, like `2 connectors, 1 mapping, 1 policy, 1 profile: OK` or
 *   `1 connector, 1 mapping, 1 policy, 1 profile: 3 problems`.
 * @returns the exit code: 0 when every file is valid, 1 when there is any problem.
 */
export function runConfigCheck(configDir: string, out: (line: string) => void): number {
  const { connectors, mappings, policies, profiles, problems } = loadDataFiles(configDir);
  // A mapping can be valid JSON and still not compile: a bad FHIRPath, HL7 path or code table.
  for (const mapping of mappings) {
    try {
      compileMapping(mapping);
    } catch (error) {
      if (!(error instanceof MappingCompileError)) throw error;
      problems.push(...error.problems);
    }
  }
  // A profile that gives only its differential must build into a snapshot of its base resource.
  problems.push(...profileProblems(profiles));
  for (const problem of problems) out(formatProblem(problem));
  const counts = [
    count(connectors.length, 'connector'),
    count(mappings.length, 'mapping'),
    count(policies.length, 'policy', 'policies'),
    count(profiles.length, 'profile'),
  ].join(', ');
  out(`${counts}: ${problems.length === 0 ? 'OK' : count(problems.length, 'problem')}`);
  return problems.length === 0 ? 0 : 1;
}

function count(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}
