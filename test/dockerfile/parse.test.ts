import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/dockerfile/parse.ts';
import { flagBool, flagValue, flagValues, parseGoDuration } from '../../src/dockerfile/flags.ts';
import type { Dockerfile, Instruction } from '../../src/dockerfile/types.ts';
import { HoistError } from '../../src/errors.ts';

/** Lines joined with \n (and a final newline), so tests read like the file. */
const lines = (...ls: string[]): string => ls.join('\n') + '\n';
const parse = (...ls: string[]): Dockerfile => parseDockerfile(lines(...ls), 'Dockerfile');
/** The instructions of the only (last) stage. */
const body = (...ls: string[]): Instruction[] => parse(...ls).stages.at(-1)?.instructions ?? [];
const one = (...ls: string[]): Instruction => {
  const ins = body('FROM scratch', ...ls);
  assert.equal(ins.length, 1);
  return ins[0] as Instruction;
};

/** The error message a Dockerfile gets; asserts it is a one-line DOCKERFILE_SYNTAX HoistError. */
function errorOf(text: string): string {
  try {
    parseDockerfile(text, 'Dockerfile');
  } catch (e) {
    assert.ok(e instanceof HoistError, `not a HoistError: ${String(e)}`);
    assert.equal(e.code, 'DOCKERFILE_SYNTAX');
    assert.ok(!e.message.includes('\n'), `multi-line message: ${e.message}`);
    return e.message;
  }
  assert.fail('no error');
}
const err = (...ls: string[]): string => errorOf(lines(...ls));

test('a realistic multi-stage Dockerfile', () => {
  const df = parse(
    '# syntax=docker/dockerfile:1.7',
    '# A Go service.',
    'ARG GO_VERSION=1.22',
    'ARG BASE="alpine:3.20"',
    '',
    'FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS Build',
    'WORKDIR /src',
    'ENV CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly"',
    'COPY go.mod go.sum ./',
    'RUN --mount=type=cache,target=/go/pkg/mod \\',
    '    --mount=type=cache,target=/root/.cache/go-build \\',
    '    go mod download',
    'COPY . .',
    'ARG TARGETOS TARGETARCH',
    'RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app ./cmd/app',
    '',
    'FROM ${BASE} AS runtime',
    'LABEL org.opencontainers.image.title="my app" maintainer=me',
    'RUN apk add --no-cache ca-certificates && \\',
    '    # a comment inside the continuation',
    '    adduser -D app',
    'COPY --from=build --chown=app:app --chmod=0755 /out/app /usr/local/bin/app',
    'USER app',
    'EXPOSE 8080/tcp 9090',
    'VOLUME ["/data"]',
    'HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD wget -qO- http://localhost:8080/health || exit 1',
    'STOPSIGNAL SIGTERM',
    'ENTRYPOINT ["/usr/local/bin/app"]',
    'CMD ["serve", "--port", "8080"]',
  );
  assert.deepEqual(df.directives, { syntax: 'docker/dockerfile:1.7' });
  assert.equal(df.escape, '\\');
  assert.deepEqual(
    df.globalArgs.map((a) => a.args),
    [[{ name: 'GO_VERSION', default: '1.22' }], [{ name: 'BASE', default: '"alpine:3.20"' }]],
  );
  assert.equal(df.stages.length, 2);
  const [build, runtime] = df.stages;
  assert.ok(build && runtime);
  assert.equal(build.index, 0);
  assert.equal(build.name, 'build');
  assert.equal(build.from.image, 'golang:${GO_VERSION}');
  assert.equal(build.from.stageName, 'build');
  assert.deepEqual(build.from.flags, [{ name: 'platform', value: '$BUILDPLATFORM', pos: { file: 'Dockerfile', line: 6, col: 6 } }]);
  assert.deepEqual(build.from.pos, { file: 'Dockerfile', line: 6, col: 1 });
  assert.deepEqual(
    build.instructions.map((i) => i.kind),
    ['WORKDIR', 'ENV', 'COPY', 'RUN', 'COPY', 'ARG', 'RUN'],
  );
  const download = build.instructions[3];
  assert.ok(download?.kind === 'RUN');
  assert.deepEqual(flagValues(download.flags, 'mount'), ['type=cache,target=/go/pkg/mod', 'type=cache,target=/root/.cache/go-build']);
  assert.deepEqual(download.flags[1]?.pos, { file: 'Dockerfile', line: 11, col: 5 });
  assert.deepEqual(download.command, { kind: 'shell', text: 'go mod download' });
  assert.equal(
    download.original,
    'RUN --mount=type=cache,target=/go/pkg/mod     --mount=type=cache,target=/root/.cache/go-build     go mod download',
  );
  const env = build.instructions[1];
  assert.ok(env?.kind === 'ENV');
  assert.deepEqual(env.pairs, [
    { key: 'CGO_ENABLED', value: '0' },
    { key: 'GOFLAGS', value: '"-trimpath -mod=readonly"' },
  ]);
  assert.equal(runtime.index, 1);
  assert.equal(runtime.name, 'runtime');
  assert.equal(runtime.from.image, '${BASE}');
  const [label, apk, copy, user, expose, volume, health, stop, entry, cmd] = runtime.instructions;
  assert.ok(label?.kind === 'LABEL');
  assert.deepEqual(label.pairs, [
    { key: 'org.opencontainers.image.title', value: '"my app"' },
    { key: 'maintainer', value: 'me' },
  ]);
  assert.ok(apk?.kind === 'RUN');
  assert.deepEqual(apk.command, { kind: 'shell', text: 'apk add --no-cache ca-certificates &&     adduser -D app' });
  assert.ok(copy?.kind === 'COPY');
  assert.equal(flagValue(copy.flags, 'from'), 'build');
  assert.equal(flagValue(copy.flags, 'chown'), 'app:app');
  assert.equal(flagValue(copy.flags, 'chmod'), '0755');
  assert.deepEqual(copy.sources, ['/out/app']);
  assert.equal(copy.dest, '/usr/local/bin/app');
  assert.deepEqual(user, { kind: 'USER', pos: { file: 'Dockerfile', line: 23, col: 1 }, original: 'USER app', flags: [], value: 'app' });
  assert.ok(expose?.kind === 'EXPOSE' && volume?.kind === 'VOLUME');
  assert.deepEqual(expose.words, ['8080/tcp', '9090']);
  assert.deepEqual(volume.words, ['/data']);
  assert.ok(health?.kind === 'HEALTHCHECK');
  assert.deepEqual(health.command, { kind: 'shell', text: 'wget -qO- http://localhost:8080/health || exit 1' });
  assert.deepEqual(health.flags.map((f) => [f.name, f.value]), [['interval', '30s'], ['timeout', '3s'], ['retries', '3']]);
  assert.ok(stop?.kind === 'STOPSIGNAL');
  assert.equal(stop.value, 'SIGTERM');
  assert.ok(entry?.kind === 'ENTRYPOINT' && cmd?.kind === 'CMD');
  assert.deepEqual(entry.command, { kind: 'exec', args: ['/usr/local/bin/app'] });
  assert.deepEqual(cmd.command, { kind: 'exec', args: ['serve', '--port', '8080'] });
});

