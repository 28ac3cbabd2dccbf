/**
 * hoist CLI (run through the bin launcher cmd/hoist.mjs). Keep this file cheap: it only declares commands and flags; each action module is
 * imported when its command runs, so `hoist inspect` never loads the build or runtime code.
 */
const { Command, Option } = await import('commander');
import type { Command as Cmd } from 'commander';
import { reportError, runAction } from './main.ts';

const program = new Command();
program
  .name('hoist')
  .description('Daemonless, rootless container images: build, copy, inspect, run, sign.')
  .version('0.1.0')
  .option('--debug', 'show stack traces and debug logs on stderr')
  .option('--root <dir>', 'store location (default: $HOIST_ROOT, $XDG_DATA_HOME/hoist, ~/.local/share/hoist)')
  .option('--policy <file>', 'signature policy for copy, run and build (as skopeo takes it; the commands take it too)')
  .option('--insecure-policy', 'accept any image in copy, run and build (as skopeo takes it)')
  .showHelpAfterError('(run with --help for usage)')
  .configureHelp({ sortSubcommands: false })
  // run's command line after the image belongs to the container (`hoist run img ls -l`): options are positional.
  .enablePositionalOptions();

const transportsHelp = `
Image references (skopeo syntax):
  docker://HOST/REPO[:TAG|@DIGEST]   a registry
  oci:DIR[:REF]                       an OCI image layout directory
  oci-archive:FILE[:REF]              a tar of an OCI image layout
  docker-archive:FILE[:REF]           a "docker save" archive
  NAME[:TAG|@DIGEST]                  the local store`;

