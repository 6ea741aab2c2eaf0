import { randomBytes } from 'node:crypto';
import {
  Address,
  isStorableMessage,
  OriginPipeline,
  type CloseReason,
  type Envelope,
  type Ordered,
  type Session,
} from '../../broker/index.ts';
import type { AedesClient, MqttContext } from './context.ts';
import { chatJson, presenceJson, showable, type PresenceCommand } from './mapping.ts';
import { chatTopic, presenceTopic, topicMatches } from './topics.ts';

/**
 * One authenticated MQTT connection as a core session: username → account,
 * client id → resource. The core delivers chat messages and presence here;
 * they go out on `chat/{me}` and `presence/{user}` to this client only, at
 * the QoS of its matching subscription (docs/mqtt-mapping.md).
 *
 * Priority follows the chat subscription: 0 while the client is subscribed
 * to its chat topic, -1 otherwise, so the core never hands a message to a
 * device that would not receive it and keeps it in the offline queue instead
 * [RFC6121 8.5.2.1.1].
 */
export class MqttSession implements Session {
  readonly id = randomBytes(8).toString('hex');
  readonly protocol = 'mqtt' as const;
  readonly address: Address;
  readonly transport: string;
  readonly client: AedesClient;
  priority = -1;
  available = false;
  presence?: Envelope;
  interested = false;
  /** created by the core on first directed presence (an MQTT device sends none) */
  directed?: Set<string>;
  private readonly ctx: MqttContext;
  /** This session's steps in order (created on first use). */
  private stepsInOrder?: OriginPipeline;
  private chatSubscribed = false;
  /** the device said `offline` on presence/{me} while staying connected */
  private hidden = false;
  private requestedPriority = 0;
  private bound = false;

  /** the client's IP address (`parley session list`) */
  get remoteAddress(): string | undefined {
    return (this.client as { conn?: { remoteAddress?: string } }).conn?.remoteAddress;
  }

  constructor(ctx: MqttContext, client: AedesClient, address: Address, transport: string) {
    this.ctx = ctx;
    this.client = client;
    this.address = address;
    this.transport = transport;
  }

  /**
   * Run a step after every earlier one of this session (chat PUBLISHes keep
   * their order in the conversation even when aedes handles a batch of
   * packets at once); the caller gets the step's own outcome.
   */
  run<T>(step: () => Promise<T>): Promise<T> {
    // After every earlier step is done, pipelined ones included.
    return this.logged((this.stepsInOrder ??= new OriginPipeline()).exclusive(step));
  }

  /**
   * A chat PUBLISH, pipelined (OriginPipeline, Router.route): the next step
   * may start as soon as this one's archive append has been asked for, so a
   * burst of PUBLISHes goes to the store together, while the router sends
   * nothing of this one before the previous step is done: deliveries and
   * PUBACKs keep the order the PUBLISHes came in [MQTT-4.6.0-2].
   */
  pipeline<T>(step: (ord: Ordered) => Promise<T>): Promise<T> {
    return this.logged((this.stepsInOrder ??= new OriginPipeline()).pipelined(step).done);
  }

  private logged<T>(p: Promise<T>): Promise<T> {
    p.catch((err: unknown) =>
      this.ctx.log.error({ err, jid: this.address.toString() }, 'mqtt session step failed'),
    );
    return p;
  }

  /** Like run, for callers that do not wait: a failure is only logged. */
  enqueue(step: () => Promise<void>): void {
    this.run(step).catch(() => {});
  }

  /** Bind, then tell contacts the device is online (restored subscriptions count already). */
  async start(): Promise<void> {
    if (this.client.closed) return;
    this.chatSubscribed = this.subscribedQos(chatTopic(this.address.local)) >= 0;
    await this.ctx.broker.sessions.bind(this);
    this.bound = true;
    await this.sendPresence({ kind: 'available' });
  }

  /** The connection is gone: unbind; the core broadcasts unavailable [RFC6121 4.5.2]. */
  async end(reason: CloseReason): Promise<void> {
    if (!this.bound) return;
    this.bound = false;
    await this.ctx.broker.sessions.unbind(this, reason);
  }

  /** After SUBSCRIBE/UNSUBSCRIBE: follow the chat subscription with the priority. */
  async subscriptionsChanged(): Promise<void> {
    const now = this.subscribedQos(chatTopic(this.address.local)) >= 0;
    if (now === this.chatSubscribed || !this.bound) return;
    this.chatSubscribed = now;
    if (this.hidden || !this.available) return;
    await this.sendPresence({
      kind: 'available',
      show: this.presence?.show,
      status: this.presence?.status,
    });
    // Messages queued while nothing could receive them [XEP-0160].
    if (now) await this.ctx.broker.hooks.run('session:available', this);
  }