test('tab separators and tab-indented continuations join as in BuildKit\'s docker testfile', () => {
  const df = parse(
    'FROM\tubuntu:14.04',
    'LABEL\tmaintainer\tTianon Gravi <admwiggin@gmail.com> (@tianon)',
    'RUN\tapt-get update && apt-get install -yq \\',
    '\tapt-utils \\',
    '\t--no-install-recommends',
    'ENV\tPLATFORMS\t\\',
    '\tlinux/386 linux/arm \\',
    '\tdarwin/amd64',
    'ENTRYPOINT\t["hack/dind"]',
    'COPY\t.\t/go/src/github.com/docker/docker',
  );
  assert.equal(df.stages[0]?.from.image, 'ubuntu:14.04');
  const [label, run, env, entry, copy] = df.stages[0]?.instructions ?? [];
  assert.ok(label?.kind === 'LABEL' && run?.kind === 'RUN' && env?.kind === 'ENV' && entry?.kind === 'ENTRYPOINT' && copy?.kind === 'COPY');
  // The expected values are those of BuildKit's parser/testfiles/docker/result.
  assert.deepEqual(label.pairs, [{ key: 'maintainer', value: 'Tianon Gravi <admwiggin@gmail.com> (@tianon)' }]);
  assert.deepEqual(run.command, { kind: 'shell', text: 'apt-get update && apt-get install -yq \tapt-utils \t--no-install-recommends' });
  assert.deepEqual(env.pairs, [{ key: 'PLATFORMS', value: 'linux/386 linux/arm \tdarwin/amd64' }]);
  assert.deepEqual(entry.command, { kind: 'exec', args: ['hack/dind'] });
  assert.deepEqual([copy.sources, copy.dest], [['.'], '/go/src/github.com/docker/docker']);
});

// ---- directives ----

test('parser directives: names case-insensitive, recorded lowercased, check recorded', () => {
  const df = parse('# SYNTAX = docker/dockerfile:1', '#check=skip=JSONArgsRecommended;error=true', '# Escape=`', 'FROM scratch');
  assert.deepEqual(df.directives, {
    syntax: 'docker/dockerfile:1',
    check: 'skip=JSONArgsRecommended;error=true',
    escape: '`',
  });
  assert.equal(df.escape, '`');
});

test('parser directives stop at the first line that is not one', () => {
  // After a plain comment, a blank line or an unknown directive, `# escape=` is just a comment.
  for (const before of ['# a comment', '', '# foo=bar']) {
    const df = parseDockerfile(`${before}\n# escape=\`\nFROM scratch\n`, 'Dockerfile');
    assert.equal(df.escape, '\\', JSON.stringify(before));
    assert.deepEqual(df.directives, {});
  }
  const df = parse('FROM scratch', '# syntax=x');
  assert.deepEqual(df.directives, {});
});

test('parser directive errors', () => {
  assert.equal(
    err('# escape=\\', '# escape=`', 'FROM scratch'),
    'Dockerfile:2:1: the escape parser directive is given twice; keep one',
  );
  assert.equal(err('# escape=x', 'FROM scratch'), 'Dockerfile:1:1: invalid escape character "x"; use # escape=\\ or # escape=`');
});

