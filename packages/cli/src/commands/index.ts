import type { Command } from 'commander';
import type { CliContext, OutputOptions } from '../context.js';

/**
 * Registers every built-in command. Each command lives in its own file under `commands/` and exports one
 * `register…` function; add one line here per command group.
 */
export function registerCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  // Artifact commands (key, pack, sign, verify, inspect) are registered by the artifact layer's files.
  void program;
  void ctx;
  void output;
}