// Each command's definition, run only for the command being run (or all of them: help, an unknown name):
// declaring every command and option costs a few ms at each start.
const commands: [string[], () => void][] = [
  [['build'], () => {
    program
      .command('build')
      .description('build an image from a Dockerfile (rootless)')
      .argument('[context]', 'build context directory, or - for a Dockerfile on stdin')
      .option('-t, --tag <name>', 'name the image (repeatable)', collect, [])
      .option('-f, --file <file>', 'Dockerfile path (default CONTEXT/Dockerfile, then Containerfile), or - for stdin')
      .option('--build-arg <name[=value]>', 'set a build ARG (without =value: from the environment) (repeatable)', collect, [])
      .option('--target <stage>', 'build this stage (and what it needs) instead of the last')
      .option('--platform <os/arch[/variant]>', 'platform to build for (TARGETPLATFORM)')
      .option('--label <key=value>', 'add a label to the image (repeatable)', collect, [])
      .option('--annotation <key=value>', 'add an annotation to the manifest (repeatable)', collect, [])
      .option('--secret <id=ID,src=FILE|env=VAR>', 'a secret for RUN --mount=type=secret (repeatable); never stored in the image', collect, [])
      .option('--network <mode>', 'network for RUN steps: default (host), host or none')
      .option('--no-cache', 'do not use the build cache (results are still recorded)')
      .option('--pull [policy]', 'pull FROM images: always (bare --pull), missing (default), never')
      .option('--iidfile <file>', 'write the image ID to this file')
      .option('--squash', 'squash the layers the build adds into one (the base image\'s layers stay as they are)')
      .option('--timestamp <seconds>', 'reproducible build: created times and newer file mtimes set to this (also SOURCE_DATE_EPOCH)')
      .addOption(new Option('--source-date-epoch <seconds>').hideHelp())
      .addOption(new Option('--format <format>', 'image format').choices(['oci', 'docker']))
      .option('-o, --output <spec>', 'also export: type=local,dest=DIR | type=oci,dest=FILE | type=docker-archive,dest=FILE | type=registry (repeatable)', collect, [])
      .option('--push', 'push every -t name to its registry')
      .addOption(new Option('--compress <format>', 'layer compression').choices(['gzip', 'zstd']))
      .option('--cache-ttl <duration>', 'ignore cache entries older than this (e.g. 24h)')
      .addOption(new Option('--layers [bool]', 'buildah compatibility: hoist always caches layers').hideHelp())
      .option('--runtime <path>', 'OCI runtime for RUN steps (default runc)')
      .option('-q, --quiet', 'print only the image ID')
      .addOption(new Option('--progress <mode>', 'progress on stderr').choices(['auto', 'tty', 'plain', 'quiet']).default('auto'))
      .action(runAction('build'));
    registryOptions(program.commands[program.commands.length - 1]!);
    policyOptions(program.commands[program.commands.length - 1]!, 'FROM images pulled');
  }],
  [['copy'], () => {
    program
      .command('copy')
      .description('copy an image between registries, layouts, archives and the local store')
      .argument('<src>', 'source image reference')
      .argument('<dst>', 'destination image reference')
      .option('-a, --all', 'copy every platform of an index (the default; kept for skopeo compatibility)')
      .addOption(new Option('--multi-arch <which>', 'from an index copy all platforms, or only this system\'s').choices(['all', 'system', 'index-only']).default('all'))
      .option('--platform <os/arch[/variant]>', 'copy only these platforms (repeatable)', collect, [])
      .option('-f, --format <oci|v2s2>', 'manifest format to write (default: keep it, or what the destination reads)')
      .option('--preserve-digests', 'fail rather than change any manifest digest')
      .option('--remove-signatures', 'do not copy signatures')
      .option('--additional-tag <tag>', 'also tag the copied image with this tag at the destination (repeatable)', collect, [])
      .addOption(new Option('--dest-compress-format <format>', 'recompress layers with this format').choices(['gzip', 'zstd']))
      .option('--dest-compress-level <n>', 'compression level for --dest-compress-format')
      .option('--all-tags', 'copy every tag of a docker:// source repository to the destination repository')
      .option('-j, --jobs <n>', 'blobs copied at once')
      .option('--image-parallel-copies <n>', 'same as --jobs (skopeo\'s name)')
      .option('--digestfile <file>', 'write the digest of the copied manifest to this file')
      .option('--sign-by-sigstore-private-key <key>', 'sign the copied image with this private key (simple signing and a sigstore bundle)')
      .option('--sign-passphrase-file <file>', 'passphrase of the signing key (first line; else $COSIGN_PASSWORD or a prompt)')
      .option('--sign-identity <ref>', 'identity to sign as (default: the destination, HOST/REPO:TAG)')
      .option('--sign-by <fingerprint>', 'GPG signing: not supported')
      .option('--sign-by-sq-fingerprint <fingerprint>', 'Sequoia-PGP signing: not supported')
      .option('--sign-by-sigstore <param-file>', 'keyless sigstore signing: not supported (needs Fulcio/Rekor/OIDC)')
      .option('-q, --quiet', 'print nothing on stderr')
      .addOption(new Option('--progress <mode>', 'progress on stderr').choices(['auto', 'tty', 'plain', 'quiet']).default('auto'))
      .option('--no-unpack', 'into the local store: leave unpacking the layers to the first run (default: unpack now, as podman pull does)');
    sideRegistryOptions(program.commands[program.commands.length - 1]!);
    policyOptions(program.commands[program.commands.length - 1]!, 'the source');
    overrideOptions(program.commands[program.commands.length - 1]!)
      .addHelpText('after', transportsHelp)
      .action(runAction('copy'));
  }],
  [['inspect'], () => {
    program
      .command('inspect')
      .description('show an image\'s metadata (skopeo inspect JSON)')
      .argument('<ref>', 'image reference')
      .option('--raw', 'print the raw manifest (or index) bytes')
      .option('--config', 'print the image config')
      .option('-n, --no-tags', 'do not list the repository\'s tags')
      .addOption(new Option('--tags').hideHelp())
      .option('--format <template>', 'print with a Go template, e.g. \'{{.Digest}}\'')
      .option('--platform <os/arch[/variant]>', 'platform to pick from an index (default: this machine\'s)');
    registryOptions(program.commands[program.commands.length - 1]!);
    overrideOptions(program.commands[program.commands.length - 1]!)
      .addHelpText('after', transportsHelp)
      .action(runAction('inspect'));
  }],
  [['list-tags'], () => {
    registryOptions(program
      .command('list-tags')
      .description('list the tags of a registry repository (skopeo list-tags JSON)')
      .argument('<repo>', 'docker://HOST/REPO (no tag)'))
      .action(runAction('list-tags'));
  }],
  [['delete'], () => {
    registryOptions(program
      .command('delete')
      .description('delete an image\'s manifest from a registry (by tag or digest)')
      .argument('<ref>', 'docker://HOST/REPO:TAG or @DIGEST'))
      .action(runAction('delete'));
  }],
  [['sign'], () => {
    registryOptions(program
      .command('sign')
      .description('sign an image where it is (registry, oci: layout, local store) without pulling it')
      .argument('<ref>', 'image reference (docker://… for a registry; a bare name is the local store)')
      .option('--key <file>', 'private key (cosign / skopeo generate-sigstore-key format)')
      .option('--passphrase-file <file>', 'passphrase of the key (first line; else $COSIGN_PASSWORD or a prompt)')
      .option('--identity <ref>', 'docker reference the signature claims (default: the image\'s, HOST/REPO:TAG)')
      .option('--format <format>', 'simple (a .sig attachment, what skopeo/podman read), bundle (a sigstore bundle referrer, cosign v3) or both', 'both')
      .option('--recursive', 'for an index, sign every manifest it lists too')
      .option('-q, --quiet', 'print only the signed digests')
      .option('--fulcio-url <url>', 'keyless signing: not supported')
      .option('--rekor-url <url>', 'keyless signing: not supported')
      .option('--oidc-issuer <url>', 'keyless signing: not supported'))
      .addHelpText('after', transportsHelp)
      .action(runAction('sign'));
  }],
  [['verify'], () => {
    registryOptions(program
      .command('verify')
      .description('check an image\'s signatures (simple signing and sigstore bundles) with a public key')
      .argument('<ref>', 'image reference')
      .option('--key <file>', 'public key (PEM)')
      .option('--identity <ref>', 'identity the signature must claim (a repository alone: any tag); default: matchRepoDigestOrExact against REF')
      .option('--format <format>', 'text or json', 'text'))
      .addHelpText('after', transportsHelp)
      .action(runAction('verify'));
  }],
  [['generate-key', 'generate-sigstore-key'], () => {
    program
      .command('generate-key')
      .alias('generate-sigstore-key')
      .description('make a signing key pair: PREFIX.private (encrypted) and PREFIX.pub')
      .option('--output-prefix <prefix>', 'write PREFIX.private and PREFIX.pub')
      .option('--passphrase-file <file>', 'passphrase for the private key (first line; else $COSIGN_PASSWORD or a prompt asked twice)')
      .action(runAction('generate-key'));
  }],
  [['manifest-digest'], () => {
    program
      .command('manifest-digest')
      .description('print the digest of a manifest file')
      .argument('<file>', 'manifest file')
      .action(runAction('manifest-digest'));
  }],
  [['login'], () => {
    program
      .command('login')
      .description('log in to a registry: check the credentials, then save them to the auth file')
      .argument('<host>', 'registry host, e.g. quay.io or 127.0.0.1:5000')
      .option('-u, --username <user>', 'user name')
      .option('-p, --password <pass>', 'password (prefer --password-stdin)')
      .option('--password-stdin', 'read the password from stdin')
      .option('--authfile <file>', 'auth file to write (default: $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json)')
      .option('--tls-verify', 'verify TLS certificates (default true; --tls-verify=false for plain http)')
      .addOption(new Option('--no-tls-verify').hideHelp())
      .option('--cert-dir <dir>', 'certs.d-style directory with the registry\'s CA / client certificate')
      .action(runAction('login'));
  }],
  [['logout'], () => {
    program
      .command('logout')
      .description('forget a registry\'s saved credentials')
      .argument('[host]', 'registry host')
      .option('-a, --all', 'forget every registry\'s credentials in the auth file')
      .option('--authfile <file>', 'auth file to edit')
      .action(runAction('logout'));
  }],
  [['run'], () => {
    registryOptions(program
      .command('run')
      .description('run a command in a new rootless container (podman run\'s flags)')
      .argument('<image>', 'image name in the local store (pulled from its registry when missing)')
      .argument('[command...]', 'command and arguments (default: the image\'s entrypoint and cmd)')
      .passThroughOptions()
      .option('--rm', 'remove the container when it exits')
      .option('-i, --interactive', 'keep stdin open to the container')
      .option('-t, --tty', 'give the container a pseudo-terminal')
      .option('-e, --env <K[=V]>', 'set an environment variable (repeatable; K alone takes the host\'s value)', collect, [])
      .option('--env-file <file>', 'read environment variables from a file (repeatable)', collect, [])
      .option('-v, --volume <src:dst[:ro]>', 'bind-mount a host path (repeatable)', collect, [])
      .option('--tmpfs <dst[:opts]>', 'mount a tmpfs (repeatable)', collect, [])
      .option('-w, --workdir <dir>', 'working directory inside the container')
      .option('-u, --user <user[:group]>', 'user (name or uid) and group, resolved in the image\'s /etc/passwd and /etc/group')
      .option('--entrypoint <cmd>', 'override the image\'s entrypoint (\'\' clears it)')
      .option('--network, --net <mode>', 'host (default, see README) or none')
      .option('--hostname <name>', 'container host name (default: the id\'s first 12 characters)')
      .option('--name <name>', 'container name')
      .option('--pull <policy>', 'missing (default), always or never')
      .option('--platform <os/arch[/variant]>', 'platform to pick from an index (default: this machine\'s)')
      .option('--runtime <runtime>', 'OCI runtime: runc (default), crun, or a path')
      .option('--userns <mode>', 'as root: auto maps a subordinate range (default: host, rootful)')
      .option('-q, --quiet', 'no pull progress'))
      .action(runAction('run'));
    policyOptions(program.commands[program.commands.length - 1]!, 'an image pulled');
  }],
  [['ps'], () => {
    program
      .command('ps')
      .description('list containers (running ones; -a for all)')
      .option('-a, --all', 'show all containers, also exited ones')
      .option('-q, --quiet', 'print ids only')
      .option('--no-trunc', 'do not truncate ids')
      .option('--format <format>', 'table or json', 'table')
      .action(runAction('ps'));
  }],
  [['rm'], () => {
    program
      .command('rm')
      .description('remove containers and their files')
      .argument('<containers...>', 'names or ids')
      .option('-f, --force', 'also remove running containers (they are killed); no error for missing ones')
      .action(runAction('rm'));
  }],
  [['info'], () => {
    program
      .command('info')
      .description('show what the runtime detected: OCI runtime, overlay mode, id ranges, store path')
      .option('--format <format>', 'text or json', 'text')
      .action(runAction('info'));
  }],
  [['images'], () => {
    program
      .command('images')
      .description('list images in the local store')
      .option('--format <format>', 'table or json', 'table')
      .option('--digests', 'show manifest digests')
      .action(runAction('images'));
  }],
  [['tag'], () => {
    program
      .command('tag')
      .description('give an image in the local store another name')
      .argument('<src>', 'existing image name or digest')
      .argument('<names...>', 'new names')
      .action(runAction('tag'));
  }],
  [['rmi'], () => {
    program
      .command('rmi')
      .description('remove image names from the local store (blobs go with prune)')
      .argument('<names...>', 'image names')
      .option('-f, --force', 'do not fail on names that do not exist')
      .action(runAction('rmi'));
  }],
  [['prune'], () => {
    program
      .command('prune')
      .description('delete blobs no image name reaches, and build-cache entries unused for --cache-ttl (safe while other hoist processes write)')
      .option('--build-cache', 'remove every build-cache entry (the next build runs every step)')
      .option('--cache-ttl <duration>', 'build-cache entries unused this long are removed', '168h')
      .action(runAction('prune'));
  }],
];
const chosen = commands.find(([names]) => names.includes(commandName(process.argv.slice(2)) ?? ''));
for (const [, define] of chosen ? [chosen] : commands) define();

