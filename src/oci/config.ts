/**
 * Parsing and validating image configs (OCI image-spec "Image Configuration", and Docker's superset of it).
 * Docker and other Go writers encode empty slices and maps as `null` (`"Labels": null`, `"Env": null`); those are
 * accepted and dropped so callers see an absent field rather than a null the types do not admit.
 * Fields hoist does not know (docker_version, container_config, …) are kept untouched.
 */
import {
  checkArray, checkBoolean, checkDigest, checkInteger, checkObject, checkString, checkStringArray, checkStringMap,
  fail, fieldPath, optional, parseJsonObject, required, type JsonContext, type JsonObject,
} from './json-check.ts';
import type { ImageConfig } from './types.ts';

/** Parses config bytes; throws HoistError BAD_CONFIG naming the field (`rootfs.diff_ids[1]: …`). */
export function parseConfig(bytes: Uint8Array, where: string): ImageConfig {
  const ctx: JsonContext = { where, what: 'image config', code: 'BAD_CONFIG' };
  const doc = parseJsonObject(bytes, ctx);

  required(ctx, doc, 'architecture', '', checkString);
  required(ctx, doc, 'os', '', checkString);
  dropNull(doc, ['created', 'author', 'variant', 'os.version', 'os.features', 'config', 'history']);
  optional(ctx, doc, 'created', '', checkString);
  optional(ctx, doc, 'author', '', checkString);
  optional(ctx, doc, 'variant', '', checkString);
  optional(ctx, doc, 'os.version', '', checkString);
  optional(ctx, doc, 'os.features', '', checkStringArray);

  const rootfs = required(ctx, doc, 'rootfs', '', checkObject);
  const type = required(ctx, rootfs, 'type', 'rootfs', checkString);
  if (type !== 'layers') fail(ctx, 'rootfs.type', `must be "layers", got ${JSON.stringify(type)}`);
  // Docker omits diff_ids (or writes null) for an image without layers; normalize to the empty list.
  if (rootfs['diff_ids'] === undefined || rootfs['diff_ids'] === null) rootfs['diff_ids'] = [];
  const diffIds = checkArray(ctx, rootfs['diff_ids'], 'rootfs.diff_ids');
  diffIds.forEach((d, i) => checkDigest(ctx, d, fieldPath('rootfs.diff_ids', i)));

  if (doc['config'] !== undefined) checkContainerConfig(ctx, doc['config'], 'config');

  if (doc['history'] !== undefined) {
    const history = checkArray(ctx, doc['history'], 'history');
    history.forEach((h, i) => {
      const path = fieldPath('history', i);
      const e = checkObject(ctx, h, path);
      for (const k of ['created', 'created_by', 'author', 'comment']) optional(ctx, e, k, path, checkString);
      optional(ctx, e, 'empty_layer', path, checkBoolean);
    });
  }
  return doc as unknown as ImageConfig;
}

function dropNull(o: JsonObject, keys: string[]): void {
  for (const k of keys) if (o[k] === null) delete o[k];
}

function checkContainerConfig(ctx: JsonContext, v: unknown, path: string): void {
  const c = checkObject(ctx, v, path);
  dropNull(c, ['User', 'ExposedPorts', 'Env', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal', 'ArgsEscaped',
    'Healthcheck', 'Shell']);
  optional(ctx, c, 'User', path, checkString);
  optional(ctx, c, 'Env', path, checkStringArray);
  optional(ctx, c, 'Entrypoint', path, checkStringArray, true);
  optional(ctx, c, 'Cmd', path, checkStringArray, true);
  optional(ctx, c, 'OnBuild', path, checkStringArray, true);
  optional(ctx, c, 'Shell', path, checkStringArray);
  optional(ctx, c, 'WorkingDir', path, checkString);
  optional(ctx, c, 'StopSignal', path, checkString);
  optional(ctx, c, 'ArgsEscaped', path, checkBoolean);
  optional(ctx, c, 'Labels', path, checkStringMap);
  optional(ctx, c, 'ExposedPorts', path, checkSetOfKeys);
  optional(ctx, c, 'Volumes', path, checkSetOfKeys);
  optional(ctx, c, 'Healthcheck', path, checkHealthcheck);
}

/** `{"80/tcp": {}}`: a set written as an object whose values are empty objects. */
function checkSetOfKeys(ctx: JsonContext, v: unknown, path: string): void {
  const o = checkObject(ctx, v, path);
  for (const [k, e] of Object.entries(o)) checkObject(ctx, e, fieldPath(path, k));
}

function checkHealthcheck(ctx: JsonContext, v: unknown, path: string): void {
  const h = checkObject(ctx, v, path);
  optional(ctx, h, 'Test', path, checkStringArray, true);
  // Durations are Go time.Duration nanoseconds.
  for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries']) optional(ctx, h, k, path, checkInteger);
}
