import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { projectRoot } from '../helpers/process'

/** The budget the README states for `event-ingest/client`, minified and gzipped. */
const BUDGET_GZIP_BYTES = 6 * 1024

async function bundle(contents: string) {
  const result = await build({
    stdin: { contents, resolveDir: projectRoot, loader: 'ts' },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    alias: { 'event-ingest/client': './src/client/index.ts' },
  })
  const code = result.outputFiles[0]!.contents
  return { text: new TextDecoder().decode(code), gzip: gzipSync(code, { level: 9 }).length }
}

describe('event-ingest/client size', () => {
  it(`stays under ${BUDGET_GZIP_BYTES} bytes minified and gzipped, for the browser, with none of the server's code`, async () => {
    const { text, gzip } = await bundle("export * from 'event-ingest/client'")
    expect(gzip).toBeLessThan(BUDGET_GZIP_BYTES)
    expect(gzip).toBeGreaterThan(1000)
    // No zod, no storage, no HTTP handler made it in.
    for (const marker of ['ZodError', 'unstorage', 'toJSONSchema', 'storage_unavailable']) expect(text).not.toContain(marker)
    expect(text).toContain('x-event-sent-at')
  })

  it('is tree-shakeable: importing only the error class leaves the client out', async () => {
    const { text } = await bundle("import { EventClientError } from 'event-ingest/client'; console.log(EventClientError)")
    expect(text).not.toContain('x-event-sent-at')
  })
})
