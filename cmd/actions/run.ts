import { HoistError } from '../../src/errors.ts';
export default async function run(): Promise<number> {
  throw new HoistError('NOT_IMPLEMENTED', 'run is not implemented yet (tracked by the rootless runtime issue)', { exitCode: 2 });
}