// Global options are positional (see enablePositionalOptions above); accept them after the command name too, as before.
for (const c of program.commands) {
  c.addOption(new Option('--debug').hideHelp()).addOption(new Option('--root <dir>').hideHelp());
}

// skopeo users write Go-style booleans (--tls-verify=false), which commander cannot parse as they are.
const { rewriteGoBoolFlags } = await import('./registry-flags.ts');
let argv: string[] | undefined;
try {
  argv = rewriteGoBoolFlags(process.argv, new Set(['build', 'copy', 'inspect', 'list-tags', 'delete', 'login', 'logout', 'run', 'sign', 'verify']));
} catch (e) {
  process.exitCode = await reportError(e, process.argv.includes('--debug'));
}
if (argv) await program.parseAsync(argv);

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}


/** skopeo's flags for reaching a registry (inspect, list-tags, delete). */
function registryOptions(c: Cmd): Cmd {
  return c
    .option('--creds <user[:pass]>', 'registry credentials')
    .option('--authfile <file>', 'auth file (default: $REGISTRY_AUTH_FILE, containers auth.json, docker config.json)')
    .option('--tls-verify', 'verify TLS certificates (default true; --tls-verify=false allows plain http)')
    .addOption(new Option('--no-tls-verify').hideHelp())
    .option('--cert-dir <dir>', 'certs.d-style directory: *.crt CAs, *.cert/*.key client pair')
    .option('--retry-times <n>', 'retries of a failed request')
    .option('--retry-delay <duration>', 'delay between retries (Go duration: 2s, 500ms)');
}

