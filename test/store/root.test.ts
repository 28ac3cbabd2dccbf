/** storeRoot: --root, then $HOIST_ROOT, then $XDG_DATA_HOME/hoist, then ~/.local/share/hoist. */
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import path from 'node:path';
import { storeRoot } from '../../src/store/root.ts';

const saved = { HOIST_ROOT: process.env['HOIST_ROOT'], XDG_DATA_HOME: process.env['XDG_DATA_HOME'] };
afterEach(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

test('the lookup order', () => {
  process.env['HOIST_ROOT'] = '/srv/hoist';
  process.env['XDG_DATA_HOME'] = '/xdg';
  assert.equal(storeRoot('/flag/root'), '/flag/root');
  assert.equal(storeRoot('rel'), path.resolve('rel'));
  assert.equal(storeRoot(), '/srv/hoist');
  delete process.env['HOIST_ROOT'];
  assert.equal(storeRoot(), '/xdg/hoist');
  delete process.env['XDG_DATA_HOME'];
  assert.equal(storeRoot(), path.join(homedir(), '.local', 'share', 'hoist'));
  process.env['XDG_DATA_HOME'] = 'relative/ignored';
  assert.equal(storeRoot(), path.join(homedir(), '.local', 'share', 'hoist'));
  process.env['HOIST_ROOT'] = '';
  assert.equal(storeRoot(), path.join(homedir(), '.local', 'share', 'hoist'), 'an empty variable is unset');
});
