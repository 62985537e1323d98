import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))

export default defineConfig({
  resolve: {
    alias: [
      { find: /^event-ingest$/, replacement: here('./src/index.ts') },
      { find: /^event-ingest\/client$/, replacement: here('./src/client/index.ts') },
      { find: /^event-ingest\/h3$/, replacement: here('./adapters/h3.ts') },
      { find: /^event-ingest\/(express|koa|fastify)$/, replacement: here('./adapters/$1.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    typecheck: { enabled: true, include: ['test/**/*.test-d.ts'] },
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
})
