import { describe, expect, it } from 'vitest'
import { parseOptions } from '../../bench/options'
import { targets } from '../../bench/targets'

const machineTargets = targets.filter((t) => t.machine).map((t) => t.id)
const codeTargets = targets.filter((t) => !t.machine).map((t) => t.id)

describe('bench options', () => {
  it('has machine experiments, and leaves them out by default: no page-fault timing, no machine targets', () => {
    expect(machineTargets).toEqual(['h3-hugepages'])
    const options = parseOptions([], {})
    expect(options.machine).toBe(false)
    expect(options.targets).toEqual(codeTargets)
    expect(options.quick).toBe(false)
    expect(options.reps).toBe(2)
  })

  it('runs the machine experiments with --machine or BENCH_MACHINE, with every target', () => {
    for (const options of [parseOptions(['--machine'], {}), parseOptions([], { BENCH_MACHINE: '1' }), parseOptions([], { BENCH_MACHINE: 'true' })]) {
      expect(options.machine).toBe(true)
      expect(options.targets).toEqual(targets.map((t) => t.id))
    }
    expect(parseOptions([], { BENCH_MACHINE: '0' }).machine).toBe(false)
    // The flag wins over the environment.
    expect(parseOptions(['--machine'], { BENCH_MACHINE: '0' }).machine).toBe(true)
  })

  it('combines --machine with --quick: quick sizes, machine targets in', () => {
    const options = parseOptions(['--quick', '--machine'], {})
    expect(options).toMatchObject({ quick: true, machine: true, reps: 1, duration: 1, connections: 4, settleSeconds: 0 })
    expect(options.targets).toContain('h3-hugepages')
    expect(parseOptions(['--quick'], {}).targets).not.toContain('h3-hugepages')
  })

  it('refuses a machine target named in --targets without --machine, naming the option to add', () => {
    expect(() => parseOptions(['--targets', 'node,h3-hugepages'], {})).toThrow('--targets: h3-hugepages is a machine experiment: add --machine to run it')
    expect(() => parseOptions([], { BENCH_TARGETS: 'h3-hugepages' })).toThrow(/add --machine/)
    expect(parseOptions(['--machine', '--targets', 'node,h3,h3-hugepages'], {}).targets).toEqual(['node', 'h3', 'h3-hugepages'])
    expect(parseOptions(['--targets', 'node,h3'], {}).targets).toEqual(['node', 'h3'])
  })

  it('refuses unknown targets, bad numbers and unknown flags, naming them', () => {
    expect(() => parseOptions(['--targets', 'nope'], {})).toThrow('--targets: "nope" is not one of')
    expect(() => parseOptions(['--reps', '0'], {})).toThrow('--reps: expected a number >= 1, got "0"')
    expect(() => parseOptions([], { BENCH_SETTLE: '-1' })).toThrow('--settle: expected a number >= 0, got "-1"')
    expect(() => parseOptions(['--machines'], {})).toThrow(/--machines/)
  })

  it('takes one profile per kind of goal by default, or those --profiles names', () => {
    expect(parseOptions([], {}).profiles).toEqual([
      { target: 'h3', body: 'batch' },
      { target: 'h3', body: 'single' },
      { target: 'h3-redis', body: 'single' },
      { target: 'h3-fs', body: 'batch' },
    ])
    expect(parseOptions(['--profiles', 'fastify:single,h3-hand:batch'], {}).profiles).toEqual([{ target: 'fastify', body: 'single' }, { target: 'h3-hand', body: 'batch' }])
    expect(parseOptions([], { BENCH_PROFILES: 'koa-redis:batch' }).profiles).toEqual([{ target: 'koa-redis', body: 'batch' }])
    expect(() => parseOptions(['--profiles', 'h3:huge'], {})).toThrow('--profiles: "h3:huge" is not <target>:<batch|single>')
    expect(() => parseOptions(['--profiles', 'nowhere:batch'], {})).toThrow(/--profiles: "nowhere:batch"/)
  })

  it('runs the claims phase by default, and only the phases --phases names', () => {
    expect([...parseOptions([], {}).phases]).toEqual(['ingest', 'stats', 'soak', 'profile', 'claims'])
    expect([...parseOptions(['--phases', 'claims'], {}).phases]).toEqual(['claims'])
    expect(() => parseOptions(['--phases', 'claim'], {})).toThrow('--phases: "claim" is not one of')
  })
})
