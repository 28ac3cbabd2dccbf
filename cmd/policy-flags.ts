/**
 * The signature-policy flags of copy, run and build: skopeo's `--policy FILE` and `--insecure-policy`, given before
 * the command as skopeo takes them (`hoist --policy F copy …`) or after it, and podman/buildah's
 * `--signature-policy FILE` (hidden) as another name for --policy.
 */
import { HoistError } from '../src/errors.ts';
import type { ImagePolicy } from '../src/sign/policy-check.ts';

export interface PolicyFlags {
  policy?: string;
  signaturePolicy?: string;
  insecurePolicy?: boolean;
}

/**
 * The policy the command enforces, read now so a missing or invalid file fails before any image is read.
 * `HOIST_POLICY_ROOT` prefixes the system path /etc/containers/policy.json (containers/image's
 * RootForImplicitAbsolutePaths): not a user setting, it lets tests stand for a machine without that file.
 */
export async function loadImagePolicy(commandFlags: PolicyFlags, storeRoot: string, globalFlags: PolicyFlags = {}): Promise<ImagePolicy> {
  // The command's own flag wins over the one before the command name.
  const flags: PolicyFlags = {
    ...pick(globalFlags),
    ...pick(commandFlags),
  };
  if (flags.policy !== undefined && flags.signaturePolicy !== undefined && flags.policy !== flags.signaturePolicy) {
    throw new HoistError('BAD_FLAG', `--policy ${flags.policy} and --signature-policy ${flags.signaturePolicy} disagree; they are the same setting, pass one`, { exitCode: 2 });
  }
  const { ImagePolicy } = await import('../src/sign/policy-check.ts');
  const policyPath = flags.policy ?? flags.signaturePolicy;
  const root = process.env['HOIST_POLICY_ROOT'];
  return ImagePolicy.load({
    ...(policyPath !== undefined ? { policyPath } : {}),
    ...(flags.insecurePolicy ? { insecure: true } : {}),
    ...(root ? { root } : {}),
    storeRoot,
  });
}

function pick(f: PolicyFlags): PolicyFlags {
  return {
    ...(f.policy !== undefined ? { policy: f.policy } : {}),
    ...(f.signaturePolicy !== undefined ? { signaturePolicy: f.signaturePolicy } : {}),
    ...(f.insecurePolicy !== undefined ? { insecurePolicy: f.insecurePolicy } : {}),
  };
}