test('escape=` : Windows-style continuation, backslashes are plain characters', () => {
  const df = parse(
    '# escape=`',
    'FROM mcr.microsoft.com/windows/servercore:ltsc2022',
    'COPY testfile.txt c:\\',
    'RUN dir c:\\ `',
    '    && echo done',
    'WORKDIR c:\\Windows\\Temp',
    'ENV B="a `"b`" c" C=d` e',
  );
  assert.equal(df.escape, '`');
  const [copy, run, workdir, env] = df.stages[0]?.instructions ?? [];
  assert.ok(copy?.kind === 'COPY' && run?.kind === 'RUN' && workdir?.kind === 'WORKDIR' && env?.kind === 'ENV');
  // `c:\` at the end of a line is a path, not a continuation.
  assert.equal(copy.dest, 'c:\\');
  assert.deepEqual(run.command, { kind: 'shell', text: 'dir c:\\     && echo done' });
  assert.deepEqual(run.pos, { file: 'Dockerfile', line: 4, col: 1 });
  assert.equal(workdir.value, 'c:\\Windows\\Temp');
  assert.deepEqual(workdir.pos, { file: 'Dockerfile', line: 6, col: 1 });
  // parseWords keeps the escape token and quotes for the lexer.
  assert.deepEqual(env.pairs, [
    { key: 'B', value: '"a `"b`" c"' },
    { key: 'C', value: 'd` e' },
  ]);
});

// ---- lines ----

test('continuation lines: comments and blank lines inside are dropped, positions follow the physical lines', () => {
  const ins = body(
    'FROM scratch',
    'RUN echo a \\',
    '# a comment',
    '',
    '   \t',
    '  --flag b \\',
    '    # indented comment',
    '  c',
  );
  assert.equal(ins.length, 1);
  const run = ins[0];
  assert.ok(run?.kind === 'RUN');
  assert.deepEqual(run.command, { kind: 'shell', text: 'echo a   --flag b   c' });
  assert.equal(run.original, 'RUN echo a   --flag b   c');
  // The error for a flag on a continuation line points at that line.
  assert.equal(
    err('FROM scratch', 'COPY \\', '  --chown=1 \\', '     --bogus=2 a b'),
    'Dockerfile:4:6: unknown flag --bogus for COPY; valid flags: --from, --chown, --chmod, --link, --exclude, --parents',
  );
});

test('an escaped escape at the end of a line is not a continuation; a lone escape is', () => {
  const ins = body('FROM scratch', 'RUN echo a\\\\', 'RUN \\', 'echo b');
  assert.deepEqual(
    ins.map((i) => (i.kind === 'RUN' ? i.command : undefined)),
    [
      { kind: 'shell', text: 'echo a\\\\' },
      { kind: 'shell', text: 'echo b' },
    ],
  );
});

test('keywords are case-insensitive; indentation, CRLF line ends and a BOM are accepted', () => {
  const df = parseDockerfile('\uFEFFfrom alpine as Base\r\n   run echo hi\r\n\tCmd ["a"]\r\n', 'Dockerfile');
  const stage = df.stages[0];
  assert.equal(stage?.name, 'base');
  assert.deepEqual(
    stage?.instructions.map((i) => [i.kind, i.pos.line, i.pos.col]),
    [
      ['RUN', 2, 4],
      ['CMD', 3, 2],
    ],
  );
  const run = stage?.instructions[0];
  assert.ok(run?.kind === 'RUN');
  assert.deepEqual(run.command, { kind: 'shell', text: 'echo hi' });
});

// ---- structure errors ----

test('empty Dockerfiles and missing FROM', () => {
  assert.equal(errorOf(''), 'Dockerfile:1:1: the Dockerfile has no instructions: add FROM <image>');
  assert.equal(err('# only', '# comments', ''), 'Dockerfile:3:1: the Dockerfile has no instructions: add FROM <image>');
  assert.equal(err('ARG A=1', 'ARG B'), 'Dockerfile:1:1: no FROM instruction: add FROM <image> after the ARGs');
  assert.equal(
    err('ARG A=1', '  RUN echo hi', 'FROM scratch'),
    'Dockerfile:2:3: no FROM before RUN: start the build stage with FROM <image> (only ARG may come before the first FROM)',
  );
});

test('unknown instructions, with a suggestion in the user\'s case', () => {
  assert.equal(err('FORM alpine'), 'Dockerfile:1:1: unknown instruction FORM (did you mean FROM?)');
  assert.equal(err('FROM alpine', '  cpoy a b'), 'Dockerfile:2:3: unknown instruction cpoy (did you mean copy?)');
  assert.equal(err('FROM alpine', 'ENVV A=1'), 'Dockerfile:2:1: unknown instruction ENVV (did you mean ENV?)');
  assert.match(err('FROM alpine', 'FROBNICATE x'), /^Dockerfile:2:1: unknown instruction FROBNICATE; use one of FROM, RUN, .*MAINTAINER$/);
});

// ---- FROM and stages ----

