import { request as httpRequest } from 'node:http'
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeEvent } from '../../helpers/fixtures'
import { getJson, rawRequest, type RawResponse } from '../../helpers/http'
import { startHost, type HostFactory, type RunningHost } from '../../helpers/servers'

const ADMIN = 'admin-secret-token'
const json = { 'content-type': 'application/json' }

/** A JSON body of exactly `size` bytes, of events padded with random text (which compresses about 1.3 times, so the ratio limit stays out of the way). */
function bodyOfSize(size: number, tag: string): string {
  const events = Array.from({ length: 4 }, (_, i) => makeEvent({ id: `${tag}-${size}-${i}-${Math.random()}`, payload: { pad: '' } }))
  const overhead = Buffer.byteLength(JSON.stringify(events))
  const share = Math.floor((size - overhead) / 4)
  const pad = (n: number) => randomBytes(n).toString('base64').slice(0, n)
  events.forEach((event, i) => (event.payload.pad = pad(i === 3 ? size - overhead - share * 3 : share)))
  const body = JSON.stringify(events)
  expect(Buffer.byteLength(body)).toBe(size)
  return body
}

let madeBomb: Buffer | undefined
/** 50 MB of spaces inside an array: about 50 KB gzipped (a ratio of about 1000), made once. */
function gzipBomb(): Buffer {
  madeBomb ??= gzipSync(Buffer.concat([Buffer.from('['), Buffer.alloc(50 * 1024 * 1024, 0x20), Buffer.from(']')]))
  return madeBomb
}

const encoders: Record<string, (body: Buffer) => Buffer> = {
  gzip: (body) => gzipSync(body),
  deflate: (body) => deflateSync(body),
  br: (body) => brotliCompressSync(body),
}

/**
 * Sends the first `parts` of a body and waits for the answer without ending the request: a
 * server that answers has refused the body without reading (or inflating) the rest of it.
 */
function answerBeforeTheEnd(url: string, headers: Record<string, string>, parts: Buffer[]): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: text ? JSON.parse(text) : undefined })
        req.destroy()
      })
    })
    req.on('error', reject)
    for (const part of parts) req.write(part)
  })
}

/**
 * How bodies are decoded, on one host over real loopback HTTP: UTF-8 only, content encodings with
 * limits on the encoded and decoded sizes and the expansion ratio, an empty body behind a host
 * parser, and host parser refusals counted like the core's own.
 */
