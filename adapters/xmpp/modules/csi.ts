import { defineModule, type Broker } from '../../../broker/index.ts';
import type { XmppConnection } from '../connection.ts';
import { addStreamFeature, nonzaRegistry } from '../features.ts';
import { NS_CHATSTATES, NS_CSI } from '../ns.ts';
import { Slot, type Outbound } from '../session-state.ts';
import { addHandoverPart } from './sm-cluster.ts';

interface CsiState {
  inactive: boolean;
  /** held stanzas by what supersedes them: the latest presence per sender, the latest chat state per sender */
  held: Map<string, Outbound>;
  filter: (out: Outbound) => Outbound | null;
}

const csiSlot = new Slot<CsiState>('csi');

/** A body-less message whose only payload is a chat state [XEP-0085]. */
function onlyChatState(out: Outbound): boolean {
  const env = out.env!;
  if (env.body !== undefined || env.subject !== undefined || env.extensions.length === 0)
    return false;
  // A marker or receipt riding along (env.chat, chat-meta.ts) is not a chat state: it goes at once.
  if (env.chat !== undefined && Object.keys(env.chat).some((k) => k !== 'hint' && k !== 'originId'))
    return false;
  return env.extensions.every((x) => x.includes(NS_CHATSTATES));
}

function makeFilter(broker: Broker, state: CsiState) {
  return (out: Outbound): Outbound | null => {
    const env = out.env;
    if (!state.inactive || !env) return out;
    let key: string | undefined;
    if (env.kind === 'presence' && (env.type === undefined || env.type === 'unavailable'))
      key = `p ${env.from.toString()}`;
    else if (env.kind === 'message' && env.type !== 'error' && onlyChatState(out))
      key = `c ${env.from.bare().toString()}`;
    if (key === undefined) {
      // A message with a body goes at once; a chat state held from its sender is now stale.
      if (env.kind === 'message' && state.held.delete(`c ${env.from.bare().toString()}`))
        broker.metrics.csi('superseded');
      return out;
    }
    if (state.held.delete(key)) broker.metrics.csi('superseded');
    state.held.set(key, out);
    broker.metrics.csi('held');
    return null;
  };
}

/**
 * XEP-0352 Client State Indication: while a client says it is inactive,
 * presence updates and chat states wait, only the latest per contact is
 * kept, and they go out when it is active again; messages with a body,
 * IQs and everything else go at once. Counted in metrics (parley_csi_stanzas_total).
 */
export default defineModule({
  name: 'csi',
  description: 'Client State Indication: hold presence and chat states for inactive clients',
  options: {
    maxHeld: {
      type: 'number',
      default: 1000,
      min: 1,
      doc: 'presences and chat states held for one inactive client; past it the oldest goes out',
    },
  },
  specs: [{ spec: 'XEP-0352', status: 'complete' }],
  setup(ctx) {
    const { broker } = ctx;
    const nonzas = nonzaRegistry(broker);
    ctx.onUnload(addStreamFeature(broker, () => `<csi xmlns='${NS_CSI}'/>`)); // [XEP-0352 5]

    const stateOf = (conn: XmppConnection): CsiState => {
      let st = conn.state.get(csiSlot);
      if (!st) {
        st = { inactive: false, held: new Map(), filter: () => null };
        const s = st;
        const inner = makeFilter(broker, s);
        s.filter = (out) => {
          const r = inner(out);
          if (r === null && s.held.size > ctx.options.maxHeld) {
            const [k, oldest] = s.held.entries().next().value!;
            s.held.delete(k);
            conn.release(s.filter, oldest);
          }
          return r;
        };
        conn.filters.out.add(s.filter, 100); // before stream management counts what goes out
        conn.state.set(csiSlot, s);
      }
      return st;
    };

    // A session resumed on another node stays inactive there [XEP-0198 5] (sm-cluster.ts); what was
    // held goes out now, into stream management's unacknowledged queue, so it is replayed there.
    ctx.onUnload(
      addHandoverPart(broker, 'csi', {
        save: (conn) => {
          const st = conn.peek(csiSlot);
          if (!st?.inactive) return undefined;
          const held = [...st.held.values()];
          st.held.clear();
          for (const out of held) conn.release(st.filter, out);
          return true;
        },
        restore: (conn, inactive) => {
          if (inactive === true) stateOf(conn).inactive = true;
        },
      }),
    );
    ctx.onUnload(
      nonzas.register(ctx.name, { ns: NS_CSI, name: 'inactive', phases: ['bound'] }, (conn) => {
        stateOf(conn).inactive = true;
      }),
    );
    ctx.onUnload(
      nonzas.register(ctx.name, { ns: NS_CSI, name: 'active', phases: ['bound'] }, (conn) => {
        const st = conn.state.get(csiSlot);
        if (!st) return;
        st.inactive = false;
        const held = [...st.held.values()];
        st.held.clear();
        for (const out of held) {
          broker.metrics.csi('flushed');
          conn.release(st.filter, out);
        }
      }),
    );
  },
});
