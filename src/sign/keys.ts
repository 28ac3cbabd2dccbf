/**
 * Signing keys as cosign and containers/image keep them: ECDSA P-256, the public half as a SPKI `PUBLIC KEY` PEM,
 * the private half as PKCS#8 DER encrypted the way go-tuf's `encrypted` package does it (scrypt → NaCl secretbox),
 * wrapped in JSON and then in a PEM block labelled `ENCRYPTED COSIGN PRIVATE KEY` (or `ENCRYPTED SIGSTORE …`,
 * which newer cosign writes). Node has no XSalsa20, so the secretbox comes from tweetnacl; the rest is node:crypto.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, scryptSync, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { HoistError } from '../errors.ts';

export const COSIGN_PRIVATE_KEY_LABEL = 'ENCRYPTED COSIGN PRIVATE KEY';
export const SIGSTORE_PRIVATE_KEY_LABEL = 'ENCRYPTED SIGSTORE PRIVATE KEY';
export const PUBLIC_KEY_LABEL = 'PUBLIC KEY';

/**
 * The scrypt costs go-tuf accepts (legacy, standard, OWASP). Any other N is refused before deriving: the parameters
 * sit unauthenticated in the file, and a huge N would make reading a tampered key a denial of service.
 */
export const SCRYPT_N_VALUES: readonly number[] = [32768, 65536, 131072];
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SALT_BYTES = 32;
/** tweetnacl, loaded when a key is encrypted or decrypted: not for the public keys a policy check reads. */
let naclModule: typeof import('tweetnacl') | undefined;
function nacl(): typeof import('tweetnacl') {
  naclModule ??= createRequire(import.meta.url)('tweetnacl') as typeof import('tweetnacl');
  return naclModule;
}
const NONCE_BYTES = 24; // nacl.secretbox.nonceLength
const KEY_BYTES = 32; // nacl.secretbox.keyLength

/** Where a new key's encryption differs from the default (older containers/image reads only this default). */
export interface KeyWriteOptions {
  /** scrypt N; default 32768. */
  N?: number;
  /** PEM label; default `ENCRYPTED COSIGN PRIVATE KEY`. */
  label?: typeof COSIGN_PRIVATE_KEY_LABEL | typeof SIGSTORE_PRIVATE_KEY_LABEL;
}

/** A new ECDSA P-256 key pair: the private key encrypted with `passphrase`, the public key as SPKI PEM. */
export function generateKeyPair(passphrase: string, opts: KeyWriteOptions = {}): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKeyPem: encryptPrivateKey(privateKey, passphrase, opts), publicKeyPem: publicKeyPem(publicKey) };
}

