import type { ArchiveRecord, ArchiveStore, OwnerQuery } from '../storage/types.ts';
import { BrokerError } from './errors.ts';
import type { Room, RoomMessage } from './rooms.ts';

/**
 * A room's archive as XEP-0313 on the room JID serves it (docs/groupchat.md,
 * "MUC MAM"): ids are room seqs; filters narrow the result set and its
 * count, after/before page through it [XEP-0059]. Without a nick filter the
 * query runs on the archive's owner index of the room JID (the sender's
 * bare address is the record's peer), so a count is the store's count; a nick
 * filter scans the room's timeline, one conversation, in chunks.
 */

type TimelineValue = Omit<RoomMessage, 'seq'>;

export interface RoomArchiveQuery {
  /** only messages sent under this nick (`with` = room@service/nick) */
  nick?: string;
  /** only messages of this user, a bare address (`with` = a real JID) */
  user?: string;
  /** timestamps at or after (ms) */
  start?: number;
  /** timestamps at or before (ms) */
  end?: number;
  /** filter: seqs after this one (after-id) */
  afterId?: number;
  /** filter: seqs before this one (before-id) */
  beforeId?: number;
  /** filter: only these seqs (ids, XEP-0313 #extended); each must be in this room's archive */
  ids?: number[];
  /** page: after this seq, oldest first (RSM after) */
  after?: number;
  /** page: before this seq, newest first (RSM before); 'last' = the last page (empty RSM before) */
  before?: number | 'last';
  limit: number;
}

export interface RoomArchivePage {
  /** in iteration order: oldest first, newest first when paging backwards */
  messages: RoomMessage[];
  /** no more results beyond this page in its direction */
  complete: boolean;
  /** the whole result set's size (filters only) */
  count: number;
}

/** Records scanned per read when a nick filter walks the timeline. */
const SCAN_CHUNK = 500;

const toMessage = (r: ArchiveRecord<TimelineValue>): RoomMessage => ({ ...r.value, seq: r.seq });

/** The record of one seq of this room (never an earlier room's of the same name). */
async function recordAt(
  timeline: ArchiveStore<TimelineValue>,
  room: Room,
  seq: number,
): Promise<ArchiveRecord<TimelineValue> | undefined> {
  if (seq <= room.firstSeq) return undefined;
  const p = await timeline.query(room.conversation, {
    afterSeq: seq - 1,
    beforeSeq: seq + 1,
    limit: 1,
  });
  return p.records[0];
}

export async function queryRoomArchive(
  timeline: ArchiveStore<TimelineValue>,
  room: Room,
  q: RoomArchiveQuery,
): Promise<RoomArchivePage> {
  // [XEP-0313 6.1.2, XEP-0059 2.6] an id that is not in this room's archive: item-not-found
  const named = [q.afterId, q.beforeId, q.after, q.before === 'last' ? undefined : q.before];
  const records = new Map<number, ArchiveRecord<TimelineValue>>();
  for (const seq of named) {
    if (seq === undefined || records.has(seq)) continue;
    const r = await recordAt(timeline, room, seq);
    if (!r) throw new BrokerError('item-not-found', `no message ${seq} in this room's archive`);
    records.set(seq, r);
  }
  if (q.ids !== undefined) return byIds(timeline, room, { ...q, ids: q.ids });
  if (q.nick !== undefined) return scanByNick(timeline, room, { ...q, nick: q.nick });
  const posOf = (seq: number | undefined): string | undefined => {
    const pos = seq === undefined ? undefined : records.get(seq)?.pos;
    return pos === undefined ? undefined : String(pos);
  };
  // An earlier room of the same name shares the room JID's owner index: start after its last record.
  let afterId = posOf(q.afterId);
  if (room.firstSeq > 0) {
    const [last] = (
      await timeline.query(room.conversation, {
        afterSeq: room.firstSeq - 1,
        beforeSeq: room.firstSeq + 1,
        limit: 1,
      })
    ).records;
    if (last?.pos !== undefined && (afterId === undefined || Number(afterId) < last.pos))
      afterId = String(last.pos);
  }
  const oq: OwnerQuery = {
    with: q.user,
    start: q.start,
    end: q.end,
    afterId,
    beforeId: posOf(q.beforeId),
    after: posOf(q.after),
    before: q.before === 'last' ? undefined : posOf(q.before),
    limit: q.limit,
    reverse: q.before !== undefined,
    count: true,
  };
  const page = await timeline.queryOwner(room.jid.toString(), oq);
  if (page.missing?.length) throw new BrokerError('item-not-found', 'no such message in this room'); // pruned meanwhile
  return {
    messages: page.records.filter((r) => r.conversation === room.conversation).map(toMessage),
    complete: page.complete,
    count: page.count ?? 0,
  };
}

