/**
 * Signing keys: the private key skopeo 1.18 generated is read with its passphrase; keys hoist writes have the same
 * layout (PEM label, JSON field names and order, base64 fields, 24-byte nonce, 32-byte salt) and are read back,
 * with every scrypt N readers accept and both PEM labels; wrong passphrases and non-keys fail with one line.
 * Passphrases: --passphrase-file (first line, as containers/common reads it), $COSIGN_PASSWORD, the error without
 * either, and the no-echo terminal prompt through a real pty (script(1)).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HoistError } from '../../src/errors.ts';
import {
  encryptPrivateKey, generateKeyPair, keyHint, publicKeyPem, readPrivateKey, readPublicKey,
} from '../../src/sign/keys.ts';
import { getPassphrase, readPassphraseFile } from '../../src/sign/passphrase.ts';

const FIXTURE = fileURLToPath(new URL('../../testdata/sigstore-skopeo-1.18/', import.meta.url));
const fixture = (name: string): Promise<string> => readFile(path.join(FIXTURE, name), 'utf8');

/** The PEM body decoded: the JSON cosign's key files hold. */
function pemJson(pem: string): { label: string; lines: string[]; json: string } {
  const m = /^-----BEGIN (.+)-----\n([\s\S]+)\n-----END \1-----\n$/.exec(pem);
  assert.ok(m, `not a PEM block: ${pem.slice(0, 60)}`);
  const lines = m[2]!.split('\n');
  return { label: m[1]!, lines, json: Buffer.from(lines.join(''), 'base64').toString('utf8') };
}

/** The shape of a JSON document: keys in order, values replaced by their type. */
function skeleton(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(skeleton);
  if (typeof v === 'object' && v !== null) return Object.entries(v).map(([k, x]) => [k, skeleton(x)]);
  return typeof v;
}

