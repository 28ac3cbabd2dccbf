/**
 * `COPY --chmod` / `ADD --chmod` values, as BuildKit reads them.
 *
 * The Dockerfile frontend (dockerfile2llb dispatchCopy) first tries an octal number (`strconv.ParseUint(v, 8, 32)`,
 * at most 07777): the copy then sets exactly those bits, setuid/setgid/sticky included, on every copied file and
 * directory (tonistiigi/fsutil copyFileInfo). Anything else goes to tonistiigi/dchapes-mode, a port of BSD's
 * setmode(3): chmod(1) symbolic clauses (`u+x`, `go-w`, `a=rX`, `+x`, `g=u-w`, comma lists), parsed with umask 0
 * (fsutil's `ParseWithUmask(s, 0)`), so a clause without a who (`+x`) means all of u, g and o. This file ports that
 * parser and its Apply exactly, including its quirks (`X` is only honoured after `+`; `s`/`t` are ignored for `o`
 * alone; `=` without permissions clears the who's bits).
 */
import { HoistError } from '../errors.ts';

// Permission bits as in <sys/stat.h> (dchapes-mode's modet, a uint16).
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISTXT = 0o1000;
const S_IRWXU = 0o700;
const S_IRWXG = 0o070;
const S_IRWXO = 0o007;
const S_IRUSR = 0o400;
const S_IWUSR = 0o200;
const S_IXUSR = 0o100;
const S_IRGRP = 0o040;
const S_IWGRP = 0o020;
const S_IXGRP = 0o010;
const S_IROTH = 0o004;
const S_IWOTH = 0o002;
const S_IXOTH = 0o001;
const STANDARD_BITS = S_ISUID | S_ISGID | S_IRWXU | S_IRWXG | S_IRWXO;
const ALL = 0xffff;

const CMD2_CLEAR = 1;
const CMD2_SET = 2;
const CMD2_GBITS = 4;
const CMD2_OBITS = 8;
const CMD2_UBITS = 16;

interface BitCmd {
  cmd: string;
  cmd2: number;
  bits: number;
}

/** The mode a copy gives an entry: `apply(sourceMode, isDirectory)` → new permission bits (0o7777). */
export type ChmodFn = (mode: number, isDir: boolean) => number;

/**
 * Parses a --chmod value. Octal (`755`, `0755`, `4755`, ≤ 07777) sets those bits outright; symbolic chmod(1) syntax
 * edits the source mode. Throws HoistError BAD_CHMOD (one line) for anything else, with BuildKit's wording for
 * values that look numeric.
 */
export function parseChmod(spec: string): ChmodFn {
  const octal = octalChmod(spec);
  if (octal !== undefined) return () => octal;
  const cmds = parseSymbolic(spec);
  return (mode, isDir) => applyCmds(cmds, mode & 0o7777, isDir);
}

/**
 * The value of an octal --chmod, else undefined. BuildKit also uses it (permission bits only) for the directories
 * the copy creates; a symbolic --chmod leaves those at 0755.
 */
export function octalChmod(spec: string): number | undefined {
  if (!/^[0-7]+$/.test(spec)) {
    // ParseUint(s, 8, 32) accepts only octal digits (no sign, no 0o prefix, no underscores with an explicit base).
    return undefined;
  }
  const v = parseInt(spec, 8);
  if (v > 0o7777) throw nonOctal(spec);
  return v;
}

function nonOctal(spec: string): HoistError {
  // BuildKit's own message: "invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777"
  return new HoistError('BAD_CHMOD', `--chmod=${spec}: invalid chmod parameter; it should be an octal number between 0 and 07777 or a symbolic mode such as u+x,go-w`);
}

function syntax(spec: string): HoistError {
  return new HoistError('BAD_CHMOD', `--chmod=${spec}: invalid mode syntax; use an octal number (0755) or chmod(1) symbolic clauses such as u+x, go-w, a=rX`);
}

