#!/usr/bin/env node
import { runCli } from './run'

// The `event-ingest` command: see `event-ingest --help`.
process.exitCode = await runCli(process.argv.slice(2), {
  cwd: process.cwd(),
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
})
