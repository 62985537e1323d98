import { existsSync } from 'node:fs'
import { defineBuildConfig } from 'unbuild'

// Adapter entries are built once their source exists, so the exports map is ready for them.
const optional = ['adapters/express', 'adapters/koa', 'adapters/fastify', 'adapters/h3']
  .filter((entry) => existsSync(new URL(`${entry}.ts`, import.meta.url)))

export default defineBuildConfig({
  entries: [
    'src/index',
    // The `event-ingest` command (package.json `bin`).
    { input: 'src/cli/main', name: 'cli' },
    // The fs driver alone, for hosts that mount it in their own unstorage (`event-ingest/fs`).
    { input: 'src/storage/fs-driver', name: 'fs' },
    // The producers' client (`event-ingest/client`): no runtime import of the rest.
    { input: 'src/client/index', name: 'client' },
    ...optional.map((input) => ({ input, name: input.replace(/^src\//, '') })),
  ],
  declaration: 'node16',
  clean: true,
  // Warnings fail the build once every entry of the exports map exists.
  failOnWarn: optional.length === 4,
  rollup: {
    emitCJS: false,
  },
  externals: ['h3', 'express', 'koa', 'fastify', 'ioredis', 'unstorage', 'zod', 'ofetch', 'tsx', 'tsx/esm/api', 'rate-limiter-flexible', 'nats', 'prom-client'],
})
