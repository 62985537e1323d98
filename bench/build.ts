import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { build } from 'unbuild'

/**
 * Builds the package for a bench run, as `npm run build` does (unbuild, build.config.ts), into its
 * own folder, without type declarations and with source maps (profile positions map back to .ts
 * lines). The servers load this build, the code a host runs, not the TypeScript sources through a
 * loader. The folder is under node_modules: the build's imports resolve from there, and tsx, which
 * runs the bench, leaves code there as it is (source maps included). Returns the folder.
 */
export async function buildForBench(root: string, runId: string): Promise<string> {
  const outDir = join(root, 'node_modules', '.cache', 'event-ingest-bench', runId)
  await build(root, false, {
    sourcemap: true,
    hooks: {
      'build:prepare'(context) {
        context.options.outDir = outDir
        context.options.declaration = false
        // The exports map names dist/, which need not exist (a fresh clone): unbuild would call
        // that a warning and fail on it.
        context.options.failOnWarn = false
      },
    },
  })
  return outDir
}

/** Removes a folder made by {@link buildForBench}. */
export function removeBenchBuild(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
}
