import { defineConformanceSuite } from './conformance/suite'
import { h3Host, h3MountHost } from './helpers/servers'

defineConformanceSuite(h3Host)
defineConformanceSuite(h3MountHost)