  /** A PUBLISH on presence/{me}. */
  async presenceCommand(cmd: PresenceCommand): Promise<void> {
    if (!this.bound) return;
    if (cmd.kind === 'subscription') {
      const to = cmd.to.includes('@') ? cmd.to : `${cmd.to}@${this.ctx.broker.domain}`;
      const env: Envelope = {
        kind: 'presence',
        type: cmd.type,
        from: this.address,
        to: Address.parse(to),
        extensions: [],
      };
      return this.ctx.broker.presence.fromSession(this, env);
    }
    this.hidden = cmd.kind === 'unavailable';
    if (cmd.kind === 'available' && cmd.priority !== undefined)
      this.requestedPriority = Math.max(0, cmd.priority);
    return this.sendPresence(cmd);
  }

  private async sendPresence(cmd: PresenceCommand): Promise<void> {
    if (cmd.kind === 'subscription') return;
    const env: Envelope = {
      kind: 'presence',
      from: this.address,
      to: this.address.bare(),
      extensions: [],
    };
    if (cmd.kind === 'unavailable') env.type = 'unavailable';
    else env.priority = this.chatSubscribed ? this.requestedPriority : -1;
    if (cmd.kind === 'available' && cmd.show) env.show = cmd.show;
    if (cmd.status) env.status = cmd.status;
    await this.ctx.broker.presence.fromSession(this, env);
  }

  // ---- Session ----

  deliver(env: Envelope): void | Promise<void> {
    if (this.client.closed) {
      // The connection is gone but the core has not yet heard (the unbind is
      // queued behind this session's steps): a message it would have stored
      // for an offline user waits in the offline queue instead of being lost [XEP-0160].
      if (env.kind === 'message' && isStorableMessage(env)) return this.keepOffline(env);
      return;
    }
    if (env.kind === 'message') return this.deliverMessage(env);
    if (env.kind === 'presence') return this.deliverPresence(env);
    if (env.type === 'get' || env.type === 'set') {
      // An MQTT device answers no IQ [RFC6120 8.4]
      this.ctx.broker.router
        .bounce(env, 'service-unavailable')
        .catch((err) => this.ctx.log.error({ err }, 'bounce failed'));
    }
  }

  /**
   * From the offline queue: false once the connection is gone, so the message stays queued
   * (`deliver` would queue it offline again, and a flush triggered by that queueing would loop).
   */
  async deliverQueued(env: Envelope): Promise<boolean> {
    if (this.client.closed) return false;
    await this.deliver(env);
    return true;
  }

  private async keepOffline(env: Envelope): Promise<void> {
    const broker = this.ctx.broker;
    // Another device of the user had it too (every available device gets every
    // message): queuing it would hand it to that device a second time.
    const others = (await broker.router.messageTargets(this.address)).filter(
      (t) => t.resource !== this.address.resource,
    );
    if (others.length > 0) return;
    await broker.router.undeliverable(env); // offline storage if loaded, else an error to the sender
  }

  close(reason: CloseReason): void {
    const info = this.ctx.infos.get(this.client);
    if (info && !info.closeKind) {
      info.closeKind = reason.kind;
      info.closeText = reason.text;
    }
    this.client.close();
  }

  /** Highest QoS among this client's subscriptions matching `topic`; -1 when none does. */
  subscribedQos(topic: string): number {
    let qos = -1;
    const subs = this.client.subscriptions;
    // for…in, not Object.entries: this runs for every message delivered to the device.
    for (const filter in subs) {
      const q = subs[filter].qos;
      if (q > qos && topicMatches(filter, topic)) qos = q;
    }
    return qos;
  }

  /** Publish to this client alone; persistent sessions keep QoS 1/2 copies until acknowledged. */
  publish(topic: string, payload: string | Buffer, qos: number, retain = false): Promise<void> {
    return new Promise((resolve) => {
      // aedes calls back once a QoS 1/2 copy is in the session's outgoing store (or written, for QoS 0).
      // A Buffer is shared as it is (a room's message to every device: encoded once).
      const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
      this.client.publish(
        {
          cmd: 'publish',
          topic,
          payload: bytes,
          qos: Math.min(qos, 2) as 0 | 1 | 2,
          retain,
          dup: false,
        },
        (err) => {
          if (err)
            this.ctx.log.debug(
              { err: err.message, jid: this.address.toString() },
              'mqtt delivery failed',
            );
          resolve();
        },
      );
    });
  }

  private deliverMessage(env: Envelope): void | Promise<void> {
    if (env.type !== 'error' && !showable(env)) return; // chat states alone: nothing to show
    if (env.type === 'groupchat') return; // rooms/{room} is not mapped yet
    const topic = chatTopic(this.address.local);
    const qos = this.subscribedQos(topic);
    if (qos < 0) {
      this.ctx.log.debug(
        { jid: this.address.toString(), id: env.id },
        'message for an mqtt session without chat subscription',
      );
      return;
    }
    return this.publish(topic, chatJson(env), qos);
  }

  private deliverPresence(env: Envelope): void {
    if (env.type !== undefined && env.type !== 'unavailable') return; // subscription requests need a roster client
    const from = env.from;
    if (from.domain !== this.ctx.broker.domain || !from.local) return;
    const topic = presenceTopic(from.local);
    const qos = this.subscribedQos(topic);
    if (qos < 0) return;
    this.publish(topic, presenceJson(env, from.bare()), Math.min(qos, 1));
  }
}
