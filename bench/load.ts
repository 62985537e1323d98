import { Agent, request } from 'node:http'
import autocannon from 'autocannon'
import type { BodyFactory } from './events'
import { percentile } from './summary'

/** One load run against one server. */
export interface DriveResult {
  /** Responses with a 2xx status. */
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  /** Wall time of the run, in seconds (autocannon's own measure). */
  seconds: number
  /** 2xx responses per second. */
  rps: number
  /** Latency of 2xx responses in ms (exact, from every response). */
  p50: number
  p99: number
  mean: number
}

/** Options of {@link drive}. */
export interface DriveOptions {
  url: string
  path: string
  /** Every request takes a fresh body from here (unique ids). */
  bodies: BodyFactory
  seconds: number
  connections: number
  /** Requests per second over all connections; unpaced when unset. */
  overallRate?: number
}

/** Grows as needed; keeps every latency of a run for exact percentiles. */
class Samples {
  values = new Float64Array(1 << 16)
  length = 0
  push(value: number) {
    if (this.length === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2)
      bigger.set(this.values)
      this.values = bigger
    }
    this.values[this.length++] = value
  }
  sorted(): Float64Array {
    return this.values.slice(0, this.length).sort()
  }
}

/**
 * Drives `POST path` with autocannon (as a library, in this process) for `seconds` with
 * `connections` keep-alive connections; each request's body comes from `bodies` via autocannon's
 * `setupRequest` hook, so no id repeats.
 */
export function drive(options: DriveOptions): Promise<DriveResult> {
  const latencies = new Samples()
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        pipelining: 1,
        duration: options.seconds,
        // The run ends on the first sample tick after `duration`: a short tick keeps the overshoot short.
        sampleInt: 100,
        timeout: 30,
        ...(options.overallRate ? { overallRate: options.overallRate } : {}),
        requests: [
          {
            method: 'POST',
            path: options.path,
            headers: { 'content-type': 'application/json' },
            setupRequest: (req) => ({ ...req, body: options.bodies.next() }),
          },
        ],
      } as autocannon.Options,
      (error, result) => {
        if (error) {
          reject(error)
          return
        }
        const sorted = latencies.sorted()
        let sum = 0
        for (const value of sorted) sum += value
        const ok = result['2xx']
        resolve({
          ok,
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          seconds: result.duration,
          rps: ok / result.duration,
          p50: percentile(sorted, 0.5),
          p99: percentile(sorted, 0.99),
          mean: sorted.length ? sum / sorted.length : Number.NaN,
        })
      },
    )
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
    })
  })
}

/** Latency of sequential GETs on one keep-alive connection. */
export interface GetTiming {
  /** ms */
  p50: number
  p99: number
  max: number
  /** Response size in bytes (of the last response). */
  bytes: number
}

/**
 * Times `count` sequential `GET url` requests (after `warmup` untimed ones) on one keep-alive
 * connection, each from request start to the last body byte; fails on any non-200.
 */
export async function timeGets(url: string, headers: Record<string, string>, count: number, warmup = Math.min(20, count)): Promise<GetTiming> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const times = new Samples()
  let bytes = 0
  try {
    for (let i = 0; i < warmup + count; i++) {
      const started = process.hrtime.bigint()
      const body = await new Promise<Buffer>((resolve, reject) => {
        const req = request(url, { agent, headers }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`GET ${url}: ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 300)}`))
            else resolve(Buffer.concat(chunks))
          })
          res.on('error', reject)
        })
        req.on('error', reject)
        req.end()
      })
      if (i >= warmup) times.push(Number(process.hrtime.bigint() - started) / 1e6)
      bytes = body.length
    }
  } finally {
    agent.destroy()
  }
  const sorted = times.sorted()
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? Number.NaN, bytes }
}