test('FROM forms and stage names', () => {
  const df = parse('FROM a', 'FROM b AS Stage-1.x_y', 'FROM c as lower', 'FROM stage-1.x_y');
  assert.deepEqual(
    df.stages.map((s) => [s.index, s.name, s.from.image]),
    [
      [0, undefined, 'a'],
      [1, 'stage-1.x_y', 'b'],
      [2, 'lower', 'c'],
      [3, undefined, 'stage-1.x_y'],
    ],
  );
  assert.equal(err('FROM'), 'Dockerfile:1:1: FROM needs an image: FROM <image> [AS <name>]');
  assert.equal(err('FROM --platform=linux/amd64'), 'Dockerfile:1:1: FROM needs an image: FROM <image> [AS <name>]');
  assert.equal(err('FROM alpine AS'), 'Dockerfile:1:13: FROM alpine AS needs a stage name after AS');
  assert.equal(err('FROM alpine  as   1st'), 'Dockerfile:1:19: invalid stage name "1st": start with a letter, then use letters, digits, -, _ or .');
  assert.equal(err('FROM alpine AS a/b'), 'Dockerfile:1:16: invalid stage name "a/b": start with a letter, then use letters, digits, -, _ or .');
  assert.equal(err('FROM alpine foo'), 'Dockerfile:1:13: FROM takes an image and optionally AS <name>: "alpine foo" has 2 words');
  assert.equal(err('FROM alpine AS a b'), 'Dockerfile:1:13: FROM takes an image and optionally AS <name>: "alpine AS a b" has 4 words');
  assert.equal(err('FROM a AS x', 'FROM b AS X'), 'Dockerfile:2:1: stage name "x" is already used at line 1; rename one of them');
});

// ---- flags ----

test('flags: values, bools, repeats, quotes and the -- terminator', () => {
  const copy = one('COPY --link --parents=FALSE --exclude=*.md --exclude="a b" --from=\'st\' -- --odd /d/');
  assert.ok(copy.kind === 'COPY');
  assert.deepEqual(
    copy.flags.map((f) => [f.name, f.value]),
    [
      ['link', undefined],
      ['parents', 'false'],
      ['exclude', '*.md'],
      ['exclude', 'a b'],
      ['from', 'st'],
    ],
  );
  assert.equal(flagBool(copy.flags, 'link'), true);
  assert.equal(flagBool(copy.flags, 'parents'), false);
  assert.deepEqual(flagValues(copy.flags, 'exclude'), ['*.md', 'a b']);
  assert.deepEqual(copy.sources, ['--odd']);
  const add = one('ADD --checksum=sha256:abc --keep-git-dir=true --chmod=644 https://x/y.tgz /y');
  assert.ok(add.kind === 'ADD');
  assert.equal(flagValue(add.flags, 'checksum'), 'sha256:abc');
  assert.equal(flagBool(add.flags, 'keep-git-dir'), true);
  const run = one('RUN --network=none --security=insecure --mount=type=secret,id=a --mount=type=ssh make');
  assert.ok(run.kind === 'RUN');
  assert.deepEqual(flagValues(run.flags, 'mount'), ['type=secret,id=a', 'type=ssh']);
  assert.equal(flagValue(run.flags, 'network'), 'none');
  // Words after the first argument are not flags.
  const run2 = one('RUN make --mount=x');
  assert.ok(run2.kind === 'RUN');
  assert.deepEqual(run2.flags, []);
  assert.deepEqual(run2.command, { kind: 'shell', text: 'make --mount=x' });
});

test('flag errors', () => {
  assert.equal(
    err('FROM a', 'RUN --foo echo'),
    'Dockerfile:2:5: unknown flag --foo for RUN; valid flags: --mount, --network, --security',
  );
  assert.equal(
    err('FROM a', 'COPY --form=b x y'),
    'Dockerfile:2:6: unknown flag --form for COPY (did you mean --from?); valid flags: --from, --chown, --chmod, --link, --exclude, --parents',
  );
  assert.equal(err('FROM a', 'ENV --x=1 a=b'), 'Dockerfile:2:5: unknown flag --x: ENV takes no flags; remove it');
  assert.equal(err('FROM --plattform=x a'), 'Dockerfile:1:6: unknown flag --plattform for FROM (did you mean --platform?); valid flags: --platform');
  assert.equal(err('FROM a', 'COPY --from b c'), 'Dockerfile:2:6: --from needs a value: --from=<value>');
  assert.equal(err('FROM a', 'RUN --mount echo'), 'Dockerfile:2:5: --mount needs a value: --mount=<value>');
  assert.equal(err('FROM a', 'COPY --link=yes b c'), 'Dockerfile:2:6: --link expects true or false, not "yes"');
  assert.equal(err('FROM a', 'COPY --link= b c'), 'Dockerfile:2:6: --link= needs a value: write --link, --link=true or --link=false');
  assert.equal(err('FROM a', 'COPY --from=x --from=y b c'), 'Dockerfile:2:15: --from is given twice for COPY; give it once');
  assert.equal(err('FROM a', 'ADD --from=x b c'), 'Dockerfile:2:5: unknown flag --from for ADD; valid flags: --chown, --chmod, --link, --exclude, --checksum, --keep-git-dir');
});

// ---- JSON and shell forms ----

