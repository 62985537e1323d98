import { describe, expectTypeOf, it } from 'vitest'
import { createEventIngest, type CloudEventsSourceMap, type EventIngestOptions, type IngestContext, type IngestFormat, type SinkOptions } from 'event-ingest'

describe('CloudEvents options, as types', () => {
  it('types the ingest format, the source mapping and the sink format', () => {
    expectTypeOf<IngestFormat>().toEqualTypeOf<'envelope' | 'cloudevents'>()
    expectTypeOf<IngestContext['format']>().toEqualTypeOf<IngestFormat | undefined>()
    expectTypeOf<SinkOptions['format']>().toEqualTypeOf<'envelope' | 'cloudevents' | undefined>()
    expectTypeOf<NonNullable<EventIngestOptions['cloudEvents']>['source']>().toEqualTypeOf<CloudEventsSourceMap | undefined>()
    expectTypeOf<(s: string) => 'storefront' | undefined>().toMatchTypeOf<CloudEventsSourceMap>()
    expectTypeOf<{ 'urn:web': 'storefront' }>().toMatchTypeOf<CloudEventsSourceMap>()
  })

  it('refuses a misspelt format', () => {
    // @ts-expect-error not a format
    createEventIngest({ sink: { url: 'http://127.0.0.1/sink', format: 'cloudevent' } })
    // @ts-expect-error not a format
    void createEventIngest().ingest([], { format: 'ce' })
  })
})
