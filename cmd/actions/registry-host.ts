/** The HOST argument of login/logout: `quay.io`, `127.0.0.1:5000`, also `docker://host/…` or `https://host/…`. */
import { HoistError } from '../../src/errors.ts';

export function registryHostArgument(command: string, arg: string): string {
  let s = arg.replace(/^docker:\/\//, '').replace(/^https?:\/\//, '');
  // skopeo accepts host/namespace; credentials are kept per host here.
  const slash = s.indexOf('/');
  if (slash >= 0) s = s.slice(0, slash);
  if (!/^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:]+\])(?::\d+)?$/.test(s)) {
    throw new HoistError('BAD_REFERENCE', `${command}: "${arg}" is not a registry host; give one like quay.io or 127.0.0.1:5000`, { exitCode: 2 });
  }
  return s;
}