test('exec form for JSON arrays of strings, shell form otherwise', () => {
  const forms = body(
    'FROM a',
    'RUN ["/bin/sh", "-c", "echo \\"hi\\""]',
    'RUN echo [not json]',
    'RUN [ -f /etc/os-release ]',
    'RUN [[ -f /x ]]',
    'RUN [ "$(uname -m)" = "x86_64" ]',
    'CMD []',
    'ENTRYPOINT [ "a" ,"b" ]',
    'CMD [ \'single\' ]',
  ).map((i) => ('command' in i ? i.command : undefined));
  assert.deepEqual(forms, [
    { kind: 'exec', args: ['/bin/sh', '-c', 'echo "hi"'] },
    { kind: 'shell', text: 'echo [not json]' },
    { kind: 'shell', text: '[ -f /etc/os-release ]' },
    { kind: 'shell', text: '[[ -f /x ]]' },
    { kind: 'shell', text: '[ "$(uname -m)" = "x86_64" ]' },
    { kind: 'exec', args: [] },
    { kind: 'exec', args: ['a', 'b'] },
    { kind: 'shell', text: "[ 'single' ]" },
  ]);
});

test('malformed exec form is an error, as are non-string arrays', () => {
  assert.match(err('FROM a', "CMD ['a', 'b']"), /^Dockerfile:2:5: CMD \['a', 'b'\] is not a valid JSON array: exec form needs double-quoted strings/);
  assert.match(err('FROM a', 'ENTRYPOINT ["a" "b"]'), /^Dockerfile:2:12: ENTRYPOINT \["a" "b"\] is not a valid JSON array/);
  assert.match(err('FROM a', 'RUN ["a",]'), /^Dockerfile:2:5: RUN \["a",\] is not a valid JSON array/);
  assert.match(err('FROM a', 'RUN --network=none [ "a", "b" ,]'), /^Dockerfile:2:20: RUN/);
  assert.match(err('FROM a', "VOLUME ['/data']"), /^Dockerfile:2:8: VOLUME \['\/data'\] is not a valid JSON array/);
  assert.equal(err('FROM a', 'CMD [1, "a"]'), 'Dockerfile:2:5: CMD [1, "a"]: a JSON array here must hold strings only; quote every element');
  assert.equal(err('FROM a', 'RUN []'), 'Dockerfile:2:5: RUN [] has no command; give one');
});

test('SHELL must be a non-empty JSON array', () => {
  const shell = one('SHELL ["powershell", "-Command"]');
  assert.ok(shell.kind === 'SHELL');
  assert.deepEqual(shell.words, ['powershell', '-Command']);
  assert.equal(err('FROM a', 'SHELL /bin/bash -c'), 'Dockerfile:2:7: SHELL needs a JSON array: SHELL ["/bin/sh", "-c"]');
  assert.equal(err('FROM a', 'SHELL'), 'Dockerfile:2:1: SHELL needs a JSON array: SHELL ["/bin/sh", "-c"]');
  assert.equal(err('FROM a', 'SHELL []'), 'Dockerfile:2:7: SHELL [] is empty: give the shell and its arguments');
});

// ---- ENV, LABEL, ARG ----

test('ENV and LABEL: key=value pairs keep quotes and escapes; the legacy form takes the rest of the line', () => {
  const [e1, e2, l1, l2] = body(
    'FROM a',
    'ENV A=1 B="two words" C=a\\ b D= E=\'$x\'',
    'ENV LEGACY  the rest   of "the line"',
    'LABEL "com.example.vendor"="ACME" version=1.0',
    'LABEL description This is a label',
  );
  assert.ok(e1?.kind === 'ENV' && e2?.kind === 'ENV' && l1?.kind === 'LABEL' && l2?.kind === 'LABEL');
  assert.deepEqual(e1.pairs, [
    { key: 'A', value: '1' },
    { key: 'B', value: '"two words"' },
    { key: 'C', value: 'a\\ b' },
    { key: 'D', value: '' },
    { key: 'E', value: "'$x'" },
  ]);
  assert.deepEqual(e2.pairs, [{ key: 'LEGACY', value: 'the rest   of "the line"' }]);
  assert.deepEqual(l1.pairs, [
    { key: '"com.example.vendor"', value: '"ACME"' },
    { key: 'version', value: '1.0' },
  ]);
  assert.deepEqual(l2.pairs, [{ key: 'description', value: 'This is a label' }]);
});

test('ENV words split as BuildKit parseWords does (quotes group, `${...}` does not)', () => {
  // parseWords knows quotes only: the space inside ${A:-"d e"} is quoted, so it stays one word.
  const env = one('ENV P="x"y"z" Q=${A:-"d e"}');
  assert.ok(env.kind === 'ENV');
  assert.deepEqual(env.pairs, [
    { key: 'P', value: '"x"y"z"' },
    { key: 'Q', value: '${A:-"d e"}' },
  ]);
  assert.equal(err('FROM a', 'ENV A=1 ${B:-x y}'), 'Dockerfile:2:9: ENV: no = in "${B:-x"; write name=value');
});

test('ENV/LABEL errors', () => {
  assert.equal(err('FROM a', 'ENV'), 'Dockerfile:2:1: ENV needs at least one name=value pair');
  assert.equal(err('FROM a', 'ENV  ALONE'), 'Dockerfile:2:6: ENV ALONE has no value: write ENV ALONE=<value>');
  assert.equal(err('FROM a', 'ENV A=1 B'), 'Dockerfile:2:9: ENV: no = in "B"; write name=value');
  assert.equal(err('FROM a', 'LABEL a=1 =2'), 'Dockerfile:2:11: LABEL: a name is missing before = in "=2"');
  assert.equal(err('FROM a', 'LABEL'), 'Dockerfile:2:1: LABEL needs at least one name=value pair');
});