/** copy's: both sides, or each side on its own (the side-specific flag wins). */
function sideRegistryOptions(c: Cmd): Cmd {
  registryOptions(c);
  for (const side of ['src', 'dest']) {
    c.option(`--${side}-creds <user[:pass]>`, `credentials for the ${side === 'src' ? 'source' : 'destination'} registry`)
      .option(`--${side}-authfile <file>`, `auth file for the ${side === 'src' ? 'source' : 'destination'}`)
      .option(`--${side}-tls-verify`, `verify the ${side === 'src' ? 'source' : 'destination'}'s TLS (--${side}-tls-verify=false for plain http)`)
      .addOption(new Option(`--no-${side}-tls-verify`).hideHelp())
      .option(`--${side}-cert-dir <dir>`, `certs.d-style directory for the ${side === 'src' ? 'source' : 'destination'}`);
  }
  return c;
}

/** skopeo's signature-policy flags (global there), and podman/buildah's name for --policy. */
function policyOptions(c: Cmd, what: string): Cmd {
  return c
    .option('--policy <file>', `containers-policy.json ${what} must satisfy (default ~/.config/containers/policy.json, else /etc/containers/policy.json; none: accept)`)
    .option('--insecure-policy', 'accept any image: do not read or enforce a signature policy')
    .addOption(new Option('--signature-policy <file>').hideHelp());
}

/** skopeo's global platform overrides, accepted on the commands that choose from an index. */
function overrideOptions(c: Cmd): Cmd {
  return c
    .option('--override-os <os>', 'use this OS instead of the running one when choosing from an index')
    .option('--override-arch <arch>', 'use this architecture instead of the running one')
    .option('--override-variant <variant>', 'use this architecture variant');
}

/** The command named on the command line: its first word that is not a global option or the value of one. */
function commandName(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--root' || a === '--policy') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}
