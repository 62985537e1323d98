import { defineConformanceSuite } from './conformance/suite'
import { h3Host } from './helpers/servers'

defineConformanceSuite(h3Host)