test('ARG: names, defaults, several per line', () => {
  const arg = one('ARG A B=2 C="x y" D=');
  assert.ok(arg.kind === 'ARG');
  assert.deepEqual(arg.args, [{ name: 'A' }, { name: 'B', default: '2' }, { name: 'C', default: '"x y"' }, { name: 'D', default: '' }]);
  assert.equal(err('FROM a', 'ARG'), 'Dockerfile:2:1: ARG needs a name: ARG <name>[=<default>]');
  assert.equal(err('FROM a', 'ARG A =1'), 'Dockerfile:2:7: ARG: a name is missing before = in "=1"');
  assert.equal(err('ARG "A"=1', 'FROM a'), 'Dockerfile:1:5: invalid ARG name "\\"A\\"": use letters, digits and _ (no quotes, $ or braces)');
  assert.equal(err('FROM a', 'ARG ${X}'), 'Dockerfile:2:5: invalid ARG name "${X}": use letters, digits and _ (no quotes, $ or braces)');
});

// ---- other instructions ----

test('words and values: EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, MAINTAINER keep values raw', () => {
  const [expose, vol1, vol2, user, workdir, stop, maint] = body(
    'FROM a',
    'EXPOSE 80 ${PORT}/udp',
    'VOLUME /a $B',
    'VOLUME ["/c", " /d "]',
    'USER ${UID}:0 ',
    'WORKDIR  $HOME/my dir',
    'STOPSIGNAL 9',
    'MAINTAINER Jane Doe <jane@example.com>',
  );
  assert.ok(expose?.kind === 'EXPOSE' && vol1?.kind === 'VOLUME' && vol2?.kind === 'VOLUME');
  assert.deepEqual(expose.words, ['80', '${PORT}/udp']);
  assert.deepEqual(vol1.words, ['/a', '$B']);
  assert.deepEqual(vol2.words, ['/c', '/d']);
  assert.ok(user?.kind === 'USER' && workdir?.kind === 'WORKDIR' && stop?.kind === 'STOPSIGNAL' && maint?.kind === 'MAINTAINER');
  assert.equal(user.value, '${UID}:0');
  assert.equal(workdir.value, '$HOME/my dir');
  assert.equal(stop.value, '9');
  assert.equal(maint.value, 'Jane Doe <jane@example.com>');
});

test('missing arguments', () => {
  assert.equal(err('FROM a', 'COPY onlyone'), 'Dockerfile:2:1: COPY needs a source and a destination: COPY <src>... <dest>');
  assert.equal(err('FROM a', 'ADD ["x"]'), 'Dockerfile:2:1: ADD needs a source and a destination: ADD <src>... <dest>');
  assert.equal(err('FROM a', 'RUN'), 'Dockerfile:2:1: RUN needs a command: RUN <command> or RUN ["executable", "arg"]');
  assert.equal(err('FROM a', 'CMD  '), 'Dockerfile:2:1: CMD needs a command: CMD <command> or CMD ["executable", "arg"]');
  assert.equal(err('FROM a', 'EXPOSE'), 'Dockerfile:2:1: EXPOSE needs at least one port: EXPOSE 80 443/tcp');
  assert.equal(err('FROM a', 'VOLUME []'), 'Dockerfile:2:1: VOLUME needs at least one path: VOLUME /data');
  assert.equal(err('FROM a', 'VOLUME ["/a", ""]'), 'Dockerfile:2:8: VOLUME paths cannot be empty strings');
  assert.equal(err('FROM a', 'USER'), 'Dockerfile:2:1: USER needs a value');
  assert.equal(err('FROM a', 'WORKDIR'), 'Dockerfile:2:1: WORKDIR needs a value');
});

test('COPY/ADD: JSON form, and sources split on whitespace only', () => {
  const [c1, c2] = body('FROM a', 'COPY ["a b", "c", "/d e/"]', 'ADD "a b" /x');
  assert.ok(c1?.kind === 'COPY' && c2?.kind === 'ADD');
  assert.deepEqual([c1.sources, c1.dest, c1.heredocs], [['a b', 'c'], '/d e/', []]);
  // BuildKit does not group quotes here; the builder's lexer then sees the halves.
  assert.deepEqual([c2.sources, c2.dest], [['"a', 'b"'], '/x']);
});

