import { xml } from '@xmpp/xml';
import { BrokerError, defineModule } from '../../../broker/index.ts';
import { iqRegistry } from '../iq-registry.ts';
import { NS_REGISTER } from '../ns.ts';

/**
 * XEP-0077 for logged-in users: password change [XEP-0077 3.3] and account
 * removal [XEP-0077 3.2], the latter through the one account-removal path
 * (`broker.removeAccount`). In-band registration of new accounts is not
 * offered.
 */
export default defineModule({
  name: 'register',
  description: 'In-band password change and account removal for logged-in users',
  options: {},
  specs: [{ spec: 'XEP-0077', section: '3.2, 3.3 (removal, password change)', status: 'partial', note: 'no in-band registration of new accounts' }],
  setup(ctx) {
    const { broker } = ctx;
    const iq = iqRegistry(broker);
    const toServer = (to: { isDomain: boolean; equals(o: unknown): boolean }, own: unknown) => to.isDomain || to.equals(own);
    ctx.onUnload(
      iq.register(ctx.name, { type: 'get', ns: NS_REGISTER, name: 'query' }, (req) => {
        if (!toServer(req.to, req.from.bare())) return undefined;
        return xml('query', { xmlns: NS_REGISTER }, xml('registered'), xml('username', {}, req.from.local), xml('password')); // [XEP-0077 3.2]
      }),
    );
    ctx.onUnload(
      iq.register(ctx.name, { type: 'set', ns: NS_REGISTER, name: 'query' }, async (req): Promise<'empty' | undefined> => {
        if (!toServer(req.to, req.from.bare())) return undefined;
        const username = req.from.local;
        if (req.child.getChild('remove')) {
          // [XEP-0077 3.2] the result goes out first, then the account and its sessions go
          setImmediate(() => {
            broker.removeAccount(username).catch((err: unknown) => ctx.log.error({ err }, 'account removal failed'));
          });
          return 'empty';
        }
        const given = req.child.getChildText('username');
        const password = req.child.getChildText('password');
        if (given !== null && given !== undefined && given.toLowerCase() !== username) throw new BrokerError('not-allowed', 'only your own password'); // [XEP-0077 3.3]
        if (!password) throw new BrokerError('bad-request', 'no password'); // [XEP-0077 3.3]
        await broker.accounts.setPassword(username, password);
        return 'empty';
      }),
    );
  },
});