/** go-tuf `encrypted.Encrypt` of the key's PKCS#8 DER, as a PEM block. Field order is Go's struct order. */
export function encryptPrivateKey(key: KeyObject, passphrase: string, opts: KeyWriteOptions = {}): string {
  const N = opts.N ?? SCRYPT_N_VALUES[0]!;
  if (!SCRYPT_N_VALUES.includes(N)) throw new Error(`scrypt N must be one of ${SCRYPT_N_VALUES.join(', ')}, got ${N}`);
  const salt = randomBytes(SALT_BYTES);
  const nonce = randomBytes(NONCE_BYTES);
  const secret = deriveKey(passphrase, salt, N);
  const plaintext = key.export({ type: 'pkcs8', format: 'der' });
  const ciphertext = Buffer.from(nacl().secretbox(plaintext, nonce, secret));
  const body = {
    kdf: { name: 'scrypt', params: { N, r: SCRYPT_R, p: SCRYPT_P }, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: ciphertext.toString('base64'),
  };
  return encodePem(opts.label ?? COSIGN_PRIVATE_KEY_LABEL, Buffer.from(JSON.stringify(body)));
}

/** SPKI PEM with 64-column lines, as Go's pem.Encode writes it. */
export function publicKeyPem(key: KeyObject): string {
  return encodePem(PUBLIC_KEY_LABEL, key.export({ type: 'spki', format: 'der' }));
}

/**
 * Decrypts a cosign/skopeo/hoist private key. `where` names the file for messages.
 * Throws HoistError BAD_KEY (not such a key, unsupported parameters or key type) or BAD_PASSPHRASE.
 */
export function readPrivateKey(pem: string, passphrase: string, where: string): KeyObject {
  const block = decodePem(pem, where, 'an encrypted private key');
  if (block.label !== COSIGN_PRIVATE_KEY_LABEL && block.label !== SIGSTORE_PRIVATE_KEY_LABEL) {
    throw new HoistError('BAD_KEY',
      `${where}: holds a PEM "${block.label}", not an encrypted signing key; pass an ${COSIGN_PRIVATE_KEY_LABEL} or ${SIGSTORE_PRIVATE_KEY_LABEL} file (as cosign generate-key-pair or skopeo generate-sigstore-key make)`);
  }
  const enc = parseEncryptedBody(block.bytes, where);
  const secret = deriveKey(passphrase, enc.salt, enc.N);
  const plaintext = nacl().secretbox.open(enc.ciphertext, enc.nonce, secret);
  if (plaintext === null) {
    throw new HoistError('BAD_PASSPHRASE', `${where}: wrong passphrase (the key could not be decrypted)`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(plaintext), format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw new HoistError('BAD_KEY', `${where}: the decrypted content is not a PKCS#8 private key; the file is damaged`, { cause: e });
  }
  checkP256(key, where, 'private key');
  return key;
}

/** Reads a SPKI `PUBLIC KEY` PEM; it must be ECDSA P-256. Throws HoistError BAD_KEY. */
export function readPublicKey(pem: string, where: string): KeyObject {
  const block = decodePem(pem, where, 'a public key');
  if (block.label !== PUBLIC_KEY_LABEL) {
    throw new HoistError('BAD_KEY', `${where}: holds a PEM "${block.label}", not a "${PUBLIC_KEY_LABEL}"; pass the .pub file made with the key pair`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: block.bytes, format: 'der', type: 'spki' });
  } catch (e) {
    throw new HoistError('BAD_KEY', `${where}: the PUBLIC KEY block is not a valid SubjectPublicKeyInfo; the file is damaged`, { cause: e });
  }
  checkP256(key, where, 'public key');
  return key;
}

/** cosign's key hint: base64 of sha256 over the SPKI DER (what its bundles carry in publicKey.hint). */
export function keyHint(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
}

function checkP256(key: KeyObject, where: string, what: string): void {
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (type === 'ec' && curve === 'prime256v1') return;
  const names: Record<string, string> = { rsa: 'an RSA', 'rsa-pss': 'an RSA-PSS', dsa: 'a DSA', ed25519: 'an Ed25519', ed448: 'an Ed448' };
  const found = type === 'ec' ? `an ECDSA ${curve ?? 'unknown-curve'}` : names[type ?? ''] ?? `a ${type ?? 'unknown'}`;
  throw new HoistError('BAD_KEY', `${where}: is ${found} ${what}; hoist signs and verifies with ECDSA P-256 keys (what cosign and skopeo generate)`);
}

function deriveKey(passphrase: string, salt: Buffer, N: number): Uint8Array {
  // Node refuses scrypt beyond maxmem (32 MiB by default); N=131072 r=8 needs 128·N·r = 128 MiB plus a little.
  return scryptSync(passphrase, salt, KEY_BYTES, { N, r: SCRYPT_R, p: SCRYPT_P, maxmem: 256 * N * SCRYPT_R });
}

interface EncryptedBody {
  N: number;
  salt: Buffer;
  nonce: Buffer;
  ciphertext: Buffer;
}

/** go-tuf `encrypted.Decrypt`'s checks, in its order, each failure as one line naming the field. */
function parseEncryptedBody(bytes: Buffer, where: string): EncryptedBody {
  const bad = (what: string): HoistError => new HoistError('BAD_KEY', `${where}: the encrypted key ${what}; the file is damaged or not a cosign key`);
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw bad('is not the JSON cosign writes');
  }
  const obj = (v: unknown): Record<string, unknown> | undefined =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined;
  const b64 = (v: unknown, field: string): Buffer => {
    if (typeof v !== 'string' || v.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw bad(`has no valid base64 "${field}"`);
    return Buffer.from(v, 'base64');
  };
  const top = obj(doc);
  const kdf = obj(top?.['kdf']);
  const cipher = obj(top?.['cipher']);
  if (top === undefined || kdf === undefined || cipher === undefined) throw bad('lacks its "kdf" or "cipher" section');
  if (kdf['name'] !== 'scrypt') throw bad(`uses key derivation ${JSON.stringify(kdf['name'])}, not "scrypt"`);
  if (cipher['name'] !== 'nacl/secretbox') throw bad(`uses cipher ${JSON.stringify(cipher['name'])}, not "nacl/secretbox"`);
  const params = obj(kdf['params']);
  const N = params?.['N'];
  if (typeof N !== 'number' || !SCRYPT_N_VALUES.includes(N) || params?.['r'] !== SCRYPT_R || params['p'] !== SCRYPT_P) {
    throw new HoistError('BAD_KEY',
      `${where}: unsupported scrypt parameters ${JSON.stringify(params ?? null)}; readers accept N = ${SCRYPT_N_VALUES.join(', ')} with r = 8, p = 1`);
  }
  const salt = b64(kdf['salt'], 'kdf.salt');
  const nonce = b64(cipher['nonce'], 'cipher.nonce');
  if (nonce.length !== NONCE_BYTES) throw bad(`has a ${nonce.length}-byte nonce, not ${NONCE_BYTES}`);
  const ciphertext = b64(top['ciphertext'], 'ciphertext');
  return { N, salt, nonce, ciphertext };
}

function encodePem(label: string, der: Uint8Array): string {
  const lines = Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * The first PEM block in `text`, as Go's pem.Decode finds it (text before it is skipped; RFC 1421 headers are not
 * expected in these files and make the body fail as base64). `expected` says what the caller wanted, for messages.
 */
export function decodePem(text: string, where: string, expected: string): { label: string; bytes: Buffer } {
  const m = /-----BEGIN ([^\r\n-]*)-----\r?\n([\s\S]*?)-----END \1-----/.exec(text);
  if (m === null) {
    const head = text.trimStart().split(/\r?\n/)[0]!.slice(0, 40).replace(/[^\x20-\x7e]/g, '?');
    throw new HoistError('BAD_KEY',
      `${where}: not a PEM file (${text.trim() === '' ? 'it is empty' : `it starts with ${JSON.stringify(head)}`}); expected ${expected}`);
  }
  const body = m[2]!.replace(/[\s]/g, '');
  if (body.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(body)) {
    throw new HoistError('BAD_KEY', `${where}: the PEM "${m[1]}" block is not valid base64; the file is damaged`);
  }
  return { label: m[1]!, bytes: Buffer.from(body, 'base64') };
}
