import { xml } from '@xmpp/xml';
import { BrokerError, defineModule } from '../../../broker/index.ts';
import { addStreamFeature } from '../features.ts';
import type { PreAuthIqRequest } from '../hooks.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_REGISTER } from '../ns.ts';
import { discoFeature } from './basics.ts';
import {
  addressKey,
  allowed,
  allowList,
  checkPassword,
  DEFAULT_RESERVED,
  readRequest,
  registrationForm,
  RegistrationThrottle,
} from './registration.ts';

const NS_REGISTER_FEATURE = 'http://jabber.org/features/iq-register';

/**
 * XEP-0077 In-Band Registration. For logged-in users, always: password
 * change [XEP-0077 3.3] and account removal [XEP-0077 3.2], the latter
 * through the one account-removal path (`broker.removeAccount`). Creating
 * accounts before authentication [XEP-0077 3.1] only with
 * `allowRegistration: true`, on encrypted streams, from the allow-list if
 * one is set, rate-limited per source address (registration.ts); accounts
 * are created by `broker.accounts.create`, as `parley user add` does.
 */
export default defineModule({
  name: 'register',
  description: 'In-band registration (off by default), password change and account removal',
  options: {
    allowRegistration: {
      type: 'boolean',
      default: false,
      doc: 'let anyone who can reach the server create an account in-band (XEP-0077); off: not-allowed',
    },
    allowFrom: {
      type: 'strings',
      default: [],
      doc: 'addresses and CIDR ranges (IPv4, IPv6) allowed to register; empty: every address. Others: not-allowed',
    },
    minSecondsBetweenRegistrations: {
      type: 'number',
      default: 600,
      min: 0,
      doc: 'after an account was registered from an address (IPv6: its /ipv6PrefixLength), the next registration from there waits this long: resource-constraint (0 = no limit)',
    },
    maxFailedRegistrations: {
      type: 'number',
      default: 10,
      min: 1,
      doc: 'refused registration attempts (taken or bad name, weak password) per address in that window; more: resource-constraint',
    },
    ipv6PrefixLength: {
      type: 'number',
      default: 64,
      min: 1,
      max: 128,
      doc: 'IPv6 addresses are counted by this prefix (one host usually holds a /64)',
    },
    minPasswordLength: {
      type: 'number',
      default: 8,
      min: 1,
      doc: 'shortest password accepted at registration and password change, characters; shorter: not-acceptable',
    },
    maxPasswordBytes: {
      type: 'number',
      default: 1024,
      min: 16,
      doc: 'longest password accepted at registration and password change, bytes; longer: not-acceptable',
    },
    maxUsernameLength: {
      type: 'number',
      default: 64,
      min: 1,
      max: 1023,
      doc: 'longest username registered in-band, characters after normalisation; longer: not-acceptable',
    },
    reservedUsernames: {
      type: 'strings',
      default: DEFAULT_RESERVED,
      doc: 'usernames nobody registers in-band (admin, postmaster…): not-acceptable',
    },
  },
  specs: [
    {
      spec: 'XEP-0077',
      status: 'complete',
      note: 'registration of new accounts off by default; when on: encrypted streams only, allow-list, per-address rate limit, plain fields and XEP-0004 form; password change and removal for logged-in users',
    },
  ],
  setup(ctx) {
    const { broker } = ctx;
    const o = ctx.options;
    const iq = iqRegistry(broker);
    const policy = { minPasswordLength: o.minPasswordLength, maxPasswordBytes: o.maxPasswordBytes };
    const toServer = (to: { isDomain: boolean; equals(other: unknown): boolean }, own: unknown) =>
      to.isDomain || to.equals(own);

    // ---- logged-in users: password change and removal ----
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_REGISTER, name: 'query' }, (req) => {
        if (!toServer(req.to, req.from.bare())) return undefined;
        return xml(
          'query',
          { xmlns: NS_REGISTER },
          xml('registered'),
          xml('username', {}, req.from.local),
          xml('password'),
        ); // [XEP-0077 3.2]
      }),
    );
    ctx.onUnload(
      iq.register(
        ctx.name,
        { type: 'set', ns: NS_REGISTER, name: 'query' },
        async (req): Promise<'empty' | undefined> => {
          if (!toServer(req.to, req.from.bare())) return undefined;
          const username = req.from.local;
          const asked = readRequest(req.child);
          if (asked.remove) {
            // [XEP-0077 3.2] the result goes out first, then the account and its sessions go
            setImmediate(() => {
              broker
                .removeAccount(username)
                .catch((err: unknown) => ctx.log.error({ err }, 'account removal failed'));
            });
            return 'empty';
          }
          const given = asked.username;
          if (given !== undefined && given.toLowerCase() !== username)
            throw new BrokerError('not-allowed', 'only your own password'); // [XEP-0077 3.3]
          if (!asked.password) throw new BrokerError('bad-request', 'no password'); // [XEP-0077 3.3]
          checkPassword(asked.password, policy);
          await broker.accounts.setPassword(username, asked.password);
          return 'empty';
        },
      ),
    );
    discoFeature(ctx, NS_REGISTER);

    // ---- before authentication: new accounts [XEP-0077 3.1] ----
    const allow = allowList(o.allowFrom);
    const reserved = new Set(o.reservedUsernames.map((u) => u.normalize('NFKC').toLowerCase()));
    const throttle = new RegistrationThrottle({
      minSecondsBetween: o.minSecondsBetweenRegistrations,
      maxFailures: o.maxFailedRegistrations,
      v6Prefix: o.ipv6PrefixLength,
    });
    /** registrations being created, by source address: a second at once from the same address waits its turn (refused) */
    const inFlight = new Set<string>();

    /** Throws unless this stream may register at all. */
    const mayRegister = (req: PreAuthIqRequest): void => {
      if (!o.allowRegistration)
        throw new BrokerError('not-allowed', 'in-band registration is disabled on this server'); // [XEP-0077 3.1]
      if (!req.conn.transportRef.secure)
        throw new BrokerError(
          'policy-violation',
          'registration needs an encrypted stream (STARTTLS first)',
        );
      if (allow && !allowed(allow, req.conn.remoteAddress))
        throw new BrokerError('not-allowed', 'registration is not open to your address');
    };

    /** The username as it will be stored: normalised [RFC7622 3.3], bounded, not reserved; else not-acceptable [XEP-0077 3.1]. */
    const usernameOf = (given: string): string => {
      if (given.length > o.maxUsernameLength * 4)
        throw new BrokerError('not-acceptable', 'the username is too long');
      let local: string;
      try {
        local = broker.accounts.address(given).local;
      } catch {
        throw new BrokerError('not-acceptable', 'the username is not a valid JID localpart');
      }
      if ([...local].length > o.maxUsernameLength)
        throw new BrokerError(
          'not-acceptable',
          `the username must be at most ${o.maxUsernameLength} characters`,
        );
      if (reserved.has(local)) throw new BrokerError('not-acceptable', 'this username is reserved');
      return local;
    };

    ctx.onUnload(
      iq.registerPreAuth(ctx.name, { type: 'get', ns: NS_REGISTER, name: 'query' }, (req) => {
        mayRegister(req);
        return registrationForm('Choose a username and a password.'); // [XEP-0077 3.1, 4]
      }),
    );
    ctx.onUnload(
      iq.registerPreAuth(
        ctx.name,
        { type: 'set', ns: NS_REGISTER, name: 'query' },
        async (req): Promise<'empty'> => {
          mayRegister(req);
          const asked = readRequest(req.child);
          if (asked.remove)
            throw new BrokerError('registration-required', 'log in to remove an account'); // [XEP-0077 3.2]
          const ip = req.conn.remoteAddress;
          throttle.check(ip); // [XEP-0077 3.1] resource-constraint
          const key = addressKey(ip, o.ipv6PrefixLength);
          if (inFlight.has(key))
            throw new BrokerError(
              'resource-constraint',
              'a registration from this address is in progress',
            );
          inFlight.add(key);
          try {
            if (!asked.username || !asked.password)
              throw new BrokerError('not-acceptable', 'username and password are required'); // [XEP-0077 3.1]
            const username = usernameOf(asked.username);
            checkPassword(asked.password, policy);
            await broker.accounts.create(username, asked.password); // conflict when it exists [XEP-0077 3.1]
          } catch (err) {
            if (err instanceof BrokerError) throttle.failed(ip);
            throw err;
          } finally {
            inFlight.delete(key);
          }
          throttle.succeeded(ip);
          ctx.log.info(
            { user: broker.accounts.address(asked.username).local, ip },
            'account registered in-band',
          );
          return 'empty';
        },
      ),
    );
    if (o.allowRegistration) {
      // [XEP-0077 3.1.1] offered before authentication, on encrypted streams allowed to register
      ctx.onUnload(
        addStreamFeature(
          broker,
          (conn) =>
            conn.transportRef.secure && (!allow || allowed(allow, conn.remoteAddress))
              ? `<register xmlns='${NS_REGISTER_FEATURE}'/>`
              : undefined,
          'unauthenticated',
        ),
      );
    }
  },
});
