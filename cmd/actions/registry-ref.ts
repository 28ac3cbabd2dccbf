/** The `docker://` argument of list-tags and delete, parsed with a message that says what the command wants. */
import { HoistError } from '../../src/errors.ts';
import { parseImageReference } from '../../src/transport/reference.ts';
import { parseDockerReference, type DockerReference } from '../../src/oci/reference.ts';

export function dockerArgument(command: string, arg: string, want: string): DockerReference {
  const ref = parseImageReference(arg);
  if (ref.transport !== 'docker') {
    throw new HoistError('BAD_REFERENCE', `${command}: ${arg} is not a registry reference; give ${want}`, { exitCode: 2 });
  }
  return parseDockerReference(ref.ref);
}
