import { defineModule } from '../module.ts';
import type { ArchiveMode } from '../archive.ts';

const MODES: ArchiveMode[] = ['always', 'never', 'roster'];
const DAY = 86_400_000;

/**
 * The users' archives (XEP-0313 user archive, the MQTT history topic): the
 * default preference, page sizes and retention. Retention runs on a timer,
 * by age and by count per user, each through the archive's owner index.
 */
export default defineModule({
  name: 'archive',
  description: 'Message archive: preferences, paging limits and retention',
  options: {
    default: {
      type: 'string',
      default: 'always',
      doc: 'what a user who set no preferences archives: always, never or roster [XEP-0441]',
    },
    defaultPageSize: {
      type: 'number',
      default: 50,
      min: 1,
      max: 10_000,
      doc: 'messages per page when a query names no maximum',
    },
    maxPageSize: {
      type: 'number',
      default: 250,
      min: 1,
      max: 10_000,
      doc: 'most messages per page, whatever a query asks',
    },
    fullJidScanMax: {
      type: 'number',
      default: 10_000,
      min: 1,
      doc: "most messages one query whose `with` is a full JID (a device) reads of the user's conversation with that user before it ends short (XEP-0313 4.1.1 filtered from the bare JID's index)",
    },
    maxPrefsJids: {
      type: 'number',
      default: 1000,
      min: 0,
      doc: "most JIDs in each of a user's always / never lists",
    },
    maxAgeDays: {
      type: 'number',
      default: 0,
      min: 0,
      doc: 'delete messages archived longer ago than this (0: keep)',
    },
    maxPerUser: {
      type: 'number',
      default: 0,
      min: 0,
      doc: "keep at most this many messages in each user's archive, dropping the oldest (0: no limit)",
    },
    retentionIntervalMinutes: {
      type: 'number',
      default: 60,
      min: 1,
      doc: 'how often retention runs (when maxAgeDays or maxPerUser is set)',
    },
  },
  // The protocols are claimed where they are spoken: module `mam` (XEP-0313, XEP-0441) and the MQTT history topics.
  specs: [],
  setup(ctx) {
    const { broker, options } = ctx;
    if (!MODES.includes(options.default as ArchiveMode))
      throw new Error(`modules.archive.default: must be one of ${MODES.join(', ')}`);
    if (options.defaultPageSize > options.maxPageSize)
      throw new Error('modules.archive.defaultPageSize: must not exceed maxPageSize');
    const before = broker.archive.settings;
    broker.archive.settings = {
      defaultMode: options.default as ArchiveMode,
      defaultPageSize: options.defaultPageSize,
      maxPageSize: options.maxPageSize,
      fullJidScanMax: options.fullJidScanMax,
      maxPrefsJids: options.maxPrefsJids,
    };
    ctx.onUnload(() => void (broker.archive.settings = before));
    if (options.maxAgeDays === 0 && options.maxPerUser === 0) return;
    let running = false;
    const retain = async () => {
      if (running) return;
      running = true;
      try {
        const aged =
          options.maxAgeDays > 0
            ? await broker.archive.prune(Date.now() - options.maxAgeDays * DAY)
            : 0;
        const trimmed = options.maxPerUser > 0 ? await broker.archive.trim(options.maxPerUser) : 0;
        if (aged + trimmed > 0) ctx.log.info({ aged, trimmed }, 'archive retention');
      } catch (err) {
        ctx.log.error({ err }, 'archive retention failed');
      } finally {
        running = false;
      }
    };
    ctx.every(options.retentionIntervalMinutes * 60_000, () => void retain());
    // Once soon after start as well, so a restart does not postpone it by a whole interval.
    const first = setTimeout(() => void retain(), 5_000);
    first.unref();
    ctx.onUnload(() => clearTimeout(first));
  },
});
