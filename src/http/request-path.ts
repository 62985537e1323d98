/**
 * Request paths as sent. A route is served under one spelling only: the request target's path,
 * byte for byte, is the mount path followed by the route. Nothing is decoded or normalised, so a
 * host guard that compares the path it sees (`startsWith('/api/admin')`) sees what is served: no
 * percent-encoded letter or slash, `.` or `..` segment, doubled slash, other letter case or
 * trailing slash reaches a route a router might have resolved it to.
 */

/** A mount path as given (`'api'`, `'/api/'`, `'/'`), in the one form compared: `''` or `/api`. */
export function normaliseBase(base: string | undefined): string {
  if (!base || base === '/') return ''
  return `/${base.replace(/^\/+|\/+$/g, '')}`
}

/**
 * The path of a request target below `base`, exactly as sent: `/api/events/ingest?x=1` below
 * `/api` is `/events/ingest`. `undefined` when the target is not in origin form (starts with `/`)
 * or does not start with `base` and then `/`.
 */
export function pathBelow(target: string, base: string): string | undefined {
  if (target[0] !== '/') return undefined
  const end = target.indexOf('?')
  const path = end < 0 ? target : target.slice(0, end)
  if (!base) return path
  return path.startsWith(base) && path[base.length] === '/' ? path.slice(base.length) : undefined
}
