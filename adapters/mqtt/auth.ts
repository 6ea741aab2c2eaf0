import { randomBytes } from 'node:crypto';
import type { AuthenticateError, Client, ConnectPacket } from 'aedes';
import { Address, BrokerError } from '../../broker/index.ts';
import { ClientAcl } from './acl.ts';
import { internalId, type ConnInfo, type MqttContext } from './context.ts';

/**
 * CONNECT handling, as named steps: preConnect (client id rules, the
 * per-account client id namespace) then authenticate (limits, credentials,
 * resource). Every refusal is a CONNACK return code [MQTT-3.2.2-5]:
 * 2 identifier rejected, 3 server unavailable, 4 bad user name or password,
 * 5 not authorized. (Code 1, protocol version, is aedes' own [MQTT-3.1.2-2].)
 */

type Code = 2 | 3 | 4 | 5;

function refusal(code: Code, text: string): AuthenticateError {
  const err = new Error(text) as AuthenticateError;
  err.returnCode = code as AuthenticateError['returnCode'];
  return err;
}

/** The info record of a connection (made at accept; WebSocket and test streams get one here). */
export function infoOf(ctx: MqttContext, client: Client): ConnInfo {
  let info = ctx.infos.get(client);
  if (!info) {
    info = {
      transport: 'tcp',
      ip: 'unknown',
      clientId: '',
      protocolVersion: 4,
      clean: true,
      keepalive: 0,
    };
    ctx.infos.set(client, info);
  }
  return info;
}

/** aedes `preConnect`: remember the CONNECT fields, give aedes the namespaced client id. */
export function preConnect(ctx: MqttContext) {
  return (
    client: Client,
    packet: ConnectPacket,
    done: (err: Error | null, ok: boolean) => void,
  ): void => {
    const info = infoOf(ctx, client);
    info.protocolVersion = packet.protocolVersion ?? 4;
    info.clean = packet.clean !== false;
    info.keepalive = packet.keepalive ?? 0;
    info.connect = packet;
    let id = packet.clientId ?? '';
    if (id === '' && !info.clean) {
      info.reject = { code: 2, text: 'an empty client id needs clean session [MQTT-3.1.3-8]' }; // [MQTT-3.1.3-8]
    } else if (id === '') {
      id = `mqtt-${randomBytes(8).toString('hex')}`; // [MQTT-3.1.3-6] the server assigns a unique id
    }
    info.clientId = id;
    packet.clientId = internalId(packet.username, id, ctx.broker.domain);
    done(null, true);
  };
}

/** aedes `authenticate`: limits, then the account's password, then a resource for the session. */
export function authenticate(ctx: MqttContext) {
  return (
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (err: AuthenticateError | null, ok: boolean | null) => void,
  ): void => {
    check(ctx, client, username, password).then(
      () => done(null, true),
      (err: unknown) => {
        if (err instanceof Error && 'returnCode' in err)
          return done(err as AuthenticateError, null);
        ctx.log.error({ err }, 'mqtt authentication failed unexpectedly');
        done(refusal(3, 'server unavailable'), null);
      },
    );
  };
}

async function check(
  ctx: MqttContext,
  client: Client,
  username: string | undefined,
  password: Buffer | undefined,
): Promise<void> {
  const { opts, broker } = ctx;
  const info = infoOf(ctx, client);
  // The parser keeps the CONNECT packet for the connection's life: it must not
  // keep the password (nor its buffer, ~0.5 KB per idle connection).
  const secret = password?.toString('utf8');
  password?.fill(0);
  if (info.connect) info.connect.password = undefined;
  info.connect = undefined;
  if (info.reject) throw refusal(info.reject.code, info.reject.text);
  // [MQTT-3.1.3-5] 3.1.1 servers MAY allow ids longer than 23; MQTT 3.1 allows at most 23.
  const maxLen = info.protocolVersion === 3 ? 23 : opts.maxClientIdLength;
  if ([...info.clientId].length > maxLen) throw refusal(2, `client id longer than ${maxLen}`);
  // MQTT 3.1.1 cannot tell a client to use another keepalive: refuse, as Mosquitto does.
  const ka = info.keepalive;
  if (
    (ka === 0 && opts.minKeepaliveSeconds > 0) ||
    (ka !== 0 && ka < opts.minKeepaliveSeconds) ||
    ka > opts.maxKeepaliveSeconds
  ) {
    throw refusal(
      2,
      `keepalive must be between ${opts.minKeepaliveSeconds} and ${opts.maxKeepaliveSeconds} seconds`,
    );
  }
  if (username === undefined) {
    if (!opts.allowAnonymous) throw refusal(5, 'anonymous clients are not allowed');
    info.acl = ClientAcl.for(opts.acl, { clientId: info.clientId });
    return;
  }
  // The shared login throttle (broker/accounts.ts AuthThrottle): a slot per address and account, or
  // refused unchecked with 3 "server unavailable" [MQTT 3.2.2.3 table 3.1] when too many checks are in flight.
  const attempt = broker.throttle.begin(info.ip, username);
  if (!attempt) throw refusal(3, 'too many login attempts in progress');
  let ok: boolean;
  try {
    ok = secret !== undefined && (await broker.accounts.verifyPassword(username, secret));
  } catch (err) {
    attempt.cancel();
    throw err;
  }
  if (!ok) {
    broker.metrics.login('mqtt', false);
    // Repeated failures are answered more and more slowly, the slot held meanwhile.
    await attempt.fail();
    throw refusal(4, 'bad user name or password');
  }
  attempt.succeed();
  if (client.closed) throw refusal(5, 'connection closed during authentication');
  broker.metrics.login('mqtt', true);
  const bare = broker.accounts.address(username);
  info.address = reserve(ctx, bare, info.clientId);
  info.acl = ClientAcl.for(opts.acl, { username: bare.local, clientId: info.clientId });
  // A persistent session is kept while the client is away: at most maxPersistentSessionsPerUser client ids per account.
  // 0x05 rather than 0x03: waiting does not help, only ending sessions (a clean-session CONNECT with their ids) does,
  // and clients retry 0x03 at once [MQTT 3.2.2.3].
  if (!info.clean && ctx.stored && !ctx.stored.admit(client.id)) {
    throw refusal(
      5,
      `more than ${opts.maxPersistentSessionsPerUser} persistent sessions for this account`,
    );
  }
  // [MQTT-3.1.4-2] a connection with the same client id is closed by aedes; record why.
  const old = (ctx.aedes as unknown as { clients: Record<string, Client> }).clients[client.id];
  if (old && old !== client) {
    const oldInfo = infoOf(ctx, old);
    oldInfo.closeKind ??= 'session-taken-over';
    oldInfo.closeText ??= 'same client id connected again [MQTT-3.1.4-2]';
  }
}

/** The session address: the account with the client id as resource. */
function reserve(ctx: MqttContext, bare: Address, clientId: string): Address {
  try {
    return ctx.broker.sessions.reserve(bare, clientId);
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    if (err.condition === 'conflict') {
      // MQTT takeover overrides a 'reject' conflict policy between two MQTT connections [MQTT-3.1.4-2].
      const full = bare.withResource(clientId);
      if (ctx.broker.sessions.get(full)?.protocol === 'mqtt') return full;
      throw refusal(2, 'client id in use by another session of this account');
    }
    if (err.condition === 'resource-constraint') throw refusal(3, err.text ?? 'too many sessions');
    throw refusal(2, `client id is not a valid resource: ${err.text ?? err.condition}`);
  }
}
