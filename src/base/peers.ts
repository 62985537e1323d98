import { createRequire } from 'node:module'

/**
 * Throws at creation, naming the package, when an optional peer that a setting needs is not
 * installed, so a missing package stops the host at start instead of failing every attempt later.
 */
export function checkPeer(pkg: string, what: string): void {
  try {
    createRequire(import.meta.url).resolve(pkg)
  } catch (error) {
    throw new Error(`[event-ingest] ${what} needs the "${pkg}" package, which is not installed: npm install ${pkg}`, { cause: error })
  }
}
