import type { Command } from 'commander';
import type { CliContext, OutputOptions } from '../context.js';
import { registerArtifactCommands } from './artifact.js';
import { registerArtifactsCommands } from './artifacts.js';
import { registerNodeClientCommands } from './node-client.js';
import { registerReceiptCommands } from './receipt.js';
import { registerRunCommands } from './run.js';
import { registerStateCommands } from './state.js';
import { registerTelemetryCommands } from './telemetry.js';

/**
 * Registers every built-in command. Each command lives in its own file under `commands/` and exports one
 * `register…` function; add one line here per command group.
 */
export function registerCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  registerArtifactCommands(program, ctx, output);
  registerArtifactsCommands(program, ctx, output);
  registerRunCommands(program, ctx, output);
  registerStateCommands(program, ctx, output);
  registerTelemetryCommands(program, ctx, output);
  registerNodeClientCommands(program, ctx, output);
  registerReceiptCommands(program, ctx, output);
}
