import { HoistError } from '../../src/errors.ts';
export default async function build(): Promise<number> {
  throw new HoistError('NOT_IMPLEMENTED', 'build is not implemented yet (tracked by the Dockerfile build issue)', { exitCode: 2 });
}
