import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderTemplate } from '../../src/inspect/template.ts';

const data = {
  Name: 'docker.io/library/busybox',
  Digest: 'sha256:abc',
  RepoTags: ['1.36', 'latest'],
  Labels: { 'org.x': 'y', a: 'b' },
  Layers: ['sha256:1', 'sha256:2'],
  Env: null,
  LayersData: [{ Digest: 'sha256:1', Size: 10 }, { Digest: 'sha256:2', Size: 20 }],
};

test('fields, nested fields and json', () => {
  assert.equal(renderTemplate('{{.Name}}@{{.Digest}}', data), 'docker.io/library/busybox@sha256:abc');
  assert.equal(renderTemplate('{{json .RepoTags}}', data), '["1.36","latest"]');
  assert.equal(renderTemplate('{{json .Labels}}', data), '{"a":"b","org.x":"y"}');
  assert.equal(renderTemplate('{{.RepoTags}}', data), '[1.36 latest]');
  assert.equal(renderTemplate('{{.Labels}}', data), 'map[a:b org.x:y]');
  assert.equal(renderTemplate('{{.Env}}', data), '<no value>');
});

test('range, variables, index, len, if', () => {
  assert.equal(renderTemplate('{{range .RepoTags}}{{.}}\n{{end}}', data), '1.36\nlatest\n');
  assert.equal(renderTemplate('{{range $i, $l := .LayersData}}{{$i}}={{$l.Size}} {{end}}', data), '0=10 1=20 ');
  assert.equal(renderTemplate('{{index .Labels "org.x"}}', data), 'y');
  assert.equal(renderTemplate('{{len .Layers}}', data), '2');
  assert.equal(renderTemplate('{{if .Env}}env{{else}}none{{end}}', data), 'none');
  assert.equal(renderTemplate('{{range .Layers -}}\n  {{.}} {{- end}}', data), 'sha256:1sha256:2');
});

test('unsupported actions fail with a message', () => {
  assert.throws(() => renderTemplate('{{printf "%s" .Name}}', data), /unsupported template action \{\{printf/);
  assert.throws(() => renderTemplate('{{range .Layers}}x', data), /missing \{\{end\}\}/);
  assert.throws(() => renderTemplate('{{.Name', data), /unclosed action/);
});
