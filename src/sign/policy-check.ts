/**
 * Enforcing containers-policy.json where an image enters hoist (copy's source, run's and build's pulls), as
 * containers/image's copy.Image does: the policy is judged on the top-level manifest the reference names (for an
 * index: the index, whose signatures are the ones looked at) before anything is written, and the copy then uses that
 * very manifest (the source is pinned to it), so a tag that moves between the check and the copy cannot slip an
 * unchecked image through.
 *
 * Signatures are read (policy-signatures.ts, loaded only when a rule asks for them) through the transport interface,
 * both formats.
 */
import type { ManifestBlob } from '../oci/types.ts';
import type { ImageSource } from '../transport/types.ts';
import type { ImageRef } from '../transport/reference.ts';
import { evaluatePolicy, loadPolicy, policyTarget, requirementsFor, type Policy, type PolicyTargetOptions } from './policy.ts';
import { HoistError } from '../errors.ts';

export interface PolicyOptions extends PolicyTargetOptions {
  /** --policy FILE (else ~/.config/containers/policy.json, else /etc/containers/policy.json). */
  policyPath?: string;
  /** --insecure-policy: accept everything without reading any policy (skopeo: it wins over --policy). */
  insecure?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Prefix for /etc/containers/policy.json (containers/image's RootForImplicitAbsolutePaths); tests use it. */
  root?: string;
}

/**
 * `src` as it is, except that its top-level manifest is `top`: the manifest the policy accepted is the one copied.
 * Other calls (blobs, child manifests, signatures) reach the real source.
 */
export function pinTopManifest(src: ImageSource, top: ManifestBlob): ImageSource {
  return new Proxy(src, {
    get(target, prop) {
      if (prop === 'getManifest') {
        return (digest?: string) => (digest === undefined || digest === top.digest ? Promise.resolve(top) : target.getManifest(digest));
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The policy of one command: read once (a missing explicit file or a bad one fails here, before any image is
 * touched), then asked about each image the command reads.
 */
export class ImagePolicy {
  readonly #policy: { policy: Policy; file: string } | undefined;
  readonly #opts: PolicyOptions;

  private constructor(policy: { policy: Policy; file: string } | undefined, opts: PolicyOptions) {
    this.#policy = policy;
    this.#opts = opts;
  }

  /** Finds and parses the policy (none found, or --insecure-policy: everything is accepted). Throws BAD_POLICY. */
  static async load(opts: PolicyOptions = {}): Promise<ImagePolicy> {
    if (opts.insecure) return new ImagePolicy(undefined, opts);
    const loaded = await loadPolicy(opts.policyPath, opts.env, opts.root === undefined ? {} : { root: opts.root });
    return new ImagePolicy(loaded, opts);
  }

  /** The policy file in force, if any. */
  get file(): string | undefined {
    return this.#policy?.file;
  }

  /**
   * Throws HoistError POLICY_REJECTED (one line: the image, the rule, the file, why) unless the policy accepts `ref`,
   * whose top-level manifest is `manifestDigest`; signatures are read from `src` only when a rule needs them.
   */
  async check(ref: ImageRef, manifestDigest: string, src: ImageSource): Promise<void> {
    if (this.#policy === undefined) return;
    const target = await policyTarget(ref, this.#opts);
    const result = await evaluatePolicy({ ...target, manifestDigest }, requirementsFor(this.#policy.policy, target), {
      policyFile: this.#policy.file,
      signatures: async () => (await import('./policy-signatures.ts')).policySignatures(src, manifestDigest),
    });
    if (!result.accepted) throw new HoistError('POLICY_REJECTED', result.reason);
  }

  /** Resolves `src`'s top-level manifest, checks it (see check) and returns `src` pinned to that manifest. */
  async admit(ref: ImageRef, src: ImageSource): Promise<ImageSource> {
    if (this.#policy === undefined) return src;
    const top = await src.getManifest();
    await this.check(ref, top.digest, src);
    return pinTopManifest(src, top);
  }
}

