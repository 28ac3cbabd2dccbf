/** The OCI distribution client: what the rest of hoist imports from src/registry. */
export { RegistryClient, MAX_MANIFEST_BYTES, type RegistryOptions } from './client.ts';
export type { Credentials } from './auth.ts';
export type { UploadOptions } from './blob-upload.ts';
export { RegistryHttpError } from './errors.ts';
export { resolveCredentials, saveCredentials, removeCredentials } from './credentials.ts';
export { normalizeRegistryHost, isLoopbackHost } from './host.ts';
