// What a session costs on Azure Relay, estimated from its record: one listener (the device agent)
// for as long as the session was ready, plus the bytes it carried beyond the listener's share of
// the 5 GB a listener-month includes. Prices are settings (COST_*), dated; see docs/deploy.md.

export interface RelayPrices {
  listenerHourUsd: number;
  gbUsd: number;
  /** The day the prices were read (shown with every estimate). */
  pricesDate: string;
}

export interface CostEstimate {
  usd: number;
  listenerHours: number;
  gigabytes: number;
  pricesDate: string;
}

/** 5 GB included per listener-month, spread over its 730 hours. */
const INCLUDED_GB_PER_LISTENER_HOUR = 5 / 730;
const GB = 1e9;

/**
 * The estimate for a session that was ready from `readyAt` until `endedAt` (or `now` while it runs)
 * and carried `bytes` both ways. A session never ready held no listener: zero.
 */
export function estimateSessionCost(
  s: { readyAt?: string; endedAt?: string; bytesToDevice?: number; bytesFromDevice?: number },
  prices: RelayPrices,
  now: Date,
): CostEstimate {
  const from = s.readyAt ? Date.parse(s.readyAt) : NaN;
  const to = s.endedAt ? Date.parse(s.endedAt) : now.getTime();
  const listenerHours = Number.isFinite(from) ? Math.max(0, to - from) / 3_600_000 : 0;
  const gigabytes = ((s.bytesToDevice ?? 0) + (s.bytesFromDevice ?? 0)) / GB;
  const billedGb = Math.max(0, gigabytes - listenerHours * INCLUDED_GB_PER_LISTENER_HOUR);
  const usd = listenerHours * prices.listenerHourUsd + billedGb * prices.gbUsd;
  return {
    usd: round(usd, 6),
    listenerHours: round(listenerHours, 6),
    gigabytes: round(gigabytes, 6),
    pricesDate: prices.pricesDate,
  };
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
