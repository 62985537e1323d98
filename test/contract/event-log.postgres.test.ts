import { defineEventLogSuite } from './event-log/suite'
import { databaseUrl, dropSchemas, requirePostgres, schemaFor, uniqueSchema } from '../helpers/postgres'

const prefix = uniqueSchema('log')

defineEventLogSuite({
  name: 'postgres',
  storage: (key) => ({ driver: 'postgres', url: databaseUrl, schema: schemaFor(prefix, key) }),
  before: () => requirePostgres(),
  after: () => dropSchemas(prefix),
})