/** dchapes-mode ParseWithUmask(s, 0) for a symbolic mode (the numeric branch is handled by octalChmod). */
function parseSymbolic(spec: string): BitCmd[] {
  if (spec === '') throw syntax(spec);
  // A leading digit takes dchapes-mode's numeric branch: ParseInt(s, 8, 16) fails on these (a NumError), for which
  // the frontend reports its "octal" message.
  if (spec[0]! >= '0' && spec[0]! <= '9') throw nonOctal(spec);
  const mask = ALL; // ^umask with umask 0
  const cmds: BitCmd[] = [];
  let s = spec;
  let equalOpDone = false;
  for (;;) {
    let who = 0;
    for (;;) {
      const c = s[0];
      if (c === 'a') who |= STANDARD_BITS;
      else if (c === 'u') who |= S_ISUID | S_IRWXU;
      else if (c === 'g') who |= S_ISGID | S_IRWXG;
      else if (c === 'o') who |= S_IRWXO;
      else break;
      s = s.slice(1);
    }
    // getop: (the Go code indexes s[0] here and would panic on an empty rest; that is a syntax error)
    getop: for (;;) {
      if (s === '') throw syntax(spec);
      const op = s[0]!;
      s = s.slice(1);
      if (op === '=') equalOpDone = false;
      else if (op !== '+' && op !== '-') throw syntax(spec);
      who &= ~S_ISTXT;
      let perm = 0;
      let permX = 0;
      for (;; s = s.slice(1)) {
        const b = s.length > 0 ? s[0]! : '';
        if (b === 'r') perm |= S_IRUSR | S_IRGRP | S_IROTH;
        else if (b === 's') {
          // If only "other" bits, ignore set-id.
          if (who === 0 || (who & ~S_IRWXO) !== 0) perm |= S_ISUID | S_ISGID;
        } else if (b === 't') {
          // If only "other" bits, ignore sticky.
          if (who === 0 || (who & ~S_IRWXO) !== 0) {
            who |= S_ISTXT;
            perm |= S_ISTXT;
          }
        } else if (b === 'w') perm |= S_IWUSR | S_IWGRP | S_IWOTH;
        else if (b === 'X') {
          if (op === '+') permX = S_IXUSR | S_IXGRP | S_IXOTH;
        } else if (b === 'x') perm |= S_IXUSR | S_IXGRP | S_IXOTH;
        else if (b === 'u' || b === 'g' || b === 'o') {
          // Copying another class's bits: flush the partial mode first.
          if (perm !== 0) {
            addCmd(cmds, op, who, perm, mask);
            perm = 0;
          }
          if (op === '=') equalOpDone = true;
          if (permX !== 0) {
            addCmd(cmds, 'X', who, permX, mask);
            permX = 0;
          }
          addCmd(cmds, b, who, op.charCodeAt(0), mask);
        } else {
          if (perm !== 0 || (op === '=' && !equalOpDone)) {
            if (op === '=') equalOpDone = true;
            addCmd(cmds, op, who, perm, mask);
            perm = 0;
          }
          if (permX !== 0) {
            addCmd(cmds, 'X', who, permX, mask);
            permX = 0;
          }
          break;
        }
      }
      if (s === '') return compress(cmds);
      if (s[0] !== ',') continue getop;
      s = s.slice(1);
      // (Go would index an empty rest after a trailing comma)
      if (s === '') throw syntax(spec);
      break;
    }
  }
}

