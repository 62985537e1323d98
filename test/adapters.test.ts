import { defineConformanceSuite } from './conformance/suite'
import { expressHost, fastifyHost, koaHost } from './helpers/hosts'

for (const host of [expressHost(false), expressHost(true), koaHost(false), koaHost(true), fastifyHost(false), fastifyHost(true)]) {
  defineConformanceSuite(host)
}
