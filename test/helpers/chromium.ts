import { existsSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'

/** Debian's Chromium: playwright never downloads a browser. */
export const CHROMIUM = '/usr/bin/chromium'

/**
 * Debian's headless Chromium on a fresh temp profile (a persistent context is how playwright takes
 * a --user-data-dir); fails, never skips, when it is missing. The caller removes `profile`.
 */
export async function launchChromium(profilePrefix: string, viewport?: { width: number; height: number }): Promise<{ context: BrowserContext; profile: string }> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`)
  const profile = await mkdtemp(join(tmpdir(), profilePrefix))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // Without the background-networking flags Chromium's connections are refused by a closed network.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    ...(viewport ? { viewport } : {}),
  })
  return { context, profile }
}
