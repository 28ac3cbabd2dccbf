#!/usr/bin/env node
/**
 * hoist CLI entry. Keep this file cheap: it only declares commands and flags; each action module is
 * imported when its command runs, so `hoist inspect` never loads the build or runtime code.
 */
import module from 'node:module';

// Cache compiled modules between runs (Node >= 22.1): startup is most of a short command's time.
module.enableCompileCache?.();

const { Command, Option } = await import('commander');
import { runAction } from './main.ts';

const program = new Command();
program
  .name('hoist')
  .description('Daemonless, rootless container images: build, copy, inspect, run, sign.')
  .version('0.1.0')
  .option('--debug', 'show stack traces and debug logs on stderr')
  .option('--root <dir>', 'store location (default: $HOIST_ROOT, $XDG_DATA_HOME/hoist, ~/.local/share/hoist)')
  .showHelpAfterError('(run with --help for usage)')
  .configureHelp({ sortSubcommands: false });

const transportsHelp = `
Image references (skopeo syntax):
  docker://HOST/REPO[:TAG|@DIGEST]   a registry
  oci:DIR[:REF]                       an OCI image layout directory
  oci-archive:FILE[:REF]              a tar of an OCI image layout
  docker-archive:FILE[:REF]           a "docker save" archive
  NAME[:TAG|@DIGEST]                  the local store`;

program
  .command('build')
  .description('build an image from a Dockerfile (rootless)')
  .argument('[context]', 'build context directory, or - for a Dockerfile on stdin')
  .option('-t, --tag <name>', 'name the image (repeatable)', collect, [])
  .option('-f, --file <file>', 'Dockerfile path, or - for stdin')
  .allowUnknownOption(true)
  .action(runAction('build'));

program
  .command('copy')
  .description('copy an image between registries, layouts, archives and the local store')
  .argument('<src>', 'source image reference')
  .argument('<dst>', 'destination image reference')
  .option('-a, --all', 'copy every platform of an index (the default; kept for skopeo compatibility)')
  .option('--platform <os/arch[/variant]>', 'copy only these platforms (repeatable)', collect, [])
  .option('-f, --format <oci|v2s2>', 'manifest format to write (default: keep it, or what the destination reads)')
  .option('--preserve-digests', 'fail rather than change any manifest digest')
  .option('--digestfile <file>', 'write the digest of the copied manifest to this file')
  .option('-q, --quiet', 'print nothing on stderr')
  .addOption(new Option('--progress <mode>', 'progress on stderr').choices(['auto', 'tty', 'plain', 'quiet']).default('auto'))
  .addHelpText('after', transportsHelp)
  .action(runAction('copy'));

program
  .command('inspect')
  .description('show an image\'s metadata (skopeo inspect JSON)')
  .argument('<ref>', 'image reference')
  .option('--raw', 'print the raw manifest (or index) bytes')
  .option('--config', 'print the image config')
  .option('-n, --no-tags', 'do not list the repository\'s tags')
  .option('--platform <os/arch[/variant]>', 'platform to pick from an index (default: this machine\'s)')
  .addHelpText('after', transportsHelp)
  .action(runAction('inspect'));

program
  .command('run')
  .description('run a command in a new rootless container')
  .argument('<image>', 'image reference')
  .argument('[command...]', 'command and arguments')
  .allowUnknownOption(true)
  .action(runAction('run'));

program
  .command('images')
  .description('list images in the local store')
  .option('--format <format>', 'table or json', 'table')
  .option('--digests', 'show manifest digests')
  .action(runAction('images'));

program
  .command('tag')
  .description('give an image in the local store another name')
  .argument('<src>', 'existing image name or digest')
  .argument('<names...>', 'new names')
  .action(runAction('tag'));

program
  .command('rmi')
  .description('remove image names from the local store (blobs go with prune)')
  .argument('<names...>', 'image names')
  .option('-f, --force', 'do not fail on names that do not exist')
  .action(runAction('rmi'));

program
  .command('prune')
  .description('delete blobs no image name reaches (safe while other hoist processes write)')
  .action(runAction('prune'));

await program.parseAsync(process.argv);

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
