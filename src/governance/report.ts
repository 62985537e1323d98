import type { CompatibilityReport, ModelChange } from './compatibility'

/**
 * The report as lines for a terminal or a CI log: one line per change, breaking ones first
 * (`BREAKING   OrderCreated  payload.currency  field-made-required: currency was optional and is
 * now required`), then a summary naming what was compared.
 */
export function formatCompatibilityReport(report: CompatibilityReport, against?: string): string {
  const lines = [...report.breaking.map((change) => formatChange(change)), ...report.additions.map((change) => formatChange(change))]
  const counted = (count: number, what: string) => `${count} ${what}${count === 1 ? '' : 's'}`
  const where = against ? ` against ${against}` : ''
  lines.push(
    report.compatible
      ? `compatible${where}: no breaking change, ${counted(report.additions.length, 'compatible change')}`
      : `${counted(report.breaking.length, 'breaking change')}${where} (${counted(report.additions.length, 'compatible change')})`,
  )
  return `${lines.join('\n')}\n`
}

/** One change as one line: its kind, the event, the path, the rule and what changed. */
export function formatChange(change: ModelChange): string {
  return `${change.kind === 'breaking' ? 'BREAKING  ' : 'compatible'} ${change.event}  ${change.path}  ${change.rule}: ${change.message}`
}