test('HEALTHCHECK', () => {
  const [none, exec, shell] = body(
    'FROM a',
    'HEALTHCHECK NONE',
    'HEALTHCHECK --interval=1m30s --start-period=0 --start-interval=500ms --retries=0 cmd ["true"]',
    'HEALTHCHECK CMD  curl -f http://localhost/ ',
  );
  assert.ok(none?.kind === 'HEALTHCHECK' && exec?.kind === 'HEALTHCHECK' && shell?.kind === 'HEALTHCHECK');
  assert.equal(none.command, undefined);
  assert.deepEqual(exec.command, { kind: 'exec', args: ['true'] });
  assert.equal(flagValue(exec.flags, 'interval'), '1m30s');
  assert.deepEqual(shell.command, { kind: 'shell', text: 'curl -f http://localhost/' });
  assert.equal(err('FROM a', 'HEALTHCHECK'), 'Dockerfile:2:1: HEALTHCHECK needs a type: write HEALTHCHECK CMD <command> or HEALTHCHECK NONE');
  assert.equal(err('FROM a', 'HEALTHCHECK curl x'), 'Dockerfile:2:13: unknown HEALTHCHECK type "curl": write HEALTHCHECK CMD <command> or HEALTHCHECK NONE');
  assert.equal(err('FROM a', 'HEALTHCHECK NONE now'), 'Dockerfile:2:18: HEALTHCHECK NONE takes no arguments; remove them');
  assert.equal(err('FROM a', 'HEALTHCHECK CMD'), 'Dockerfile:2:13: HEALTHCHECK CMD needs a command: HEALTHCHECK CMD <command> or HEALTHCHECK CMD ["executable", "arg"]');
  assert.equal(err('FROM a', 'HEALTHCHECK --interval=5 CMD x'), 'Dockerfile:2:13: --interval=5 is not a duration; write e.g. 30s, 1m30s or 500ms');
  assert.equal(err('FROM a', 'HEALTHCHECK --timeout=10us CMD x'), 'Dockerfile:2:13: --timeout=10us is shorter than the minimum of 1ms');
  assert.equal(err('FROM a', 'HEALTHCHECK --retries=-1 CMD x'), 'Dockerfile:2:13: --retries cannot be negative (-1)');
  assert.equal(err('FROM a', 'HEALTHCHECK --retries=x CMD x'), 'Dockerfile:2:13: --retries=x is not a whole number; write e.g. --retries=3');
  assert.equal(err('FROM a', 'HEALTHCHECK --mount=x CMD x'), 'Dockerfile:2:13: unknown flag --mount for HEALTHCHECK; valid flags: --interval, --timeout, --start-period, --start-interval, --retries');
});

test('Go durations', () => {
  assert.equal(parseGoDuration('0'), 0);
  assert.equal(parseGoDuration('1m30s'), 90e9);
  assert.equal(parseGoDuration('1.5h'), 5400e9);
  assert.equal(parseGoDuration('300ms'), 300e6);
  assert.equal(parseGoDuration('2µs'), 2000);
  assert.equal(parseGoDuration('-1s'), -1e9);
  assert.equal(parseGoDuration('.5s'), 0.5e9);
  for (const bad of ['', '5', 's', '1x', '1.s.', '1s2', '3000000h']) assert.equal(parseGoDuration(bad), undefined, bad);
});

test('ONBUILD: the trigger as written; chained, FROM, MAINTAINER and unknown triggers are errors', () => {
  const [o1, o2] = body('FROM a', 'ONBUILD  RUN   echo "hi"  ', 'onbuild COPY --chown=1 . /app');
  assert.ok(o1?.kind === 'ONBUILD' && o2?.kind === 'ONBUILD');
  assert.equal(o1.trigger, 'RUN   echo "hi"');
  assert.equal(o1.original, 'ONBUILD  RUN   echo "hi"');
  assert.equal(o2.trigger, 'COPY --chown=1 . /app');
  assert.equal(err('FROM a', 'ONBUILD ONBUILD RUN x'), 'Dockerfile:2:9: ONBUILD ONBUILD is not allowed (triggers cannot chain)');
  assert.equal(err('FROM a', 'ONBUILD from b'), 'Dockerfile:2:9: FROM is not allowed as an ONBUILD trigger');
  assert.equal(err('FROM a', 'ONBUILD MAINTAINER me'), 'Dockerfile:2:9: MAINTAINER is not allowed as an ONBUILD trigger');
  assert.equal(err('FROM a', 'ONBUILD RUNN x'), 'Dockerfile:2:9: unknown instruction RUNN (did you mean RUN?)');
  assert.equal(err('FROM a', 'ONBUILD RUN --foo x'), 'Dockerfile:2:13: unknown flag --foo for RUN; valid flags: --mount, --network, --security');
  assert.equal(err('FROM a', 'ONBUILD'), 'Dockerfile:2:1: ONBUILD needs an instruction: ONBUILD <instruction>');
});

// ---- heredocs ----

test('RUN heredocs: the command keeps the markers; bodies, <<- and quoting', () => {
  const [r1, r2, user] = body(
    'FROM a',
    'RUN <<EOF',
    'set -e',
    'echo "$HOME"',
    'EOF',
    'RUN --mount=type=cache,target=/c python3 <<-"PY" && cat <<\'T\' > /f',
    '\tprint("x")',
    '\t\tif True: pass',
    '\t PY-not-end',
    '\t\tPY',
    '  $kept',
    'T',
    'USER me',
  );
  assert.ok(r1?.kind === 'RUN' && r2?.kind === 'RUN');
  assert.deepEqual([user?.kind, user?.pos.line], ['USER', 13]);
  assert.deepEqual(r1.command, { kind: 'shell', text: '<<EOF' });
  assert.deepEqual(r1.heredocs, [{ name: 'EOF', content: 'set -e\necho "$HOME"\n', expand: true }]);
  assert.equal(r1.original, 'RUN <<EOF');
  assert.deepEqual(r2.command, { kind: 'shell', text: 'python3 <<-"PY" && cat <<\'T\' > /f' });
  assert.deepEqual(r2.heredocs, [
    { name: 'PY', content: 'print("x")\nif True: pass\n PY-not-end\n', expand: false },
    { name: 'T', content: '  $kept\n', expand: false },
  ]);
});