export function defineBodyDecodingSuite(factory: HostFactory) {
  // A host parser in front decodes the body itself: its own answers stand where it refuses first.
  const hostParser = factory.hostReadsBody === true
  // A host parser that does not inflate an encoding refuses it (415, in the contract's format).
  const decodes = (name: string) => !hostParser || !factory.hostDecodes || factory.hostDecodes.includes(name)

  describe(`${factory.name}: body decoding`, () => {
    let host: RunningHost
    beforeAll(async () => {
      host = await startHost(factory, { adminToken: ADMIN, limits: { maxBodyBytes: 4096, maxEvents: 5, maxEventBytes: 2048 } }, '/api')
    })
    afterAll(() => host.close())

    const post = (body: string | Buffer, headers: Record<string, string> = {}) =>
      rawRequest(`${host.url}/events/ingest`, { headers: { ...json, ...headers }, body })
    const storedIds = async () => (await getJson(`${host.url}/admin/events?limit=1000`, { authorization: `Bearer ${ADMIN}` })).body.events.map((e: any) => e.id)

    // The bytes reach event-ingest only without a host parser: body-parser and @koa/bodyparser
    // replace invalid UTF-8 with U+FFFD themselves (the README says to mount event-ingest first).
    if (!hostParser) {
      it('refuses a body that is not valid UTF-8 with 400 invalid_json naming the byte offset', async () => {
        // Ids that differ only in their last byte: rewritten to U+FFFD, the second would be a duplicate.
        const prefix = Buffer.from(`[{"id":"utf8-${Math.random()}`)
        const rest = Buffer.from(JSON.stringify([makeEvent({ id: '' })]).slice('[{"id":"'.length))
        const withByte = (byte: number) => Buffer.concat([prefix, Buffer.from([byte]), rest])
        for (const byte of [0xff, 0xfe]) {
          const res = await post(withByte(byte))
          expect(res.status).toBe(400)
          expect(res.json).toMatchObject({ code: 'invalid_json', message: `body is not valid UTF-8 at byte ${prefix.length}`, offset: prefix.length })
        }
        // Overlong "/" (0xC0 0xAF), a surrogate (0xED 0xA0 0x80) and a sequence cut short.
        for (const bytes of [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
          const res = await post(Buffer.concat([prefix, Buffer.from(bytes), rest]))
          expect(res.status, bytes.join(' ')).toBe(400)
          expect(res.json.message).toBe(`body is not valid UTF-8 at byte ${prefix.length}`)
        }
        expect((await storedIds()).filter((id: string) => id.startsWith('utf8-'))).toEqual([])
      })

      it('refuses a second byte order mark (only one leading one is dropped)', async () => {
        const res = await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify([makeEvent()]))]))
        expect(res.status).toBe(400)
        expect(res.json.code).toBe('invalid_json')
      })

      it('takes x-gzip as gzip and encoding names in any case', async () => {
        for (const name of ['x-gzip', 'GZIP', 'identity, gzip']) {
          const id = `xgzip-${name}-${Math.random()}`
          const res = await post(gzipSync(JSON.stringify([makeEvent({ id })])), { 'content-encoding': name })
          expect(res.status, name).toBe(200)
          expect(res.json.accepted).toBe(1)
        }
      })

      it('refuses bytes that are not valid data of their encoding with 400 invalid_json naming it', async () => {
        const bad = await post(Buffer.from('[not gzip at all]'), { 'content-encoding': 'gzip' })
        expect(bad.status).toBe(400)
        expect(bad.json).toMatchObject({ code: 'invalid_json', message: expect.stringContaining('not valid gzip data') })
        const cut = gzipSync(JSON.stringify([makeEvent()]))
        const truncated = await post(cut.subarray(0, cut.length - 12), { 'content-encoding': 'gzip' })
        expect(truncated.status).toBe(400)
        expect(truncated.json.message).toMatch(/not valid gzip data.*unexpected end of file/)
      })

      it('refuses an encoded body over maxBodyBytes as sent, from its Content-Length, before reading it', async () => {
        const res = await rawRequest(`${host.url}/events/ingest`, { headers: { ...json, 'content-encoding': 'gzip', 'content-length': '4097' }, chunks: [gzipSync('[')] })
        expect(res.status).toBe(413)
        expect(res.json).toMatchObject({ code: 'body_too_large', limit: 'maxBodyBytes', value: 4096 })
      })
    }

    it('accepts valid multi-byte UTF-8 and a leading byte order mark, keeping ids byte for byte', async () => {
      const id = `utf8-ok-é-😀-${Math.random()}`
      const res = await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify([makeEvent({ id })]))]))
      expect(res.status).toBe(200)
      expect(res.json.accepted).toBe(1)
      expect(await storedIds()).toContain(id)
    })

    it('accepts a batch sent with Content-Encoding gzip, deflate, br or identity', async () => {
      for (const name of ['gzip', 'deflate', 'br', 'identity']) {
        const id = `enc-${name}-${Math.random()}`
        const body = Buffer.from(JSON.stringify([makeEvent({ id })]))
        const res = await post(name === 'identity' ? body : encoders[name]!(body), { 'content-encoding': name })
        if (!decodes(name)) {
          expect(res.status, `${name}: ${res.text}`).toBe(415)
          expect(res.json).toMatchObject({ code: 'unsupported_encoding', contentEncoding: name })
          continue
        }
        expect(res.status, `${name}: ${res.text}`).toBe(200)
        expect(res.json).toEqual({ accepted: 1, duplicates: 0, rejected: [] })
        expect(await storedIds()).toContain(id)
      }
    })

    it('holds a decoded body to maxBodyBytes: exactly the limit passes, one byte more is refused with 413', async () => {
      for (const name of ['gzip', 'deflate', 'br'].filter(decodes)) {
        const ok = await post(encoders[name]!(Buffer.from(bodyOfSize(4096, name))), { 'content-encoding': name })
        expect(ok.status, `${name}: ${ok.text}`).toBe(200)
        expect(ok.json.accepted).toBe(4)
        const over = await post(encoders[name]!(Buffer.from(bodyOfSize(4097, name))), { 'content-encoding': name })
        expect(over.status, name).toBe(413)
        expect(over.json).toMatchObject({ code: 'body_too_large', limit: 'maxBodyBytes', value: 4096 })
      }
    })

    it('refuses an encoding it does not support, or a stacked list, with 415 naming it', async () => {
      for (const name of ['snappy', 'gzip, br']) {
        const res = await post(gzipSync('[]'), { 'content-encoding': name })
        expect(res.status, name).toBe(415)
        expect(res.json.code).toBe('unsupported_encoding')
        expect(res.json).toMatchObject({ contentEncoding: name, message: expect.stringContaining(`content-encoding ${JSON.stringify(name)}`) })
      }
    })

    it('answers a body that is empty by its framing with 400 invalid_json "body is empty"', async () => {
      const res = await rawRequest(`${host.url}/events/ingest`, { headers: { ...json, 'content-length': '0' }, body: '' })
      expect(res.status).toBe(400)
      expect(res.json).toMatchObject({ code: 'invalid_json', message: 'body is empty; send a JSON array of events' })
    })

  })

  // Whoever reads the body (event-ingest, or a host parser in front of it), its refusals keep the
  // contract: the token first, then the refusal in the contract's format, counted in stats.
  describe(`${factory.name}: body refusals keep the contract, whoever reads the body`, () => {
    let host: RunningHost
    beforeAll(async () => {
      // A drain budget over the largest body sent: a refused upload is read to its end, so the
      // client always finishes sending and reads its answer (body-parser reads it all anyway).
      host = await startHost(factory, { token: 'tok', adminToken: ADMIN, limits: { maxBodyBytes: 4096 }, refusalDrain: { maxBytes: 64 * 1024 * 1024, maxMs: 60_000 } }, '/api')
    })
    afterAll(() => host.close())

    const send = (headers: Record<string, string>, body: string | Buffer, token = 'tok') =>
      rawRequest(`${host.url}/events/ingest`, { headers: { ...json, 'x-event-token': token, ...headers }, body })
    const refused = async () => (await getJson(`${host.url}/admin/events/stats`, { authorization: `Bearer ${ADMIN}` })).body.failures.refusedByCode as Record<string, number>
    // A body one byte over the limit that stops it first: the host parser's, or maxBodyBytes.
    const overLimit = hostParser ? factory.hostParserLimit! : 4096
    const tooLarge = (token = 'tok') => send({}, Buffer.alloc(overLimit + 1, 0x20), token)

    it('answers a wrong token with 401 before any refusal of the body', async () => {
      const before = await refused()
      const answers = [
        await send({}, '[{"id":', 'wrong'),
        await send({ 'content-encoding': 'gzip' }, Buffer.from('[not gzip at all]'), 'wrong'),
        await send({ 'content-encoding': 'compress' }, '[]', 'wrong'),
        await tooLarge('wrong'),
      ]
      for (const res of answers) {
        expect(res.status, res.text).toBe(401)
        expect(res.json.code).toBe('token_invalid')
      }
      expect((await refused()).token_invalid).toBe((before.token_invalid ?? 0) + 4)
    })

    it('refuses malformed JSON with 400 invalid_json, counted', async () => {
      const before = await refused()
      const res = await send({}, '[{"id":')
      expect(res.status, res.text).toBe(400)
      expect(res.json).toMatchObject({ code: 'invalid_json', message: expect.stringMatching(/^body is not valid JSON/) })
      expect((await refused()).invalid_json).toBe((before.invalid_json ?? 0) + 1)
    })

    it('refuses bytes that do not inflate with 400 invalid_json, counted', async () => {
      const before = await refused()
      const res = await send({ 'content-encoding': 'gzip' }, Buffer.from('[not gzip at all]'))
      expect(res.status, res.text).toBe(400)
      expect(res.json).toMatchObject({ code: 'invalid_json', message: expect.stringMatching(/^body is not valid /) })
      expect((await refused()).invalid_json).toBe((before.invalid_json ?? 0) + 1)
    })

    it('refuses an unknown content encoding with 415 unsupported_encoding naming it, counted', async () => {
      const before = await refused()
      const res = await send({ 'content-encoding': 'compress' }, '[]')
      expect(res.status, res.text).toBe(415)
      expect(res.json).toMatchObject({ code: 'unsupported_encoding', contentEncoding: 'compress', message: expect.stringContaining('content-encoding "compress"') })
      expect((await refused()).unsupported_encoding).toBe((before.unsupported_encoding ?? 0) + 1)
    })

    it('refuses a body over the limit that stops it first with 413 naming that limit, counted', async () => {
      const before = await refused()
      const res = await tooLarge()
      expect(res.status, res.text).toBe(413)
      expect(res.json).toMatchObject({ code: 'body_too_large', limit: hostParser ? 'hostParserLimit' : 'maxBodyBytes', value: overLimit })
      expect(res.json.message).toContain(String(overLimit))
      expect((await refused()).body_too_large).toBe((before.body_too_large ?? 0) + 1)
    })

    // A body the host parser read to its end leaves the connection clean for the next request.
    if (hostParser) {
      it('keeps the connection of a refused request whose body the host parser read whole', async () => {
        const wrongToken = await send({}, JSON.stringify([makeEvent()]), 'wrong')
        expect(wrongToken.status).toBe(401)
        expect(wrongToken.headers.connection).not.toBe('close')
        const malformed = await send({}, '[{"id":')
        expect(malformed.status).toBe(400)
        expect(malformed.headers.connection).not.toBe('close')
      })
    }
  })

  describe(`${factory.name}: decompression bombs`, () => {
    let host: RunningHost
    beforeAll(async () => {
      // A body limit far above the bomb's first megabytes, so that the ratio (its default) is what stops it.
      host = await startHost(factory, { limits: { maxBodyBytes: 64 * 1024 * 1024 } }, '/api')
    })
    afterAll(() => host.close())

    const bomb = gzipBomb()

    if (!hostParser) {
      it('refuses a decompression bomb with 413 naming maxInflateRatio, before the body has ended', async () => {
        const res = await answerBeforeTheEnd(`${host.url}/events/ingest`, { ...json, 'content-encoding': 'gzip', 'content-length': String(bomb.length) }, [bomb.subarray(0, 16 * 1024)])
        expect(res.status).toBe(413)
        expect(res.json).toMatchObject({ code: 'body_too_large', limit: 'maxInflateRatio', value: 200 })
        expect(res.json.message).toMatch(/decoding to more than 200 times its \d+ encoded bytes/)
      })
    } else {
      it('refuses a decompression bomb with 413 (the host parser inflates it, to its own limit)', async () => {
        const res = await rawRequest(`${host.url}/events/ingest`, { headers: { ...json, 'content-encoding': 'gzip' }, body: bomb })
        expect(res.status).toBe(413)
      })
    }
  })
}
