import { connect, createServer, type AddressInfo, type Socket } from 'node:net'

/**
 * A loopback TCP proxy in front of a real server (Redis, NATS) that can lose one answer: after
 * `cutReplyTo(marker)`, the first request carrying `marker` reaches the server, and the server's
 * next reply (one that `counts` accepts) is swallowed and the client's connection cut, so the
 * client never hears that the server did the work.
 */
export async function startTcpProxy(targetPort: number) {
  const sockets = new Set<Socket>()
  const state: { marker?: string; counts?: (reply: Buffer) => boolean; armed: boolean; cuts: number } = { armed: false, cuts: 0 }
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    sockets.add(client).add(upstream)
    let cutNext = false
    client.on('data', (chunk: Buffer) => {
      if (state.marker && !state.armed && chunk.includes(state.marker)) {
        state.armed = true
        cutNext = true
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (cutNext && (state.counts?.(chunk) ?? true)) {
        cutNext = false
        state.marker = undefined
        state.cuts++
        client.destroy()
        upstream.destroy()
        return
      }
      client.write(chunk)
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('close', end).on('error', end)
    upstream.on('close', end).on('error', end)
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    get cuts() {
      return state.cuts
    },
    cutReplyTo(marker: string, counts?: (reply: Buffer) => boolean) {
      Object.assign(state, { marker, counts, armed: false })
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