test('COPY/ADD heredocs: sources are the heredoc names, bodies expand unless the delimiter is quoted', () => {
  const [copy, add, next] = body(
    'FROM a',
    'COPY --chmod=755 <<EOF <<\'RAW\' /usr/local/bin/',
    '#!/bin/sh',
    'echo $GREETING',
    'EOF',
    'echo $kept',
    'RAW',
    'ADD <<-E1 file.txt /dst/',
    '\tindented',
    '\tE1',
    'RUN echo after',
  );
  assert.ok(copy?.kind === 'COPY' && add?.kind === 'ADD' && next?.kind === 'RUN');
  assert.deepEqual(copy.sources, ['EOF', 'RAW']);
  assert.equal(copy.dest, '/usr/local/bin/');
  assert.deepEqual(copy.heredocs, [
    { name: 'EOF', content: '#!/bin/sh\necho $GREETING\n', expand: true },
    { name: 'RAW', content: 'echo $kept\n', expand: false },
  ]);
  // A comment-looking line inside a body is content, not a comment.
  assert.deepEqual(add.sources, ['E1', 'file.txt']);
  assert.deepEqual(add.heredocs, [{ name: 'E1', content: 'indented\n', expand: true }]);
  assert.deepEqual(next.pos, { file: 'Dockerfile', line: 11, col: 1 });
});

test('no heredoc where BuildKit sees none: exec form, quoted or escaped markers, other instructions', () => {
  const [exec, quoted, escaped, env] = body(
    'FROM a',
    'RUN ["cat", "<<EOF"]',
    'RUN echo "<<EOF" \'<<X\'',
    'RUN echo \\<<EOF',
    'ENV A=<<EOF',
  );
  for (const r of [exec, quoted, escaped]) assert.ok(r?.kind === 'RUN' && r.heredocs.length === 0);
  assert.ok(env?.kind === 'ENV');
  assert.deepEqual(env.pairs, [{ key: 'A', value: '<<EOF' }]);
});

test('an empty heredoc, and a heredoc opened on a continued line', () => {
  const [r1, r2] = body('FROM a', 'RUN cat <<EOF', 'EOF', 'RUN --network=none \\', '  cat <<X', 'body', 'X');
  assert.ok(r1?.kind === 'RUN' && r2?.kind === 'RUN');
  assert.deepEqual(r1.heredocs, [{ name: 'EOF', content: '', expand: true }]);
  assert.deepEqual(r2.command, { kind: 'shell', text: 'cat <<X' });
  assert.deepEqual(r2.heredocs, [{ name: 'X', content: 'body\n', expand: true }]);
});

test('ONBUILD triggers carry their heredocs, as BuildKit stores them', () => {
  const o = one('ONBUILD RUN cat <<-EOF', '\thello', '\tEOF');
  assert.ok(o.kind === 'ONBUILD');
  assert.equal(o.trigger, 'RUN cat <<-EOF\n\thello\nEOF');
});

test('heredoc errors', () => {
  assert.equal(
    err('FROM a', 'RUN cat <<EOF', 'no end'),
    'Dockerfile:2:9: unterminated heredoc <<EOF: the file ends before a line EOF; add it',
  );
  assert.equal(
    err('FROM a', 'COPY <<A <<-B /d', 'a', 'A', 'b'),
    'Dockerfile:2:10: unterminated heredoc <<-B: the file ends before a line B; add it',
  );
  // As BuildKit: `<<EOF>/out` is one shell word, so the delimiter is `EOF>/out`, which never comes.
  assert.equal(
    err('FROM a', 'RUN cat <<EOF>/out', 'x', 'EOF'),
    'Dockerfile:2:9: unterminated heredoc <<EOF>/out: the file ends before a line EOF>/out; add it',
  );
  assert.equal(
    err('FROM a', 'COPY a <<EOF', 'x', 'EOF'),
    'Dockerfile:2:8: COPY cannot take a heredoc as its destination; put the destination path last',
  );
});

test('raw values give the intended value through the shell lexer', async () => {
  const { expandWord } = await import('../../src/dockerfile/shell-lex.ts');
  const env = new Map([['X', 'ex']]);
  const e = one('ENV A="two words" B=a\\ b C=\'$X\' D="$X y" E=${X}z');
  assert.ok(e.kind === 'ENV');
  assert.deepEqual(
    e.pairs.map((p) => expandWord(p.value, env).value),
    ['two words', 'a b', '$X', 'ex y', 'exz'],
  );
  const w = parseDockerfile(lines('# escape=`', 'FROM a', 'ENV A="q`"uote" B=a` b'), 'Dockerfile').stages[0]?.instructions[0];
  assert.ok(w?.kind === 'ENV');
  assert.deepEqual(w.pairs.map((p) => expandWord(p.value, env, { escape: '`' }).value), ['q"uote', 'a b']);
});
