/**
 * Names of signature attachments in a layout's index.json: what a registry keeps under extra tags of the image's
 * repository — cosign's `sha256-<hex>.sig/.att/.sbom` and the OCI referrers fallback index `sha256-<hex>` — a plain
 * oci: layout keeps as ref names of their own, and the local store as `<repository>:<tag>`. They name attachments,
 * not images: listings and "the only image" choices skip them. Here (not in src/transport) so the store can use them.
 */
import { digestToTag } from '../oci/digest.ts';

const ATTACHMENT_REF = /(?:^|:)sha256-[0-9a-f]{64}(?:\.(?:sig|att|sbom))?$/;

export function isAttachmentRefName(name: string | undefined): boolean {
  return name !== undefined && ATTACHMENT_REF.test(name);
}

/** The store's names for the attachments of manifest `digest` in repository `repo` (`repo:sha256-<hex>.sig`, …). */
export function attachmentRefNames(repo: string, digest: string): string[] {
  const tag = digestToTag(digest);
  return [`${repo}:${tag}`, `${repo}:${tag}.sig`, `${repo}:${tag}.att`, `${repo}:${tag}.sbom`];
}
