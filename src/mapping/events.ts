/**
 * Mapping one event of a record: the event as compiled, the items it iterates, and the function that makes the
 * ledger line of one item (or of the record), copied per event (`specialize.ts`).
 */
import type { EntryKind, LedgerLine, PayerKind } from '../domain/ledger.ts';
import { formatMoney, type Money } from '../domain/money.ts';
import type { Context, EventSpec, FieldFn, MappingIssue } from './compile.ts';
import { specialize } from './specialize.ts';

/** An event, compiled. */
export interface CompiledEvent {
  spec: EventSpec;
  path: string;
  forEach?: ForEach;
  kind: FieldFn;
  payer: FieldFn;
  amount?: FieldFn;
  serviceDate?: FieldFn;
  serviceCode?: FieldFn;
  description?: FieldFn;
  /** This event's own copy of {@link eventMapper}. */
  map: MapEvent;
}
export type MapEvent = (event: CompiledEvent, ctx: Context, values: Record<string, unknown>, issues: MappingIssue[], item: number | undefined) => LedgerLine | undefined;

/** The items an event iterates: a context for each (with its `item` or `segment`, and `ordinal`). */
export type ForEach = (ctx: Context) => Context[];

/** A fresh copy of {@link eventMapper}, for one event. */
export function compileEventMapper(): MapEvent {
  return specialize(eventMapper)({ amountIssue, formatMoney });
}

/**
 * The line one event makes of one item (or of the record), or undefined when it makes none (its issues are recorded).
 * A factory, copied per event by `specialize` so that each event's field calls are its own; it sees no module scope.
 */
const eventMapper =
  (k: EventKit): MapEvent =>
  (event, ctx, values, issues, item) => {
    const before = issues.length;
    const kind = event.kind(ctx, issues, item) as EntryKind | 'ignore' | undefined;
    if (kind === 'ignore') return undefined;
    const payer = event.payer(ctx, issues, item) as PayerKind | undefined;
    let amount = event.amount?.(ctx, issues, item) as Money | undefined;
    const serviceDate = (event.serviceDate?.(ctx, issues, item) ?? values.serviceDate) as string | undefined;
    const serviceCode = event.serviceCode?.(ctx, issues, item) as string | undefined;
    const description = event.description?.(ctx, issues, item) as string | undefined;
    if (issues.length > before || !kind || !payer || !amount) return undefined;
    if (amount.amount === 0) {
      const zero = event.spec.zeroAmounts ?? 'skip';
      if (zero === 'skip') return undefined;
      if (zero === 'quarantine') return k.amountIssue(issues, event.path, item, 'zero-amount', 'the amount is zero, which this mapping does not accept (zeroAmounts)');
    }
    if (event.spec.negativeAmounts === 'balance-signed' && kind !== 'charge') amount = { amount: 0 - amount.amount, currency: amount.currency };
    if (amount.amount < 0 && event.spec.negativeAmounts !== 'balance-signed') {
      const negative = event.spec.negativeAmounts ?? 'quarantine';
      if (negative === 'quarantine') return k.amountIssue(issues, event.path, item, 'negative-amount', `the ${kind} amount is negative (${k.formatMoney(amount)}), which this mapping does not accept (negativeAmounts)`);
      if (negative === 'absolute') amount = { amount: 0 - amount.amount, currency: amount.currency };
    }
    if (!serviceDate) {
      // A record-level serviceDate that failed has been reported already.
      if (issues.some((i) => i.path === '/fields/serviceDate')) return undefined;
      issues.push({ path: `${event.path}/serviceDate`, code: 'required', message: 'has no value, and the record has no serviceDate field', ...(item === undefined ? {} : { item }) });
      return undefined;
    }
    const lineKey = item === undefined ? event.spec.name : `${event.spec.name}/${item}`;
    return { kind, amount, serviceDate, payer, serviceCode: serviceCode ?? null, description: description ?? null, lineKey };
  };

/** What an event mapper receives (see {@link eventMapper}). */
interface EventKit {
  amountIssue: typeof amountIssue;
  formatMoney: typeof formatMoney;
}

/** Records an issue of an event's amount; returns undefined (no line). */
function amountIssue(issues: MappingIssue[], eventPath: string, item: number | undefined, code: string, message: string): undefined {
  issues.push({ path: `${eventPath}/amount`, code, message, ...(item === undefined ? {} : { item }) });
  return undefined;
}