/**
 * The ids filter [XEP-0313 query-limit-id]: each id read by its seq (one
 * indexed read each; the caller caps how many); an id that is not in this
 * room's archive is item-not-found, as for before-id and after-id. The other
 * filters and the RSM page apply to the records named.
 */
async function byIds(
  timeline: ArchiveStore<TimelineValue>,
  room: Room,
  q: RoomArchiveQuery & { ids: number[] },
): Promise<RoomArchivePage> {
  const matches: ArchiveRecord<TimelineValue>[] = [];
  for (const seq of [...new Set(q.ids)].sort((a, b) => a - b)) {
    const r = await recordAt(timeline, room, seq);
    if (!r) throw new BrokerError('item-not-found', `no message ${seq} in this room's archive`); // [XEP-0313 query-limit-id]
    if (q.nick !== undefined && r.value.nick !== q.nick) continue;
    if (q.user !== undefined && r.value.user !== q.user) continue;
    if (q.start !== undefined && r.timestamp < q.start) continue;
    if (q.end !== undefined && r.timestamp > q.end) continue;
    if (q.afterId !== undefined && r.seq <= q.afterId) continue;
    if (q.beforeId !== undefined && r.seq >= q.beforeId) continue;
    matches.push(r);
  }
  const lo = q.after ?? 0;
  const hi = q.before === undefined || q.before === 'last' ? Infinity : q.before;
  const inPage = matches.filter((r) => r.seq > lo && r.seq < hi);
  // backwards (RSM before): the newest `limit` of the range, newest first as the other paths give them
  const page = q.before !== undefined ? inPage.reverse() : inPage;
  return {
    messages: page.slice(0, q.limit).map(toMessage),
    complete: page.length <= q.limit,
    count: matches.length,
  };
}

/** The first and last message of this room's archive [XEP-0313 archive-metadata]. */
export async function roomArchiveBounds(
  timeline: ArchiveStore<TimelineValue>,
  room: Room,
): Promise<{ first?: RoomMessage; last?: RoomMessage }> {
  const end = async (reverse: boolean) =>
    (await timeline.query(room.conversation, { afterSeq: room.firstSeq, limit: 1, reverse }))
      .records[0];
  const first = await end(false);
  const last = first && (await end(true));
  return { first: first && toMessage(first), last: last && toMessage(last) };
}

/** The nick filter: one pass over the room's timeline within the filter bounds, counting every match. */
async function scanByNick(
  timeline: ArchiveStore<TimelineValue>,
  room: Room,
  q: RoomArchiveQuery & { nick: string },
): Promise<RoomArchivePage> {
  const backwards = q.before !== undefined;
  const pageLo = q.after ?? 0;
  const pageHi = q.before === undefined || q.before === 'last' ? Infinity : q.before;
  let count = 0;
  let inPage: RoomMessage[] = [];
  let inPageTotal = 0;
  let afterSeq = Math.max(room.firstSeq, q.afterId ?? 0);
  for (;;) {
    const chunk = await timeline.query(room.conversation, {
      afterSeq,
      beforeSeq: q.beforeId,
      start: q.start,
      end: q.end,
      limit: SCAN_CHUNK,
    });
    for (const r of chunk.records) {
      afterSeq = r.seq;
      if (r.value.nick !== q.nick || (q.user !== undefined && r.value.user !== q.user)) continue;
      count++;
      if (r.seq <= pageLo || r.seq >= pageHi) continue;
      inPageTotal++;
      if (backwards) {
        // the newest limit+1 of the page's range
        inPage.push(toMessage(r));
        if (inPage.length > q.limit + 1) inPage.shift();
      } else if (inPage.length <= q.limit) inPage.push(toMessage(r));
    }
    if (chunk.complete || !chunk.records.length) break;
  }
  if (backwards) inPage.reverse();
  const complete = inPageTotal <= q.limit;
  inPage = inPage.slice(0, q.limit);
  return { messages: inPage, complete, count };
}
