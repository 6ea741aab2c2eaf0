import type { Element } from '@xmpp/xml';
import {
  Address,
  closeReason,
  fromRecord,
  defineModule,
  isStorableMessage,
  toRecord,
  type Broker,
  type CloseReason,
  type Envelope,
  type Session,
} from '../../../broker/index.ts';
import { XmppConnection } from '../connection.ts';
import { addStreamFeature, nonzaRegistry } from '../features.ts';
import { NS_SM, NS_STANZAS } from '../ns.ts';
import { Slot, type Outbound } from '../session-state.ts';
import { envelopeXml } from '../stanza.ts';
import {
  newSmId,
  restoreHandedParts,
  saveParts,
  smIdNode,
  SmCluster,
  toHanded,
  type Handover,
  type Refusal,
  type Unacked,
} from './sm-cluster.ts';

/** h counts modulo 2^32 [XEP-0198 4]. */
const MOD = 2 ** 32;

/**
 * How many queued stanzas an `h` from the client acknowledges, given the h
 * it acknowledged last; counts wrap at 2^32 [XEP-0198 4].
 */
export function acknowledged(h: number, lastAcked: number): number {
  return (((h - lastAcked) % MOD) + MOD) % MOD;
}

/** One stream-management session: it outlives its streams while resumable. */
interface SmSession {
  /** resumption id (previd); '' when not resumable */
  id: string;
  /** the stream that carries it now */
  conn: XmppConnection;
  /** stanzas handled from the client, mod 2^32 */
  inbound: number;
  /** the last h the client acknowledged, mod 2^32 */
  acked: number;
  queue: Unacked[];
  /** queue length when the server last asked for an ack */
  requestedAt: number;
  requestPending: boolean;
  /** an `<r/>` went out and no `<a/>` came since: no second one (Prosody's mod_smacks does the same) */
  awaitingAck: boolean;
  /** hibernation: ends the session if no stream resumes it in time */
  expiry?: NodeJS.Timeout;
  /** taken over by a resumed stream: the old stream's end is not the session's end */
  movedOn?: boolean;
}

const smSlot = new Slot<SmSession>('stream-management');

/** Reasons a stream may be lost for that keep a resumable session waiting [XEP-0198 5]. */
const RESUMABLE_LOSS = new Set([
  'client-closed',
  'socket-error',
  'idle-timeout',
  'connection-timeout',
  'ping-timeout',
]);

function failed(condition: string, h?: number): string {
  return `<failed xmlns='${NS_SM}'${h === undefined ? '' : ` h='${h}'`}><${condition} xmlns='${NS_STANZAS}'/></failed>`;
}

/**
 * XEP-0198 Stream Management: acks with `h` counting (wrapping at 2^32) and
 * resumption after a lost connection, on every stream transport (TCP, TLS,
 * WebSocket), on the node that issued the id or on another live node of the
 * cluster (sm-cluster.ts). Not offered over BOSH, whose own sessions already
 * survive lost HTTP requests. `location` is left out: any node resumes. When a
 * session with unacknowledged messages ends for good, each goes back through
 * the offline path (or to another resource) once.
 */
