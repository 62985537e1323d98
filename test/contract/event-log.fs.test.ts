import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defineEventLogSuite } from './event-log/suite'

const root = mkdtempSync(join(tmpdir(), 'ei-log-fs-'))

defineEventLogSuite({
  name: 'fs',
  storage: (key) => `fs:${join(root, key)}`,
  async after() {
    rmSync(root, { recursive: true, force: true })
  },
})
