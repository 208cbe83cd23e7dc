// How numbers, sizes, durations and times read in the console. Counts keep every digit
// (operators compare offsets); axis labels are compact.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const compactNumber = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });

const DASH = '—';

export function int(value) {
  return value === null || value === undefined ? DASH : integer.format(value);
}

export function compact(value) {
  if (value === null || value === undefined) return DASH;
  return Math.abs(value) < 10_000 ? oneDecimal.format(value) : compactNumber.format(value);
}

/** Events per second: one decimal below 10, whole numbers above. */
export function perSecond(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return `${value < 10 ? oneDecimal.format(value) : integer.format(value)}/s`;
}

export function percent(fraction) {
  if (fraction === null || fraction === undefined) return DASH;
  return `${oneDecimal.format(fraction * 100)}%`;
}

export function bytes(value) {
  if (value === null || value === undefined) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let amount = value;
  let unit = 0;
  while (amount >= 1024 && unit < units.length - 1) {
    amount /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? integer.format(amount) : oneDecimal.format(amount)} ${units[unit]}`;
}

/** A span of time: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 3 min`. */
export function duration(ms) {
  if (ms === null || ms === undefined) return DASH;
  if (ms < 1000) return `${integer.format(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${oneDecimal.format(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

/** Local wall-clock time, `14:05:09`. */
export function clock(ms) {
  const at = new Date(ms);
  return `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
}

/** Local hours and minutes, `14:05`. */
export function hourMinute(ms) {
  const at = new Date(ms);
  return `${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

/** Local date and time, `2024-09-18 14:05:09`, from Unix milliseconds or an RFC 3339 string. */
export function dateTime(value) {
  if (value === null || value === undefined) return DASH;
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) return String(value);
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${clock(at.getTime())}`;
}

/** A moment: its time alone when it is today, with the date otherwise. */
export function when(value) {
  if (value === null || value === undefined) return DASH;
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) return String(value);
  return at.toDateString() === new Date().toDateString() ? clock(at.getTime()) : dateTime(at.getTime());
}

/** How long ago, `just now`, `12 s ago`, `3 min ago`. */
export function ago(ms) {
  if (ms === null || ms === undefined) return DASH;
  if (ms < 1500) return 'just now';
  return `${duration(Math.round(ms / 1000) * 1000)} ago`;
}

/** The first characters of a UUID-like id: enough to tell nodes apart in a table. */
export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 8)}…` : id ?? DASH;
}

export function plural(count, one, many = `${one}s`) {
  return `${int(count)} ${count === 1 ? one : many}`;
}

/** Where the chosen time zone of record timestamps is kept: it outlives the tab. */
const ZONE_KEY = 'freshet.timezone';

/** Fired on `window` when the time zone of record timestamps changes. */
export const ZONE_EVENT = 'freshet:timezone';

/** `utc` (the default: what the API and the logs say) or `local`. */
export function timeZone() {
  try {
    return window.localStorage.getItem(ZONE_KEY) === 'local' ? 'local' : 'utc';
  } catch {
    return 'utc';
  }
}

export function setTimeZone(zone) {
  try {
    window.localStorage.setItem(ZONE_KEY, zone === 'local' ? 'local' : 'utc');
  } catch {
    // Storage refused (a private window): the choice lasts until the page is left.
  }
  window.dispatchEvent(new CustomEvent(ZONE_EVENT, { detail: { zone: timeZone() } }));
}

/** The local zone's offset from UTC at `at`, `+02:00` (what `new Date` reads back). */
export function zoneOffset(at) {
  const minutes = -at.getTimezoneOffset();
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/**
 * A record timestamp to the millisecond, with its zone: `2024-09-18 14:14:10.124 UTC`, or in
 * local time `2024-09-18 16:14:10.124 +02:00`. Operators line records up with logs by it, so
 * neither the milliseconds nor the zone are ever left out.
 */
export function preciseTime(ms, zone = timeZone()) {
  if (ms === null || ms === undefined || ms < 0) return DASH;
  const at = new Date(ms);
  if (Number.isNaN(at.getTime())) return String(ms);
  const millis = String(at.getUTCMilliseconds()).padStart(3, '0');
  if (zone === 'utc') {
    return `${at.getUTCFullYear()}-${pad(at.getUTCMonth() + 1)}-${pad(at.getUTCDate())} `
      + `${pad(at.getUTCHours())}:${pad(at.getUTCMinutes())}:${pad(at.getUTCSeconds())}.${millis} UTC`;
  }
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} `
    + `${clock(ms)}.${millis} ${zoneOffset(at)}`;
}

/**
 * The value of a `datetime-local` input read in `zone`, as Unix milliseconds (NaN when
 * it is not a time). The input itself has no zone: the records view says which it means.
 */
export function parseInputTime(text, zone = timeZone()) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(text)) return Number.NaN;
  // Without a zone, Date reads a date-time as local time; with `Z` as UTC.
  return new Date(zone === 'utc' ? `${text}Z` : text).getTime();
}

/** Unix milliseconds as a `datetime-local` input value in `zone`, to the millisecond. */
export function inputTime(ms, zone = timeZone()) {
  const shifted = zone === 'utc' ? ms : ms - new Date(ms).getTimezoneOffset() * 60_000;
  return new Date(shifted).toISOString().slice(0, 23);
}
