import type { CliContext } from './context.js';

/** Work on at least this many bytes reports progress (smaller work is over before a person would read it). */
export const PROGRESS_MIN_BYTES = 4 * 1024 * 1024;

/** A progress line on stderr: redrawn in place on a terminal, nothing at all otherwise. */
export interface Progress {
  /** Shows `text` (prefixed by the command), replacing the previous text. */
  update(text: string): void;
  /** Clears the line, if one was drawn. */
  done(): void;
}

/**
 * A progress display for `command` that draws only when stderr is a terminal (`\r` + erase line, ANSI EL), so
 * logs and pipes never receive it and stdout (digests, task output) stays clean.
 */
export function ttyProgress(ctx: CliContext, command: string): Progress {
  const tty = (ctx.stderr as { isTTY?: boolean }).isTTY === true && ctx.env.TERM !== 'dumb';
  let drawn = false;
  return {
    update(text) {
      if (!tty) return;
      ctx.stderr.write(`\r\u001b[2K${command}: ${text}…`);
      drawn = true;
    },
    done() {
      if (tty && drawn) ctx.stderr.write('\r\u001b[2K');
      drawn = false;
    },
  };
}