export default defineModule({
  name: 'stream-management',
  description: 'Stream Management: acks and resumption',
  options: {
    resumeTimeoutSeconds: {
      type: 'number',
      default: 300,
      min: 1,
      max: 86_400,
      doc: "how long a lost stream's session waits to be resumed (`max` in `<enabled/>`)",
    },
    maxUnacked: {
      type: 'number',
      default: 5000,
      min: 10,
      doc: 'stanzas sent to a client and not acknowledged before its stream is closed (policy-violation)',
    },
    requestEvery: {
      type: 'number',
      default: 10,
      min: 1,
      doc: 'ask the client for an ack (`<r/>`) once this many stanzas went out since the last request; at most one request unanswered at a time',
    },
    clusterTakeTimeoutMs: {
      type: 'number',
      default: 5000,
      min: 100,
      max: 60_000,
      doc: "how long a node waits for the session's node to hand a session over when a client resumes on another node of the cluster; then `<failed><item-not-found/></failed>`",
    },
    maxClusterTakes: {
      type: 'number',
      default: 64,
      min: 1,
      doc: 'resumptions of sessions of other nodes this node waits on at once; past it `<failed><resource-constraint/></failed>`',
    },
    drainHandoverSeconds: {
      type: 'number',
      default: 10,
      min: 0,
      max: 600,
      doc: 'a draining node keeps the sessions it sent away with see-other-host for up to this long, so that their clients resume them on the other node; 0: they end at once (offline path)',
    },
    ackSlack: {
      type: 'number',
      default: 8,
      min: 0,
      doc: 'a client acknowledging up to this many stanzas more than were sent is clamped, not disconnected (some clients miscount around `<enable/>`)',
    },
  },
  specs: [
    {
      spec: 'XEP-0198',
      status: 'partial',
      note: 'acks and resumption on TCP, TLS and WebSocket, on any live node of a cluster; not over BOSH; no `location` (any node resumes)',
    },
  ],
  setup(ctx) {
    const { broker, options } = ctx;
    const log = ctx.log;
    /** resumable sessions by id */
    const byId = new Map<string, SmSession>();
    /** when each session was bound: which other devices already had a bare-JID message */
    const boundAt = new WeakMap<Session, number>();
    const nonzas = nonzaRegistry(broker);
    const offered = (conn: XmppConnection) => conn.transport !== 'bosh';

    ctx.onUnload(
      addStreamFeature(broker, (conn) => (offered(conn) ? `<sm xmlns='${NS_SM}'/>` : undefined)),
    );
    ctx.onUnload(broker.hooks.on('session:bound', (s) => void boundAt.set(s, Date.now())));

    /** Count and queue what goes out; ask for an ack now and then. */
    const outFilter = (sm: SmSession) => (out: Outbound) => {
      sm.queue.push({ xml: out.xml, env: out.env, at: Date.now() });
      if (sm.queue.length > options.maxUnacked) {
        log.info(
          { jid: sm.conn.address.toString(), n: sm.queue.length },
          'client does not acknowledge; closing',
        );
        queueMicrotask(() => {
          sm.id = ''; // not resumable: its unacked stanzas go to the offline path now
          sm.conn.keeper = undefined;
          sm.conn.close(closeReason('policy-violation', 'too many unacknowledged stanzas'));
        });
        return out;
      }
      if (!sm.requestPending && !sm.awaitingAck && due(sm)) {
        sm.requestPending = true;
        queueMicrotask(() => {
          sm.requestPending = false;
          request(sm);
        });
      }
      return out;
    };

    /** Enough sent since the last request to ask again. */
    const due = (sm: SmSession) => sm.queue.length - sm.requestedAt >= options.requestEvery;
    const request = (sm: SmSession) => {
      sm.requestedAt = sm.queue.length;
      sm.awaitingAck = true;
      sm.conn.send(`<r xmlns='${NS_SM}'/>`); // [XEP-0198 4]
    };

    /** sessions whose stream a drain sent to another node: it stops once they are resumed there (or the wait is over) */
    const redirected = new Set<SmSession>();
    const keeper = (sm: SmSession) => (reason: CloseReason) => {
      const redirect =
        options.drainHandoverSeconds > 0 &&
        (reason.kind === 'see-other-host' || reason.kind === 'see-other-uri');
      if (!sm.id || !(RESUMABLE_LOSS.has(reason.kind) || redirect)) {
        if (sm.id)
          log.info(
            { jid: sm.conn.address.toString(), reason: reason.kind, text: reason.text },
            'stream ended; not kept for resumption',
          );
        return false;
      }
      const timer = setTimeout(() => {
        byId.delete(sm.id);
        sm.conn.endDetached(closeReason('resume-timeout', 'stream management session expired'));
      }, options.resumeTimeoutSeconds * 1000);
      timer.unref();
      sm.expiry = timer;
      if (redirect) redirected.add(sm);
      return true;
    };

    // A drain sent the clients away: wait (bounded) until their sessions are resumed on other nodes.
    ctx.onUnload(
      broker.hooks.on('drain:redirected', async () => {
        const until = Date.now() + options.drainHandoverSeconds * 1000;
        const waiting = () => [...redirected].filter((sm) => sm.id && byId.get(sm.id) === sm);
        while (waiting().length > 0 && Date.now() < until)
          await new Promise((r) => setTimeout(r, 50));
        const left = waiting().length;
        if (left > 0) log.info({ left }, 'drain: sessions not resumed elsewhere end here');
        redirected.clear();
      }),
    );

    /** Apply an ack from the client; false when it acknowledges more than was sent beyond the slack. */
    const ack = (sm: SmSession, h: number): boolean => {
      let n = acknowledged(h, sm.acked);
      if (n > sm.queue.length) {
        if (n - sm.queue.length > options.ackSlack) return false;
        log.debug(
          { jid: sm.conn.address.toString(), h, sent: sm.queue.length },
          'client acknowledged more than sent; clamped',
        );
        n = sm.queue.length;
      }
      sm.queue.splice(0, n);
      sm.requestedAt = Math.max(0, sm.requestedAt - n);
      sm.acked = h >>> 0;
      return true;
    };

    const install = (conn: XmppConnection, sm: SmSession) => {
      conn.state.set(smSlot, sm);
      conn.filters.in.add((el) => {
        sm.inbound = (sm.inbound + 1) % MOD; // [XEP-0198 4] every stanza handled
        return el;
      });
      conn.filters.out.add(outFilter(sm), -100); // after CSI and anything else that holds or drops
      conn.keeper = keeper(sm);
    };

    const hOf = (el: Element): number | undefined => {
      const raw = el.attrs.h;
      if (raw === undefined || !/^\d{1,10}$/.test(raw)) return undefined;
      const h = Number(raw);
      return h < MOD ? h : undefined;
    };

    // [XEP-0198 3] enable, after binding
    ctx.onUnload(
      nonzas.register(
        ctx.name,
        { ns: NS_SM, name: 'enable', phases: ['bind', 'bound'] },
        (conn, el) => {
          if (!conn.live) return conn.send(failed('unexpected-request')); // before binding [XEP-0198 3]
          if (!offered(conn)) return conn.send(failed('feature-not-implemented'));
          if (conn.state.has(smSlot)) return conn.send(failed('unexpected-request')); // enabled twice
          const resume = el.attrs.resume === 'true' || el.attrs.resume === '1';
          const sm: SmSession = {
            id: resume ? newSmId(cluster.idNode) : '',
            conn,
            inbound: 0,
            acked: 0,
            queue: [],
            requestedAt: 0,
            requestPending: false,
            awaitingAck: false,
          };
          const max = resume ? ` resume='true' max='${options.resumeTimeoutSeconds}'` : '';
          // Written before the filters go on: both sides count from <enabled/>.
          conn.send(`<enabled xmlns='${NS_SM}'${sm.id ? ` id='${sm.id}'` : ''}${max}/>`);
          if (sm.id) byId.set(sm.id, sm);
          install(conn, sm);
        },
      ),
    );

    // [XEP-0198 4] the client asks: answer once everything before the <r/> is handled (messages stored).
    // The count is taken now and the answer waits beside the stream, not in it: the stanzas after the
    // <r/> are handled meanwhile (a client asking every few stanzas kept its stream stalled on each
    // batch's disk write, bench/PROFILE-NOTES.md, fifteenth round). An <a/> is no stanza (not counted),
    // so it may follow stanzas written after the <r/> came; the <a/>s keep their order.
    ctx.onUnload(
      nonzas.register(
        ctx.name,
        { ns: NS_SM, name: 'r', phases: ['bound'], beside: true },
        (conn) => {
          const sm = conn.state.get(smSlot);
          if (!sm)
            return conn.close(
              closeReason('unsupported-stanza-type', 'stream management is not enabled'),
            );
          const h = sm.inbound;
          void conn.settled().then(() => conn.send(`<a xmlns='${NS_SM}' h='${h}'/>`));
        },
      ),
    );

    // [XEP-0198 4] the client acknowledges
    ctx.onUnload(
      nonzas.register(
        ctx.name,
        { ns: NS_SM, name: 'a', phases: ['bound'], beside: true },
        (conn, el) => {
          const sm = conn.state.get(smSlot);
          if (!sm)
            return conn.close(
              closeReason('unsupported-stanza-type', 'stream management is not enabled'),
            );
          const h = hOf(el);
          if (h === undefined)
            return conn.close(closeReason('bad-format', "<a/> needs an integer 'h'"));
          // [XEP-0198 4] an h above what was sent is an error; a few over is tolerated (docs/leniency.md)
          if (!ack(sm, h))
            return conn.close(
              closeReason(
                'protocol-error',
                `acknowledged ${h}, but only ${(sm.acked + sm.queue.length) % MOD} were sent`,
              ),
            );
          // The answer to our <r/> (or an unasked one): ask again if enough went out meanwhile.
          sm.awaitingAck = false;
          if (!sm.requestPending && due(sm)) request(sm);
        },
      ),
    );

    /** [XEP-0198 5] replay what the client has not acknowledged, oldest first, with when it was first sent */
    const replay = (conn: XmppConnection, queue: Unacked[]) => {
      for (const u of queue) {
        if (u.env?.kind === 'message' && !u.env.delay) {
          conn.sendStanza(
            envelopeXml({ ...u.env, delay: { stamp: u.at, from: broker.domain } }, u.env.to),
            u.env,
          ); // [XEP-0203]
        } else conn.sendStanza(u.xml, u.env);
      }
    };

    /** The session `sm` is `user`'s and resumable (the same check for a stream here and on another node). */
    const owns = (sm: SmSession | undefined, user: string): sm is SmSession =>
      !!sm && sm.conn.authenticatedAs !== '' && sm.conn.address.local === user;

    // Another node's stream resumes a session of this node: detach it and hand it over [XEP-0198 5].
    const give = async (previd: string, user: string, h: number): Promise<Handover | Refusal> => {
      const sm = byId.get(previd);
      // Still bound here: a session whose end is under way (its unbind has begun) is not handed over.
      if (!owns(sm, user) || broker.sessions.get(sm.conn.address) !== sm.conn) {
        log.info({ user, known: !!sm }, 'resumption on another node refused: no such session');
        return { error: 'item-not-found' }; // unknown, expired, or another account's
      }
      if (!ack(sm, h)) return { error: 'unexpected-request', h: sm.inbound };
      clearTimeout(sm.expiry);
      sm.expiry = undefined;
      byId.delete(sm.id);
      sm.id = ''; // no longer resumable here
      const conn = sm.conn;
      conn.keeper = undefined;
      const parts = saveParts(broker, conn); // first: what a module lets go joins the queue
      const queue = sm.queue;
      sm.queue = [];
      const state: Handover = {
        address: conn.address.toString(),
        inbound: sm.inbound,
        acked: sm.acked,
        queue: queue.map(toHanded),
        priority: conn.priority,
        available: conn.available,
        ...(conn.presence && { presence: toRecord(conn.presence) }),
        interested: conn.interested,
        ...(conn.directed?.size && { directed: [...conn.directed] }),
        parts,
      };
      // From here on, what reaches this full address here is stranded: offline, then flushed to the new node.
      await conn.handOff();
      log.debug({ jid: state.address, unacked: queue.length }, 'session handed to another node');
      return state;
    };

    // This node's stream goes on with a session another node handed over [XEP-0198 5].
    const adopt = async (conn: XmppConnection, previd: string, st: Handover, queue: Unacked[]) => {
      await conn.adopt({
        address: Address.parse(st.address),
        priority: st.priority,
        available: st.available,
        presence: st.presence && fromRecord(st.presence, (x) => Address.parse(x)),
        interested: st.interested,
        directed: st.directed ? new Set(st.directed) : undefined,
      });
      const sm: SmSession = {
        id: previd,
        conn,
        inbound: st.inbound >>> 0,
        acked: st.acked >>> 0,
        queue: [],
        requestedAt: 0,
        requestPending: false,
        awaitingAck: false,
      };
      byId.set(previd, sm);
      install(conn, sm);
      restoreHandedParts(broker, conn, st.parts);
      conn.send(`<resumed xmlns='${NS_SM}' h='${sm.inbound}' previd='${sm.id}'/>`);
      replay(conn, queue);
      log.debug(
        { jid: conn.address.toString(), replayed: queue.length },
        'stream resumed from another node',
      );
      // What was stranded on the old node meanwhile went to offline storage: flush it here now.
      if (conn.available) broker.hooks.emit('session:available', conn);
    };

    const cluster = new SmCluster(
      broker,
      log,
      {
        timeoutMs: options.clusterTakeTimeoutMs,
        maxInFlight: options.maxClusterTakes,
        maxQueue: options.maxUnacked,
        askDraining: options.drainHandoverSeconds > 0,
      },
      { give, adopt },
    );
    ctx.onUnload(() => cluster.stop());

    // [XEP-0198 5] resumption, instead of binding
    ctx.onUnload(
      nonzas.register(
        ctx.name,
        { ns: NS_SM, name: 'resume', phases: ['bind'] },
        async (conn, el) => {
          const previd = el.attrs.previd ?? '';
          const node = smIdNode(previd); // client input: strict, bounded
          const sm = node === undefined ? undefined : byId.get(previd);
          const h = hOf(el);
          if (!offered(conn)) return conn.send(failed('feature-not-implemented'));
          if (!sm && node !== undefined && cluster.idNode !== undefined) {
            // Not here: on the node that issued the id, or where it was resumed since [XEP-0198 5]
            if (h === undefined) return conn.send(failed('bad-request'));
            return cluster.resume(conn, node, previd, h, (c, hh) => conn.send(failed(c, hh)));
          }
          if (!owns(sm, conn.authenticatedAs)) {
            log.info(
              { user: conn.authenticatedAs, known: !!sm },
              'resumption refused: no such session of this account (unknown, expired or ended)',
            );
            return conn.send(failed('item-not-found')); // unknown, expired, or another account's
          }
          if (h === undefined) return conn.send(failed('bad-request'));
          if (!ack(sm, h)) return conn.send(failed('unexpected-request', sm.inbound));
          clearTimeout(sm.expiry);
          sm.expiry = undefined;
          const old = sm.conn;
          // Keep old's end from reaching this session while it moves.
          old.keeper = undefined;
          try {
            await conn.takeOver(old);
          } catch (err) {
            log.info({ err }, 'resumption failed');
            byId.delete(sm.id);
            return conn.send(failed('item-not-found'));
          }
          sm.conn = conn;
          conn.keeper = keeper(sm);
          conn.send(`<resumed xmlns='${NS_SM}' h='${sm.inbound}' previd='${sm.id}'/>`);
          const queue = sm.queue;
          sm.queue = [];
          sm.requestedAt = 0;
          sm.awaitingAck = false; // an <r/> of the old stream is not answered on this one
          replay(conn, queue);
          log.debug({ jid: conn.address.toString(), replayed: queue.length }, 'stream resumed');
        },
      ),
    );

    // The session is over for good (clean close, timeout, not resumable):
    // what the client did not acknowledge goes where an undelivered message goes.
    ctx.onUnload(
      broker.hooks.on('session:unbound', async (session, reason) => {
        // Moved to another node: its queue went with it (emptied before the unbind) [XEP-0198 5].
        if (!(session instanceof XmppConnection) || reason.kind === 'session-moved') return;
        const sm = session.peek(smSlot);
        if (!sm || sm.conn !== session) return;
        clearTimeout(sm.expiry);
        if (sm.id) byId.delete(sm.id);
        const unacked = sm.queue;
        sm.queue = [];
        for (const u of unacked) {
          // Presence, IQs and chat states are not kept for later [XEP-0160 3].
          if (u.env && isStorableMessage(u.env))
            await rehome(broker, session, u.env, boundAt, u.env.delay !== undefined);
        }
      }),
    );
    ctx.onUnload(() => {
      for (const sm of byId.values()) clearTimeout(sm.expiry);
      byId.clear();
    });
  },
});

/**
 * An unacknowledged message of a session that ended: to the user's other
 * devices that did not have it, else offline (or an error to the sender
 * when offline storage is off). Once: the ended session's queue is emptied
 * first. `fromStorage`: it had come from offline storage (delay-stamped), so
 * no other device had it.
 */
function rehome(
  broker: Broker,
  dead: Session,
  env: Envelope,
  boundAt: WeakMap<Session, number>,
  fromStorage: boolean,
): Promise<void> {
  const moved: Envelope = {
    ...env,
    delay: env.delay ?? { stamp: env.timestamp ?? Date.now(), from: broker.domain },
  };
  const stamp = env.timestamp ?? 0;
  // Every available device got a bare-JID message when it was routed; only later ones lack it.
  return broker.router.stranded(
    moved,
    dead,
    (s) => env.to.isBare && !fromStorage && (boundAt.get(s) ?? 0) <= stamp,
  );
}