function addCmd(cmds: BitCmd[], opIn: string, who: number, oparg: number, mask: number): void {
  let op = opIn;
  const c: BitCmd = { cmd: '', cmd2: 0, bits: 0 };
  if (op === '=') {
    cmds.push({ cmd: '-', cmd2: 0, bits: who !== 0 ? who : STANDARD_BITS });
    op = '+';
  }
  if (op === '+' || op === '-' || op === 'X') {
    c.cmd = op;
    c.bits = (who !== 0 ? who & oparg : mask & oparg) & ALL;
  } else {
    // 'u', 'g', 'o': copy bits from that class.
    c.cmd = op;
    if (who !== 0) {
      if (who & S_IRUSR) c.cmd2 |= CMD2_UBITS;
      if (who & S_IRGRP) c.cmd2 |= CMD2_GBITS;
      if (who & S_IROTH) c.cmd2 |= CMD2_OBITS;
      c.bits = ALL;
    } else {
      c.cmd2 = CMD2_UBITS | CMD2_GBITS | CMD2_OBITS;
      c.bits = mask;
    }
    const o = String.fromCharCode(oparg);
    if (o === '+') c.cmd2 |= CMD2_SET;
    else if (o === '-') c.cmd2 |= CMD2_CLEAR;
    else if (o === '=') c.cmd2 |= CMD2_SET | CMD2_CLEAR;
  }
  cmds.push(c);
}

/** Consecutive '+', '-' and 'X' commands folded into at most one of each, as dchapes-mode's compress. */
function compress(cmds: BitCmd[]): BitCmd[] {
  const out: BitCmd[] = [];
  for (let i = 0; i < cmds.length; i++) {
    let c = cmds[i]!;
    if (!'+-X'.includes(c.cmd)) {
      out.push(c);
      continue;
    }
    let setbits = 0;
    let clrbits = 0;
    let xbits = 0;
    for (; i < cmds.length; i++) {
      c = cmds[i]!;
      if (c.cmd === '-') {
        clrbits |= c.bits;
        setbits &= ~c.bits;
        xbits &= ~c.bits;
      } else if (c.cmd === '+') {
        setbits |= c.bits;
        clrbits &= ~c.bits;
        xbits &= ~c.bits;
      } else if (c.cmd === 'X') {
        xbits |= c.bits & ~setbits;
      } else {
        i--;
        break;
      }
    }
    if (clrbits !== 0) out.push({ cmd: '-', cmd2: 0, bits: clrbits });
    if (setbits !== 0) out.push({ cmd: '+', cmd2: 0, bits: setbits });
    if (xbits !== 0) out.push({ cmd: 'X', cmd2: 0, bits: xbits });
  }
  return out;
}

/** dchapes-mode Set.Apply on the st_mode permission bits. */
function applyCmds(cmds: BitCmd[], omode: number, isDir: boolean): number {
  let newmode = omode;
  const common = (c: BitCmd, value: number): void => {
    if (c.cmd2 & CMD2_CLEAR) {
      const clrval = c.cmd2 & CMD2_SET ? S_IRWXO : value;
      if (c.cmd2 & CMD2_UBITS) newmode &= ~((clrval << 6) & c.bits);
      if (c.cmd2 & CMD2_GBITS) newmode &= ~((clrval << 3) & c.bits);
      if (c.cmd2 & CMD2_OBITS) newmode &= ~(clrval & c.bits);
    }
    if (c.cmd2 & CMD2_SET) {
      if (c.cmd2 & CMD2_UBITS) newmode |= (value << 6) & c.bits;
      if (c.cmd2 & CMD2_GBITS) newmode |= (value << 3) & c.bits;
      if (c.cmd2 & CMD2_OBITS) newmode |= value & c.bits;
    }
  };
  for (const c of cmds) {
    switch (c.cmd) {
      case 'u': common(c, (newmode & S_IRWXU) >> 6); break;
      case 'g': common(c, (newmode & S_IRWXG) >> 3); break;
      case 'o': common(c, newmode & S_IRWXO); break;
      case '+': newmode |= c.bits; break;
      case '-': newmode &= ~c.bits; break;
      case 'X':
        if ((omode & (S_IXUSR | S_IXGRP | S_IXOTH)) !== 0 || isDir) newmode |= c.bits;
        break;
    }
  }
  return newmode & 0o7777;
}
