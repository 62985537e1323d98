import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { closeServer, listen } from './servers'

export interface SinkRequest {
  at: number
  key: string | undefined
  headers: IncomingMessage['headers']
  events: { id: string; [field: string]: unknown }[]
}

/** Decides what the sink does with one request: answer a status, hang, or store then drop the socket. */
export type SinkBehaviour = (request: SinkRequest, attempt: number) => { status: number; headers?: Record<string, string>; body?: string } | 'hang' | 'store-and-destroy'

/** A real sink server on loopback that records every request and stored batch. */
export async function startSink(behaviour: SinkBehaviour = () => ({ status: 200 })) {
  const requests: SinkRequest[] = []
  const stored: SinkRequest[] = []
  const hanging: ServerResponse[] = []
  let current = behaviour
  let active = 0
  let maxActive = 0
  const server = createServer(async (req, res) => {
    active++
    maxActive = Math.max(maxActive, active)
    try {
      let text = ''
      for await (const chunk of req) text += chunk
      const request: SinkRequest = { at: Date.now(), key: req.headers['idempotency-key'] as string | undefined, headers: req.headers, events: JSON.parse(text) }
      requests.push(request)
      const outcome = current(request, requests.length)
      if (outcome === 'hang') {
        hanging.push(res)
        res.on('close', () => active--)
        return
      }
      if (outcome === 'store-and-destroy') {
        stored.push(request)
        req.socket.destroy()
        active--
        return
      }
      if (outcome.status >= 200 && outcome.status < 300) stored.push(request)
      res.writeHead(outcome.status, { 'content-type': 'application/json', ...outcome.headers })
      res.end(outcome.body ?? '{}')
    } catch (error) {
      res.writeHead(500)
      res.end(String(error))
    }
    active--
  })
  const url = await listen(server)
  return {
    url: `${url}/sink`,
    requests,
    stored,
    get maxActive() {
      return maxActive
    },
    set(next: SinkBehaviour) {
      current = next
    },
    /** Ids stored, in arrival order. */
    storedIds: () => stored.flatMap((r) => r.events.map((e) => e.id)),
    close: () => {
      for (const res of hanging) res.destroy()
      return closeServer(server)
    },
  }
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