function errorLine(fn: () => unknown): HoistError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof HoistError, `expected a HoistError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), `message is not one line: ${e.message}`);
    return e;
  }
  assert.fail('expected an error');
}

test('the private key skopeo generated is read with its passphrase and matches skopeo-key.pub', async () => {
  const key = readPrivateKey(await fixture('skopeo-key.private'), await fixture('passphrase.txt'), 'skopeo-key.private');
  assert.equal(key.asymmetricKeyType, 'ec');
  const pubPem = await fixture('skopeo-key.pub');
  // Our SPKI PEM writer produces skopeo's public key file byte for byte.
  assert.equal(publicKeyPem(createPublicKey(key)), pubPem);
  const pub = readPublicKey(pubPem, 'skopeo-key.pub');
  const sig = sign('sha256', Buffer.from('x'), key);
  assert.ok(verify('sha256', Buffer.from('x'), pub, sig));
});

test('a key hoist writes has the fixture\'s layout and is read back', async () => {
  const { privateKeyPem, publicKeyPem: pubPem } = generateKeyPair('correct horse');
  const ours = pemJson(privateKeyPem);
  const theirs = pemJson(await fixture('skopeo-key.private'));
  assert.equal(ours.label, 'ENCRYPTED COSIGN PRIVATE KEY');
  assert.equal(ours.label, theirs.label);
  // Go's pem.Encode: 64-column lines.
  assert.ok(ours.lines.slice(0, -1).every((l) => l.length === 64));
  assert.ok(theirs.lines.slice(0, -1).every((l) => l.length === 64));
  const o = JSON.parse(ours.json);
  const t = JSON.parse(theirs.json);
  assert.deepEqual(skeleton(o), skeleton(t));
  assert.deepEqual(Object.keys(o), ['kdf', 'cipher', 'ciphertext']);
  assert.deepEqual(Object.keys(o.kdf), ['name', 'params', 'salt']);
  assert.deepEqual(o.kdf.params, { N: 32768, r: 8, p: 1 });
  assert.deepEqual(Object.keys(o.kdf.params), ['N', 'r', 'p']);
  assert.equal(o.kdf.name, 'scrypt');
  assert.equal(o.cipher.name, 'nacl/secretbox');
  for (const doc of [o, t]) {
    assert.equal(Buffer.from(doc.kdf.salt, 'base64').length, 32);
    assert.equal(Buffer.from(doc.cipher.nonce, 'base64').length, 24);
    assert.equal(Buffer.from(doc.ciphertext, 'base64').toString('base64'), doc.ciphertext); // canonical, padded base64
  }
  // The JSON is compact, like Go's json.Marshal.
  assert.equal(ours.json, JSON.stringify(o));

  const key = readPrivateKey(privateKeyPem, 'correct horse', 'cosign.key');
  const pub = readPublicKey(pubPem, 'cosign.pub');
  assert.ok(verify('sha256', Buffer.from('payload'), pub, sign('sha256', Buffer.from('payload'), key)));
  assert.match(pubPem, /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PUBLIC KEY-----\n$/);
});

test('keys with N = 65536 and 131072 and the SIGSTORE label are read; other N are refused before deriving', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  for (const [N, label] of [[65536, 'ENCRYPTED SIGSTORE PRIVATE KEY'], [131072, 'ENCRYPTED COSIGN PRIVATE KEY']] as const) {
    const pem = encryptPrivateKey(privateKey, 'pw', { N, label });
    const parsed = pemJson(pem);
    assert.equal(parsed.label, label);
    assert.equal(JSON.parse(parsed.json).kdf.params.N, N);
    const key = readPrivateKey(pem, 'pw', `k${N}`);
    assert.ok(verify('sha256', Buffer.from('m'), publicKey, sign('sha256', Buffer.from('m'), key)));
  }
  // A file whose N was edited to something else: refused by what it says, not by a failed (or endless) derivation.
  const pem = encryptPrivateKey(privateKey, 'pw');
  const doc = JSON.parse(pemJson(pem).json);
  for (const N of [16384, 1 << 30]) {
    doc.kdf.params.N = N;
    const edited = `-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n${Buffer.from(JSON.stringify(doc)).toString('base64')}\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n`;
    const e = errorLine(() => readPrivateKey(edited, 'pw', 'edited.key'));
    assert.equal(e.code, 'BAD_KEY');
    assert.match(e.message, /^edited\.key: unsupported scrypt parameters .*"N":\d+/);
  }
  doc.kdf.params.N = 32768;
  doc.cipher.nonce = Buffer.alloc(12).toString('base64');
  const shortNonce = `-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n${Buffer.from(JSON.stringify(doc)).toString('base64')}\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n`;
  assert.match(errorLine(() => readPrivateKey(shortNonce, 'pw', 'n.key')).message, /12-byte nonce, not 24/);
  assert.throws(() => encryptPrivateKey(privateKey, 'pw', { N: 1024 }));
});

test('a wrong passphrase fails with the one line', () => {
  const e = errorLine(() => readPrivateKey(generateKeyPair('right').privateKeyPem, 'wrong', '/keys/cosign.key'));
  assert.equal(e.code, 'BAD_PASSPHRASE');
  assert.equal(e.message, '/keys/cosign.key: wrong passphrase (the key could not be decrypted)');
  const f = errorLine(() => readPrivateKey(generateKeyPair('right').privateKeyPem, 'right\n', 'k'));
  assert.equal(f.code, 'BAD_PASSPHRASE'); // a newline is part of the passphrase
  const g = errorLine(() => readPrivateKey(readFileSync(path.join(FIXTURE, 'skopeo-key.private'), 'utf8'), 'fixture-passphrase ', 'skopeo-key.private'));
  assert.equal(g.code, 'BAD_PASSPHRASE');
});

test('what is not a key is named in one line', async () => {
  const pubPem = await fixture('skopeo-key.pub');
  const privPem = await fixture('skopeo-key.private');
  let e = errorLine(() => readPrivateKey(pubPem, 'pw', 'cosign.pub'));
  assert.equal(e.message, 'cosign.pub: holds a PEM "PUBLIC KEY", not an encrypted signing key; pass an ENCRYPTED COSIGN PRIVATE KEY or ENCRYPTED SIGSTORE PRIVATE KEY file (as cosign generate-key-pair or skopeo generate-sigstore-key make)');
  const plain = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  e = errorLine(() => readPrivateKey(plain, 'pw', 'plain.pem'));
  assert.match(e.message, /^plain\.pem: holds a PEM "PRIVATE KEY", not an encrypted signing key/);
  e = errorLine(() => readPrivateKey('{"kdf":1}\n', 'pw', 'x.json'));
  assert.equal(e.message, 'x.json: not a PEM file (it starts with "{\\"kdf\\":1}"); expected an encrypted private key');
  e = errorLine(() => readPrivateKey('', 'pw', 'empty'));
  assert.equal(e.message, 'empty: not a PEM file (it is empty); expected an encrypted private key');
  e = errorLine(() => readPublicKey(privPem, 'cosign.key'));
  assert.equal(e.message, 'cosign.key: holds a PEM "ENCRYPTED COSIGN PRIVATE KEY", not a "PUBLIC KEY"; pass the .pub file made with the key pair');
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
  e = errorLine(() => readPublicKey(p384, 'p384.pub'));
  assert.equal(e.message, 'p384.pub: is an ECDSA secp384r1 public key; hoist signs and verifies with ECDSA P-256 keys (what cosign and skopeo generate)');
  const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
  assert.match(errorLine(() => readPublicKey(ed, 'ed.pub')).message, /^ed\.pub: is an Ed25519 public key;/);
  const rsaPriv = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  e = errorLine(() => readPrivateKey(encryptPrivateKey(rsaPriv, 'pw'), 'pw', 'rsa.key'));
  assert.match(e.message, /^rsa\.key: is an RSA private key; hoist signs/);
  e = errorLine(() => readPublicKey('-----BEGIN PUBLIC KEY-----\nMFkw!!\n-----END PUBLIC KEY-----\n', 'bad.pub'));
  assert.equal(e.message, 'bad.pub: the PEM "PUBLIC KEY" block is not valid base64; the file is damaged');
});

test('keyHint is base64(sha256(SPKI DER)), as cosign\'s bundles carry it', async () => {
  const pub = readPublicKey(await fixture('skopeo-key.pub'), 'p');
  const der = Buffer.from((await fixture('skopeo-key.pub')).split('\n').slice(1, -2).join(''), 'base64');
  const { createHash } = await import('node:crypto');
  assert.equal(keyHint(pub), createHash('sha256').update(der).digest('base64'));
});

test('--passphrase-file gives its first line without the newline, like containers/common', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'hoist-pass-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cases: Array<[string, string]> = [
    ['secret', 'secret'],
    ['secret\n', 'secret'],
    ['secret\n\n', 'secret'],
    ['secret\r\n', 'secret\r'],
    ['first\nsecond\n', 'first'],
    [' spaced \n', ' spaced '],
    ['', ''],
    ['\n', ''],
    ['x'.repeat(10000) + '\ny', 'x'.repeat(10000)],
  ];
  for (const [i, [content, want]] of cases.entries()) {
    const f = path.join(dir, `p${i}`);
    await writeFile(f, content);
    assert.equal(await readPassphraseFile(f), want, JSON.stringify(content));
  }
  assert.equal(await readPassphraseFile(path.join(FIXTURE, 'passphrase.txt')), 'fixture-passphrase');
  await assert.rejects(readPassphraseFile(path.join(dir, 'missing')), (e: unknown) =>
    e instanceof HoistError && e.message === `--passphrase-file ${path.join(dir, 'missing')}: cannot read it (no such file)`);
});

test('getPassphrase: the file wins over $COSIGN_PASSWORD, which wins over the terminal', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'hoist-pass-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'p');
  await writeFile(f, 'from-file\n');
  const saved = process.env['COSIGN_PASSWORD'];
  t.after(() => {
    if (saved === undefined) delete process.env['COSIGN_PASSWORD'];
    else process.env['COSIGN_PASSWORD'] = saved;
  });
  process.env['COSIGN_PASSWORD'] = 'from-env';
  assert.equal(await getPassphrase({ file: f, what: 'the key k' }), 'from-file');
  assert.equal(await getPassphrase({ what: 'the key k' }), 'from-env');
  process.env['COSIGN_PASSWORD'] = '';
  assert.equal(await getPassphrase({ what: 'the key k' }), ''); // set but empty counts, as in cosign
});

const PASSPHRASE_TS = fileURLToPath(new URL('../../src/sign/passphrase.ts', import.meta.url));
const promptScript = (confirm: boolean): string =>
  `import { getPassphrase } from ${JSON.stringify(PASSPHRASE_TS)};\n` +
  `try { const p = await getPassphrase({ what: 'the key k.key', confirm: ${confirm} }); process.stdout.write('GOT[' + p + ']\\n'); }\n` +
  `catch (e) { process.stdout.write('ERR[' + e.code + '] ' + e.message + '\\n'); process.exitCode = 3; }\n`;

test('without a file, the variable or a terminal: the one-line error', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'hoist-pass-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const script = path.join(dir, 'p.ts');
  await writeFile(script, promptScript(false));
  const env = { ...process.env };
  delete env['COSIGN_PASSWORD'];
  const r = spawnSync(process.execPath, [script], { env, stdio: ['pipe', 'pipe', 'pipe'], input: 'typed\n', encoding: 'utf8' });
  assert.equal(r.stdout, 'ERR[NO_PASSPHRASE] a passphrase is needed for the key k.key: pass --passphrase-file FILE or set COSIGN_PASSWORD\n');
  assert.equal(r.status, 3);
});

const hasScript = spawnSync('script', ['--version']).status === 0;

/** Runs the prompt script on a pty (script(1)), answering each prompt as it appears; returns the terminal output. */
function onPty(scriptFile: string, answers: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env['COSIGN_PASSWORD'];
    const child = spawn('script', ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(scriptFile)}`, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    let prompts = 0;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString('utf8');
      // Answer only once the prompt is out: raw mode is on by then, so nothing typed can be echoed.
      const seen = out.split('Enter passphrase for').length - 1;
      while (prompts < seen && prompts < answers.length) child.stdin.write(answers[prompts++]!);
    });
    child.on('error', reject);
    child.on('close', () => resolve(out));
  });
}

test('on a terminal: a prompt on the tty, nothing echoed, backspace works, confirm asks twice', { skip: !hasScript && 'script(1) not installed' }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'hoist-pass-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const confirmScript = path.join(dir, 'confirm.ts');
  await writeFile(confirmScript, promptScript(true));
  let out = await onPty(confirmScript, ['s3crx\x7fet\r', 's3cret\r']);
  assert.match(out, /Enter passphrase for the key k\.key: /);
  assert.match(out, /Enter passphrase for the key k\.key again: /);
  assert.match(out, /GOT\[s3cret\]/);
  assert.equal(out.split('s3cr').length - 1, 1, `the passphrase was echoed: ${JSON.stringify(out)}`);

  out = await onPty(confirmScript, ['one\r', 'two\r']);
  assert.match(out, /ERR\[PASSPHRASE_MISMATCH\] the two passphrases typed for the key k\.key differ; run the command again and type the same one twice/);
});
